"""Celery worker pool: the replica count is the number of pool processes of one worker.

Over the broker's remote control: `inspect stats` reads the pool, then
- a worker started with --autoscale gets `autoscale max=n min=n` (pool_grow/pool_shrink are
  refused by such a worker: "not supported with autoscale"), which pins its pool at n;
- any other worker gets `pool_grow` / `pool_shrink` by the difference.
"""

from __future__ import annotations

from celery import Celery

from scaling.executors.base import ConfigField, Executor, ExecutorError, register


@register
class CeleryExecutor(Executor):
    kind = "celery"
    label = "Celery worker pool"
    fields = (
        ConfigField("broker_url", "the broker URL of the worker's app, e.g. redis://host:6379/0", True, secret=True),
        ConfigField("worker", "the worker's node name, e.g. celery@host", True),
    )

    def _app(self) -> Celery:
        return Celery(
            f"perfpilot-scale-{self.context.service}",
            broker=self.config["broker_url"],
            set_as_current=False,
            broker_connection_retry_on_startup=False,
            broker_connection_max_retries=0,
        )

    def _stats(self, app: Celery) -> dict:
        worker = self.config["worker"]
        try:
            replies = app.control.inspect(destination=[worker], timeout=self.timeout).stats() or {}
        except Exception as exc:
            raise ExecutorError(f"Cannot reach the broker of worker {worker}: {type(exc).__name__}: {exc}") from exc
        if worker not in replies:
            raise ExecutorError(f"Worker {worker} did not answer `inspect stats` within {self.timeout:g} s.")
        return replies[worker]

    @staticmethod
    def _processes(stats: dict) -> int:
        autoscaler = stats.get("autoscaler")
        if autoscaler:
            return int(autoscaler["current"])
        pool = stats.get("pool") or {}
        if isinstance(pool.get("processes"), list):
            return len(pool["processes"])
        return int(pool.get("max-concurrency", 0))

    def current(self) -> int:
        app = self._app()
        try:
            return self._processes(self._stats(app))
        finally:
            app.close()

    def scale_to(self, replicas: int) -> str:
        if replicas < 1:
            raise ExecutorError("A Celery worker pool needs at least one process.", permanent=True)
        worker = self.config["worker"]
        app = self._app()
        try:
            stats = self._stats(app)
            now = self._processes(stats)
            if stats.get("autoscaler"):
                command, arguments, text = "autoscale", {"max": replicas, "min": replicas}, f"autoscale {replicas}"
            elif replicas > now:
                command, arguments, text = "pool_grow", {"n": replicas - now}, f"pool_grow {replicas - now}"
            elif replicas < now:
                command, arguments, text = "pool_shrink", {"n": now - replicas}, f"pool_shrink {now - replicas}"
            else:
                return f"{worker} already runs {now} processes"
            try:
                replies = app.control.broadcast(
                    command, arguments=arguments, destination=[worker], reply=True, timeout=self.timeout
                )
            except Exception as exc:
                raise ExecutorError(f"{command} to {worker} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            app.close()
        answer = next((reply[worker] for reply in replies or [] if worker in reply), None)
        if answer is None:
            raise ExecutorError(f"Worker {worker} did not answer {command} within {self.timeout:g} s.")
        if "error" in answer:
            raise ExecutorError(f"Worker {worker} refused {command}: {answer['error']}")
        return f"{text} on {worker} ({now} → {replicas}): {answer.get('ok', 'ok')}"
