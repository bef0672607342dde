"""_selfaudit"""
