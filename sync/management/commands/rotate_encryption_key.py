"""Re-encrypt every stored secret under the newest of ZKBRIDGE_ENCRYPTION_KEYS (docs/operations.md,
"Encryption keys"): put the new key first, run this, then drop the old key."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from zkbridge.vault import encrypted_fields, rotate_all


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (tokens, entity client secrets, the web hook token) under the newest key."

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            count = rotate_all()
        columns = ", ".join(f"{model._meta.label}.{column}" for model, column in encrypted_fields())
        self.stdout.write(f"{count} stored secret(s) re-encrypted under the newest key ({columns}).")
