from django.core.management.base import BaseCommand, CommandError

from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.installation import kommo_webhook_url
from sync.ops.connections import emulators_unreachable


class Command(BaseCommand):
    help = "Print the Kommo web hook URL to paste into Kommo; --register subscribes it through the API."

    def add_arguments(self, parser):
        parser.add_argument("--register", action="store_true", help="subscribe it (status_lead) via Kommo's API")

    def handle(self, *args, register=False, **options):
        url = kommo_webhook_url()
        if register:
            if problem := emulators_unreachable():
                raise CommandError(problem)
            try:
                KommoClient.from_settings().subscribe_webhook(url, ["status_lead", "add_lead"])
            except ApiError as exc:
                raise CommandError(f"Kommo refused the web hook subscription: {exc}") from None
        self.stdout.write(url)
