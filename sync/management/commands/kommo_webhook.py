from django.core.management.base import BaseCommand, CommandError

from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.installation import ROTATION_GRACE, WEBHOOK_EVENTS, kommo_webhook_url, rotate_webhook_token
from sync.ops.connections import emulators_unreachable


class Command(BaseCommand):
    help = (
        "Print the Kommo web hook URL to paste into Kommo; --register subscribes it through the API; --rotate "
        "replaces the token (the old one keeps working for 24 h; with --register, Kommo is moved to the new URL)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--register", action="store_true", help="subscribe it (status_lead, add_lead, update_lead) via Kommo's API"
        )
        parser.add_argument("--rotate", action="store_true", help="replace the token; the old one works 24 h more")

    def handle(self, *args, register=False, rotate=False, **options):
        old_url = kommo_webhook_url()
        if rotate:
            try:
                rotate_webhook_token()
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            hours = int(ROTATION_GRACE.total_seconds() // 3600)
            self.stderr.write(f"New token generated; the old URL keeps working for {hours} h.")
        url = kommo_webhook_url()
        if register:
            if problem := emulators_unreachable():
                raise CommandError(problem)
            kommo = KommoClient.from_settings()
            try:
                kommo.subscribe_webhook(url, WEBHOOK_EVENTS)
                if rotate:
                    kommo.unsubscribe_webhook(old_url)
            except ApiError as exc:
                raise CommandError(f"Kommo refused the web hook subscription: {exc}") from None
        self.stdout.write(url)
