"""DRF parsers that turn each machine endpoint's body into the domain value its view works with."""

from __future__ import annotations

from sync.usage import intake
from sync.webhooks import kommo, zuora
from sync.webhooks.base import BoundedParser


class KommoForm(BoundedParser):
    """Kommo's web hook: PHP-style nested form fields → (payload, lead events)."""

    def read(self, body: bytes, media_type: str):
        try:
            return kommo.parse(body)
        except kommo.NotKommoFormat as exc:
            raise ValueError(f"not a Kommo web hook: {exc}") from None


class ZuoraCallout(BoundedParser):
    """A Zuora callout in the JSON template of docs/api.md (flat or nested) → BillingEvent."""

    def read(self, body: bytes, media_type: str):
        try:
            return zuora.parse(body)
        except zuora.BadCallout as exc:
            raise ValueError(f"not a zkbridge callout: {exc}") from None


class UsageRows(BoundedParser):
    """A usage feed: a JSON array, or CSV with Content-Type text/csv → rows to validate one by one."""

    def read(self, body: bytes, media_type: str):
        return intake.read_rows(body, media_type)
