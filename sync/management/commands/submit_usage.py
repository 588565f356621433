from django.core.management.base import BaseCommand

from sync.usage.batches import create_batches
from sync.usage.models import UsageRecord


class Command(BaseCommand):
    help = "Send pending usage to Zuora as CSV imports and record the outcome (also scheduled)."

    def handle(self, *args, **options):
        batches = create_batches()
        unplaceable = UsageRecord.objects.filter(status=UsageRecord.Status.UNPLACEABLE).count()
        self.stdout.write(f"{len(batches)} usage batch(es) queued for Zuora.")
        if unplaceable:
            self.stdout.write(
                self.style.WARNING(
                    f"{unplaceable} usage record(s) match no synced subscription (see Usage records in the admin)."
                )
            )
