from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sync.ops.connections import emulators_unreachable
from sync.reconcile import report_csv, run_reconciliation


class Command(BaseCommand):
    help = "Compare won deals, sync records and Zuora; print the report and optionally write it as CSV."

    def add_arguments(self, parser):
        parser.add_argument("--csv", metavar="FILE", help="also write the report to FILE")
        parser.add_argument("--limit", type=int, default=200, help="rows to print (the CSV has them all)")

    def handle(self, *args, csv=None, limit=200, **options):
        if csv and not Path(csv).resolve().parent.is_dir():
            raise CommandError(f"{csv}: the folder does not exist")
        if problem := emulators_unreachable():
            raise CommandError(problem)
        run = run_reconciliation()
        if not run.ok:
            raise CommandError(run.error)
        summary = run.summary
        self.stdout.write(
            f"{summary['won_deals']} won deals, {summary['zuora_subscriptions']} Zuora subscriptions, "
            f"{summary['discrepancies']} discrepancies ({summary['zuora_calls']} Zuora calls, "
            f"{summary['kommo_calls']} Kommo calls)."
        )
        for item in run.discrepancies.order_by("kind", "kommo_lead_id")[:limit]:
            self.stdout.write(
                f"{item.kind:22} lead {item.kommo_lead_id or '-':>10}  {item.zuora_account_number:10} "
                f"{item.zuora_subscription_number:12} {item.get_action_display():34} {item.detail}"
            )
        if summary["discrepancies"] > limit:
            self.stdout.write(f"… {summary['discrepancies'] - limit} more (see the admin or --csv)")
        if csv:
            Path(csv).write_text(report_csv(run))
            self.stdout.write(f"Report written to {csv}")
