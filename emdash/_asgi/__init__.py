"""_asgi"""
