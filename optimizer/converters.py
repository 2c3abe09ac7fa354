"""URL path converters of the optimizer's pages."""

from __future__ import annotations

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


def queryid_parse(value: str) -> int | None:
    """A pg_stat_statements query id (a signed 64-bit integer, often negative) from text, or None."""
    value = value.strip()
    digits = value.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 19:
        return None
    number = int(value)
    return number if BIGINT_MIN <= number <= BIGINT_MAX else None


class QueryIdConverter:
    """`<queryid:...>`: a signed 64-bit integer; anything else (or out of range) matches no page: 404."""

    regex = "-?[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = queryid_parse(value)
        if number is None:
            raise ValueError(value)
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))
