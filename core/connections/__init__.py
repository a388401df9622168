"""connections"""
