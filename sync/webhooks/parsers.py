"""DRF parsers that turn each machine endpoint's body into the domain value its view works with."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from rest_framework.parsers import BaseParser

from sync.usage import intake
from sync.webhooks import kommo, zuora
from sync.webhooks.base import BoundedParser, refuse_declared_over


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


class UsageStream(BaseParser):
    """A usage feed, not read here: the view reads its rows as they arrive (UsageBody), so a body of a
    million rows never sits in memory. A declared length over ZKBRIDGE_MAX_USAGE_BODY_BYTES is refused
    (413) before anything is read; an undeclared one when it gets there."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None) -> UsageBody:  # type: ignore[override]
        limit = settings.ZKBRIDGE_MAX_USAGE_BODY_BYTES or settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        refuse_declared_over(limit, parser_context)
        return UsageBody(stream, media_type or "", limit)


class UsageBody:
    """A usage body as it streams in: its chunks (counted against the limit) and the first 64 KB kept for
    the admin's inbox in case the body is refused."""

    CHUNK = 256 * 1024
    HEAD = 64 * 1024

    def __init__(self, stream, media_type: str, limit: int):
        self.stream = stream
        self.media_type = media_type
        self.limit = limit
        self.head = b""
        self.size = 0
        # The whole body, gzip-compressed as it streams (kept for a replay; a tenth of the body or less).
        self._packer = zlib.compressobj(1, zlib.DEFLATED, 31)
        self._packed: list[bytes] = []
        self._digest = hashlib.sha256()

    def chunks(self) -> Iterator[bytes]:
        while self.stream is not None:
            chunk = self.stream.read(self.CHUNK)
            if not chunk:
                return
            self.size += len(chunk)
            if self.size > self.limit:
                raise intake.TooLarge(f"body larger than {self.limit} bytes")
            if len(self.head) < self.HEAD:
                self.head += chunk[: self.HEAD - len(self.head)]
            self._packed.append(self._packer.compress(chunk))
            self._digest.update(chunk)
            yield chunk

    def packed(self) -> tuple[bytes, str]:
        """What was read of the body, gzip-compressed, and its SHA-256 (call once, after reading)."""
        self._packed.append(self._packer.flush())
        return b"".join(self._packed), self._digest.hexdigest()

    def rows(self) -> Iterator[Any]:
        return intake.rows_of(self.chunks(), self.media_type)
