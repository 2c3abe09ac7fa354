from __future__ import annotations


class InvalidInput(ValueError):
    """Input that a service rejects; the API answers 400 and forms show it on the field."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
