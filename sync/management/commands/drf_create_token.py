"""`drf_create_token USER`: an API token for a usage feed (CONTRACT.md). The key is printed once and stored only as
its SHA-256 digest (sync.models.ApiToken); `--reset` revokes the user's other tokens first."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sync.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for /api/usage/ (printed once: only its digest is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("-r", "--reset", action="store_true", help="revoke the user's other tokens first")

    def handle(self, *args, username: str, reset: bool, **options) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}: create it first (createsuperuser, or the admin)")
        if reset:
            ApiToken.objects.filter(user=user).delete()
        _, key = ApiToken.issue(user)
        self.stdout.write(f"Generated token {key} for user {username} (shown once: zkbridge keeps only its digest)")
