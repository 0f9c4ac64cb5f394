"""annette.layers"""
