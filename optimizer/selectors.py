"""Reads of the optimizer: recommendations, the optimization log, tuners and their schedules,
live progress of a running action, and per-target reports for the Database and Cache pages."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from django.db.models import Max, Q, QuerySet, Sum
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.errors import InvalidInput
from monitoring.models import Target
from monitoring.selectors.forecasts import least_squares
from monitoring.selectors.statements import SlowQuery, slow_queries
from optimizer.models import ExplainRun, OptimizationRun, Recommendation, RelationSize
from optimizer.speedup_selectors import Speedup, speedup_list
from optimizer.tuners.base import RUN_TUNER_TASK, TunerError, all_tuners

logger = logging.getLogger(__name__)


def recommendation_list(
    *, status: str | None = "open", target_id: int | None = None, category: str | None = None
) -> QuerySet[Recommendation]:
    if status and status not in Recommendation.Status.values:
        raise InvalidInput(f"Status is one of {', '.join(Recommendation.Status.values)}.", field="status")
    if category and category not in Recommendation.Category.values:
        raise InvalidInput(f"Category is one of {', '.join(Recommendation.Category.values)}.", field="category")
    found = Recommendation.objects.select_related("target")
    if status:
        found = found.filter(status=status)
    if target_id is not None:
        found = found.filter(target_id=target_id)
    if category:
        found = found.filter(category=category)
    return found.order_by("-priority", "-last_seen_at", "id")


def run_list(
    *,
    search: str = "",
    target_id: int | None = None,
    tuner: str | None = None,
    status: str | None = None,
    action: str | None = None,
) -> QuerySet[OptimizationRun]:
    """The optimization log, newest first; `search` matches tuner, target, summary, error, statements, who."""
    if status and status not in OptimizationRun.Status.values:
        raise InvalidInput(f"Status is one of {', '.join(OptimizationRun.Status.values)}.", field="status")
    runs = OptimizationRun.objects.select_related("recommendation")
    if target_id is not None:
        runs = runs.filter(target_id=target_id)
    if tuner:
        runs = runs.filter(tuner=tuner)
    if status:
        runs = runs.filter(status=status)
    if action:
        runs = runs.filter(action=action)
    for word in search.split():
        runs = runs.filter(
            Q(tuner__icontains=word)
            | Q(target_name__icontains=word)
            | Q(summary__icontains=word)
            | Q(error__icontains=word)
            | Q(started_by_name__icontains=word)
            | Q(statements__icontains=word)
            | Q(recommendation__title__icontains=word)
        )
    return runs.order_by("-created_at", "-id")


@dataclass(frozen=True)
class TunerRow:
    kind: str
    label: str
    description: str
    target_kinds: tuple[str, ...]
    schedules: list[PeriodicTask]
    last_run: OptimizationRun | None


def tuner_overview() -> list[TunerRow]:
    # A schedule belongs to the tuner its kwargs name (every tuner runs through the one generic task).
    schedules: dict[str, list[PeriodicTask]] = defaultdict(list)
    for task in PeriodicTask.objects.filter(task=RUN_TUNER_TASK).select_related("interval", "crontab").order_by("name"):
        task.parsed_kwargs = json.loads(task.kwargs or "{}")  # the edit form shows the window and dry run it has
        # What else the schedule passes (auto_apply, tuner parameters), shown as is; the tuner is the row's.
        task.other_kwargs = {
            k: v for k, v in task.parsed_kwargs.items() if k not in ("tuner", "dry_run", "maintenance_window")
        }
        schedules[task.parsed_kwargs.get("tuner")].append(task)
    rows = []
    for kind, cls in sorted(all_tuners().items()):
        last = OptimizationRun.objects.filter(tuner=kind, action=OptimizationRun.Action.RUN).order_by("-id").first()
        rows.append(TunerRow(kind, cls.label, cls.description, cls.target_kinds, schedules[kind], last))
    return rows


# --- live progress --------------------------------------------------------------------------

_PROGRESS_SQL = {
    "index": """SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total
                FROM pg_stat_progress_create_index WHERE pid = %s""",
    "vacuum": """SELECT phase, heap_blks_scanned, heap_blks_total, heap_blks_vacuumed, heap_blks_total
                 FROM pg_stat_progress_vacuum WHERE pid = %s""",
}


@dataclass(frozen=True)
class Progress:
    command: str
    phase: str
    percent: float | None


def run_progress(*, run: OptimizationRun, live: bool = True) -> Progress | None:
    """What the target backend of a running action reports in pg_stat_progress_*, or None.

    Asking connects to the target: callers pass live=False for viewers (only operators make Perfpilot
    connect out), and a disabled target is never asked."""
    if not live or not run.is_live or run.backend_pid is None or run.target is None or run.target.kind != "postgres":
        return None
    if not run.target.enabled:
        return None
    from optimizer.services.sessions import open_session

    try:
        with open_session(target=run.target, dry_run=True, statement_timeout_seconds=2) as session:
            for command, query in _PROGRESS_SQL.items():
                rows = session.query(query, [run.backend_pid])
                if rows:
                    phase, done, total, done2, total2 = rows[0]
                    if total:
                        percent = 100.0 * done / total
                    elif total2:
                        percent = 100.0 * done2 / total2
                    else:
                        percent = None
                    return Progress(command, phase, round(percent, 1) if percent is not None else None)
    except TunerError as exc:
        logger.info("progress of run %s unavailable: %s", run.id, exc)
    return None


# --- per-target reports ---------------------------------------------------------------------

DATABASE_SECTIONS = {
    "index_advice": ("missing_index", "fk_index"),
    "unused_indexes": ("unused_index", "duplicate_index", "invalid_index"),
    "vacuum_advice": ("vacuum", "autovacuum"),
    "config_advice": ("config",),
    "vector_advice": ("vector_index",),
    "sequence_advice": ("sequence",),
    "n_plus_one_advice": ("n_plus_one",),
    "bloat_advice": ("bloat",),
}


@dataclass
class DatabaseReport:
    target: Target
    slow_queries: list[SlowQuery]
    sections: dict[str, list[Recommendation]]
    vacuum_status: list[dict[str, Any]]
    last_runs: list[OptimizationRun]
    space: SpaceReport | None = None
    error: str = ""
    # The workbench flow: slow query -> explain -> advice -> apply -> the speed-up observed afterwards.
    recent_explains: list[ExplainRun] = field(default_factory=list)
    applying: int = 0  # advice being applied now
    speedups: list[Speedup] = field(default_factory=list)

    @property
    def speedups_observed(self) -> int:
        return sum(1 for speedup in self.speedups if speedup.status == "observed")


def postgres_targets() -> QuerySet[Target]:
    return Target.objects.filter(kind=Target.Kind.POSTGRES).order_by("name")


def redis_targets() -> QuerySet[Target]:
    return Target.objects.filter(kind=Target.Kind.REDIS).order_by("name")


def _open_by_category(target: Target, categories: tuple[str, ...]) -> list[Recommendation]:
    return list(recommendation_list(status="open", target_id=target.id).filter(category__in=categories))


def vacuum_status(*, target: Target, limit: int = 15) -> list[dict[str, Any]]:
    """Tables with the most dead tuples, live from the target."""
    from optimizer.services.sessions import open_session

    with open_session(target=target, dry_run=True, statement_timeout_seconds=5) as session:
        return session.query_dicts(
            "SELECT s.schemaname, s.relname, s.n_live_tup, s.n_dead_tup, "
            "round(100.0 * n_dead_tup / greatest(n_live_tup + n_dead_tup, 1), 1)::float8 AS dead_percent, "
            "greatest(last_vacuum, last_autovacuum) AS last_vacuum, "
            "greatest(last_analyze, last_autoanalyze) AS last_analyze, age(c.relfrozenxid) AS xid_age "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "ORDER BY s.n_dead_tup DESC, s.relname LIMIT %s",
            [limit],
        )


LIVE_FOR_OPERATORS = "The live vacuum status is read from the target for operators only."
LIVE_NOT_WHEN_DISABLED = "The target is disabled: Perfpilot does not connect to it, so there is no live vacuum status."


def database_report(*, target: Target, live: bool, window: timedelta = timedelta(hours=24)) -> DatabaseReport:
    """Stored findings of a PostgreSQL target, plus, when `live` (an operator asked) and the target is enabled,
    its vacuum status read from the target now."""
    if target.kind != Target.Kind.POSTGRES:
        raise InvalidInput(f"{target.name} is not a PostgreSQL target.", field="target")
    end = timezone.now()
    report = DatabaseReport(
        target=target,
        slow_queries=slow_queries(target_id=target.id, start=end - window, end=end, limit=10),
        sections={name: _open_by_category(target, cats) for name, cats in DATABASE_SECTIONS.items()},
        vacuum_status=[],
        last_runs=list(run_list(target_id=target.id)[:10]),
        recent_explains=list(ExplainRun.objects.filter(target=target).order_by("-created_at", "-id")[:5]),
        applying=Recommendation.objects.filter(target=target, status=Recommendation.Status.APPLYING).count(),
        speedups=speedup_list(target=target),
        space=space_report(target=target),
    )
    if not live:
        report.error = LIVE_FOR_OPERATORS
    elif not target.enabled:
        report.error = LIVE_NOT_WHEN_DISABLED
    else:
        try:
            report.vacuum_status = vacuum_status(target=target)
        except TunerError as exc:
            report.error = str(exc)
    return report


@dataclass
class CacheReport:
    target: Target
    analysis: dict[str, Any]
    recommendations: list[Recommendation]
    last_runs: list[OptimizationRun]

    @property
    def key_access(self) -> dict[str, Any] | None:
        """Hot and cold keys of the latest analysis (None before the first one that sampled them)."""
        return self.analysis.get("key_access")

    @property
    def compression(self) -> dict[str, Any] | None:
        return self.analysis.get("compression")


def cache_report(*, target: Target) -> CacheReport:
    """The latest cache analysis of a Redis target (from its last run), its advice and its log."""
    if target.kind != Target.Kind.REDIS:
        raise InvalidInput(f"{target.name} is not a Redis target.", field="target")
    last = (
        OptimizationRun.objects.filter(target=target, tuner="cache", action=OptimizationRun.Action.RUN)
        .exclude(evidence_before={})
        .order_by("-id")
        .first()
    )
    return CacheReport(
        target=target,
        analysis=last.evidence_before if last else {},
        recommendations=list(recommendation_list(status="open", target_id=target.id)),
        last_runs=list(run_list(target_id=target.id)[:10]),
    )


# --- space ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelationSpace:
    schema: str
    name: str
    kind: str
    parent: str
    bytes: int
    relation_bytes: int
    rows: int
    bloat_bytes: int | None
    bloat_source: str
    growth_per_day: float | None  # least squares over the window's daily sizes; None with one day only
    bytes_in_30_days: float | None

    @property
    def bloat_percent(self) -> float | None:
        if self.bloat_bytes is None or not self.relation_bytes:
            return None
        return round(100.0 * self.bloat_bytes / self.relation_bytes, 1)


@dataclass(frozen=True)
class SpaceReport:
    target: Target
    day: date | None  # of the newest reading
    relations: list[RelationSpace]  # the largest of that day, largest first
    totals: list[tuple[date, int]]  # all tables (with their indexes) per day, oldest first
    total_bytes: int
    total_growth_per_day: float | None
    total_in_30_days: float | None
    until_bytes: int | None
    days_until: float | None  # until the total reaches until_bytes; None when it is not growing


FORECAST_DAYS = 30


def _growth(points: list[tuple[date, int]]) -> tuple[float | None, float | None]:
    """bytes per day (least squares) and the size in FORECAST_DAYS days from the newest point."""
    if len(points) < 2:
        return None, None
    first = points[0][0]
    slope, _intercept, _r2 = least_squares([(d - first).days for d, _ in points], [b for _, b in points])
    return slope, max(0.0, points[-1][1] + slope * FORECAST_DAYS)


def space_report(*, target: Target, days: int = 30, limit: int = 20, until_bytes: int | None = None) -> SpaceReport:
    """The target's largest tables and indexes of its newest daily reading (space tuner), with growth per
    day over the last `days` days, the size forecast in 30 days, and the total's days until `until_bytes`."""
    if days < 2:
        raise InvalidInput("days must be at least 2 (growth needs two readings).", field="days")
    newest = RelationSize.objects.filter(target=target).aggregate(day=Max("day"))["day"]
    if newest is None:
        return SpaceReport(target, None, [], [], 0, None, None, until_bytes, None)
    since = newest - timedelta(days=days - 1)
    latest = list(RelationSize.objects.filter(target=target, day=newest).order_by("-bytes", "schema", "name")[:limit])
    history: dict[tuple[str, str], list[tuple[date, int]]] = defaultdict(list)
    for schema, name, day, size in (
        RelationSize.objects.filter(target=target, day__gte=since, name__in={r.name for r in latest})
        .order_by("day")
        .values_list("schema", "name", "day", "bytes")
    ):
        history[schema, name].append((day, size))
    relations = []
    for r in latest:
        growth, forecast = _growth(history[r.schema, r.name])
        relations.append(
            RelationSpace(
                r.schema,
                r.name,
                r.kind,
                r.parent,
                r.bytes,
                r.relation_bytes,
                r.rows,
                r.bloat_bytes,
                r.bloat_source,
                growth,
                forecast,
            )
        )
    totals = list(
        RelationSize.objects.filter(target=target, day__gte=since, kind=RelationSize.Kind.TABLE)
        .values("day")
        .annotate(total=Sum("bytes"))
        .order_by("day")
        .values_list("day", "total")
    )
    total = totals[-1][1] if totals else 0
    growth, forecast = _growth(totals)
    days_until = None
    if until_bytes is not None and growth and growth > 0:
        days_until = max(0.0, (until_bytes - total) / growth)
    return SpaceReport(target, newest, relations, totals, total, growth, forecast, until_bytes, days_until)
