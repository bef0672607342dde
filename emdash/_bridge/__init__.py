"""_bridge"""
