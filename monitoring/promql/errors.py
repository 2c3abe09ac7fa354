"""The engine's one error type: what Prometheus answers as errorType "bad_data" (HTTP 400)."""

from __future__ import annotations


class PromQLError(ValueError):
    def __init__(self, message: str, *, error_type: str = "bad_data") -> None:
        super().__init__(message)
        self.error_type = error_type
