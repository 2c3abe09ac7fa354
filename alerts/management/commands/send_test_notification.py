"""`manage.py send_test_notification CHANNEL`: send a test message to a channel (by name or id) now."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from alerts.models import Channel
from alerts.services.delivery import channel_test_send


class Command(BaseCommand):
    help = "Send a test message to an alert channel; a success enables a channel that was disabled."

    def add_arguments(self, parser):
        parser.add_argument("channel", help="channel name or id")

    def handle(self, *args, channel: str, **options):
        found = Channel.objects.filter(name=channel).first()
        if found is None and channel.isdigit():
            found = Channel.objects.filter(pk=int(channel)).first()
        if found is None:
            raise CommandError(f"No channel named or numbered {channel!r}.")
        outcome = channel_test_send(channel=found, actor=None, via="command")
        if outcome.outcome != "sent":
            raise CommandError(f"Not delivered ({outcome.outcome}): {outcome.detail}")
        self.stdout.write(f"Delivered to {found.name}: {outcome.detail}")
