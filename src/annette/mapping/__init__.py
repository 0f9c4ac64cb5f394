"""annette.mapping"""
