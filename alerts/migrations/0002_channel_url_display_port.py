"""Channels saved before the mask showed the port get their masked URL again, port included."""

from __future__ import annotations

from django.db import migrations

from core.conninfo import mask_webhook_url
from core.crypto import SecretUnreadable, decrypt


def remask(apps, schema_editor):
    Channel = apps.get_model("alerts", "Channel")
    for channel in Channel.objects.exclude(url_encrypted=""):
        try:
            url = decrypt(channel.url_encrypted)
        except SecretUnreadable:
            continue  # the key changed: the page already asks to enter the URL again
        Channel.objects.filter(pk=channel.pk).update(url_display=mask_webhook_url(url))


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]

    operations = [migrations.RunPython(remask, migrations.RunPython.noop)]
