"""The OpenAPI description of zkbridge's machine endpoints (served at /api/schema/, browsable at /api/docs/).

The views validate bodies themselves (Kommo's form, Zuora's callout template, usage rows); the
serializers here describe those bodies for the document, so that it is generated from the code and
an API client (or a schema-driven fuzzer) sees what the views accept and answer.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers

from sync.usage.intake import COLUMNS


class ErrorAnswer(serializers.Serializer):
    error = serializers.CharField(help_text="What was wrong, in words")


class KommoWebhookAnswer(serializers.Serializer):
    ok = serializers.BooleanField()
    won = serializers.IntegerField(required=False, help_text="Leads in the body that moved to the Won status")
    new_records = serializers.IntegerField(required=False, help_text="Sync records created by this delivery")
    changes = serializers.IntegerField(
        required=False,
        help_text="Plan change, cancellation and reopening records created for deals zkbridge billed",
    )
    previews = serializers.IntegerField(
        required=False,
        help_text="Quote preview records created for leads in a preview stage (KOMMO_PREVIEW_STATUS_IDS)",
    )
    duplicate = serializers.BooleanField(required=False, help_text="The same body arrived before; nothing new")


class CalloutBody(serializers.Serializer):
    eventType = serializers.CharField(  # noqa: N815 - Zuora's own field names
        help_text="PaymentProcessed, PaymentProcessingError (PaymentDeclined), SubscriptionCanceled "
        "(SubscriptionCancelled), SubscriptionRenewed, ContractRenewalReminder; others are stored as ignored"
    )
    accountNumber = serializers.CharField(required=False, help_text="<Account.AccountNumber>")  # noqa: N815
    crmId = serializers.CharField(required=False, help_text="<Account.CrmId>")  # noqa: N815
    subscriptionNumber = serializers.CharField(required=False, help_text="<Subscription.Name>")  # noqa: N815
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, required=False, help_text="<Payment.Amount>")
    currency = serializers.CharField(required=False, min_length=3, max_length=3, help_text="<Account.Currency>")


class CalloutAnswer(serializers.Serializer):
    ok = serializers.BooleanField()
    event = serializers.CharField(required=False, help_text="The event type as zkbridge understood it")
    known = serializers.BooleanField(required=False, help_text="False: stored, but no rule acts on it")
    duplicate = serializers.BooleanField(required=False)


class UsageRow(serializers.Serializer):
    subscription_number = serializers.CharField(required=False, max_length=50, help_text="or kommo_lead_id")
    kommo_lead_id = serializers.IntegerField(required=False, min_value=1, help_text="or subscription_number")
    uom = serializers.CharField(max_length=50, help_text="Zuora unit of measure, e.g. 'API call'")
    quantity = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=0)
    start_date = serializers.DateField()
    end_date = serializers.DateField(required=False)
    unique_key = serializers.CharField(max_length=100, help_text="Makes the post idempotent")
    description = serializers.CharField(required=False, max_length=200)


class UsageRejection(serializers.Serializer):
    index = serializers.IntegerField(help_text="Position of the row in the body (0-based)")
    unique_key = serializers.CharField(allow_blank=True)
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]  # a field named errors


class UsageAnswer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = UsageRejection(many=True)


class UsageTokenAuth(OpenApiAuthenticationExtension):
    target_class = "sync.webhooks.auth.UsageFeedToken"
    name = "usageToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`; create one with `python manage.py drf_create_token <user>`",
        }


def errors(**described: str) -> dict[int, OpenApiResponse]:
    """Error answers, each an {"error": …} body: errors(e400="…", e413="…")."""
    return {int(code[1:]): OpenApiResponse(ErrorAnswer, description=text) for code, text in described.items()}


TOO_LARGE = "Body larger than ZKBRIDGE_MAX_BODY_BYTES"

kommo_webhook = extend_schema(
    operation_id="kommo_webhook",
    summary="Kommo web hook (lead status changes)",
    description="Form-encoded exactly as Kommo sends it (`leads[status][0][id]=…`). Stored, de-duplicated and "
    "answered at once; won leads become sync records worked on by the workers. A wrong token stores nothing.",
    parameters=[
        OpenApiParameter(
            "token",
            OpenApiTypes.STR,
            OpenApiParameter.PATH,
            description="KOMMO_WEBHOOK_TOKEN (`python manage.py kommo_webhook` prints the URL)",
        )
    ],
    request={"application/x-www-form-urlencoded": OpenApiTypes.OBJECT},
    auth=[],
    responses={
        200: KommoWebhookAnswer,
        **errors(e400="Not Kommo's web hook format", e404="Wrong token", e413=TOO_LARGE),
    },
    examples=[
        OpenApiExample(
            "A lead moved to Won",
            value="leads[status][0][id]=24312345&leads[status][0][status_id]=142&leads[status][0][pipeline_id]=4520110",
            request_only=True,
            media_type="application/x-www-form-urlencoded",
        )
    ],
    tags=["web hooks"],
)

zuora_callout = extend_schema(
    operation_id="zuora_callout",
    summary="Zuora HTTP callout (billing events)",
    description="The JSON body template of the configuration docs (the nested form `{eventType, Account: {…}, "
    "Payment: {…}, Subscription: {…}}` is accepted too). `Zuora-Notification-Id` de-duplicates retries. With "
    "ZUORA_CALLOUT_HMAC_KEY set, the body's HMAC-SHA256 must be in ZUORA_CALLOUT_HMAC_HEADER.",
    parameters=[
        OpenApiParameter("Zuora-Notification-Id", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False),
    ],
    request={"application/json": CalloutBody},
    auth=[{"zuoraCalloutBasic": []}],  # type: ignore[list-item]  # drf-spectacular accepts requirement objects
    responses={
        200: CalloutAnswer,
        **errors(e400="A body zkbridge cannot read", e401="Credentials or signature missing or wrong", e413=TOO_LARGE),
    },
    tags=["web hooks"],
)

usage_feed = extend_schema(
    operation_id="usage_feed",
    summary="Usage records (JSON array or CSV)",
    description=f"A JSON array of rows, or CSV with the header `{','.join(COLUMNS)}` (Content-Type: text/csv). "
    "Each row is accepted, recognised as a duplicate of its unique_key, or rejected with its reasons; "
    "accepted rows go to Zuora as usage imports.",
    request={"application/json": UsageRow(many=True), "text/csv": OpenApiTypes.STR},
    responses={
        202: UsageAnswer,
        **errors(e400="The body as a whole cannot be read", e401="Token missing or wrong", e413=TOO_LARGE),
    },
    tags=["usage"],
)


def add_plain_endpoints(result, generator, request, public):
    """Post-processing hook: /healthz and /metrics are plain Django views; describe them too."""
    paths = result.setdefault("paths", {})
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Health: database, queue, last sync and web hooks",
            "tags": ["operations"],
            "security": [{}],
            "responses": {
                "200": {"description": "Healthy", "content": {"application/json": {"schema": {"type": "object"}}}},
                "503": {"description": "The database cannot be reached"},
            },
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics (loopback, or Authorization: Bearer ZKBRIDGE_METRICS_TOKEN)",
            "tags": ["operations"],
            "security": [{}],
            "responses": {
                "200": {"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}},
                "403": {"description": "Not from the machine itself and no valid bearer token"},
            },
        }
    }
    return result
