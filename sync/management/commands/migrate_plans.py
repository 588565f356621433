import datetime as dt

from django.core.management.base import BaseCommand, CommandError

from sync.migration.models import MigrationRule
from sync.ops.connections import emulators_unreachable


def a_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--date: expected YYYY-MM-DD, got {value!r}") from None


class Command(BaseCommand):
    help = (
        "Move subscribers off retired plans per the active migration rules: the subscriptions whose term end or "
        "charged-through date falls within each rule's days ahead of DATE (default today) get one order each, "
        "dated on that day. --dry-run lists what would move (and why others are skipped) and changes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list what would move; change nothing")
        parser.add_argument("--rule", type=int, metavar="N", help="only this rule (its id in the admin)")
        parser.add_argument("--date", metavar="YYYY-MM-DD", help="run as of this day (default: today)")

    def handle(self, *args, dry_run=False, rule=None, date=None, **options):
        from sync.migration.run import run_migrations

        day = a_date(date) if date else None
        if rule is not None:
            found = MigrationRule.objects.filter(id=rule).first()
            if found is None:
                raise CommandError(f"--rule {rule}: no such migration rule")
            if not found.active:
                raise CommandError(f"--rule {rule}: the rule is paused; activate it in the admin first")
        if problem := emulators_unreachable():
            raise CommandError(problem)
        run = run_migrations(day, rule_id=rule, dry_run=dry_run)
        if not run.ok:
            raise CommandError(f"the run stopped: {run.error}")
        s = run.summary
        verb = "would move" if dry_run else "moved"
        self.stdout.write(
            f"{run.day}: {verb} {s['moved']}, already scheduled {s['scheduled']}, skipped {s['skipped']}, "
            f"failed {s['failed']} ({s['zuora_reads']} Zuora reads)."
        )
        for row in run.rows:
            self.stdout.write(
                f"{row['outcome']:9} {row['subscription']:12} {row['account']:10} lead {row['lead'] or '-':>10}  "
                f"{row['current']} → {row['target']}{' + ' + row['discount'] if row['discount'] else ''} on "
                f"{row['effective']}{'  ' + row['reason'] if row['reason'] else ''}"
            )
