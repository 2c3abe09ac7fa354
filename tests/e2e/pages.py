"""Every page of the site, with enough data that each shows its tables, forms and actions.

Shared by the accessibility and keyboard tests, which walk them all."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from monitoring import storage
from monitoring.models import ForwardingState, ForwardOutbox, PromQLSource, QueryText, Target
from monitoring.services.targets import TargetInput, target_create
from optimizer.models import ExplainRun, OptimizationRun, PlanCapture, PlanRegression, Recommendation
from optimizer.services.space import relation_sizes_record
from scaling.services.crud import ServiceInput, rule_upsert, service_create
from tests.alerts.conftest import make_alert, make_channel, make_rule
from tests.optimizer.conftest import plant_applied, plant_stat

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


# A cache analysis as the cache tuner records it under allkeys-lfu, with long keys and namespaces (390 px).
SEEDED_CACHE_ANALYSIS = {
    "bytes_used": 734_003_200,
    "fragmentation_ratio": 1.08,
    "fragmentation_bytes": 4_194_304,
    "fragmentation_high": False,
    "maxmemory_policy": "allkeys-lfu",
    "keys_scanned": 48_210,
    "idle_supported": False,
    "namespaces": [{"namespace": "session", "keys": 40_000, "bytes": 520_000_000, "no_ttl": 12}],
    "top_keys": [{"key": "report:2026-11:customer:81723:monthly-summary", "bytes": 2_400_000, "ttl": -1}],
    "ttl_buckets": {"no expiry": 12, "< 1 d": 48_198},
    "idle_buckets": {},
    "key_access": {
        "policy": "allkeys-lfu",
        "lfu": True,
        "sampled_keys": 10_000,
        "complete": True,
        "cold_idle_seconds": None,
        "note": "",
        "hot_keys": [{"key": "config:feature-flags:production", "namespace": "config", "bytes": 2_048, "freq": 255}],
        "cold_keys": [
            {
                "key": "report:2026-11:customer:81723:monthly-summary",
                "namespace": "report",
                "bytes": 2_400_000,
                "freq": 0,
            }
        ],
        "namespaces": [
            {"namespace": "report", "keys": 310, "cold_keys": 220, "cold_bytes": 180_000_000, "max_freq": 3},
            {"namespace": "session", "keys": 9_690, "cold_keys": 0, "cold_bytes": 0, "max_freq": 40},
        ],
    },
    "compression": {
        "min_bytes": 1_024,
        "value_cap": 65_536,
        "total_cap": 8_388_608,
        "sampled_keys": 310,
        "sampled_bytes": 8_388_608,
        "complete": True,
        "no_touch": False,
        "notes": ["Only string values are sampled; hashes, lists, sets, sorted sets and streams are not."],
        "namespaces": [
            {
                "namespace": "report",
                "keys": 1_480,
                "large_keys": 310,
                "sampled_keys": 310,
                "sampled_bytes": 8_388_608,
                "codecs": {
                    "zstd": {"bytes": 1_310_720, "saved": 7_077_888, "ratio": 6.4, "estimated_saved": 152_000_000},
                    "lz4": {"bytes": 2_516_582, "saved": 5_872_026, "ratio": 3.33, "estimated_saved": 126_000_000},
                },
            }
        ],
    },
}


def _succeeded_run(target: Target, tuner: str, summary: str, **fields) -> OptimizationRun:
    """A run of `tuner` on `target` that finished a minute ago after 1.2 s."""
    now = timezone.now()
    return OptimizationRun.objects.create(
        tuner=tuner,
        target=target,
        target_name=target.name,
        trigger=OptimizationRun.Trigger.choices[0][0],
        status=OptimizationRun.Status.SUCCEEDED,
        summary=summary,
        started_at=now - timedelta(minutes=1, milliseconds=1200),
        finished_at=now - timedelta(minutes=1),
        duration_ms=1200,
        **fields,
    )


def seed_cache_analysis(*, actor) -> Target:
    """A Redis target whose latest cache run holds SEEDED_CACHE_ANALYSIS, with its compression advice."""
    cache = target_create(
        data=TargetInput(name="lfu-cache", kind="redis", url="redis://cache.internal:6379/0"),
        actor=actor,
        via="system",
    )
    _succeeded_run(cache, "cache", "1 open recommendation(s)", evidence_before=SEEDED_CACHE_ANALYSIS)
    Recommendation.objects.create(
        target=cache,
        tuner="cache",
        fingerprint="compress-report",
        category="cache",
        title="Compress the values of namespace report client-side",
        explanation="310 sampled values (8.0 MB) compress 6.4x with zstd and 3.33x with lz4.",
        estimated_impact="~145.0 MB less memory",
        effort="medium",
    )
    return cache


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
    # Remote-write forwarding behind, with a refused batch: its card on the Monitoring page.
    ForwardOutbox.objects.create(samples=120, rows=b"", created_at=now - timedelta(seconds=90))
    ForwardingState.objects.create(
        pk=1,
        endpoint="https://mimir.example.com/api/v1/push",
        sent_samples=48_000,
        sent_requests=24,
        failed_requests=3,
        rejected_requests=1,
        rejected_samples=2000,
        last_success_at=now,
        last_error="2000 samples rejected: HTTP 400 Bad Request: out of order sample",
        last_error_at=now - timedelta(minutes=2),
    )
    queryid = -5_764_607_523_034_234_880  # pg_stat_statements ids are signed
    QueryText.objects.create(target=target, queryid=queryid, query="SELECT * FROM orders WHERE customer_id = $1")
    for i in range(12):
        plant_stat(target, queryid, at=now - timedelta(minutes=5 * i + 1), calls=40, total_ms=40 * (2.0 + i % 3))

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
    seed_n_plus_one(target)
    # A week of daily sizes (the Database page's Space section and chart) and bloat advice.
    for back in range(7):
        relation_sizes_record(
            target=target,
            day=timezone.localdate() - timedelta(days=6 - back),
            rows=[
                {"schema": "public", "name": "orders", "kind": "table", "bytes": 9_000_000_000 + back * 40_000_000}
                | {"relation_bytes": 6_000_000_000, "rows": 48_000_000, "bloat_bytes": 1_900_000_000}
                | {"bloat_source": "estimate"},
                {"schema": "public", "name": "orders_customer_id_idx", "kind": "index", "parent": "orders"}
                | {"bytes": 2_400_000_000, "relation_bytes": 2_400_000_000, "rows": 48_000_000, "bloat_bytes": None},
            ],
        )
    Recommendation.objects.create(
        target=target,
        tuner="space",
        fingerprint="orders-bloat",
        category=Recommendation.Category.BLOAT,
        title="Rebuild bloated index public.orders_customer_id_idx (62 % bloat)",
        explanation="A bloated index costs reads and cache for nothing.",
        statement='REINDEX INDEX CONCURRENTLY "public"."orders_customer_id_idx"',
        estimated_impact="about 1.5 GB back",
    )
    run = _succeeded_run(target, "indexes", "1 index advised.", recommendation=recommendation)

    plant_applied(
        target,
        at=now - timedelta(minutes=30),
        evidence={"table": "orders", "queries": [{"queryid": queryid, "query": "SELECT * FROM orders WHERE …"}]},
        title="Create index on orders (status)",
        observed={queryid: (12.0, 3.0)},
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

    regression = seed_plan_regression(target, now=now)

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
    external = seed_external_alert()
    cache = seed_cache_analysis(actor=actor)
    promql_source = PromQLSource(name="thanos-eu-west", url="http://127.0.0.1:9/prometheus", timeout_seconds=5)
    promql_source.token = "never-shown"
    promql_source.save()
    promql_rule = make_rule(
        name="Queue backlog",
        kind="promql",
        metric="",
        expression='sum by (queue, instance) (rate(celery_tasks_received_total{queue=~"mail|pdf|billing"}[5m])) > 1',
        promql_source_id=promql_source.id,
        warning_threshold=None,
        critical_threshold=None,
    )
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
        "query history": f"/optimizer/database/{target.id}/queries/{queryid}/",
        "explain run": f"/optimizer/explain/runs/{explain_run.id}/",
        "plan regression": f"/optimizer/plan-regressions/{regression.id}/",
        "cache": "/optimizer/cache/",
        "cache target": f"/optimizer/cache/{cache.id}/",
        "scaling": "/scaling/",
        "scaled service": f"/scaling/services/{service.name}/",
        "alerts": "/alerts/",
        "alert": f"/alerts/{alert.id}/",
        "external alert": f"/alerts/{external.id}/",
        "alert rules": "/alerts/rules/",
        "alert rule": f"/alerts/rules/{alert_rule.id}/",
        "new alert rule": "/alerts/rules/new/",
        "promql alert rule": f"/alerts/rules/{promql_rule.id}/",
        "promql sources": "/monitoring/promql-sources/",
        "promql source": f"/monitoring/promql-sources/{promql_source.id}/",
        "new silence": f"/alerts/silences/new/?alert={alert.id}",
        "channels": "/alerts/channels/",
        "channel": f"/alerts/channels/{channel.id}/",
        "settings": "/settings/",
        "not found": "/no-such-page/",
    }


def seed_external_alert():
    """An alert a Prometheus sent through the Alertmanager API, with long annotations and source link."""
    from alerts.models import Alert
    from alerts.services.external import alerts_parse, alerts_receive

    expression = "sum+by+%28instance%29+%28rate%28node_cpu_seconds_total%7Bmode%21%3D%22idle%22%7D%5B5m%5D%29%29" * 3
    posted = {
        "labels": {"alertname": "NodeCpuSaturatedForALongTime", "instance": "web-frontend-7.eu-west.example:9100",
                   "job": "node", "severity": "critical"},
        "annotations": {
            "summary": "CPU saturated on web-frontend-7.eu-west.example:9100",
            "description": "Above 95 % for 15 minutes on every core.\nLook at the busiest processes.",
            "runbook_url": "https://runbooks.example.com/node/NodeCpuSaturatedForALongTime/a-very-long-anchor",
            "dashboard": "https://grafana.example.com/d/node-exporter-full/node-exporter-full?var-instance=web-7",
        },
        "generatorURL": f"http://prometheus.eu-west.example:9090/graph?g0.expr={expression}&g0.tab=1",
    }  # fmt: skip
    alerts_receive(alerts=alerts_parse([posted]))
    return Alert.objects.get(source=Alert.Source.EXTERNAL)


def seed_n_plus_one(target: Target) -> Recommendation:
    """N+1 advice as the n_plus_one tuner writes it (advice only: no statement), with long query texts."""
    child = "SELECT id, sku, quantity, unit_price_cents, currency, warehouse_code FROM order_lines WHERE order_id = $1"
    return Recommendation.objects.create(
        target=target,
        tuner="n_plus_one",
        fingerprint="n_plus_one:seeded",
        category=Recommendation.Category.N_PLUS_ONE,
        title="N+1: a lookup of order_lines by order_id runs per row of a query on public.orders",
        explanation="Over the last 12 windows the lookup ran 1.00 times per row returned by the orders query.",
        estimated_impact="123,120 round trips a day saved (86 a window)",
        effort=Recommendation.Effort.MEDIUM,
        evidence={
            "child": {"queryid": 1, "query": child, "table": "order_lines", "column": "order_id"},
            "parent": {
                "queryid": 2,
                "query": "SELECT id, customer_id, placed_at FROM orders WHERE placed_on = $1 ORDER BY id",
                "tables": ["public.orders"],
            },
            "k": 1.0,
            "r": 0.998,
            "windows": 12,
            "rewrite": child.replace("= $1", "= ANY($1)"),
            "needs_application_change": True,
        },
    )


def _generic_plan(scan: dict) -> list[dict]:
    """EXPLAIN (GENERIC_PLAN, FORMAT JSON) of the seeded regression's query: an aggregate over a scan."""
    return [{"Plan": {"Node Type": "Aggregate", "Strategy": "Plain", "Total Cost": scan["Total Cost"] + 1,
                      "Plan Rows": 1, "Plans": [{"Parent Relationship": "Outer", "Relation Name": "orders",
                                                 "Alias": "orders", "Plan Rows": 30, **scan}]}}]  # fmt: skip


