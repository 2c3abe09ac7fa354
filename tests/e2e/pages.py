"""Every page of the site, with enough data that each shows its tables, forms and actions.

Shared by the accessibility and keyboard tests, which walk them all."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from monitoring import storage
from monitoring.models import Target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import ExplainRun, OptimizationRun, Recommendation
from scaling.services.crud import ServiceInput, rule_upsert, service_create
from tests.alerts.conftest import make_alert, make_channel, make_rule

# EXPLAIN (ANALYZE, BUFFERS) of the seeded query as PostgreSQL returns it (trimmed): a sort over a
# sequential scan whose filter the planner under-estimated.
SEEDED_PLAN = [
    {
        "Plan": {
            "Node Type": "Sort",
            "Startup Cost": 2041.9,
            "Total Cost": 2042.2,
            "Plan Rows": 3,
            "Actual Total Time": 41.2,
            "Actual Rows": 1840,
            "Actual Loops": 1,
            "Sort Key": ["created_at DESC"],
            "Shared Hit Blocks": 12,
            "Shared Read Blocks": 830,
            "Plans": [
                {
                    "Node Type": "Seq Scan",
                    "Parent Relationship": "Outer",
                    "Relation Name": "orders",
                    "Alias": "orders",
                    "Total Cost": 2041.5,
                    "Plan Rows": 3,
                    "Actual Total Time": 39.8,
                    "Actual Rows": 1840,
                    "Actual Loops": 1,
                    "Filter": "((customer_id = 42) AND (status = 'lost'::text))",
                    "Shared Hit Blocks": 12,
                    "Shared Read Blocks": 830,
                }
            ],
        },
        "Planning Time": 0.21,
        "Execution Time": 41.5,
    }
]


def seed_every_page(*, actor) -> dict[str, str]:
    """Create a pinned target with an hour of samples, advice and a run, sixty more targets (enough to
    page the targets list, summarise them on the Overview and search them in pickers), a scaled service
    with a rule, an alert rule firing, and a channel; answer each page's name and path."""
    target = target_create(
        data=TargetInput(name="orders-db", kind="postgres", url="postgresql://app:secret@db.internal:5432/orders"),
        actor=actor,
        via="system",
    )
    Target.objects.filter(pk=target.pk).update(status=Target.Status.UP, last_success_at=timezone.now(), pinned=True)
    Target.objects.bulk_create(
        Target(
            name=f"edge-{i:02d}",
            kind=Target.Kind.POSTGRES if i % 3 == 0 else Target.Kind.PROMETHEUS,
            status=Target.Status.DOWN if i % 7 == 0 else Target.Status.UP,
            consecutive_failures=i if i % 7 == 0 else 0,
            last_error="connection refused by edge.internal:9100" if i % 7 == 0 else "",
        )
        for i in range(60)
    )
    now = timezone.now()
    (series_id,) = storage.series_resolve(
        target_id=target.id, specs=[storage.SeriesSpec(metric="postgres_connections_used_percent", labels={})]
    )
    storage.samples_write([(series_id, now - timedelta(minutes=60 - i), 40 + i % 7) for i in range(60)])

    recommendation = Recommendation.objects.create(
        target=target,
        tuner="indexes",
        fingerprint="orders-customer",
        category=Recommendation.Category.choices[0][0],
        title="Create an index on orders (customer_id)",
        explanation="Sequential scans read 2 million rows per call.",
        statement="CREATE INDEX CONCURRENTLY ON orders (customer_id);",
        estimated_impact="-80 % reads",
        evidence={
            "size": "1.2 MB",
            "set_size": "3.4 MB",
            "queries": [
                {
                    "queryid": 1,
                    "query": "SELECT * FROM orders WHERE status = 'lost' AND created_at > $1 ORDER BY created_at DESC",
                    "mean_time_ms": 41.5,
                    "cost_before": 18250.4,
                    "cost_after": 14.2,
                    "constant": "status = 'lost'",
                }
            ],
        },
    )
    run = OptimizationRun.objects.create(
        tuner="indexes",
        target=target,
        target_name=target.name,
        recommendation=recommendation,
        trigger=OptimizationRun.Trigger.choices[0][0],
        status=OptimizationRun.Status.SUCCEEDED,
        summary="1 index advised.",
        started_at=now - timedelta(minutes=2),
        finished_at=now - timedelta(minutes=1),
        duration_ms=1200,
    )

    explain_run = ExplainRun.objects.create(
        target=target,
        fingerprint="seeded-explain",
        query="SELECT * FROM orders WHERE customer_id = 42 AND status = 'lost' ORDER BY created_at DESC",
        statement_timeout_seconds=60,
        status=ExplainRun.Status.DONE,
        started_at=now - timedelta(seconds=5),
        finished_at=now - timedelta(seconds=3),
        plan=SEEDED_PLAN,
    )

    service = service_create(
        data=ServiceInput(
            name="checkout",
            executor_kind="webhook",
            executor_config={"url": "http://127.0.0.1:9/scale"},
            min_replicas=2,
            max_replicas=12,
        ),
        actor=actor,
        via="system",
    )
    rule_upsert(
        service=service,
        name="load",
        data={"source": "series", "series_id": series_id, "target_value": 50, "enabled": False},
        actor=actor,
        via="system",
    )

    alert_rule = make_rule(name="Connections high", critical_threshold=None)
    alert = make_alert(alert_rule, target=target, severity="warning", value=85.0, threshold=80.0)
    channel = make_channel("http://127.0.0.1:9/slack", name="ops")
    return {
        "overview": "/",
        "monitoring": "/monitoring/",
        "monitoring filtered": "/monitoring/?status=down&kind=prometheus&page=1",
        "target": f"/monitoring/targets/{target.id}/",
        "slow queries": f"/monitoring/targets/{target.id}/queries/",
        "explore": f"/monitoring/explore/?series={series_id}&range=1h",
        "optimizer": "/optimizer/",
        "optimization log": "/optimizer/log/",
        "optimizer run": f"/optimizer/runs/{run.id}/",
        "database": f"/optimizer/database/{target.id}/",
        "database activity": f"/optimizer/database/{target.id}/activity/",
        "explain": f"/optimizer/database/{target.id}/explain/",
        "explain run": f"/optimizer/explain/runs/{explain_run.id}/",
        "cache": "/optimizer/cache/",
        "scaling": "/scaling/",
        "scaled service": f"/scaling/services/{service.name}/",
        "alerts": "/alerts/",
        "alert": f"/alerts/{alert.id}/",
        "alert rules": "/alerts/rules/",
        "alert rule": f"/alerts/rules/{alert_rule.id}/",
        "new alert rule": "/alerts/rules/new/",
        "new silence": f"/alerts/silences/new/?alert={alert.id}",
        "channels": "/alerts/channels/",
        "channel": f"/alerts/channels/{channel.id}/",
        "settings": "/settings/",
        "not found": "/no-such-page/",
    }
