"""The API's JSON body parser: orjson, several times faster than the standard library.

Push ingestion (POST /metrics) does not come through here: it parses and validates in one pass
of pydantic's own JSON parser (see monitoring.api), its strings typed to refuse NUL alike.

orjson refuses what is not strict JSON, such as the NaN literal Python's json accepts. Those
bodies are parsed again with the standard library, so that validation, not the parser, rejects
them, with a 422 that names the field instead of a bare parse error.

A query parameter that takes one value may be given only once.

No string of the input, in the body (keys included, at any depth) or the query, may hold a NUL
character: PostgreSQL's text and jsonb cannot store one. openapi.json says so with a pattern on
every string (config/api.py); this is where the server enforces it, after authentication, with a
422 naming the field.
"""

from __future__ import annotations

import json

import orjson
from django.http import HttpRequest
from ninja.parser import Parser

from core.errors import UnprocessableInput

NUL = "\x00"
NUL_MESSAGE = "Text may not contain the NUL character (\\u0000)."


def nul_location(value, loc: tuple = ()) -> list | None:
    """Where in a parsed JSON value (a list of keys and indexes) a string holds NUL; None if nowhere."""
    if isinstance(value, str):
        return list(loc) if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and NUL in key:
                return [*loc, key]
            found = nul_location(item, (*loc, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_location(item, (*loc, index))
            if found is not None:
                return found
    return None


class FastJSONParser(Parser):
    def parse_body(self, request: HttpRequest):
        try:
            data = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            data = json.loads(request.body)
        # A NUL reaches a parsed string only through the \u0000 escape (JSON forbids it raw).
        if b"\\u0000" in request.body:
            found = nul_location(data, ("body",))
            if found is not None:
                raise UnprocessableInput(NUL_MESSAGE, loc=found)
        return data

    def parse_querydict(self, data, list_fields, request: HttpRequest):
        for key, values in data.lists():
            if NUL in key or any(NUL in value for value in values):
                raise UnprocessableInput(NUL_MESSAGE, loc=["query", key])
            # A parameter the schema gives one value, sent several times, was read as its last
            # value and the others silently dropped: ambiguous input, refused like any invalid one.
            if len(values) > 1 and key not in list_fields:
                raise UnprocessableInput(f"Give {key!r} once, not {len(values)} times.", loc=["query", key])
        return super().parse_querydict(data, list_fields, request)
