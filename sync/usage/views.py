"""POST /api/usage/: a usage feed's JSON array or CSV, token-authenticated, idempotent on unique_key."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from sync.usage import intake
from sync.webhooks import schema
from sync.webhooks.base import MachineEndpoint
from sync.webhooks.parsers import UsageRows


class UsageFeedView(MachineEndpoint):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [UsageRows]

    @schema.usage_feed
    def post(self, request: Request) -> Response:
        result = intake.accept(self.received().judged())
        return Response(
            {"accepted": result.accepted, "duplicates": result.duplicates, "rejected": result.rejected}, status=202
        )
