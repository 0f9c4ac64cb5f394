"""annette.bench"""
