"""The NinjaAPI instance: its authentication (from core.auth), error handling, and the one place routers are mounted."""

from __future__ import annotations

import logging
import uuid

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import __version__
from core.auth import BearerTokenAuth, SessionAuth, docs_require_auth
from core.errors import InvalidInput
from core.parser import FastJSONParser

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
        "503": "The database or Redis is unavailable; retry later",
    }.items()
}


class PerfpilotAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for operations in schema["paths"].values():
            for operation in operations.values():
                # django-ninja keys an operation's own responses by int status (201, 404) and JSON
                # keeps those apart from our "404": the document then held both, which YAML-based
                # readers such as Swagger UI refuse as a duplicated mapping key. One string key per
                # status, the operation's own answer first.
                responses = {str(status): response for status, response in operation["responses"].items()}
                for status, response in _COMMON_RESPONSES.items():
                    responses.setdefault(status, response)
                operation["responses"] = responses
                # A section's summary router sits inside its app's router: both name the tag.
                operation["tags"] = list(dict.fromkeys(operation.get("tags", [])))
        return schema


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


def _unavailable(component: str):
    def handler(request, exc):
        logger.warning("%s unavailable during %s: %s", component, request.path, exc)
        return api.create_response(request, {"detail": f"{component} is unavailable; try again shortly."}, status=503)

    return handler


for _exc in (OperationalError, InterfaceError):
    api.add_exception_handler(_exc, _unavailable("The database"))
for _exc in (RedisConnectionError, RedisTimeoutError):
    api.add_exception_handler(_exc, _unavailable("Redis"))


# SQLSTATEs that mean the database cannot take the work right now (full disk, out of memory, too
# many connections, shutting down, read-only after a failover, a statement timeout), not that the
# request or our code is wrong: the client should retry, so they are a 503, not a 500.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_SQLSTATES = ("25006",)  # read_only_sql_transaction


def _database_unavailable(exc: DatabaseError) -> bool:
    sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
    return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES


@api.exception_handler(DataError)
def _data_error(request, exc):
    # Class 22 (data exception): a value the database cannot store, such as a NUL character in
    # text or a number out of range. The input is at fault; say which rule it broke.
    logger.warning("data error during %s: %s", request.path, exc)
    body = {"detail": f"The input holds a value that cannot be stored: {str(exc).splitlines()[0]}"}
    return api.create_response(request, body, status=422)


@api.exception_handler(DatabaseError)
def _database_error(request, exc):
    if _database_unavailable(exc):
        logger.warning("database cannot take work during %s: %s", request.path, exc)
        detail = "The database cannot store this right now; nothing was written. Try again shortly."
        return api.create_response(request, {"detail": detail}, status=503)
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
