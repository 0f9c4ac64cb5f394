"""annette.backends"""
