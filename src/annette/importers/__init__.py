"""annette.importers"""
