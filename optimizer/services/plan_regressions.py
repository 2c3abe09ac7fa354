"""Plan captures stored, and plan regressions found in them.

Each capture of a (target, query, role) is compared with that key's history:

- its mean time is the mean since the previous capture, from pg_stat_statements' cumulative
  counters (calls, total time) stored on both; the first capture, or one after the statistics were
  reset, takes the overall mean;
- when the latest plan differs from an earlier one, the change is the first capture with the new
  fingerprint (`after`), and `before` is the capture just before it. The mean since the change (the
  counters' difference up to now from `after`, or from `before` at the first capture of the new
  plan, when the change happened in the interval that ends there) is compared with `before`'s mean:
  more than PERFPILOT_PLAN_REGRESSION_THRESHOLD percent higher makes a PlanRegression, recorded once
  per change, and a `plan_regression` event (core.events), which the default alert rule "Plan regression" turns
  into an alert and a notification. A change that is not (yet) slower is looked at again at each
  capture while the plan stays changed, so a change caught just before the workload moved to it is
  still told at the next capture.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.events import PLAN_REGRESSION, failure_event_send
from monitoring.models import Target
from optimizer.models import PlanCapture, PlanRegression
from optimizer.tuners.plans import PlanSnapshot

HISTORY = 200  # captures of one key looked at to find the last plan change
# Captures are kept this long (20 queries every 15 minutes is ~2,000 a day per target); those of a
# recorded regression are kept as long as it is.
KEEP_CAPTURES = timedelta(days=7)


def _mean_since(capture: PlanCapture, *, calls: int, total_ms: float) -> float | None:
    """The mean time of the calls since `capture`, from the cumulative counters; None when there were none."""
    calls_since = calls - capture.calls_total
    if calls_since <= 0:
        return None
    return max(0.0, total_ms - capture.total_time_ms_total) / calls_since


@transaction.atomic
def plan_captures_record(*, target: Target, snapshots: list[PlanSnapshot]) -> list[PlanRegression]:
    """Store one capture per snapshot; record (and send the event of) the regressions they reveal."""
    now = timezone.now()
    regressions = []
    for snapshot in snapshots:
        history = list(
            PlanCapture.objects.filter(target=target, queryid=snapshot.queryid, role=snapshot.role).order_by(
                "-captured_at", "-id"
            )[:HISTORY]
        )
        previous = history[0] if history else None
        mean = None
        if previous is not None and snapshot.calls >= previous.calls_total:
            mean = _mean_since(previous, calls=snapshot.calls, total_ms=snapshot.total_time_ms)
        if mean is None:
            mean = snapshot.total_time_ms / snapshot.calls if snapshot.calls else 0.0
        capture = PlanCapture.objects.create(
            target=target,
            queryid=snapshot.queryid,
            role=snapshot.role,
            query=snapshot.query,
            fingerprint=snapshot.fingerprint,
            plan=snapshot.plan,
            settings=snapshot.settings,
            captured_at=now,
            calls_total=snapshot.calls,
            total_time_ms_total=snapshot.total_time_ms,
            mean_time_ms=round(mean, 6),
        )
        regression = _regression(capture, history)
        if regression is not None:
            regressions.append(regression)
    _prune(target=target, before=now - KEEP_CAPTURES)
    return regressions


def _prune(*, target: Target, before) -> int:
    """Delete the target's captures older than `before` that no regression shows."""
    shown = PlanRegression.objects.filter(target=target)
    kept = set()
    for ids in shown.values_list("before_id", "after_id", "detected_by_id"):
        kept.update(ids)
    deleted, _ = PlanCapture.objects.filter(target=target, captured_at__lt=before).exclude(pk__in=kept).delete()
    return deleted


def _regression(capture: PlanCapture, history: list[PlanCapture]) -> PlanRegression | None:
    """The regression `capture` reveals given its key's earlier captures (newest first), if any."""
    after = capture
    before = None
    for earlier in history:
        if earlier.fingerprint != capture.fingerprint:
            before = earlier
            break
        after = earlier
    if before is None:
        return None
    if PlanRegression.objects.filter(after=after).exists():
        return None  # this change was told already
    # Since the first capture of the new plan once there is one interval of it only; at that first
    # capture, since the last one of the old plan (the change happened in between).
    start = after if after is not capture else before
    if capture.calls_total < start.calls_total:
        return None  # the statistics were reset since: the counters no longer span the change
    mean_after = _mean_since(start, calls=capture.calls_total, total_ms=capture.total_time_ms_total)
    if mean_after is None:
        return None
    threshold = 1 + settings.PLAN_REGRESSION_THRESHOLD_PERCENT / 100
    if mean_after <= before.mean_time_ms * threshold:
        return None
    regression = PlanRegression.objects.create(
        target=capture.target,
        queryid=capture.queryid,
        role=capture.role,
        query=capture.query,
        before=before,
        after=after,
        detected_by=capture,
        mean_before_ms=before.mean_time_ms,
        mean_after_ms=round(mean_after, 6),
        detected_at=capture.captured_at,
    )
    failure_event_send(
        sender=PlanRegression,
        kind=PLAN_REGRESSION,
        target=capture.target,
        labels={"queryid": str(capture.queryid), "role": capture.role},
        message=(
            f"The plan of query {capture.queryid} (role {capture.role}) on {capture.target.name} changed and its "
            f"mean time rose from {before.mean_time_ms:.3f} ms to {mean_after:.3f} ms: {capture.query[:200]}"
        ),
    )
    return regression
