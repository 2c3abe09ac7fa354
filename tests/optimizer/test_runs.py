"""Runs and applies that fail are reported as tuner failure events: the default "Tuner failed" rule
fires for the target, and the worker delivers it to Slack (the fake one)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psycopg import sql

from alerts.models import Alert
from alerts.services.defaults import rules_install_defaults
from optimizer.models import OptimizationRun, Recommendation
from optimizer.services.runs import recommendation_apply_start, run_create, run_execute, runs_start
from tests.alerts.conftest import make_channel, refill_buckets
from tests.alerts.fake_slack import FakeSlack
from tests.optimizer.conftest import Database, make_dead_tuples, make_invalid_index, make_target, wait_for


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    refill_buckets()
    yield server
    server.stop()


@pytest.fixture
def tables(pg18) -> Iterator[list[str]]:
    """Tables a test creates in the shared database: dropped afterwards, so that no other test's
    analysis finds their dead tuples or invalid index."""
    created: list[str] = []
    yield created
    with pg18.connect() as conn:
        for table in created:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def _locked(database: Database, table: str):
    """A connection holding SHARE UPDATE EXCLUSIVE on the table, as a long maintenance job would:
    VACUUM and DROP INDEX CONCURRENTLY wait for it."""
    holder = database.connect()
    holder.execute("BEGIN")
    holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(sql.Identifier(table)))
    return holder


@pytest.mark.celery_worker
def test_a_failed_tuner_run_fires_the_default_rule_and_reaches_slack(
    transactional_db, celery_worker_process, pg18, slack, tables
):
    tables.append("failing_vacuum")
    rules_install_defaults()
    make_channel(slack.url, group_wait_seconds=0)
    make_dead_tuples(pg18, "public", "failing_vacuum", rows=3000, deleted=2000)
    target = make_target(pg18)
    with _locked(pg18, "failing_vacuum") as holder:
        (run,) = runs_start(
            tuners=["vacuum"],
            targets=[target],
            dry_run=False,
            actor=None,
            trigger="operator",
            params={"min_dead_tuples": 100, "tables": ["public.failing_vacuum"], "lock_timeout_seconds": 0.5},
        )
        wait_for(lambda: not OptimizationRun.objects.get(pk=run.pk).is_live, timeout=60, what="the run to end")
        holder.execute("ROLLBACK")
    run.refresh_from_db()
    assert run.status == OptimizationRun.Status.FAILED and "lock_timeout (0.5 s)" in run.error

    (request,) = slack.wait_for(1)
    assert request.payload["text"] == f"[WARNING] Optimizer run or apply failed on {target.name}"
    detail = request.payload["attachments"][0]["blocks"][0]["text"]["text"]
    assert f"vacuum run on {target.name} failed: " in detail and "lock_timeout (0.5 s)" in detail
    alert = Alert.objects.get(rule__builtin_key="tuner_failure")
    assert (alert.state, alert.severity, alert.target_id) == ("firing", "warning", target.id)
    assert alert.labels == {"alertname": "Tuner failed", "target": target.name, "metric": "tuner_failure",
                            "tuner": "vacuum", "action": "run"}  # fmt: skip


def test_a_failed_apply_fires_the_tuner_alert_of_its_target(transactional_db, pg18, tables):
    tables.append("failing_apply")
    rules_install_defaults()
    make_invalid_index(pg18, "failing_apply", "failing_apply_v")
    target = make_target(pg18)
    analysis = run_create(tuner="indexes", target=target, trigger="operator", actor=None, dry_run=False)
    analysis = run_execute(run_id=analysis.id)
    assert analysis.status == OptimizationRun.Status.SUCCEEDED, analysis.error
    assert not Alert.objects.exists()  # a run that succeeds reports nothing
    invalid = Recommendation.objects.get(target=target, title="Drop invalid index public.failing_apply_v")

    with _locked(pg18, "failing_apply") as holder:
        # The Apply button's path, under the default lock_timeout (5 s).
        apply = recommendation_apply_start(recommendation=invalid, actor=None, trigger="operator")
        apply = run_execute(run_id=apply.id)
        holder.execute("ROLLBACK")
    assert apply.status == OptimizationRun.Status.FAILED and "lock_timeout (5 s)" in apply.error
    alert = Alert.objects.get(rule__builtin_key="tuner_failure")
    assert (alert.state, alert.target_id, alert.labels["tuner"], alert.labels["action"]) == (
        "firing",
        target.id,
        "indexes",
        "apply",
    )
    assert alert.message == f"indexes apply on {target.name} failed: {apply.error}"
