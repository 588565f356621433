"""DRF parsers that turn each machine endpoint's body into the domain value its view works with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sync.usage import intake
from sync.webhooks import kommo, zuora
from sync.webhooks.base import BoundedParser


def reading(reader: Callable[..., Any], refusal: type[Exception], what: str, *args: Any) -> Any:
    """The reader's value; its refusal becomes the body's problem (a ValueError), prefixed with `what`."""
    try:
        return reader(*args)
    except refusal as exc:
        raise ValueError(f"{what}: {exc}" if what else str(exc)) from None


class KommoForm(BoundedParser):
    """Kommo's web hook: PHP-style nested form fields → (payload, lead events)."""

    def read(self, body: bytes, media_type: str):
        return reading(kommo.parse, kommo.NotKommoFormat, "not a Kommo web hook", body)


class ZuoraCallout(BoundedParser):
    """A Zuora callout in the JSON template of docs/api.md (flat or nested) → BillingEvent."""

    def read(self, body: bytes, media_type: str):
        return reading(zuora.parse, zuora.BadCallout, "not a zkbridge callout", body)


class UsageRows(BoundedParser):
    """A usage feed: a JSON array, or CSV with Content-Type text/csv → rows to validate one by one."""

    def read(self, body: bytes, media_type: str):
        return reading(intake.read_rows, intake.BadFeed, "", body, media_type)
