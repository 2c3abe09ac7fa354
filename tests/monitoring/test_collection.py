"""The collection service against real servers: health follows the target, locks, isolation."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from core.embedded import EmbeddedPostgres, EmbeddedRedis
from core.locks import lock_acquire, lock_key
from monitoring.models import CollectorState, Series, Target
from monitoring.services import collection
from monitoring.services.collection import collect_target
from monitoring.services.targets import TargetInput, target_create, target_delete
from tests.conftest import free_port
from tests.monitoring.conftest import sample_count

pytestmark = pytest.mark.usefixtures("clean_samples")


def _redis_target(port: int, password: str) -> Target:
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    data = TargetInput(name=f"redis-{port}", kind="redis", url=url, interval_seconds=10, timeout_seconds=1)
    return target_create(data=data, actor=None, via="system")


def test_a_target_goes_down_and_comes_back_and_its_state_follows(tmp_path):
    server = EmbeddedRedis(root=tmp_path / "redis", port=free_port(), password="pw-follow")
    server.start()
    target = _redis_target(server.port, "pw-follow")
    try:
        assert collect_target(target=target).ok
        target.refresh_from_db()
        assert target.status == Target.Status.UP and target.consecutive_failures == 0

        server.stop()
        outcome = collect_target(target=target)
        target.refresh_from_db()
        assert not outcome.ok
        assert target.status == Target.Status.DOWN
        assert target.last_error and "pw-follow" not in target.last_error
        assert target.consecutive_failures == 1

        server.start()
        assert collect_target(target=target).ok
        target.refresh_from_db()
        assert target.status == Target.Status.UP and target.consecutive_failures == 0
        up = Series.objects.get(target=target, metric="up")
        assert sample_count(up.id) == 3  # 1, 0, 1: the outage is in the history too
    finally:
        server.stop()


def test_a_monitored_postgres_goes_down_and_comes_back_and_collection_resumes(tmp_path):
    # Its own PostgreSQL server, so the test can stop it as an outage or a restart would.
    server = EmbeddedPostgres(
        root=tmp_path / "pg", port=free_port(), user="shop", password="pw-pg-outage", database="shop"
    )
    server.start()
    url = f"postgresql://shop:pw-pg-outage@127.0.0.1:{server.port}/shop"
    data = TargetInput(name="shop-pg", kind="postgres", url=url, interval_seconds=10, timeout_seconds=2)
    target = target_create(data=data, actor=None, via="system")
    try:
        assert collect_target(target=target).ok

        server.stop()
        outcome = collect_target(target=target)
        target.refresh_from_db()
        assert not outcome.ok and target.status == Target.Status.DOWN
        assert "pw-pg-outage" not in target.last_error and str(server.port) in target.last_error

        server.start()
        outcome = collect_target(target=target)
        target.refresh_from_db()
        assert outcome.ok and outcome.samples > 10
        assert target.status == Target.Status.UP and target.consecutive_failures == 0
        up = Series.objects.get(target=target, metric="up")
        assert sample_count(up.id) == 3  # 1, 0, 1
    finally:
        server.stop()


def test_two_collections_of_one_target_never_overlap(db):
    target = target_create(data=TargetInput(name="me", kind="host"), actor=None, via="system")
    with lock_acquire(lock_key("collect", target.id)):
        outcome = collect_target(target=target)
        assert outcome.skipped and outcome.samples == 0
    assert not collect_target(target=target).skipped


def test_one_failing_target_does_not_stop_the_others(capsys):
    target_create(
        data=TargetInput(name="broken", kind="redis", url=f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=1),
        actor=None,
        via="system",
    )
    target_create(data=TargetInput(name="this-machine", kind="host"), actor=None, via="system")
    with pytest.raises(CommandError, match="1 target"):
        call_command("collect_once")
    output = capsys.readouterr().out
    assert "broken: DOWN:" in output
    assert "this-machine: stored" in output
    assert Target.objects.get(name="this-machine").status == Target.Status.UP


def test_counters_become_rates_on_the_second_collection(db):
    target = target_create(data=TargetInput(name="me", kind="host"), actor=None, via="system")
    collect_target(target=target)
    assert not Series.objects.filter(target=target, kind=Series.Kind.RATE).exists()
    collect_target(target=target)
    rates = Series.objects.filter(target=target, kind=Series.Kind.RATE)
    assert rates.exists()
    assert all(sample_count(s.id) == 1 for s in rates)


def test_a_query_first_seen_between_collections_keeps_its_calls(db):
    """pg_stat_statements only lists a query once it ran; its first interval must still count."""
    import uuid
    from urllib.parse import quote

    from django.conf import settings
    from django.db import connection

    from monitoring.models import QueryStat, QueryText

    db_settings = settings.DATABASES["default"]
    url = (
        f"postgresql://{db_settings['USER']}:{quote(db_settings['PASSWORD'], safe='')}"
        f"@{db_settings['HOST']}:{db_settings['PORT']}/{connection.settings_dict['NAME']}"
    )
    target = target_create(data=TargetInput(name="own-db", kind="postgres", url=url), actor=None, via="system")
    table = f"first_seen_{uuid.uuid4().hex[:10]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE "{table}" (v int)')
    try:
        assert collect_target(target=target).ok  # baseline snapshot
        with connection.cursor() as cursor:
            for _ in range(3):
                cursor.execute(f'SELECT count(*) FROM "{table}"')
        assert collect_target(target=target).ok
        text = QueryText.objects.get(target=target, query__contains=table, query__startswith="SELECT count")
        assert QueryStat.objects.get(target=target, queryid=text.queryid).calls == 3
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE "{table}"')


def test_every_kind_is_found_even_after_one_collector_module_was_imported_directly():
    """In a fresh process, importing one collector first must not hide the other kinds."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import django; django.setup()\n"
        "import monitoring.collectors.host\n"
        "from core.registry import registry\n"
        "from monitoring.collectors.base import collector_for\n"
        "from monitoring.models import Target\n"
        "print(type(collector_for(Target(name='x', kind='prometheus', timeout_seconds=1))).__name__)\n"
        "print(','.join(sorted(registry.all('collectors'))))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    name, kinds = result.stdout.split()
    assert name == "PrometheusCollector"
    assert kinds.split(",") == sorted(Target.Kind.values)


