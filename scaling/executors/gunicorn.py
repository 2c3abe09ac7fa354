"""gunicorn: TTIN adds a worker, TTOU removes one; the count is the master's worker children.

The master's pid comes from its pidfile. A HUP (config reload) or a restart brings the master back
to its configured worker count; the evaluation service treats the count it last applied as the
current one (like the HPA's spec.replicas), so the next tick sees the drift and re-applies it.
gunicorn queues at most five signals, so they are sent one at a time with a short pause.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil

from scaling.executors.base import ConfigField, Executor, ExecutorError, register

SIGNAL_PAUSE_SECONDS = 0.05


@register
class GunicornExecutor(Executor):
    kind = "gunicorn"
    label = "gunicorn workers"
    fields = (ConfigField("pidfile", "the path of the master's pidfile (gunicorn --pid)", True),)

    def _master(self) -> psutil.Process:
        path = Path(self.config["pidfile"])
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError) as exc:
            raise ExecutorError(f"Cannot read the gunicorn pid from {path}: {exc}") from exc
        try:
            master = psutil.Process(pid)
            if not master.is_running() or master.status() == psutil.STATUS_ZOMBIE:
                raise psutil.NoSuchProcess(pid)
        except psutil.NoSuchProcess as exc:
            raise ExecutorError(f"No gunicorn master runs with pid {pid} (from {path}).") from exc
        except psutil.AccessDenied as exc:
            raise ExecutorError(f"Not allowed to inspect process {pid}.") from exc
        return master

    @staticmethod
    def _workers(master: psutil.Process) -> int:
        alive = 0
        for child in master.children(recursive=False):
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    alive += 1
            except psutil.NoSuchProcess:
                continue
        return alive

    def current(self) -> int:
        return self._workers(self._master())

    def scale_to(self, replicas: int) -> str:
        if replicas < 1:
            raise ExecutorError("gunicorn needs at least one worker.", permanent=True)
        master = self._master()
        now = self._workers(master)
        change = replicas - now
        if change == 0:
            return f"gunicorn {master.pid} already runs {now} workers"
        sig = signal.SIGTTIN if change > 0 else signal.SIGTTOU
        for _ in range(abs(change)):
            try:
                os.kill(master.pid, sig)
            except OSError as exc:
                raise ExecutorError(f"Cannot signal gunicorn master {master.pid}: {exc}") from exc
            time.sleep(SIGNAL_PAUSE_SECONDS)
        return f"sent {abs(change)} x {sig.name} to gunicorn master {master.pid} ({now} → {replicas})"
