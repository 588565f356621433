from django.core.management.base import BaseCommand

from sandbox import demo


class Command(BaseCommand):
    help = "Load the emulators' demo data (catalog, leads, contacts, companies); --reset forgets everything first."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="wipe the emulators' state first")

    def handle(self, *args, reset=False, **options):
        if reset:
            demo.reset()
        demo.seed()
        self.stdout.write(self.style.SUCCESS("Emulators seeded: Zuora catalog, Kommo leads/contacts/companies."))
