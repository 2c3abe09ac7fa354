"""Keeping the recommendation list: one row per (target, fingerprint), across runs."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from monitoring.models import Target
from optimizer.models import Recommendation
from optimizer.tuners.base import Finding


@transaction.atomic
def recommendations_sync(*, target: Target, tuner: str, findings: list[Finding]) -> list[Recommendation]:
    """Upsert the findings of one analysis; open ones it no longer finds become obsolete.

    A dismissed or applied recommendation keeps its status when found again (an applied index that
    is advised again means it is gone: then it is reopened).
    """
    now = timezone.now()
    seen: list[Recommendation] = []
    by_fingerprint = {f.fingerprint(tuner): f for f in findings}
    existing = {
        r.fingerprint: r
        for r in Recommendation.objects.select_for_update().filter(target=target, fingerprint__in=by_fingerprint)
    }
    for fingerprint, finding in by_fingerprint.items():
        fields = {
            "tuner": tuner,
            "category": finding.category,
            "title": finding.title[:300],
            "explanation": finding.explanation,
            "statement": "\n".join(finding.statements),
            "estimated_impact": finding.estimated_impact[:200],
            "effort": finding.effort,
            "priority": max(0, min(100, int(finding.priority))),
            "verified": finding.verified,
            "evidence": finding.evidence,
        }
        recommendation = existing.get(fingerprint)
        if recommendation is None:
            recommendation = Recommendation.objects.create(target=target, fingerprint=fingerprint, **fields)
        else:
            for name, value in fields.items():
                setattr(recommendation, name, value)
            if recommendation.status in (Recommendation.Status.OBSOLETE, Recommendation.Status.APPLIED):
                recommendation.status = Recommendation.Status.OPEN
                recommendation.status_changed_at = now
                recommendation.status_changed_by = "system"
            recommendation.save()
        if recommendation.status == Recommendation.Status.OPEN:
            seen.append(recommendation)
    Recommendation.objects.filter(target=target, tuner=tuner, status=Recommendation.Status.OPEN).exclude(
        fingerprint__in=by_fingerprint
    ).update(status=Recommendation.Status.OBSOLETE, status_changed_at=now, status_changed_by="system")
    return seen
