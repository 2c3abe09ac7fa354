"""What "the scheduler" is in each design the scale benchmark measures: the command that starts a
scheduler process, the state it needs before a run, and its own count of dispatched collections.

- `beat` (the baseline): one django-celery-beat PeriodicTask per target, as
  monitoring.services.targets created them before the scheduler (collect_target_task on queue
  `collect`, expiring after one interval), and `celery beat`. Only one beat may run.
- `scheduler`: `manage.py run_scheduler` processes over the targets' `next_due_at`, when the code
  has them (monitoring.services.scheduling or the command).
Both spread the targets' first collections evenly over one interval starting STARTUP seconds after
prepare() (called just before the scheduler processes start), as targets added over time are spread:
a scheduler that starts with every target overdue sends them all at once, and beat then keeps them
bunched in that phase for good.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.core.management import get_commands
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from monitoring.models import Target

INTERVAL = 10
PREFIX = "scale-bench-"
COLLECT_TASK = "monitoring.tasks.collect_target_task"
STARTUP = 5.0  # seconds a scheduler process takes to start (Django setup), on a busy 2-core machine


@dataclass(frozen=True)
class Design:
    """What "the scheduler" is: the command of scheduler process number n, the state it needs
    before a run, and (if it keeps one) its own count of collections dispatched."""

    key: str
    label: str
    command: Callable[[int], list[str]]
    prepare: Callable[[list[int]], None]
    dispatched: Callable[[list[int]], int] | None = None


def collect_schedules(ids: list[int]):
    return PeriodicTask.objects.filter(task=COLLECT_TASK, args__in=[json.dumps([i]) for i in ids])


def _beat_prepare(ids: list[int]) -> None:
    """One PeriodicTask per target, with the fields monitoring.services.targets gave them when beat
    dispatched collections (kept where the code still creates them), phases spread over the interval."""
    every, _ = IntervalSchedule.objects.get_or_create(every=INTERVAL, period=IntervalSchedule.SECONDS)
    have = set(collect_schedules(ids).values_list("args", flat=True))
    PeriodicTask.objects.bulk_create(
        [
            PeriodicTask(
                name=f"{PREFIX}collect #{i}",
                task=COLLECT_TASK,
                interval=every,
                args=json.dumps([i]),
                queue="collect",
                expire_seconds=INTERVAL,
            )
            for i in ids
            if json.dumps([i]) not in have
        ]
    )
    now = timezone.now()
    schedules = list(collect_schedules(ids).order_by("id"))
    for n, schedule in enumerate(schedules):
        # Due at last_run_at + INTERVAL: from now + STARTUP on, evenly over one interval.
        schedule.last_run_at = now + timedelta(seconds=STARTUP - INTERVAL * n / len(schedules))
        schedule.enabled = True
    PeriodicTask.objects.bulk_update(schedules, ["last_run_at", "enabled"], batch_size=1000)


def _beat_dispatched(ids: list[int]) -> int:
    # django-celery-beat counts each send on the row (CELERY_BEAT_SYNC_EVERY = 1 saves it at once).
    return sum(collect_schedules(ids).values_list("total_run_count", flat=True))


def _scheduler_prepare(ids: list[int]) -> None:
    collect_schedules(ids).update(enabled=False)  # no beat runs in this design; nothing left to send
    if "next_due_at" in {f.name for f in Target._meta.get_fields()}:
        now = timezone.now()
        targets = list(Target.objects.filter(pk__in=ids).order_by("pk"))
        for n, target in enumerate(targets):
            target.next_due_at = now + timedelta(seconds=STARTUP + INTERVAL * n / len(targets))
        Target.objects.bulk_update(targets, ["next_due_at"], batch_size=1000)


BEAT = Design(
    key="beat",
    label="beat + a PeriodicTask per target",
    command=lambda n: [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "WARNING", "--pidfile="],
    prepare=_beat_prepare,
    dispatched=_beat_dispatched,
)
SCHEDULER = Design(
    key="scheduler",
    label="run_scheduler processes",
    command=lambda n: [sys.executable, "manage.py", "run_scheduler"],
    prepare=_scheduler_prepare,
)


def collect_queues(ids: list[int]) -> list[str]:
    """The queues these targets' collections go to: `collect`, and their groups' own where targets have
    groups (named by the scheduler's own group_queue when the code has it)."""
    if "group" not in {f.name for f in Target._meta.get_fields()}:
        return ["collect"]
    try:
        from monitoring.services.scheduling import group_queue
    except ImportError:
        group_queue = "collect.{}".format
    groups = Target.objects.filter(pk__in=ids).exclude(group="").values_list("group", flat=True).distinct()
    return sorted({"collect", *(group_queue(group) for group in groups)})


def scheduler_available() -> bool:
    """Whether this code has the scheduler that replaces beat for collections."""
    return importlib.util.find_spec("monitoring.services.scheduling") is not None or "run_scheduler" in get_commands()


def beat_available() -> bool:
    """Whether beat can still dispatch collections here: the per-target task exists."""
    app.loader.import_default_modules()
    return COLLECT_TASK in app.tasks
