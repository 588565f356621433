"""Prepare the embedded demo: an admin login, and (once the server is up) the catalog, the plan map and
the Kommo web hook subscription. Used by `python3 dev.py demo`."""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from catalog.models import MappedRatePlan, PlanMapping, ProductRatePlan


class Command(BaseCommand):
    help = "Create the demo admin login (--admin) or load the demo catalog, plan map and web hook (--connect)."

    def add_arguments(self, parser):
        parser.add_argument("--admin", action="store_true", help="create or reuse the admin login and print it")
        parser.add_argument(
            "--connect",
            action="store_true",
            help="sync the catalog, import the demo plan map, register the Kommo web hook",
        )

    def handle(self, *args, admin=False, connect=False, **options):
        if not settings.ZKBRIDGE_SANDBOX:
            raise CommandError("demo_setup works with the built-in emulators only (ZKBRIDGE_SANDBOX on)")
        if admin:
            self.admin_login()
        if connect:
            from sandbox.demo import zuora_id

            call_command("sync_catalog", verbosity=0)
            call_command(
                "import_plan_map", str(Path(settings.BASE_DIR) / "sandbox/fixtures/demo-plan-map.csv"), verbosity=0
            )
            # A legacy mapping made while "Growth (2024)" was sellable: it shows the retired-plan path.
            legacy = ProductRatePlan.objects.filter(zuora_id=zuora_id("Growth (2024)")).first()
            if legacy:
                mapping, _ = PlanMapping.objects.get_or_create(
                    kind="plan", kommo_value="Growth (2024)", currency="USD", defaults={"label": "Growth (2024)"}
                )
                MappedRatePlan.objects.get_or_create(mapping=mapping, product_rate_plan=legacy)
            call_command("kommo_webhook", register=True, stdout=self.stdout)

    def admin_login(self) -> None:
        path = Path(settings.BASE_DIR) / ".zkbridge" / "admin-password"
        path.parent.mkdir(exist_ok=True)
        password = path.read_text().strip() if path.exists() else secrets.token_urlsafe(12)
        path.write_text(password)
        path.chmod(0o600)
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"admin {password}")
