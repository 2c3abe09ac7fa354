"""The NinjaAPI instance: its authentication (from core.auth), error handling, and the one place routers are mounted."""

from __future__ import annotations

import logging
import re
import uuid

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.openapi.schema import OpenAPISchema
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import __version__
from core.auth import BearerTokenAuth, SessionAuth, docs_require_auth
from core.errors import InvalidInput
from core.outages import database_unavailable, outage_answer
from core.parser import FastJSONParser
from core.queueing import QueueUnavailable
from core.schemas import NO_NUL

logger = logging.getLogger(__name__)


_ERROR_BODY = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
            "description": "What is wrong: a sentence, or a list of {loc, msg, type} naming each field.",
        },
        "field": {"type": "string"},
        "component": {
            "type": "string",
            "enum": ["database", "redis", "broker"],
            "description": "With 503: what is down (broker: a task broker other than the Redis, e.g. RabbitMQ).",
        },
    },
}
# Answers every operation can give, whatever its own responses list: refused input, no or a bad
# token, a role too low, something the request names that does not exist, input that does not
# validate, and the database or Redis being unavailable (retry later).
_COMMON_RESPONSES = {
    status: {"description": description, "content": {"application/json": {"schema": _ERROR_BODY}}}
    for status, description in {
        "400": "The input was refused",
        "401": "Authentication required",
        "403": "Your role may not do this",
        "404": "Not found",
        "422": "The input did not validate",
        "503": "The database, Redis or the task broker is unavailable; retry later",
    }.items()
}
# A request line (method, path and query) longer than gunicorn takes (its limit_request_line,
# 4094 bytes) is refused by gunicorn itself, before Django, with a short non-JSON answer.
_URI_TOO_LONG = {"414": {"description": "The URL (path and query string) is longer than the server takes"}}
# Methods that carry a body, which core.bodylimit refuses past its limit.
_TOO_LARGE = {
    "413": {
        "description": "The request body is larger than this endpoint takes",
        "content": {"application/json": {"schema": _ERROR_BODY}},
    }
}


class ComponentCollision(Exception):
    """Two different schemas or enums would share one name under components/schemas."""


class UniqueComponentsSchema(OpenAPISchema):
    """django-ninja's document, refusing two different schemas under one component name.

    ninja builds each operation's models on their own and merges their definitions by name, so
    the scaling `RuleOut` silently replaced the alerts one (and every operation then pointed at
    it), and each model's `Kind` enum replaced the others. Every input and output class and enum
    has a name of its own; this makes a new clash fail loudly (tests/api/test_contract.py).
    """

    def add_schema_definitions(self, definitions: dict) -> None:
        for name, definition in definitions.items():
            known = self.schemas.get(name)
            if known is not None and known != definition:
                raise ComponentCollision(f"Two different schemas are both named {name!r} in openapi.json.")
        super().add_schema_definitions(definitions)


class PerfpilotAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        if path_prefix is None:
            path_prefix = self.get_root_path(path_params or {})
        schema = UniqueComponentsSchema(self, path_prefix)
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                # django-ninja keys an operation's own responses by int status (201, 404) and JSON
                # keeps those apart from our "404": the document then held both, which YAML-based
                # readers such as Swagger UI refuse as a duplicated mapping key. One string key per
                # status, the operation's own answer first.
                responses = {str(status): response for status, response in operation["responses"].items()}
                for status, response in _COMMON_RESPONSES.items():
                    responses.setdefault(status, response)
                responses.update(_URI_TOO_LONG)
                if method in ("post", "put", "patch"):
                    responses.update(_TOO_LARGE)
                operation["responses"] = responses
                # A section's summary router sits inside its app's router: both name the tag.
                operation["tags"] = list(dict.fromkeys(operation.get("tags", [])))
        _link_created_objects(schema["paths"])
        _no_nul_in_input(schema)
        return schema


# No string of the input may hold NUL (core/parser.py refuses it with a 422; PostgreSQL cannot
# store one): every input string that has no pattern, enum or format of its own says so.
# Free-form JSON input (a target's options, tuner parameters): any JSON value, NUL in no string.
_JSON_VALUE = "JsonValue"
_JSON_VALUE_REF = {"$ref": f"#/components/schemas/{_JSON_VALUE}"}
_JSON_VALUE_SCHEMA = {
    "description": "Any JSON value; no string (nor object key) may contain the NUL character.",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": _JSON_VALUE_REF},
        {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": _JSON_VALUE_REF},
    ],
}


def forbid_nul(node, components: dict, seen: set[str] | None = None) -> None:
    """Add to an input schema, in place, what core/parser.py enforces: no NUL in any string.

    A string with no pattern, enum or format of its own gets the pattern NO_NUL, every map's keys
    get it as `propertyNames`, and a free-form value (`dict`, `Any`) becomes a JsonValue. The
    components that `node` refers to are changed as well (once each, tracked in `seen`).
    """
    seen = set() if seen is None else seen
    if isinstance(node, list):
        for item in node:
            forbid_nul(item, components, seen)
        return
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        if name not in seen and name in components:
            seen.add(name)
            forbid_nul(components[name], components, seen)
        return
    kind = node.get("type")
    if kind == "string" and not any(key in node for key in ("pattern", "enum", "format", "const")):
        node["pattern"] = NO_NUL
    if kind == "object":
        keyed = node.get("patternProperties", {})
        if list(keyed) == [NO_NUL]:  # pydantic's rendering of dict[Text, ...]
            node["additionalProperties"] = node.pop("patternProperties")[NO_NUL]
        free = node.get("additionalProperties", None if "properties" in node or keyed else True)
        if free is True or free == {}:
            node["additionalProperties"] = dict(_JSON_VALUE_REF)
            free = node["additionalProperties"]
        if free is not None and free is not False:
            node.setdefault("propertyNames", {"pattern": NO_NUL})
    for key, value in node.items():
        if key not in ("propertyNames", "enum", "const", "default", "examples", "example"):
            forbid_nul(value, components, seen)


