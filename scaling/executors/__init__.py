"""Executors: one module per kind, each a small class registered in base.EXECUTORS."""
