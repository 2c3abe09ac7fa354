"""The API's JSON body parser: orjson, several times faster than the standard library.

Push ingestion (POST /metrics) does not come through here: it parses and validates in one pass
of pydantic's own JSON parser (see monitoring.api).

orjson refuses what is not strict JSON, such as the NaN literal Python's json accepts. Those
bodies are parsed again with the standard library, so that validation, not the parser, rejects
them, with a 422 that names the field instead of a bare parse error.
"""

from __future__ import annotations

import json

import orjson
from django.http import HttpRequest
from ninja.parser import Parser


class FastJSONParser(Parser):
    def parse_body(self, request: HttpRequest):
        try:
            return orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return json.loads(request.body)
