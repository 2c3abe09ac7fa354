"""Notification transports, one module per channel kind, found through the registry in base.py."""
