"""How each machine endpoint knows its caller, as DRF authentication classes.

- Kommo web hooks: the secret token in the URL (Kommo does not sign its web hooks). A wrong token answers
  404, as if the URL did not exist, and nothing is stored.
- Zuora callouts: HTTP Basic credentials (challenged with WWW-Authenticate, as Zuora performs it), and an
  HMAC-SHA256 signature of the body when ZUORA_CALLOUT_HMAC_KEY is set.
- Usage feeds: DRF's token authentication (`Authorization: Token <key>`), configured in settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from rest_framework.authentication import BaseAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotFound, Throttled

from sync import counters
from sync.installation import token_accepted
from sync.webhooks import zuora
from zkbridge.network import client_address

log = logging.getLogger("zkbridge.webhooks")
CHALLENGE = 'Basic realm="zkbridge Zuora callouts", charset="UTF-8"'


def failed_attempt(request) -> None:
    """A failed authentication: counted against the address, and answered 429 once the address has failed
    too often this minute. Only failures are judged, so a caller that knows its secret (Kommo, Zuora, the
    usage feed) is never slowed, even when it shares an address (a proxy) with someone guessing."""
    if counters.value(_failures_key(request)) >= settings.ZKBRIDGE_AUTH_FAILURES_PER_MINUTE:
        raise Throttled(wait=60, detail="too many failed attempts from this address; try again in a minute")
    counters.bump(_failures_key(request), 60)


def _failures_key(request) -> str:
    return f"zkbridge:auth-failures:{client_address(request)}"


@dataclass(frozen=True)
class Machine:
    """The caller of a machine endpoint (not a Django user)."""

    name: str
    is_authenticated: bool = True


class KommoWebhookToken(BaseAuthentication):
    def authenticate(self, request):
        token = str(request.parser_context.get("kwargs", {}).get("token", ""))
        if not token_accepted(token):
            failed_attempt(request)
            raise NotFound("not found")
        return Machine("kommo"), None


class ZuoraCalloutCredentials(BaseAuthentication):
    def authenticate(self, request):
        username, password = settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD
        if username and password:
            given = request.headers.get("Authorization", "")
            if not zuora.credentials_match(given, username, password):
                if given:  # the first, credential-less request is Zuora's challenge round, not a failure
                    failed_attempt(request)
                raise AuthenticationFailed("credentials missing or wrong")
        elif not settings.ZKBRIDGE_SANDBOX:
            log.warning("Zuora callout refused: ZUORA_CALLOUT_USERNAME and ZUORA_CALLOUT_PASSWORD are not set")
            raise AuthenticationFailed(
                "callouts are refused until ZUORA_CALLOUT_USERNAME and ZUORA_CALLOUT_PASSWORD are set"
            )
        return Machine("zuora"), None

    def authenticate_header(self, request) -> str:
        return CHALLENGE


def require_signature(request, body: bytes) -> None:
    """With ZUORA_CALLOUT_HMAC_KEY set, the body's signature must be in ZUORA_CALLOUT_HMAC_HEADER."""
    if not settings.ZUORA_CALLOUT_HMAC_KEY:
        return
    signature = request.headers.get(settings.ZUORA_CALLOUT_HMAC_HEADER, "")
    if not signature or not zuora.signature_valid(body, signature, settings.ZUORA_CALLOUT_HMAC_KEY):
        failed_attempt(request)
        raise AuthenticationFailed(f"{settings.ZUORA_CALLOUT_HMAC_HEADER} signature missing or wrong")


class UsageFeedToken(TokenAuthentication):
    """DRF's token authentication (`Authorization: Token <key>`) against hashed keys (sync.models.ApiToken), with
    failed attempts counted per address like the others."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            failed_attempt(request)
            raise

    def authenticate_credentials(self, key):
        from django.utils import timezone

        from sync.models import ApiToken

        token = ApiToken.objects.select_related("user").filter(digest=ApiToken.digest_of(key)).first()
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("Invalid token.")
        if token.last_used is None or (timezone.now() - token.last_used).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used=timezone.now())  # (at most a write a minute)
        return token.user, token
