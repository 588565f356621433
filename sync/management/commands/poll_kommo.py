import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from sync.clients.errors import ApiError
from sync.ops.connections import emulators_unreachable
from sync.poll import poll_kommo


def since_of(value: str) -> int:
    """--since as a unix time, a date (YYYY-MM-DD, from its midnight UTC) or an ISO date and time."""
    text = value.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--since {value!r}: expected a date (2026-01-31), a date and time (2026-01-31T09:00) or a unix time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return max(int(moment.timestamp()), 0)


class Command(BaseCommand):
    help = (
        "Safety net: find won Kommo leads with no sync record and enqueue them (also scheduled). With --since, "
        "imports the won deals updated since then (historical deals run in bursts, like any many due at once)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", help="look back to this date (YYYY-MM-DD), date and time, or unix time (default: the last run)"
        )

    def handle(self, *args, since=None, **options):
        since_time = since_of(str(since)) if since is not None else None
        if problem := emulators_unreachable():
            raise CommandError(problem)
        try:
            result = poll_kommo(since=since_time)
        except ApiError as exc:
            raise CommandError(f"Kommo could not be read: {exc}") from None
        self.stdout.write(f"{result['won_leads_seen']} won lead(s) seen, {result['enqueued']} new sync record(s).")
