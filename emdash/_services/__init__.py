"""_services"""
