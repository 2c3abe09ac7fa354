from __future__ import annotations


class InvalidInput(ValueError):
    """Input that a service rejects; the API answers 400 and forms show it on the field."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, loc: list | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.loc = loc


class UnprocessableInput(InvalidInput):
    """Well-formed input whose values are unacceptable (e.g. a timestamp out of range): 422."""

    status_code = 422


class Conflict(InvalidInput):
    """The thing is no longer in a state that allows this (e.g. another request claimed it first): 409."""

    status_code = 409


class UpstreamUnavailable(InvalidInput):
    """A server Perfpilot asks on the caller's behalf (a PromQL source) did not answer: 502. An
    InvalidInput so that the API and forms show it like one, on the field that names that server."""

    status_code = 502
