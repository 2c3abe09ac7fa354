"""The control plane's tasks moved from the project package (config.tasks) to the core app
(core.tasks): schedules saved under the old names are renamed so beat keeps sending them."""

from django.db import migrations

RENAMED = {
    "config.tasks.clear_sessions_task": "core.tasks.clear_sessions_task",
    "config.tasks.ping_task": "core.tasks.ping_task",
}


def rename(apps, schema_editor, mapping=RENAMED):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in mapping.items():
        PeriodicTask.objects.filter(task=old).update(task=new)


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, mapping={new: old for old, new in RENAMED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("config", "0003_api_token_verbose_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(rename, rename_back)]
