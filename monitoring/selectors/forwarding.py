"""What remote-write forwarding is doing: its queue (lag) and its counters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import Min, Sum
from django.utils import timezone

from core.conninfo import mask_url
from monitoring.models import ForwardingState, ForwardOutbox


@dataclass(frozen=True)
class ForwardingStatus:
    enabled: bool
    endpoint: str
    lag_samples: int  # stored, not yet accepted by the remote end
    lag_seconds: float  # age of the oldest of those
    sent_samples: int
    sent_requests: int
    failed_requests: int
    rejected_requests: int
    rejected_samples: int
    dropped_samples: int
    attempt: int
    next_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str
    last_error_at: datetime | None


def forwarding_status(*, now: datetime | None = None) -> ForwardingStatus:
    now = now or timezone.now()
    queue = ForwardOutbox.objects.aggregate(samples=Sum("samples"), oldest=Min("created_at"))
    state = ForwardingState.objects.filter(pk=1).first() or ForwardingState()
    url = settings.FORWARD_REMOTE_WRITE_URL
    return ForwardingStatus(
        enabled=bool(url),
        endpoint=mask_url(url) if url else "",
        lag_samples=int(queue["samples"] or 0),
        lag_seconds=max(0.0, (now - queue["oldest"]).total_seconds()) if queue["oldest"] else 0.0,
        sent_samples=state.sent_samples,
        sent_requests=state.sent_requests,
        failed_requests=state.failed_requests,
        rejected_requests=state.rejected_requests,
        rejected_samples=state.rejected_samples,
        dropped_samples=state.dropped_samples,
        attempt=state.attempt,
        next_attempt_at=state.next_attempt_at,
        last_success_at=state.last_success_at,
        last_error=state.last_error,
        last_error_at=state.last_error_at,
    )
