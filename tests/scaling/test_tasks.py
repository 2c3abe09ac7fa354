"""Beat's entry, the queue, the real worker running a tick, and the management command."""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError, call_command
from django.utils.module_loading import import_string

from config.celery import app
from scaling.models import ScalingDecision
from scaling.tasks import evaluate_all_task
from tests.scaling.conftest import load_series, webhook_service

pytestmark = pytest.mark.usefixtures("clean_samples")


def test_beat_evaluates_scaling_every_interval_on_the_scale_queue(settings):
    (entry,) = [s for s in import_string(settings.DEFAULT_SCHEDULES) if s.task == "scaling.tasks.evaluate_all_task"]
    assert entry.every_seconds == settings.SCALING_INTERVAL_SECONDS == 15
    assert entry.queue == "scale"
    assert app.amqp.router.route({}, "scaling.tasks.evaluate_all_task")["queue"].name == "scale"


@pytest.mark.celery_worker
def test_the_real_worker_runs_a_tick_that_writes_decisions(celery_worker_process, hook):
    service = webhook_service("worker-dry", hook.url, series_id=load_series("app_load", 100), dry_run=True)
    evaluate_all_task.delay()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ScalingDecision.objects.filter(service=service).exists():
        time.sleep(0.3)
    decision = ScalingDecision.objects.get(service=service)
    assert decision.result == ScalingDecision.Result.DRY_RUN and decision.desired_replicas == 2
    assert hook.posts == []


def test_evaluate_scaling_command(hook, capsys):
    webhook_service("cmd", hook.url, series_id=load_series("app_load", 100))
    call_command("evaluate_scaling")
    assert "evaluated 1 service(s)" in capsys.readouterr().out
    call_command("evaluate_scaling", "cmd")
    assert "Decision:" in capsys.readouterr().out
    with pytest.raises(CommandError, match="No scaled service"):
        call_command("evaluate_scaling", "ghost")


def test_old_decisions_are_pruned(hook):
    from datetime import timedelta

    from django.utils import timezone

    from scaling.services.evaluation import decisions_prune, service_evaluate

    service = webhook_service("prune", hook.url, series_id=load_series("app_load", 50))
    kept = service_evaluate(service=service)
    old = service_evaluate(service=service)
    ScalingDecision.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=15))
    assert decisions_prune(days=14) == 1
    assert list(ScalingDecision.objects.values_list("pk", flat=True)) == [kept.pk]
