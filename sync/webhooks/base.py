"""What every machine endpoint shares: a body read within ZKBRIDGE_MAX_BODY_BYTES by a DRF parser that
hands the view a domain value (or the body's problem), and one shape for every error answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.views import APIView


class BodyTooLarge(APIException):
    status_code = 413
    default_code = "body_too_large"

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(f"body larger than {limit or settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")


@dataclass(frozen=True)
class Received:
    """A body as it arrived and what the endpoint's reader made of it (or why it could not)."""

    body: bytes
    value: Any = None
    problem: str = ""

    def judged(self) -> Any:
        """The value; a body the reader refused is a 400 with its words. Views call this once they have
        checked everything that must come first (a callout's signature)."""
        if self.problem:
            raise ParseError(self.problem)
        return self.value


def refuse_declared_over(limit: int, parser_context: dict | None) -> None:
    """413 before anything is read when the request declares a length over `limit`."""
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and str(declared).isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)


class BoundedParser(BaseParser):
    """Reads the whole body, refusing one larger than ZKBRIDGE_MAX_BODY_BYTES (413) before reading it all,
    then lets `read` turn it into a domain value; a ValueError from `read` is kept as the body's problem."""

    media_type = "*/*"  # the readers judge the content themselves (a wrong content type is a bad body)

    def parse(self, stream, media_type=None, parser_context=None) -> Received:  # type: ignore[override]
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        refuse_declared_over(limit, parser_context)
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise BodyTooLarge()
        try:
            return Received(body, self.read(body, media_type or ""))
        except ValueError as exc:
            return Received(body, problem=str(exc))

    def read(self, body: bytes, media_type: str) -> Any:
        raise NotImplementedError


class MachineEndpoint(APIView):
    """A machine endpoint: JSON answers, `{"error": …}` on every refusal, no session or CSRF."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        detail = getattr(response, "data", None)
        if isinstance(detail, dict) and "detail" in detail:
            response.data = {"error": str(detail["detail"])}
        return response

    def received(self) -> Received:
        data = self.request.data
        if not isinstance(data, Received):  # an empty body: no parser ran
            raise ParseError("the body is empty")
        return data