def _no_nul_in_input(schema: dict) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    seen: set[str] = set()
    for operations in schema["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                forbid_nul(parameter.get("schema"), components, seen)
            forbid_nul(operation.get("requestBody"), components, seen)
    components[_JSON_VALUE] = _JSON_VALUE_SCHEMA


_PARAMETER = re.compile(r"\{(\w+)\}")


def _link_created_objects(paths: dict) -> None:
    """OpenAPI links from each create (POST answering 201) to the operations on what it created.

    `POST /targets` → `GET|PATCH|DELETE /targets/{target_id}` and the calls below it
    (`GET /targets/{target_id}/forecasts`), with `target_id` taken from the answer's `id` (or
    `name`, for objects addressed by name); `POST /services/{service}/rules` → the calls on that
    rule, keeping `service` from its own path. Clients, and schemathesis's stateful phase, follow
    them from a new object to the calls on it.
    """
    for path, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        known = _PARAMETER.findall(path)
        for item_path, item_operations in paths.items():
            rest = item_path.removeprefix(path + "/")
            first = rest.split("/", 1)[0]
            if rest == item_path or not _PARAMETER.fullmatch(first):
                continue
            new = _PARAMETER.fullmatch(first).group(1)
            if _PARAMETER.findall(rest) != [new]:  # deeper calls needing more than this object
                continue
            source = "$response.body#/id" if new == "id" or new.endswith("_id") else "$response.body#/name"
            for method, operation in item_operations.items():
                parameters = {name: f"$request.path.{name}" for name in known}
                parameters[new] = source
                link = {"operationId": operation["operationId"], "parameters": parameters}
                created.setdefault("links", {})[f"{method.capitalize()}{operation['operationId']}"] = link


api = PerfpilotAPI(
    title="Perfpilot API",
    version=__version__,
    description=(
        "Perfpilot's REST API. Authenticate with `Authorization: Bearer <token>` "
        "(create tokens under Settings) or a browser session."
    ),
    auth=[BearerTokenAuth(), SessionAuth()],
    urls_namespace="api",
    docs_decorator=docs_require_auth,
    parser=FastJSONParser(),
)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    # No credentials, or refused ones, on any method: 401 with the scheme to use (RFC 9110 §11.6.1).
    detail = "Authentication required: send Authorization: Bearer <token> or sign in."
    response = api.create_response(request, {"detail": detail}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="perfpilot"'
    return response


@api.exception_handler(PermissionDenied)
def _permission_denied(request, exc):
    return api.create_response(request, {"detail": str(exc) or "Permission denied."}, status=403)


@api.exception_handler(InvalidInput)
def _invalid_input(request, exc):
    if exc.loc is not None:  # same shape as request validation errors, so clients parse one format
        body = {"detail": [{"loc": exc.loc, "msg": str(exc), "type": "value_error"}]}
    else:
        body = {"detail": str(exc)}
        if exc.field:
            body["field"] = exc.field
    return api.create_response(request, body, status=exc.status_code)


@api.exception_handler(HttpError)
def _http_error(request, exc):
    # ninja turns whatever the body parser raises into a bare 400 "Cannot parse request body";
    # core.parser refuses a NUL character with an InvalidInput (422) naming where it is: keep that.
    if isinstance(exc.__cause__, InvalidInput):
        return _invalid_input(request, exc.__cause__)
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


def _unavailable(request, exc):
    # PostgreSQL or Redis down: the same 503 (and the one log line) as every page (core/outages.py).
    return outage_answer(request, exc)


for _exc in (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError, BrokerOperationalError):
    api.add_exception_handler(_exc, _unavailable)


@api.exception_handler(QueueUnavailable)
def _queue_unavailable(request, exc):
    # Nothing was left waiting for the task (core/queueing.py): the client may simply retry.
    logger.warning("task queue unavailable during %s: %s", request.path, exc)
    return api.create_response(request, {"detail": str(exc), "component": exc.component}, status=503)


@api.exception_handler(DataError)
def _data_error(request, exc):
    # Class 22 (data exception): a value the database cannot store, such as a NUL character in
    # text or a number out of range. The input is at fault; say which rule it broke.
    logger.warning("data error during %s: %s", request.path, exc)
    body = {"detail": f"The input holds a value that cannot be stored: {str(exc).splitlines()[0]}"}
    return api.create_response(request, body, status=422)


@api.exception_handler(DatabaseError)
def _database_error(request, exc):
    if database_unavailable(exc):
        return outage_answer(request, exc)
    error_id = uuid.uuid4().hex[:12]
    logger.exception("database error %s on %s", error_id, request.path)
    return api.create_response(request, {"detail": f"Database error (reference {error_id})."}, status=500)


@api.exception_handler(Exception)
def _unexpected(request, exc):
    # Last resort: still JSON, with a reference to find the traceback in the logs.
    error_id = uuid.uuid4().hex[:12]
    logger.exception("unexpected error %s on %s", error_id, request.path)
    return api.create_response(request, {"detail": f"Internal error (reference {error_id})."}, status=500)


def _mount_routers() -> None:
    from alerts.api import router as alerts_router
    from core.api import router as control_plane_router
    from monitoring.api import router as monitoring_router
    from optimizer.api import router as optimizer_router
    from scaling.api import router as scaling_router

    api.add_router("/", control_plane_router)
    api.add_router("/", monitoring_router)
    api.add_router("/", optimizer_router)
    api.add_router("/", scaling_router)
    api.add_router("/", alerts_router)


_mount_routers()
