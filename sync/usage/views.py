"""POST /api/usage/: a usage feed's JSON array or CSV, token-authenticated, idempotent on unique_key."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sync.usage import intake
from sync.usage.models import UsageDelivery
from sync.webhooks import schema
from sync.webhooks.auth import UsageFeedToken
from sync.webhooks.base import MachineEndpoint
from sync.webhooks.inbox import body_hash, storable_text, store_event
from sync.webhooks.parsers import UsageBody, UsageStream
from zkbridge.network import client_address


class UsageFeedView(MachineEndpoint):
    authentication_classes = [UsageFeedToken]
    permission_classes = [IsAuthenticated]
    parser_classes = [UsageStream]

    @schema.usage_feed
    def post(self, request: Request) -> Response:
        body = request.data
        if not isinstance(body, UsageBody):  # an empty body: no parser ran
            raise ParseError("the body is empty")
        result = intake.accept(body.rows())
        keep(request, body, result)
        answer: dict[str, Any] = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
        }
        if result.rejected_total > len(result.rejected):  # the list names the first ones; the total counts all
            answer["rejected_total"] = result.rejected_total
        if result.problem is None:
            return Response(answer, status=202)
        # The body stopped being readable: refused with its words, kept (its first 64 KB) for the admin's
        # inbox. Rows read before that point are stored and counted in the answer: sending the corrected
        # body again is safe (unique_key).
        problem = str(result.problem)
        read = result.accepted + result.duplicates + result.rejected_total
        store_event("usage", request, body_hash(body.head), body.head, problem=problem)
        status = 413 if isinstance(result.problem, intake.TooLarge) else 400
        return Response({"error": problem, **answer} if read else {"error": problem}, status=status)


def keep(request: Request, body: UsageBody, result: intake.Intake) -> None:
    """The body as sent (gzip) and what was made of it: evidence, and a replay, for a disputed import."""
    packed, digest = body.packed()
    UsageDelivery.objects.create(
        feed=str(getattr(request.user, "username", "") or "")[:150],
        remote_addr=client_address(request) or None,
        content_type=storable_text(body.media_type, 100),
        size=body.size,
        sha256=digest,
        body_gzip=packed,
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=result.rejected_total,
        problem=storable_text(str(result.problem or ""), 2000),
    )
