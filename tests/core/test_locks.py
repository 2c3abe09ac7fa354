from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import shared_task
from django.conf import settings

from core.locks import (
    WAIT_STEP_SECONDS,
    Lock,
    lock_acquire,
    lock_break_if_owner_gone,
    lock_holder,
    lock_key,
    locks_acquire,
    owner_gone,
    owner_identity,
)
from core.redis_client import get_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def key():
    key = lock_key("test", uuid.uuid4().hex)
    yield key
    get_redis().delete(key)


def test_lock_keys_share_one_naming_scheme():
    assert lock_key("collect", 7) == "perfpilot:lock:collect:7"
    assert lock_key("evaluate-alerts") == "perfpilot:lock:evaluate-alerts"


def test_only_one_owner_holds_a_key_at_a_time(key):
    lock = lock_acquire(key)
    assert lock is not None
    with lock:
        assert lock_acquire(key) is None
    again = lock_acquire(key)
    assert again is not None
    again.release()


def test_the_holder_is_readable_while_the_lock_is_held(key):
    assert lock_holder(key) is None
    with lock_acquire(key, ttl=30, label="run 17"):
        holder = lock_holder(key)
        assert holder is not None
        assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
        assert (holder.label, holder.task_id) == ("run 17", "")
        assert 25 < holder.ttl_seconds <= 30
        assert str(holder) == f"run 17, pid {os.getpid()} on {socket.gethostname()}"
    assert lock_holder(key) is None


@shared_task(name="tests.core.test_locks.holder_of_own_lock_task")
def holder_of_own_lock_task(key: str) -> str:
    with lock_acquire(key):
        return lock_holder(key).task_id


def test_the_holder_names_the_celery_task_that_took_the_lock(key):
    assert holder_of_own_lock_task.apply(args=[key], task_id="task-42").get() == "task-42"


def test_a_lock_stays_held_past_its_ttl_while_the_block_runs(key):
    with lock_acquire(key, ttl=1):
        time.sleep(2.5)  # more than twice the TTL: only the keeper's extensions keep it
        assert lock_acquire(key) is None
        assert 0 < lock_holder(key).ttl_seconds <= 1
    assert lock_holder(key) is None


def test_the_lock_is_released_when_the_block_raises(key):
    with pytest.raises(RuntimeError), lock_acquire(key):
        raise RuntimeError("the work failed")
    assert lock_holder(key) is None


def test_only_the_owner_extends_or_releases(key):
    first = lock_acquire(key, ttl=0.2, label="first")  # never entered: nothing keeps it alive
    time.sleep(0.4)
    second = lock_acquire(key, ttl=5, label="second")
    assert second is not None
    first.release()  # expired, and taken since: the value is no longer first's
    assert lock_holder(key).label == "second"
    impostor = Lock(client=get_redis(), keys=[key], value="not the owner's value", ttl=60)
    assert impostor.extend() == (key,)
    assert lock_holder(key).ttl_seconds <= 5
    impostor.release()
    assert lock_holder(key).label == "second"
    second.release()
    assert lock_holder(key) is None


def test_a_waiting_acquire_gets_the_key_once_its_owner_lets_it_expire(key):
    lock_acquire(key, ttl=1)
    assert lock_acquire(key, wait=0.2) is None
    started = time.monotonic()
    waited = lock_acquire(key, wait=10)
    assert waited is not None
    assert time.monotonic() - started < 2  # when the key expired, not at the end of the wait
    waited.release()


def test_the_lock_of_a_killed_owner_is_free_within_its_ttl(key):
    ttl = 2.0
    code = (
        "import sys, time, django; django.setup()\n"
        "from core.locks import lock_acquire\n"
        f"with lock_acquire({key!r}, ttl={ttl}, label='doomed'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "REDIS_URL": settings.REDIS_URL}
    owner = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        time.sleep(ttl)  # long enough that only its keeper can have kept it
        holder = lock_holder(key)
        assert (holder.pid, holder.label) == (owner.pid, "doomed")
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        owner.stdout.close()
    killed_at = time.monotonic()
    assert lock_acquire(key) is None  # still held: nothing released it
    taken = lock_acquire(key, wait=ttl + 1)
    assert taken is not None
    assert time.monotonic() - killed_at <= ttl + 2 * WAIT_STEP_SECONDS  # the TTL, plus the wait's polling
    taken.release()


def test_many_keys_are_taken_at_once_skipping_the_held_ones():
    keys = [lock_key("test", f"{uuid.uuid4().hex}-{n}") for n in range(3)]
    other = lock_acquire(keys[1], label="other")
    try:
        with locks_acquire(keys, ttl=1, label="tick") as locks:
            assert locks.keys == (keys[0], keys[2])
            time.sleep(2.5)  # past the TTL: kept alive together
            assert [lock_holder(k).label for k in keys] == ["tick", "other", "tick"]
        assert lock_holder(keys[0]) is None and lock_holder(keys[2]) is None
        assert lock_holder(keys[1]).label == "other"
    finally:
        other.release()
        get_redis().delete(*keys)


def test_taking_no_keys_holds_nothing():
    with locks_acquire([]) as locks:
        assert locks.keys == ()


def _owner_process(key: str, label: str) -> subprocess.Popen:
    code = (
        "import sys, time, django; django.setup()\n"
        "from core.locks import lock_acquire\n"
        f"with lock_acquire({key!r}, label={label!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "REDIS_URL": settings.REDIS_URL}
    owner = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline().strip() == "held"
    return owner


def test_the_lock_of_a_killed_owner_is_freed_at_once_when_its_death_is_proven(key):
    owner = _owner_process(key, "doomed")  # the default 60 s TTL
    try:
        assert lock_break_if_owner_gone(key) is None  # alive: never broken
        assert lock_holder(key).pid == owner.pid
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        owner.stdout.close()
    freed = lock_break_if_owner_gone(key)
    assert (freed.pid, freed.label) == (owner.pid, "doomed")
    assert lock_holder(key) is None


def test_an_owner_on_another_host_or_a_reused_pid_is_judged_only_by_what_can_be_proven():
    me = owner_identity()
    assert not owner_gone(me)
    assert not owner_gone({**me, "host": "another-host"})  # cannot be checked from here: not proven dead
    assert owner_gone({**me, "started": me["started"] - 3600})  # our pid, but a later process than the owner
    assert not owner_gone({})
