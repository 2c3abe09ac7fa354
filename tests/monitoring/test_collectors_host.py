"""The host collector reads this machine: CPU as counters, gauges for memory and disks, I/O counters."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from core.registry import registry
from monitoring.collectors.base import COUNTER, GAUGE
from monitoring.collectors.host import PSEUDO_FILESYSTEMS, HostCollector
from monitoring.models import CollectorState, Target
from monitoring.services.collection import collect_target
from tests.monitoring.conftest import measurements_by_metric, stored_samples


def _collector() -> HostCollector:
    return HostCollector(Target(name="this-machine", kind="host", timeout_seconds=2))


def test_host_is_registered_under_its_kind():
    assert registry.get("collectors", "host") is HostCollector


def test_cpu_is_a_counter_of_busy_centiseconds_for_the_total_and_each_core():
    cpu = measurements_by_metric(_collector().collect())["host_cpu_percent"]
    labels = {m.labels["cpu"] for m in cpu}
    assert labels == {"total", *(str(i) for i in range(psutil.cpu_count()))}
    assert all(m.kind == COUNTER and m.value > 0 and m.unit == "%" for m in cpu)
    cores = [m.value for m in cpu if m.labels["cpu"] != "total"]
    total = next(m.value for m in cpu if m.labels["cpu"] == "total")
    # The total is the mean over cores, so its rate reads 0-100 whatever the core count.
    assert total == pytest.approx(sum(cores) / len(cores), rel=0.01)


def test_cpu_counters_grow_while_the_machine_works():
    collector = _collector()
    before = next(m.value for m in collector.collect().measurements if m.labels.get("cpu") == "total")
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        sum(i * i for i in range(10_000))
    after = next(m.value for m in collector.collect().measurements if m.labels.get("cpu") == "total")
    assert after > before


def test_load_memory_swap_and_processes_are_gauges_in_their_ranges():
    found = measurements_by_metric(_collector().collect())
    for metric in ("host_load1", "host_load5", "host_load15", "host_process_count"):
        assert found[metric][0].kind == GAUGE and found[metric][0].value >= 0
    for metric in ("host_memory_used_percent", "host_swap_used_percent"):
        assert 0 <= found[metric][0].value <= 100
    assert found["host_memory_used_percent"][0].value > 0
    assert abs(found["host_process_count"][0].value - len(psutil.pids())) < 50


def test_disk_usage_covers_real_filesystems_once_per_device():
    disks = measurements_by_metric(_collector().collect())["host_disk_used_percent"]
    mounts = [m.labels["mount"] for m in disks]
    assert "/" in mounts
    assert len(mounts) == len(set(mounts))
    pseudo = {p.mountpoint for p in psutil.disk_partitions(all=True) if p.fstype in PSEUDO_FILESYSTEMS}
    assert not pseudo & set(mounts)
    assert all(0 < m.value <= 100 for m in disks)


def test_disk_and_network_bytes_are_cumulative_counters(tmp_path):
    collector = _collector()
    first = measurements_by_metric(collector.collect())
    with (tmp_path / "written").open("wb") as handle:
        handle.write(b"x" * 4_000_000)
        handle.flush()
        os.fsync(handle.fileno())
    second = measurements_by_metric(collector.collect())
    for metric in (
        "host_disk_read_bytes_per_second",
        "host_disk_write_bytes_per_second",
        "host_network_receive_bytes_per_second",
        "host_network_transmit_bytes_per_second",
    ):
        assert first[metric][0].kind == COUNTER
        assert second[metric][0].value >= first[metric][0].value > 0


def test_connection_describes_the_machine():
    description = _collector().test_connection()
    assert f"{psutil.cpu_count()} CPUs" in description


@pytest.mark.usefixtures("clean_samples")
def test_collect_target_stores_cpu_percent_rates_from_the_second_collection_on():
    target = Target(name="this-machine", kind="host", timeout_seconds=2)
    target.save()
    collect_target(target=target)
    assert stored_samples(target.id, "host_cpu_percent") == []  # counters alone are no rate yet
    assert len(stored_samples(target.id, "host_memory_used_percent")) == 1
    time.sleep(1)
    collect_target(target=target)
    rates = stored_samples(target.id, "host_cpu_percent")
    assert {labels for _, labels, _ in rates} == {"cpu=total", *(f"cpu={i}" for i in range(psutil.cpu_count()))}
    assert all(kind == "rate" for kind, _, _ in rates)
    total = next(value for _, labels, value in rates if labels == "cpu=total")
    assert 0 <= total <= 110  # percent; clock ticks of 10 ms make it slightly coarse
    assert stored_samples(target.id, "host_network_receive_bytes_per_second")


@pytest.mark.usefixtures("clean_samples")
def test_counter_reset_gives_no_rate_rather_than_a_negative_one():
    target = Target(name="this-machine", kind="host", timeout_seconds=2)
    target.save()
    collect_target(target=target)
    # As if the machine rebooted: every stored counter is now larger than what it reads next.
    state = CollectorState.objects.get(target=target)
    state.counters["series"] = {key: value * 1000 + 1e12 for key, value in state.counters["series"].items()}
    state.save()
    collect_target(target=target)
    assert stored_samples(target.id, "host_cpu_percent") == []
    assert stored_samples(target.id, "host_disk_write_bytes_per_second") == []
    collect_target(target=target)
    rates = stored_samples(target.id, "host_cpu_percent")
    assert rates and all(value >= 0 for _, _, value in rates)
