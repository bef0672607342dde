"""_hosting"""
