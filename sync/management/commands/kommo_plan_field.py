from django.core.management.base import BaseCommand, CommandError

from sync.offering.run import run
from sync.ops.connections import emulators_unreachable


class Command(BaseCommand):
    help = (
        "Keep Kommo's plan field (KOMMO_PLAN_FIELD_ID) in step with what Zuora sells today: add the options of "
        "sellable plans, mark retired ones '(retired)' (never removed), report options the plan map does not know."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="compare and list the changes; change nothing")

    def handle(self, *args, dry_run=False, **options):
        if problem := emulators_unreachable():
            raise CommandError(problem)
        result = run(dry_run=dry_run, requested_by="manage.py kommo_plan_field")
        for row in result.rows if options["verbosity"] > 0 else []:
            sold = "; ".join(
                f"{w['entity'] + ' ' if w['entity'] else ''}{w['currency']}: {w['verdict']}" for w in row["zuora"]
            )
            change = f"  → {row['change']}" if row["change"] else ""
            self.stdout.write(f"{row['value']}: Kommo offers {row['kommo']!r}; {row['state']} ({sold or '—'}){change}")
        if result.error:
            raise CommandError(f"nothing was changed: {result.error}")
        verb = "would make" if dry_run else "made"
        self.stdout.write(self.style.SUCCESS(f"{verb} {len(result.changes)} change(s) to Kommo's plan field."))
