"""The metric catalogue describes every metric the collectors and the collection store."""

from __future__ import annotations

import re
from pathlib import Path

from monitoring.catalogue import CATALOGUE, metric_info

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
BUILT_IN_METRIC = re.compile(r'"((?:host|postgres|redis|celery|perfpilot)_[a-z0-9_]+)"')
NOT_METRICS = {"redis_version"}  # an INFO field read for the connection test, not stored


def _metrics_named_in(*paths: Path) -> set[str]:
    return {name for path in paths for name in BUILT_IN_METRIC.findall(path.read_text())} - NOT_METRICS


def test_every_metric_a_collector_stores_has_a_title_unit_and_meaning():
    collected = _metrics_named_in(*sorted((MONITORING / "collectors").glob("*.py")))
    assert len(collected) > 50  # the pattern still finds the collectors' names
    assert collected - CATALOGUE.keys() == set()
    assert {"up", "collect_duration_seconds"} <= CATALOGUE.keys()  # written by the collection itself
    for name, info in CATALOGUE.items():
        assert info.title and info.meaning, name
        assert info.title != name, name


def test_no_two_metrics_of_a_kind_share_a_title():
    titles_by_kind: dict[str, list[str]] = {}
    for name, info in CATALOGUE.items():
        titles_by_kind.setdefault(name.split("_")[0], []).append(info.title)
    for kind, titles in titles_by_kind.items():
        assert len(titles) == len(set(titles)), kind


def test_catalogue_units_match_what_the_collectors_store():
    host = (MONITORING / "collectors" / "host.py").read_text()
    assert '_counter("host_disk_read_bytes_per_second", io.read_bytes, "bytes/s")' in host
    assert CATALOGUE["host_disk_read_bytes_per_second"].unit == "bytes/s"
    assert CATALOGUE["postgres_database_size_bytes"].unit == "bytes"
    assert CATALOGUE["postgres_longest_query_age_seconds"].unit == "s"
    assert CATALOGUE["postgres_commits_per_second"].unit == "/s"
    assert CATALOGUE["postgres_blocked_sessions"].title == "Blocked sessions"


def test_a_metric_outside_the_catalogue_keeps_its_own_name_and_stored_unit():
    info = metric_info("http_requests_per_second", "/s")
    assert (info.title, info.unit) == ("http_requests_per_second", "/s")
