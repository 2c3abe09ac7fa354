"""Reads of EXPLAIN ANALYZE runs: one run, a target's latest ones, and what its backend is doing."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from monitoring.models import Target
from optimizer.models import ExplainRun
from optimizer.services.sessions import APPLICATION_NAME, open_session
from optimizer.tuners.base import TunerError


def explain_run_get(*, run_id: int) -> ExplainRun:
    return get_object_or_404(ExplainRun.objects.select_related("target"), pk=run_id)


def explain_runs_recent(*, target: Target, limit: int = 10) -> QuerySet[ExplainRun]:
    return ExplainRun.objects.filter(target=target).order_by("-created_at", "-id")[:limit]


def explain_run_activity(*, run: ExplainRun) -> dict[str, Any] | None:
    """What pg_stat_activity says of a live run's backend (state, wait event, running for), or None.

    It connects to the target: callers ask only for operators, as for every outbound read."""
    if not run.is_live or run.backend_pid is None or not run.target.enabled:
        return None
    try:
        with open_session(target=run.target, dry_run=True, statement_timeout_seconds=2) as session:
            rows = session.query_dicts(
                "SELECT state, wait_event_type, wait_event, now() - query_start AS running_for "
                "FROM pg_stat_activity WHERE pid = %s AND application_name = %s",
                [run.backend_pid, APPLICATION_NAME],
            )
    except TunerError as exc:
        return {"error": str(exc)}
    return rows[0] if rows else None
