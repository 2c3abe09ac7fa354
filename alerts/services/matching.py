"""Label matchers (silences, channel routing) and alert fingerprints. Pure functions."""

from __future__ import annotations

import hashlib
import json
import re

from core.errors import InvalidInput

OPERATORS = ("=", "!=", "=~", "!~")


def fingerprint(labels: dict[str, str]) -> str:
    """A stable identity for a set of labels: equal labels, same alert."""
    canonical = json.dumps(labels, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def matchers_validate(matchers: object, *, field: str = "matchers", allow_empty: bool = True) -> list[dict]:
    """Check and normalise [{"name", "op", "value"}]; raises InvalidInput naming the problem."""
    if not isinstance(matchers, list):
        raise InvalidInput("Matchers must be a list of {name, op, value}.", field=field)
    if not matchers and not allow_empty:
        raise InvalidInput("At least one matcher is needed.", field=field)
    cleaned = []
    for index, matcher in enumerate(matchers):
        if not isinstance(matcher, dict):
            raise InvalidInput(f"Matcher {index + 1} must be an object with name, op and value.", field=field)
        name = str(matcher.get("name", "")).strip()
        op = str(matcher.get("op", "=")).strip()
        value = str(matcher.get("value", ""))
        if not name:
            raise InvalidInput(f"Matcher {index + 1} needs a label name.", field=field)
        if op not in OPERATORS:
            raise InvalidInput(f"Matcher {index + 1}: op must be one of {', '.join(OPERATORS)}.", field=field)
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidInput(f"Matcher {index + 1}: invalid regular expression: {exc}.", field=field) from exc
        cleaned.append({"name": name, "op": op, "value": value})
    return cleaned


def matchers_parse(text: str, *, field: str = "matchers") -> list[dict]:
    """`target=db1, severity=~crit.*` (comma-separated) as matchers; the form fields use this."""
    matchers = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        found = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)$", part)
        if not found:
            raise InvalidInput(f"“{part}” is not name=value (or !=, =~, !~).", field=field)
        matchers.append({"name": found[1], "op": found[2], "value": found[3].strip().strip('"')})
    return matchers_validate(matchers, field=field)


def matchers_text(matchers: list[dict]) -> str:
    return ", ".join(f"{m['name']}{m['op']}{m['value']}" for m in matchers)


def matches(matchers: list[dict], labels: dict[str, str]) -> bool:
    """Whether labels satisfy every matcher (a missing label is the empty string, as in Alertmanager)."""
    for matcher in matchers:
        actual = str(labels.get(matcher["name"], ""))
        op, value = matcher["op"], matcher["value"]
        if op == "=" and actual != value:
            return False
        if op == "!=" and actual == value:
            return False
        if op == "=~" and not re.fullmatch(value, actual):
            return False
        if op == "!~" and re.fullmatch(value, actual):
            return False
    return True
