"""Prepare the embedded demo (used by `python3 dev.py demo`): the demo's wiring lives with the emulators.

The demo keeps what its user did: the emulators are seeded, the plan map imported and the admin login
created on the first run only; a restart changes nothing. `--reset` starts over, and only ever on the
built-in emulators' data: it refuses as soon as a real Zuora or Kommo is configured.

Like everything in sandbox/, this imports nothing from zkbridge's own apps: it drives them through their
commands (sync_catalog, import_plan_map, loaddata, kommo_plan_field, kommo_webhook), as an operator would.
"""

import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from sandbox import demo
from sandbox.common import get_setting, set_setting
from sandbox.models import ZProduct

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


class Command(BaseCommand):
    help = (
        "The embedded demo: --reset forgets everything, --seed loads the emulators' demo data (first run only), "
        "--admin prints the admin login, --connect syncs the catalog, imports the demo plan map (first run only) "
        "and registers the Kommo web hook."
    )

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="forget all demo data (emulators and zkbridge)")
        parser.add_argument("--seed", action="store_true", help="load the emulators' demo data unless already there")
        parser.add_argument("--admin", action="store_true", help="create the admin login once and print it")
        parser.add_argument(
            "--connect",
            action="store_true",
            help="sync the catalog, import the demo plan map (first run only), register the Kommo web hook",
        )

    def handle(self, *args, reset=False, seed=False, admin=False, connect=False, **options):
        if not (settings.ZKBRIDGE_SANDBOX and settings.ZUORA_USES_EMULATOR and settings.KOMMO_USES_EMULATOR):
            raise CommandError(
                "the demo works with the built-in emulators only: ZUORA_BASE_URL or KOMMO_BASE_URL is set, "
                "so nothing was changed (a real setup is never reset)"
            )
        if reset:
            # flush empties every table (emulators included) and re-runs the post-migrate set-up: the
            # staff groups, the schedules, the billing rules and a new web hook token.
            call_command("flush", interactive=False, verbosity=0)
            self.stdout.write("Demo data forgotten; it will be seeded again.")
        if seed and not ZProduct.objects.exists():
            demo.seed()  # on later runs the leads, notes and subscriptions are the user's
            demo.seed_legacy_customer()  # the demo's story of a migration (README, step 9)
        if admin:
            self.admin_login()
        if connect:
            self.connect()

    def admin_login(self) -> None:
        path = Path(settings.ZKBRIDGE_STATE_DIR) / "admin-password"
        path.parent.mkdir(parents=True, exist_ok=True)
        users = get_user_model().objects
        user = users.filter(username="admin").first()
        if user is None or not path.exists():
            password = path.read_text().strip() if path.exists() else secrets.token_urlsafe(12)
            path.write_text(password)
            path.chmod(0o600)
            user = user or users.create(username="admin", email="admin@example.com")
            user.is_staff = user.is_superuser = True
            user.set_password(password)
            user.save()
        # A password the user changed since is theirs: never overwritten (the file keeps the first one).
        self.stdout.write(f"admin {path.read_text().strip()}")

    def connect(self) -> None:
        call_command("sync_catalog", verbosity=0)
        if not get_setting("demo_connected"):
            call_command("import_plan_map", str(FIXTURES / "demo-plan-map.csv"), verbosity=0)
            # A mapping made while "Growth (2024)" was sellable: it shows the retired-plan path.
            call_command("loaddata", str(FIXTURES / "demo-legacy-mapping.json"), verbosity=0)
            set_setting("demo_connected", True)
        call_command("kommo_plan_field", verbosity=0)  # the plan field offers what the plan map sells today
        # The tenant's payment notifications post to zkbridge, as an operator sets them up (`zuora_callouts`).
        set_setting(
            "zuora_callout",
            {
                "url": f"{settings.ZKBRIDGE_URL}/webhooks/zuora/",
                "username": settings.ZUORA_CALLOUT_USERNAME or "",
                "password": settings.ZUORA_CALLOUT_PASSWORD or "",
            },
        )
        call_command("kommo_webhook", register=True, stdout=self.stdout)
