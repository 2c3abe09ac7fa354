"""Collections are scheduled from the targets' own rows (monitoring/services/scheduling.py), not by
one django-celery-beat schedule per target: those schedules are removed, and every enabled target is
due at once so nothing waits a whole interval after the upgrade."""

import django.core.validators
import django.utils.timezone
from django.db import migrations, models
from django.utils import timezone

COLLECT_TASK = "monitoring.tasks.collect_target_task"


def _beat_reloads(apps) -> None:
    # What PeriodicTask.save() signals and a historical model does not: a running beat reloads.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forward(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    removed, _ = PeriodicTask.objects.filter(task=COLLECT_TASK, name__startswith="Collect target #").delete()
    if removed:
        _beat_reloads(apps)
    apps.get_model("monitoring", "Target").objects.filter(enabled=True).update(next_due_at=timezone.now())


def backward(apps, schema_editor):
    """Give every target its per-target schedule back, as targets.py made them before."""
    import json

    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    for target in apps.get_model("monitoring", "Target").objects.all():
        interval, _ = IntervalSchedule.objects.get_or_create(every=target.interval_seconds, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=f"Collect target #{target.id}",
            defaults={
                "task": COLLECT_TASK,
                "interval": interval,
                "args": json.dumps([target.id]),
                "queue": "collect",
                "enabled": target.enabled,
                "expire_seconds": target.interval_seconds,
                "description": f"Collects metrics of target “{target.name}”.",
            },
        )
    _beat_reloads(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0005_target_pinned"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="target",
            name="collected_slot",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="target",
            name="group",
            field=models.CharField(
                default="default",
                help_text="Collector group: the workers serving its queue collect this target.",
                max_length=40,
                validators=[django.core.validators.RegexValidator("^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")],
            ),
        ),
        migrations.AddField(
            model_name="target",
            name="next_due_at",
            field=models.DateTimeField(blank=True, default=django.utils.timezone.now, null=True),
        ),
        migrations.AddIndex(
            model_name="target",
            index=models.Index(condition=models.Q(("enabled", True)), fields=["next_due_at"], name="target_due"),
        ),
        migrations.RunPython(forward, backward),
    ]
