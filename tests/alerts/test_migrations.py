"""Data migrations of alerts, run against today's models."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps

from alerts.models import Channel
from tests.alerts.conftest import make_channel

pytestmark = pytest.mark.django_db


def test_channels_saved_before_the_port_was_shown_are_masked_again_with_it():
    remask = importlib.import_module("alerts.migrations.0002_channel_url_display_port").remask
    channel = make_channel("http://alerts.internal:9093/hooks/secret")
    unreadable = make_channel("http://other:8080/x", name="old-key")
    Channel.objects.filter(pk=channel.pk).update(url_display="http://alerts.internal/••••••")
    Channel.objects.filter(pk=unreadable.pk).update(url_encrypted="not-a-token", url_display="http://other/••••••")
    remask(apps, None)
    assert Channel.objects.get(pk=channel.pk).url_display == "http://alerts.internal:9093/••••••"
    assert Channel.objects.get(pk=unreadable.pk).url_display == "http://other/••••••"  # left for the user to re-enter
