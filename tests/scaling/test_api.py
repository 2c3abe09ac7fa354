"""The scaling API: viewers read, operators act, bad input is a 4xx naming the problem, secrets stay hidden."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from monitoring.storage import SeriesSpec, samples_write, series_resolve
from scaling.models import ScaledService, ScalingDecision, ScalingRule
from tests.scaling.conftest import load_series

pytestmark = pytest.mark.usefixtures("clean_samples")
BASE = "/api/v1/performance/scaling"


def post(client, path, body, auth, method="post"):
    return getattr(client, method)(f"{BASE}{path}", data=json.dumps(body), content_type="application/json", **auth)


def _create(client, auth, hook_url, **extra):
    body = {
        "name": "web",
        "executor_kind": "webhook",
        "executor_config": {"url": f"{hook_url}/scale?token=s3cret", "headers": {"X-Key": "k"}},
        "min_replicas": 1,
        "max_replicas": 6,
        **extra,
    }
    return post(client, "/services", body, auth)


def test_operator_creates_a_service_and_its_secrets_are_never_shown_back(client, operator_auth, hook):
    response = _create(client, operator_auth, hook.url)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["executor_config"] == {}
    assert body["secret_fields_set"] == ["headers", "url"]
    assert "s3cret" not in response.content.decode()
    assert body["scale_up_policies"] == [
        {"type": "Percent", "value": 100, "period_seconds": 15},
        {"type": "Pods", "value": 4, "period_seconds": 15},
    ]
    assert body["scale_down_stabilization_seconds"] == 300 and body["dry_run"] is True
    listing = client.get(f"{BASE}/services", **operator_auth)
    assert "s3cret" not in listing.content.decode()
    assert ScaledService.objects.get(name="web").full_config["url"].endswith("token=s3cret")
    assert AuditEvent.objects.filter(action="scaling.service.create", object_repr="web").exists()


def test_viewer_reads_but_cannot_act(client, viewer_auth, operator_auth, hook):
    _create(client, operator_auth, hook.url)
    assert client.get(f"{BASE}/status", **viewer_auth).status_code == 200
    assert client.get(f"{BASE}/services/web", **viewer_auth).status_code == 200
    assert _create(client, viewer_auth, hook.url, name="other").status_code == 403
    assert post(client, "/execute", {"service": "web", "replicas": 2}, viewer_auth).status_code == 403
    assert post(client, "/evaluate", {"service": "web"}, viewer_auth).status_code == 403
    assert client.get(f"{BASE}/status").status_code == 401


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"executor_kind": "teleport"}, "executor_kind"),
        ({"executor_config": {"url": "ftp://x"}}, "executor_config.url"),
        ({"executor_config": {}}, "executor_config.url"),
        ({"min_replicas": 5, "max_replicas": 2}, "max_replicas"),
        ({"name": "Not A Slug!"}, "name"),
        (
            {"executor_kind": "shell", "executor_config": {"scale_command": "x", "current_command": "y"}},
            "executor_kind",
        ),
    ],
)
def test_bad_service_input_is_a_400_naming_the_field(client, operator_auth, hook, extra, field):
    response = _create(client, operator_auth, hook.url, **extra)
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field


def test_schema_violations_are_422_with_the_location(client, operator_auth, hook):
    response = _create(
        client, operator_auth, hook.url, scale_up_policies=[{"type": "Pods", "value": 0, "period_seconds": 15}]
    )
    assert response.status_code == 422
    assert "scale_up_policies" in json.dumps(response.json()["detail"])


def test_put_rule_creates_then_replaces_and_validates(client, operator_auth, hook):
    _create(client, operator_auth, hook.url)
    series = load_series("app_load", 10)
    created = post(
        client, "/rule/web/load", {"source": "series", "series_id": series, "target_value": 50}, operator_auth, "put"
    )
    assert created.status_code == 200, created.content
    assert created.json()["tolerance"] == 0.1
    replaced = post(
        client, "/rule/web/load", {"source": "cpu", "target_value": 70, "tolerance": 0.2}, operator_auth, "put"
    )
    assert replaced.json()["source"] == "cpu" and replaced.json()["series_id"] is None
    bad = post(
        client, "/rule/web/load", {"source": "series", "series_id": 999999, "target_value": 5}, operator_auth, "put"
    )
    assert bad.status_code == 400 and bad.json()["field"] == "series_id"
    assert (
        post(client, "/rule/nope/load", {"source": "cpu", "target_value": 5}, operator_auth, "put").status_code == 404
    )
    assert ScalingRule.objects.get(name="load").source == "cpu"


def test_rules_crud(client, operator_auth, hook):
    _create(client, operator_auth, hook.url)
    created = post(
        client,
        "/services/web/rules",
        {
            "name": "q",
            "source": "queue_length",
            "target_value": 5,
            "labels": {"queue": "default"},
            "target_type": "average",
        },
        operator_auth,
    )
    assert created.status_code == 201, created.content
    duplicate = post(client, "/services/web/rules", {"name": "q", "source": "cpu", "target_value": 5}, operator_auth)
    assert duplicate.status_code == 400 and duplicate.json()["field"] == "name"
    patched = post(client, "/services/web/rules/q", {"target_value": 8}, operator_auth, "patch")
    assert patched.json()["target_value"] == 8 and patched.json()["labels"] == {"queue": "default"}
    assert [r["name"] for r in client.get(f"{BASE}/services/web/rules", **operator_auth).json()] == ["q"]
    assert client.delete(f"{BASE}/services/web/rules/q", **operator_auth).status_code == 204
    assert not ScalingRule.objects.exists()


def test_evaluate_execute_status_and_decisions(client, operator_auth, viewer_auth, hook):
    _create(client, operator_auth, hook.url, dry_run=False, enabled=True)
    series = load_series("app_load", 100)
    post(client, "/rule/web/load", {"source": "series", "series_id": series, "target_value": 50}, operator_auth, "put")

    evaluated = post(client, "/evaluate", {"service": "web"}, operator_auth)
    assert evaluated.status_code == 200, evaluated.content
    assert evaluated.json()["result"] == "scaled" and evaluated.json()["desired_replicas"] == 2
    assert hook.posts[-1]["json"]["replicas"] == 2

    executed = post(client, "/execute", {"service": "web", "replicas": 3, "dry_run": True}, operator_auth)
    assert executed.json()["result"] == "dry_run" and len(hook.posts) == 1
    refused = post(client, "/execute", {"service": "web", "replicas": 60}, operator_auth)
    assert refused.status_code == 400 and refused.json()["field"] == "replicas"
    unknown = post(client, "/execute", {"service": "ghost", "replicas": 1}, operator_auth)
    assert unknown.status_code == 400 and unknown.json()["field"] == "service"

    (status,) = client.get(f"{BASE}/status", **viewer_auth).json()
    assert status["service"] == "web" and status["current_replicas"] == 2 and status["last_result"] == "dry_run"
    decisions = client.get(f"{BASE}/decisions?service=web", **viewer_auth).json()
    assert [d["result"] for d in decisions] == ["dry_run", "scaled"]
    too_few = client.get(f"{BASE}/decisions?limit=0", **viewer_auth)
    assert too_few.status_code == 422 and too_few.json()["detail"][0]["loc"] == ["query", "limit"]


def test_evaluate_all_is_queued(client, operator_auth):
    response = post(client, "/evaluate", {}, operator_auth)
    assert response.status_code == 202
    assert response.json()["services"] == 0 and response.json()["task_id"]
    assert AuditEvent.objects.filter(action="scaling.evaluate_all").exists()


def test_whatif_replays_recorded_history_before_the_rule_is_enabled(client, operator_auth, hook):
    _create(client, operator_auth, hook.url)
    (series,) = series_resolve(target_id=None, specs=[SeriesSpec("burst_load", {})])
    now = timezone.now()
    values = [50] * 10 + [150] * 10 + [50] * 10
    samples_write([(series, now - timedelta(seconds=15 * (30 - i)), v) for i, v in enumerate(values)])
    post(
        client,
        "/rule/web/burst",
        {"source": "series", "series_id": series, "target_value": 50, "enabled": False},
        operator_auth,
        "put",
    )
    response = client.get(f"{BASE}/services/web/rules/burst/whatif?from=-10m&to=now&start_replicas=2", **operator_auth)
    assert response.status_code == 200, response.content
    body = response.json()
    replicas = [s["replicas"] for s in body["steps"]]
    assert len(replicas) == 30
    assert replicas[:10] == [2] * 10
    assert max(replicas) == 6  # 150 against 50 triples 2 replicas
    assert body["changes"] >= 1
    bad = client.get(f"{BASE}/services/web/rules/burst/whatif?from=now&to=-1h", **operator_auth)
    assert bad.status_code == 400 and bad.json()["field"] == "end"
    overflow = client.get(f"{BASE}/services/web/rules/burst/whatif?from=-99999999999h", **operator_auth)
    assert overflow.status_code == 400 and overflow.json()["field"] == "from"
    assert ScalingDecision.objects.count() == 0  # a replay decides nothing for real


def test_the_openapi_schema_documents_the_scaling_endpoints(client, viewer_auth):
    schema = client.get("/api/v1/openapi.json", **viewer_auth).json()
    paths = schema["paths"]
    for path in (
        "/api/v1/performance/scaling/status",
        "/api/v1/performance/scaling/evaluate",
        "/api/v1/performance/scaling/execute",
        "/api/v1/performance/scaling/rule/{service}/{rule}",
        "/api/v1/performance/scaling/services",
        "/api/v1/performance/scaling/decisions",
        "/api/v1/performance/scaling/services/{service}/rules/{rule}/whatif",
    ):
        assert path in paths, path


@pytest.mark.parametrize("name", ["Web", "db%00", "-web"])
def test_a_service_or_rule_name_in_the_path_outside_the_naming_rule_is_a_422(client, viewer_auth, name):
    # The path parameters publish the naming pattern services and rules are created with; a NUL
    # here reached the database and came back as a DataError.
    response = client.get(f"{BASE}/services/{name}", **viewer_auth)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "service"]
    assert client.get(f"{BASE}/services/web/rules/{name}/whatif", **viewer_auth).status_code == 422
