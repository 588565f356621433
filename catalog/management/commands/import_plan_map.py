from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.planmap import MAX_CSV_BYTES, import_csv


class Command(BaseCommand):
    help = (
        "Upsert plan mappings from CSV (header kommo_value,product_rate_plan_id[,currency,label,kind,quantity,"
        "price,term_months,auto_renew,evergreen,renewal_term_months,payment_term,active]; several rate plans of "
        "one mapping separated by ';'). Any bad row: nothing is imported, each bad line is named. The admin's "
        "export imports back unchanged."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="path to the CSV file")

    def handle(self, *args, file, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"{file}: no such file")
        if path.stat().st_size > MAX_CSV_BYTES:
            raise CommandError(f"{file}: {path.stat().st_size:,} bytes; the limit is {MAX_CSV_BYTES:,}")
        result = import_csv(path.read_bytes(), settings.ZKBRIDGE_DEFAULT_CURRENCY)
        for warning in result.warnings:
            self.stderr.write(self.style.WARNING(f"{file}: warning: {warning}"))
        if result.errors:
            for error in result.errors:
                self.stderr.write(f"{file}: {error}")
            raise CommandError(f"{file}: nothing imported ({len(result.errors)} problem(s))")
        self.stdout.write(self.style.SUCCESS(f"{result.created} mapping(s) created, {result.updated} updated."))
