"""The host collector: CPU, load, memory, disks, network and processes of this machine (psutil).

CPU is emitted as a COUNTER of busy CPU-seconds x 100, so the collection service's per-second rate
of it is the busy percent over the interval (never psutil.cpu_percent: it blocks or depends on
process-local state between calls, and collections run in different worker processes).

Metrics (labels in braces):
    host_cpu_percent{cpu="total"|"0"|"1"…}  COUNTER; "total" is the mean over all cores (0-100)
    host_load1, host_load5, host_load15
    host_memory_used_percent, host_swap_used_percent
    host_disk_used_percent{mount}           real filesystems only, one mount per device
    host_disk_read_bytes_per_second, host_disk_write_bytes_per_second   COUNTER, all disks
    host_network_receive_bytes_per_second, host_network_transmit_bytes_per_second   COUNTER,
        all interfaces but lo and ifb* mirrors
    host_process_count
"""

from __future__ import annotations

import os
import platform

import psutil

from monitoring.collectors.base import COUNTER, Collector, CollectorError, CollectResult, Measurement, register

# Filesystems that hold no user data, or mirror another one; their "used" is meaningless.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs",
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "devtmpfs",
        "efivarfs",
        "fuse.gvfsd-fuse",
        "fuse.lxcfs",
        "fusectl",
        "hugetlbfs",
        "mqueue",
        "nsfs",
        "overlay",
        "proc",
        "pstore",
        "ramfs",
        "securityfs",
        "squashfs",
        "sysfs",
        "tmpfs",
        "tracefs",
    }
)
# cpu_times fields that are already counted inside user/nice on Linux (guest time).
_DOUBLE_COUNTED = ("guest", "guest_nice")
_IDLE = ("idle", "iowait")
# ifb devices re-inject traffic already counted on the real interface (traffic shaping): skip them.
_MIRROR_NIC_PREFIXES = ("ifb",)


def _busy_seconds(times) -> float:
    """Busy CPU-seconds of a psutil cputimes tuple: total - idle - iowait."""
    fields = times._asdict()
    total = sum(value for name, value in fields.items() if name not in _DOUBLE_COUNTED)
    return total - sum(fields.get(name, 0.0) for name in _IDLE)


@register
class HostCollector(Collector):
    kind = "host"
    label = "Host (this machine)"

    def collect(self) -> CollectResult:
        # psutil reads /proc and /sys locally, so there is no network call for self.timeout to bound.
        result = CollectResult()
        try:
            result.measurements.extend(self._cpu())
            result.measurements.extend(self._load_memory_processes())
            result.measurements.extend(self._disks(result.notes))
            result.measurements.extend(self._network(result.notes))
        except (OSError, psutil.Error) as exc:
            raise CollectorError(f"Could not read this machine's statistics: {exc}") from exc
        return result

    def test_connection(self) -> str:
        try:
            cores = psutil.cpu_count(logical=True) or 0
            memory = psutil.virtual_memory().total
        except (OSError, psutil.Error) as exc:
            raise CollectorError(f"Could not read this machine's statistics: {exc}") from exc
        return f"{platform.node()}: {platform.system()}, {cores} CPUs, {memory / 2**30:.1f} GiB memory"

    def _cpu(self) -> list[Measurement]:
        per_cpu = psutil.cpu_times(percpu=True)
        measurements = []
        for index, times in enumerate(per_cpu):
            busy = _busy_seconds(times)
            measurements.append(_counter("host_cpu_percent", busy * 100, "%", cpu=str(index)))
        # Divided by the number of cores so that "total" reads 0-100 like the usual CPU gauge.
        busy_total = _busy_seconds(psutil.cpu_times())
        measurements.append(_counter("host_cpu_percent", busy_total * 100 / max(len(per_cpu), 1), "%", cpu="total"))
        return measurements

    def _load_memory_processes(self) -> list[Measurement]:
        load1, load5, load15 = os.getloadavg()
        return [
            Measurement("host_load1", load1),
            Measurement("host_load5", load5),
            Measurement("host_load15", load15),
            Measurement("host_memory_used_percent", psutil.virtual_memory().percent, unit="%"),
            Measurement("host_swap_used_percent", psutil.swap_memory().percent, unit="%"),
            Measurement("host_process_count", len(psutil.pids())),
        ]

    def _disks(self, notes: list[str]) -> list[Measurement]:
        measurements = []
        seen_devices: set[str] = set()
        # Shortest mount point first, so a device mounted twice (bind mounts) is reported at its root.
        for part in sorted(psutil.disk_partitions(all=False), key=lambda p: len(p.mountpoint)):
            if part.fstype in PSEUDO_FILESYSTEMS or part.device in seen_devices:
                continue
            try:
                usage = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue  # unreadable to this user (or unmounted meanwhile): not a failure of the host
            if usage.total == 0:
                continue
            seen_devices.add(part.device)
            measurements.append(
                Measurement("host_disk_used_percent", usage.percent, {"mount": part.mountpoint}, unit="%")
            )
        io = psutil.disk_io_counters(perdisk=False)
        if io is None:
            notes.append("No disk I/O counters on this machine (e.g. inside some containers).")
        else:
            measurements.append(_counter("host_disk_read_bytes_per_second", io.read_bytes, "bytes/s"))
            measurements.append(_counter("host_disk_write_bytes_per_second", io.write_bytes, "bytes/s"))
        return measurements

    def _network(self, notes: list[str]) -> list[Measurement]:
        nics = {
            name: counters
            for name, counters in psutil.net_io_counters(pernic=True).items()
            if name != "lo" and not name.startswith(_MIRROR_NIC_PREFIXES)
        }
        if not nics:
            notes.append("No network interfaces besides lo.")
            return []
        received = sum(c.bytes_recv for c in nics.values())
        sent = sum(c.bytes_sent for c in nics.values())
        return [
            _counter("host_network_receive_bytes_per_second", received, "bytes/s"),
            _counter("host_network_transmit_bytes_per_second", sent, "bytes/s"),
        ]


def _counter(metric: str, value: float, unit: str, **labels: str) -> Measurement:
    return Measurement(metric, float(value), labels, kind=COUNTER, unit=unit)
