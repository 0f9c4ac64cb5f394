"""annette.evaluate"""
