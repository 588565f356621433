"""The HTTP layer both clients share: timeouts, bounded header-aware retries, redacted call logging.

Subclasses say how their API signals errors (`classify`) and how they authenticate (`auth_headers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests
import simplejson
from django.conf import settings
from django.db import connection

from sync.clients.errors import ApiError, AuthError, BusinessError, TransientError
from sync.context import check_lease, current_record_id
from sync.models import ApiCall

log = logging.getLogger("zkbridge.clients")


SECRET_KEYS = re.compile(r"(token|secret|password|authorization|api[_-]?key|client_id|code$)", re.I)
MAX_LOGGED_BODY = 10_000
# The longest wait we spend inside one call; longer Retry-After values go back to the sync record.
MAX_INLINE_WAIT = 5.0
USER_AGENT = "zkbridge/1 (+https://github.com/zkbridge/zkbridge)"


def inside_transaction() -> bool:
    """True while a transaction.atomic block of ours is open (the test runner's own wrapping excluded)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def refuse_inside_transaction(provider: str, method: str, url: str) -> None:
    """No database transaction spans an HTTP call: it would hold locks for as long as the API takes, and
    a rollback would erase this call's log. The tests turn a breach into a failure; production logs it."""
    if not inside_transaction():
        return
    message = f"{provider} {method} {url} called inside a database transaction"
    if settings.ZKBRIDGE_FORBID_HTTP_IN_TRANSACTIONS:
        raise AssertionError(message)
    log.error(message)


def redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if SECRET_KEYS.search(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_text(text: str | bytes | None, content_type: str = "") -> str:
    """A body as safe to store: JSON and form values under secret-looking keys replaced by ***."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    try:  # numbers kept as they were written (0.10 stays 0.10): the log shows what crossed the wire
        return encode_json(redact(json.loads(text, parse_float=Decimal)))[:MAX_LOGGED_BODY]
    except ValueError:
        pass
    if "=" in text and ("form" in content_type or re.fullmatch(r"[\w%.\-\[\]]+=[^\s]*", text)):
        pairs = parse_qsl(text, keep_blank_values=True)
        return urlencode([(k, "***" if SECRET_KEYS.search(k) else v) for k, v in pairs])[:MAX_LOGGED_BODY]
    return text[:MAX_LOGGED_BODY]


def encode_json(value: Any) -> str:
    """JSON as the vendors' schemas want it: a Decimal (money, quantities, tier bounds) goes out as a JSON number
    with exactly its digits — never a string, never through a float."""
    return simplejson.dumps(value, use_decimal=True, ensure_ascii=False)


# What Zuora's account, subscription and order numbers may look like (tenants choose prefixes; Zuora's order
# number "must not contain a slash"): letters, digits and - _ . only, at most 100, never a dot segment.
NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def segment(value: object, what: str) -> str:
    """A value from outside (a callout, a record, an answer) as one path segment: checked against Zuora's shapes,
    then quoted. BusinessError (the reason goes on the record) for anything else."""
    text = str(value or "")
    if not NUMBER.match(text) or text in (".", ".."):
        raise BusinessError(f"{excerpt(text, 60)!r} is not a Zuora {what}: nothing was sent")
    return quote(text, safe="")


def excerpt(text: str, limit: int = 200) -> str:
    flat = re.sub(r"\s+", " ", text or "").strip()
    return flat[:limit] + ("…" if len(flat) > limit else "")


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or None for an empty body
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    text: str


class HttpClient:
    provider = "http"

    def __init__(self, base_url: str, timeout: float, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.max_tries = 3

    # --- hooks for subclasses ---------------------------------------------------------------------
    def auth_headers(self, force_refresh: bool = False) -> dict[str, str]:
        return {}

    def classify(self, answer: Answer) -> ApiError | None:
        raise NotImplementedError

    def before_request(self) -> Any:
        """Called before every attempt (the Kommo throttle); what it returns is handed to after_request."""
        return None

    def after_request(self, turn: Any) -> None:
        """Called when an attempt is over, answered or not."""

    def call_slot(self) -> contextlib.AbstractContextManager:
        """Held while one call is on the wire (Zuora's shared cap on concurrent calls)."""
        return contextlib.nullcontext()

    def secrets(self) -> list[str]:
        """Values that must never be written to a log row, whatever key they hide under."""
        return []

    # --- the request loop ---------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | list | None = None,
        json_body: Any = None,
        form: dict | None = None,
        files: dict | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        authenticated: bool = True,
        read_only: bool = False,
    ) -> Answer:
        """Send one logical request; retry only what is safe to repeat, within a short bounded wait.

        Safe: GETs, writes carrying an Idempotency-Key, and POSTs that only read (`read_only`: queries)."""
        url = self.url_of(path)
        safe = method == "GET" or idempotency_key is not None or read_only
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            send_headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
            if authenticated:
                send_headers.update(self.auth_headers(force_refresh=refreshed))
            if idempotency_key:
                send_headers["Idempotency-Key"] = idempotency_key
            try:
                answer = self._send(method, url, params, json_body, form, files, send_headers, idempotency_key)
            except TransientError as exc:  # timeout or connection error: retry only if repeatable
                if safe and attempt < self.max_tries:
                    time.sleep(self._backoff(attempt))
                    continue
                raise exc
            error = self.classify(answer)
            if error is None:
                return answer
            if isinstance(error, AuthError) and authenticated and not refreshed and error.status == 401:
                refreshed = True  # one new token, then a real failure
                continue
            retry_ok = safe or answer.status == 429  # a 429 was not processed: repeating it is safe
            if isinstance(error, TransientError) and retry_ok and attempt < self.max_tries:
                wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
                if wait <= MAX_INLINE_WAIT:
                    time.sleep(wait)
                    continue
            raise error

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(0.25 * (2 ** (attempt - 1)), MAX_INLINE_WAIT)

    def _send(self, method, url, params, json_body, form, files, headers, idempotency_key) -> Answer:
        refuse_inside_transaction(self.provider, method, url)
        check_lease(method)
        turn = self.before_request()
        try:
            return self._attempt(method, url, params, json_body, form, files, headers, idempotency_key)
        finally:
            self.after_request(turn)

    def _attempt(self, method, url, params, json_body, form, files, headers, idempotency_key) -> Answer:
        started = time.monotonic()
        call = ApiCall(
            provider=self.provider,
            method=method,
            path=self._loggable_path(url, params),
            idempotency_key=idempotency_key or "",
            sync_record_id=current_record_id.get(),
        )
        payload = encode_json(json_body).encode() if json_body is not None else None
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json"}
            call.request_body = self._scrub(redact_text(payload))
        elif form is not None:
            call.request_body = self._scrub(redact_text(urlencode(form), "form"))
        elif files:
            call.request_body = "; ".join(f"<file {name}: {f[0]}, {len(f[1])} bytes>" for name, f in files.items())
        try:
            with self.call_slot():
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    data=payload if payload is not None else form,
                    files=files,
                    headers=headers,
                    timeout=self.timeout,
                )
        except requests.Timeout as exc:
            self._log(call, started, error=f"timeout after {self.timeout}s")
            raise TransientError(
                f"{self.provider}: no answer within {self.timeout}s ({method} {call.path})", provider=self.provider
            ) from exc
        except requests.RequestException as exc:
            self._log(call, started, error=f"connection error: {excerpt(str(exc), 300)}")
            raise TransientError(
                f"{self.provider}: connection failed ({method} {call.path}): {excerpt(str(exc))}",
                provider=self.provider,
            ) from exc
        text = response.text
        body = None
        if text.strip():
            try:
                body = response.json()
            except ValueError:
                body = None
        call.status = response.status_code
        call.request_id = response.headers.get("Zuora-Request-Id", "")[:100]
        call.response_body = self._scrub(redact_text(text, response.headers.get("Content-Type", "")))
        self._log(call, started)
        return Answer(response.status_code, body, response.headers, text)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets():
            if secret and len(secret) >= 6:
                text = text.replace(secret, "***")
        return text

    def url_of(self, path: str) -> str:
        """The URL for a path under the base URL. A path with dot segments, or an absolute URL (a paging link) that
        leaves the base URL, is refused: nothing from an answer or a callout can send a request (and its bearer
        token) elsewhere."""
        parts = urlsplit(path)
        if parts.scheme or parts.netloc:  # an absolute link: only one under our base URL
            base = urlsplit(self.base_url)
            if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not parts.path.startswith(base.path):
                raise BusinessError(
                    f"{self.provider}: refused to follow {excerpt(path, 120)}: not under {self.base_url}"
                )
            path = self.relative(path)
        if not path.startswith("/"):
            raise BusinessError(f"{self.provider}: refused the path {excerpt(path, 120)}: not an API path")
        segments = unquote(urlsplit(path).path).split("/")
        if any(s in (".", "..") for s in segments) or "\\" in path:
            raise BusinessError(f"{self.provider}: refused the path {excerpt(path, 120)}: it would leave the API")
        return f"{self.base_url}{path}"

    def relative(self, link: str) -> str:
        """A link as a path under our base URL. Paging links are followed this way, so an answer can
        never send us to another host (the base URL comes from configuration only)."""
        parts = urlsplit(link)
        path = parts.path
        base_path = urlsplit(self.base_url).path
        if base_path and path.startswith(base_path):
            path = path[len(base_path) :]
        return f"{path}?{parts.query}" if parts.query else path

    def _loggable_path(self, url: str, params: Any) -> str:
        path = self.relative(url)
        if params and "?" not in path:
            path = f"{path}?{urlencode(params, doseq=True)}"
        return self._scrub(path)[:500]

    def _log(self, call: ApiCall, started: float, error: str = "") -> None:
        call.duration_ms = int((time.monotonic() - started) * 1000)
        call.error = error[:500]
        try:
            call.save()
        except Exception:  # the log must never break the call it describes
            log.exception("could not store the ApiCall row")

    @staticmethod
    def retry_after(answer: Answer) -> float | None:
        value = answer.headers.get("Retry-After")
        try:
            return max(float(value), 0.0) if value is not None else None
        except ValueError:
            return None