def seed_plan_regression(target: Target, *, now) -> PlanRegression:
    query = "SELECT count(*) FROM orders WHERE customer_id = $1"
    common = {"target": target, "queryid": 4242, "role": "shop_app", "query": query}
    before = PlanCapture.objects.create(
        **common, fingerprint="a" * 64, captured_at=now - timedelta(minutes=30), calls_total=400,
        total_time_ms_total=20.0, mean_time_ms=0.05,
        plan=_generic_plan({"Node Type": "Index Only Scan", "Index Name": "orders_customer_id_idx",
                            "Index Cond": "(customer_id = $1)", "Total Cost": 4.9}),
    )  # fmt: skip
    after = PlanCapture.objects.create(
        **common, fingerprint="b" * 64, captured_at=now - timedelta(minutes=15), calls_total=800,
        total_time_ms_total=1620.0, mean_time_ms=4.0, settings={"enable_indexscan": "off", "enable_bitmapscan": "off"},
        plan=_generic_plan({"Node Type": "Seq Scan", "Filter": "(customer_id = $1)", "Total Cost": 1250.0}),
    )  # fmt: skip
    return PlanRegression.objects.create(
        **common, before=before, after=after, detected_by=after, mean_before_ms=0.05, mean_after_ms=4.0,
        detected_at=after.captured_at,
    )  # fmt: skip
