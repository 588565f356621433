"""replay_usage ID: send a kept usage body through the intake again (a disputed import, a row lost downstream).

Rows already in the ledger are duplicates by their unique_key and change nothing; only rows missing from it
are stored. --show prints the body instead."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sync.usage import intake
from sync.usage.models import UsageDelivery


class Command(BaseCommand):
    help = "Replay a kept usage body (admin → Usage deliveries) through the intake; idempotent on unique_key."

    def add_arguments(self, parser):
        parser.add_argument("delivery", help="the usage delivery's id")
        parser.add_argument("--show", action="store_true", help="print the body as it was sent, change nothing")

    def handle(self, *args, delivery: str, show: bool = False, **options):
        if not delivery.isdigit():
            raise CommandError(f"{delivery!r} is not a usage delivery id (a number: admin → Usage deliveries)")
        kept = UsageDelivery.objects.filter(pk=int(delivery)).first()
        if kept is None:
            raise CommandError(f"no usage delivery {delivery}")
        body = kept.body()
        if body is None:
            raise CommandError(f"usage delivery {delivery}'s body is past its retention and was dropped")
        if show:
            self.stdout.write(body.decode("utf-8", "replace"))
            return
        result = intake.accept(intake.rows_of(iter([body]), kept.content_type))
        self.stdout.write(
            f"usage delivery {kept.pk} replayed: {result.accepted} row(s) stored, {result.duplicates} already "
            f"in the ledger, {result.rejected_total} rejected"
        )
        if result.problem is not None:
            raise CommandError(f"the body stops being readable: {result.problem}")
