"""Curated facades of standard-library modules that sandboxed plugins may import."""
