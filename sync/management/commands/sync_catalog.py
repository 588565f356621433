import sys

from django.core.management.base import BaseCommand, CommandError

from sync.catalog_sync import catalogs_to_sync, offer_in_kommo, sync_catalog
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
        failed = []
        for entity in catalogs_to_sync():  # each entity's catalog on its own: one failing leaves the others
            if entity is not None:
                self.stdout.write(f"{entity} ({entity.entity_id}):")
            run = sync_catalog(page_size=page_size, progress=progress, entity=entity)
            if verbose:
                self.stdout.write("")
            if not run.ok:
                where = f" of {entity}" if entity else ""
                failed.append(f"catalog sync{where} failed, the previous mirror is unchanged: {run.error}")
                continue
            for model, counts in run.counts.items():
                self.stdout.write(
                    f"{model}: {counts.get('created', 0)} created, {counts.get('updated', 0)} updated, "
                    f"{counts.get('unchanged', 0)} unchanged, {counts.get('removed', 0)} no longer in Zuora"
                )
            self.stdout.write(self.style.SUCCESS(f"Catalog mirrored from {run.pages} page(s)."))
        offered = offer_in_kommo("manage.py sync_catalog")
        if offered is not None and offered.error:
            failed.append(f"Kommo's plan field was not changed: {offered.error}")
        elif offered is not None and verbose:
            self.stdout.write(f"Kommo's plan field: {len(offered.changes)} change(s).")
        if failed:
            raise CommandError("; ".join(failed))
