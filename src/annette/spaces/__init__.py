"""annette.spaces"""
