"""openapi.json describes what the server does: each operation's body and answers are the schemas of
the pydantic models behind it, every component name stands for one schema, and the limits the
server enforces are in the document."""

from __future__ import annotations

from enum import StrEnum

import pytest
from ninja import Router, Schema
from ninja.openapi.schema import REF_TEMPLATE
from ninja.schema import NinjaGenerateJsonSchema

from config.api import ComponentCollision, PerfpilotAPI, api, forbid_nul
from core.schemas import NO_NUL

PREFIX = REF_TEMPLATE.removesuffix("{model}")


def _resolved(node, definitions: dict, prefix: str, seen: tuple = ()):
    """`node` with every $ref replaced by what it names, so two documents compare by content."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(prefix) and ref != prefix + "JsonValue":  # recursive
            name = ref.removeprefix(prefix)
            assert name not in seen, f"recursive schema {name}"
            return _resolved(definitions[name], definitions, prefix, (*seen, name))
        return {key: _resolved(value, definitions, prefix, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolved(item, definitions, prefix, seen) for item in node]
    return node


def _standalone(model, field: str, mode: str, by_alias: bool = True) -> dict:
    """The schema of one of ninja's wrapper models' fields, generated on its own, refs resolved."""
    schema = model.model_json_schema(
        ref_template="#/$defs/{model}", schema_generator=NinjaGenerateJsonSchema, mode=mode, by_alias=by_alias
    )
    return _resolved(schema["properties"][field], schema.get("$defs", {}), "#/$defs/")


def _operations():
    for _prefix, router in api._routers:
        for path_view in router.path_operations.values():
            yield from path_view.operations


@pytest.fixture(scope="module")
def document() -> dict:
    return api.get_openapi_schema()


@pytest.fixture(scope="module")
def operations_by_id(document) -> dict:
    return {
        operation["operationId"]: operation
        for operations in document["paths"].values()
        for operation in operations.values()
    }


def test_every_request_body_is_the_schema_of_its_model(document, operations_by_id):
    components = document["components"]["schemas"]
    compared = 0
    for operation in _operations():
        body_models = [m for m in operation.models if m.__ninja_param_source__ == "body"]
        if not body_models:
            continue
        (model,) = body_models
        (field,) = model.model_fields
        published = operations_by_id[operation.operation_id or api.get_openapi_operation_id(operation)]
        schema = published["requestBody"]["content"]["application/json"]["schema"]
        expected = _standalone(model, field, "validation")
        forbid_nul(expected, {})  # what core/parser.py adds to every body: no NUL in any string
        assert _resolved(schema, components, PREFIX) == expected, operation.view_func.__name__
        compared += 1
    assert compared >= 20


def test_every_answer_is_the_schema_of_its_model(document, operations_by_id):
    components = document["components"]["schemas"]
    compared = 0
    for operation in _operations():
        published = operations_by_id[operation.operation_id or api.get_openapi_operation_id(operation)]
        for status, model in operation.response_models.items():
            if model is None or status is Ellipsis:
                continue
            schema = published["responses"][str(status)]["content"]["application/json"]["schema"]
            assert _resolved(schema, components, PREFIX) == _standalone(
                model, "response", "serialization", bool(operation.by_alias)
            ), f"{operation.view_func.__name__} {status}"
            compared += 1
    assert compared >= 60


def test_two_different_schemas_with_one_name_are_refused():
    first, second = Router(), Router()
    # Two enums both named Kind, as each model's inner `Kind` choices were.
    slack_kind, host_kind = StrEnum("Kind", {"SLACK": "slack"}), StrEnum("Kind", {"HOST": "host"})
    thing_in = type("ThingIn", (Schema,), {"__annotations__": {"kind": slack_kind}})
    other_in = type("OtherIn", (Schema,), {"__annotations__": {"kind": host_kind}})

    def a(request, payload: thing_in):
        return None

    def b(request, payload: other_in):
        return None

    a.__annotations__["payload"], b.__annotations__["payload"] = thing_in, other_in
    first.post("/a")(a)
    second.post("/b")(b)
    colliding = PerfpilotAPI(urls_namespace="collision-test")
    colliding.add_router("/", first)
    colliding.add_router("/", second)
    with pytest.raises(ComponentCollision, match="'Kind'"):
        colliding.get_openapi_schema(path_prefix="")


def test_enums_of_different_models_have_their_own_names(document):
    components = document["components"]["schemas"]
    assert components["TargetKind"]["enum"] == ["host", "postgres", "redis", "celery", "prometheus", "perfpilot"]
    assert components["ChannelKind"]["enum"] == ["slack", "webhook"]
    target_in = components["TargetIn"]["properties"]["kind"]
    assert target_in == {"$ref": PREFIX + "TargetKind"}
    assert "Kind" not in components


def test_patch_fields_are_not_nullable_and_booleans_are_booleans(document):
    patch = document["components"]["schemas"]["TargetPatchIn"]["properties"]
    for name in ("name", "url", "interval_seconds", "timeout_seconds", "enabled", "options"):
        assert "anyOf" not in patch[name] and "default" not in patch[name], name
    assert patch["enabled"]["type"] == "boolean"
    assert (patch["interval_seconds"]["minimum"], patch["interval_seconds"]["maximum"]) == (1, 86_400)


def _strings_and_maps(node, components: dict, where: str, seen: frozenset = frozenset()):
    """Every string schema and every map (object with additionalProperties) under `node`."""
    if isinstance(node, list):
        for item in node:
            yield from _strings_and_maps(item, components, where, seen)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            name = ref.removeprefix(PREFIX)
            if name not in seen:
                yield from _strings_and_maps(components[name], components, f"{where}>{name}", seen | {name})
            return
        if node.get("type") in ("string", "object"):
            yield where, node
        for key, value in node.items():
            yield from _strings_and_maps(value, components, f"{where}/{key}", seen)


def test_no_input_string_may_hold_nul_and_the_schema_says_so(document):
    # PostgreSQL cannot store NUL: such input was a 422 from the database layer while the schema
    # allowed it (schemathesis: "schema-valid request rejected"). Every string the API takes has
    # a pattern, enum or format that excludes it, and every map's keys too.
    components = document["components"]["schemas"]
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            roots = [(f"{method} {path} {p['name']}", p["schema"]) for p in operation.get("parameters", [])]
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            roots += [(f"{method} {path} body", body)] if body else []
            for where, root in roots:
                for place, node in _strings_and_maps(root, components, where):
                    checked += 1
                    if node["type"] == "string":
                        assert {"pattern", "enum", "format", "const"} & set(node), place
                    elif node.get("additionalProperties") not in (None, False):
                        assert node.get("propertyNames") == {"pattern": NO_NUL}, place
    assert checked > 100


def test_every_operation_documents_the_414_gunicorn_gives_for_a_too_long_url(document):
    for operations in document["paths"].values():
        for operation in operations.values():
            assert "414" in operation["responses"], operation["operationId"]


def test_creates_link_to_the_calls_below_what_they_created(document):
    services = document["paths"]["/api/v1/performance/scaling/services"]["post"]["responses"]["201"]["links"]
    assert services["Postscaling_api_rules_create"]["parameters"] == {"service": "$response.body#/name"}
    rules = document["paths"]["/api/v1/performance/scaling/services/{service}/rules"]["post"]["responses"]["201"]
    assert rules["links"]["Getscaling_api_rules_whatif"]["parameters"] == {
        "service": "$request.path.service",
        "rule": "$response.body#/name",
    }
    # A call that needs a second object (a rule of a created service) is not linked from the first.
    assert "Getscaling_api_rules_whatif" not in services
