from __future__ import annotations

import pytest
from django.utils import timezone

from monitoring.models import Target
from monitoring.selectors.targets import target_list, target_name_matches, target_summary

pytestmark = pytest.mark.django_db
UP, DOWN, UNKNOWN = Target.Status.UP, Target.Status.DOWN, Target.Status.UNKNOWN


def _targets(*rows: tuple) -> None:
    Target.objects.bulk_create(
        Target(name=name, kind=kind, status=status, enabled=enabled, pinned=pinned, builtin=builtin)
        for name, kind, status, enabled, pinned, builtin in rows
    )


def _names(queryset) -> list[str]:
    return [t.name for t in queryset]


def test_target_list_applies_every_filter_given_and_lists_built_in_first():
    _targets(
        ("shop-db", "postgres", DOWN, True, False, False),
        ("shop-cache", "redis", UP, True, True, False),
        ("blog-db", "postgres", UP, False, False, False),
        ("this-host", "host", UP, True, False, True),
    )
    assert _names(target_list()) == ["this-host", "blog-db", "shop-cache", "shop-db"]
    assert _names(target_list(text="SHOP")) == ["shop-cache", "shop-db"]
    assert _names(target_list(text="shop", kind="postgres")) == ["shop-db"]
    assert _names(target_list(status=UP, enabled=True)) == ["this-host", "shop-cache"]
    assert _names(target_list(enabled=False)) == ["blog-db"]
    assert _names(target_list(pinned=True)) == ["shop-cache"]
    assert _names(target_list(text="nothing-like-this")) == []


def test_summary_counts_the_targets_neither_built_in_nor_pinned_and_ranks_the_worst_down():
    now = timezone.now()
    _targets(
        ("this-host", "host", DOWN, True, False, True),  # built-in: charted, not summarised
        ("pinned-db", "postgres", DOWN, True, True, False),  # pinned: charted, not summarised
        ("paused-db", "postgres", DOWN, False, False, False),  # disabled: not collected
        ("a-up", "postgres", UP, True, False, False),
        ("b-new", "redis", UNKNOWN, True, False, False),
    )
    _targets(*((f"down-{i}", "prometheus", DOWN, True, False, False) for i in range(4)))
    Target.objects.filter(name="down-2").update(consecutive_failures=9, last_success_at=now)
    Target.objects.filter(name="down-0").update(consecutive_failures=9)  # never succeeded: worse
    Target.objects.filter(name="down-3").update(consecutive_failures=3)
    summary = target_summary(worst=3)
    assert summary.total == 6
    assert summary.by_status == {"unknown": 1, "up": 1, "down": 4}
    assert summary.by_kind == [
        ("postgres", "PostgreSQL", 1),
        ("prometheus", "Prometheus endpoint", 4),
        ("redis", "Redis", 1),
    ]
    assert _names(summary.worst_down) == ["down-0", "down-2", "down-3"]


def test_summary_of_no_other_targets_is_empty():
    _targets(("this-host", "host", UP, True, False, True))
    summary = target_summary()
    assert (summary.total, summary.by_kind, summary.worst_down) == (0, [], [])


def test_name_matches_put_names_starting_with_the_text_first_and_stop_at_the_limit():
    _targets(*((f"{prefix}-{i}", "postgres", UP, True, False, False) for prefix in ("db", "old-db") for i in range(5)))
    _targets(("cache-db", "redis", UP, True, False, False))
    found = target_name_matches(text="db", limit=7)
    assert _names(found) == ["db-0", "db-1", "db-2", "db-3", "db-4", "cache-db", "old-db-0"]
    assert _names(target_name_matches(text="db", kinds=["redis"])) == ["cache-db"]
    assert len(target_name_matches(text="", limit=4)) == 4
