"""After an index is applied: the observed speed-up of the queries it was advised for.

Monitoring keeps collecting pg_stat_statements deltas; once snapshots after the apply hold calls of
the affected queries, their mean time is compared with the snapshots before it and the result is
written into the run's evidence_after (and its summary). Runs nobody calls again within
GIVE_UP_AFTER are closed as "not observed".
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from optimizer.models import OptimizationRun
from optimizer.tuners.indexes import query_means

BEFORE_WINDOW = timedelta(hours=24)
GIVE_UP_AFTER = timedelta(hours=24)
MEASURED_CATEGORIES = ("missing_index", "fk_index")


def speedup_pending():
    return OptimizationRun.objects.filter(
        action=OptimizationRun.Action.APPLY,
        tuner="indexes",
        status=OptimizationRun.Status.SUCCEEDED,
        dry_run=False,
        recommendation__category__in=MEASURED_CATEGORIES,
    ).exclude(evidence_after__has_key="observed")


def speedup_measure(*, run: OptimizationRun) -> dict | None:
    """Record the observed speed-up of one applied index; None while there is nothing to compare yet."""
    queries = (run.recommendation.evidence if run.recommendation else {}).get("queries", [])
    queryids = [q["queryid"] for q in queries]
    before = query_means(
        target_id=run.target_id, queryids=queryids, since=run.started_at - BEFORE_WINDOW, until=run.started_at
    )
    after = query_means(target_id=run.target_id, queryids=queryids, since=run.finished_at)
    # Before the apply, the advice itself is the fallback for queries monitoring no longer holds.
    for q in queries:
        before.setdefault(str(q["queryid"]), q.get("mean_time_ms") or 0.0)
    compared = {qid: (before[qid], after[qid]) for qid in after if before.get(qid)}
    if not compared:
        if queryids and timezone.now() - run.finished_at < GIVE_UP_AFTER:
            return None
        observed = {"queries": {}, "speedup": None, "note": "no calls of the affected queries observed"}
    else:
        total_before = sum(b for b, _ in compared.values())
        total_after = sum(a for _, a in compared.values())
        observed = {
            "queries": {
                qid: {"before_ms": b, "after_ms": a, "speedup": round(b / a, 2) if a else None}
                for qid, (b, a) in compared.items()
            },
            "speedup": round(total_before / total_after, 2) if total_after else None,
            "mean_before_ms": round(total_before / len(compared), 4),
            "mean_after_ms": round(total_after / len(compared), 4),
        }
    run.evidence_after = {**run.evidence_after, "observed": observed}
    if observed.get("speedup"):
        run.summary = f"{run.summary}; observed speed-up {observed['speedup']:g}x on {len(compared)} query(ies)"
    run.save(update_fields=["evidence_after", "summary"])
    return observed


def speedups_measure_all() -> int:
    measured = 0
    for run in speedup_pending().select_related("recommendation"):
        if speedup_measure(run=run) is not None:
            measured += 1
    return measured