# --- a target deleted while it is collected ---------------------------------------------------


def _host_target() -> Target:
    data = TargetInput(name="deleted-host", kind="host", url="", interval_seconds=10, timeout_seconds=5)
    return target_create(data=data, actor=None, via="system")


def _in_thread(work) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = work()
        except Exception as exc:  # the test asserts there was none
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _nothing_left_of(target_id: int) -> None:
    assert not Target.objects.filter(pk=target_id).exists()
    assert not Series.objects.filter(target_id=target_id).exists()
    assert not CollectorState.objects.filter(target_id=target_id).exists()


def _waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


def test_a_target_deleted_during_its_collection_stores_nothing_and_ends_quietly(monkeypatch, caplog):
    target = _host_target()
    collected, deleted = threading.Event(), threading.Event()
    real_collector_for = collection.collector_for

    def collector_for(*args, **kwargs):
        collector = real_collector_for(*args, **kwargs)
        real_collect = collector.collect

        def collect():
            result = real_collect()  # the real host collector; the delete lands before its result is stored
            collected.set()
            deleted.wait(30)
            return result

        collector.collect = collect
        return collector

    monkeypatch.setattr(collection, "collector_for", collector_for)
    thread, outcome = _in_thread(lambda: collect_target(target=target))
    assert collected.wait(30)
    target_delete(target=Target.objects.get(pk=target.pk), actor=None, via="system")
    deleted.set()
    thread.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["value"].skipped and outcome["value"].samples == 0
    _nothing_left_of(target.pk)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_delete_during_the_writes_of_a_collection_waits_for_them_and_removes_them(monkeypatch, caplog):
    target = _host_target()
    writing, release = threading.Event(), threading.Event()
    real_samples_write = collection.samples_write

    def samples_write(rows):
        writing.set()
        release.wait(30)
        return real_samples_write(rows)

    monkeypatch.setattr(collection, "samples_write", samples_write)
    collecting, collected = _in_thread(lambda: collect_target(target=target))
    assert writing.wait(30)  # the collection is inside its transaction, its series created
    deleting, deleted = _in_thread(
        lambda: target_delete(target=Target.objects.get(pk=target.pk), actor=None, via="system")
    )
    deadline = time.monotonic() + 30
    while not _waiting_on_a_lock() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _waiting_on_a_lock()  # the delete waits for the collection, not the other way round
    release.set()
    collecting.join(30)
    deleting.join(30)
    assert "error" not in collected, collected.get("error")
    assert "error" not in deleted, deleted.get("error")
    assert collected["value"].ok and collected["value"].samples > 0
    _nothing_left_of(target.pk)
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
