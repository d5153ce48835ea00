"""Async OAuth token persistence."""
