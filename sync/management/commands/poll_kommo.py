from django.core.management.base import BaseCommand, CommandError

from sync.clients.errors import ApiError
from sync.ops.connections import emulators_unreachable
from sync.poll import poll_kommo


class Command(BaseCommand):
    help = "Safety net: find won Kommo leads with no sync record and enqueue them (also scheduled)."

    def add_arguments(self, parser):
        parser.add_argument("--since", type=int, help="unix time to look back to (default: the last run)")

    def handle(self, *args, since=None, **options):
        if since is not None and since < 0:
            raise CommandError("--since must be a unix time (seconds since 1970)")
        if problem := emulators_unreachable():
            raise CommandError(problem)
        try:
            result = poll_kommo(since=since)
        except ApiError as exc:
            raise CommandError(f"Kommo could not be read: {exc}") from None
        self.stdout.write(f"{result['won_leads_seen']} won lead(s) seen, {result['enqueued']} new sync record(s).")
