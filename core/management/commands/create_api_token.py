from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import InvalidInput
from core.services import api_token_create


class Command(BaseCommand):
    help = "Create an API token for a user and print it once. It acts with that user's role."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="Username the token acts as.")
        parser.add_argument("--name", required=True, help="What the token is for.")

    def handle(self, *args, user: str, name: str, **options):
        try:
            owner = get_user_model().objects.get(username=user, is_active=True)
        except get_user_model().DoesNotExist as exc:
            raise CommandError(f"No active user named {user!r}.") from exc
        try:
            issued = api_token_create(user=owner, name=name, via="command")
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Token {issued.token.name!r} for {owner.get_username()}; it is shown only once:")
        self.stdout.write(issued.raw)
