"""Async client for the Wiser Energy Monitoring Cloud API."""
