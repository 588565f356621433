import sys

from django.core.management.base import BaseCommand, CommandError

from sync.catalog_sync import sync_catalog
from sync.ops.connections import emulators_unreachable


class Command(BaseCommand):
    help = "Mirror the Zuora product catalog (products, rate plans, charges, prices, effective dates)."

    def add_arguments(self, parser):
        parser.add_argument("--page-size", type=int, default=40, help="products per Zuora page (1-40)")

    def handle(self, *args, page_size=40, **options):
        if not 1 <= page_size <= 40:
            raise CommandError("--page-size must be between 1 and 40")
        verbose = options["verbosity"] > 0

        def progress(page: int, products: int) -> None:
            if verbose:
                sys.stdout.write(f"\rpage {page}: {products} products read")
                sys.stdout.flush()

        if problem := emulators_unreachable():
            raise CommandError(problem)
        run = sync_catalog(page_size=page_size, progress=progress)
        if verbose:
            self.stdout.write("")
        if not run.ok:
            raise CommandError(f"catalog sync failed, the previous mirror is unchanged: {run.error}")
        for model, counts in run.counts.items():
            self.stdout.write(
                f"{model}: {counts.get('created', 0)} created, {counts.get('updated', 0)} updated, "
                f"{counts.get('unchanged', 0)} unchanged, {counts.get('removed', 0)} no longer in Zuora"
            )
        self.stdout.write(self.style.SUCCESS(f"Catalog mirrored from {run.pages} page(s)."))
