"""POST /api/usage/: a usage feed's JSON array or CSV, token-authenticated, idempotent on unique_key."""

from __future__ import annotations

from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sync.usage import intake
from sync.webhooks import schema
from sync.webhooks.auth import UsageFeedToken
from sync.webhooks.base import MachineEndpoint
from sync.webhooks.inbox import body_hash, store_event
from sync.webhooks.parsers import UsageRows


class UsageFeedView(MachineEndpoint):
    authentication_classes = [UsageFeedToken]
    permission_classes = [IsAuthenticated]
    parser_classes = [UsageRows]

    @schema.usage_feed
    def post(self, request: Request) -> Response:
        received = self.received()
        if received.problem:  # a body refused whole is kept for the admin's inbox (accepted rows are records)
            store_event("usage", request, body_hash(received.body), received.body, problem=received.problem)
        result = intake.accept(received.judged())
        return Response(
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}, status=202
        )
