"""ZuoraClient: HTTP to Python values and typed errors. No business rules live here.

Follows ../shared/reference/zuora-api.md: one OAuth token shared by all workers (in the database,
refreshed under a lock a minute before expiry and once on a 401), `success: false` on HTTP 200 turned
into errors by reason-code category, Idempotency-Key on writes, a pinned Zuora-Version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from sync.clients.errors import ApiError, AuthError, BusinessError, NotFoundError, TransientError, UnexpectedAnswer
from sync.clients.http import Answer, HttpClient, excerpt, segment
from sync.clients.tokens import shared_token
from sync.locks import one_of
from sync.models import ProviderToken
from sync.parallel import each


class EntityCredentials(Protocol):
    """What the client is handed for one Zuora entity (catalog.models.ZuoraEntity carries it): the client reads
    no model and no database row to learn who it is."""

    pk: Any
    entity_id: str
    client_id: str
    client_secret: str
    max_concurrent_calls: int | None


TRANSIENT_CATEGORIES = {50, 61, 70, 99}  # locking contention, temporary, over a limit, integration
TOKEN_MARGIN = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class OrderResult:
    order_number: str
    account_number: str
    subscription_numbers: list[str]
    status: str


class ZuoraClient(HttpClient):
    provider = "zuora"

    def __init__(
        self,
        base_url: str,
        client_id: str | None,
        client_secret: str | None,
        *,
        timeout: float = 30,
        version: str = "233.0",
        entity_id: str | None = None,
        max_concurrent_calls: int | None = None,
        session=None,
        token_key: str = "zuora",
        slots: str = "zuora-call",
    ):
        super().__init__(base_url, timeout, session)
        self.max_concurrent_calls = max_concurrent_calls
        # Whose token and concurrency slots: the tenant's ("zuora"), or one entity's ("zuora:<id>").
        self.token_key = token_key
        self.slots = slots  # the named semaphore of the concurrency cap (Zuora limits each entity apart)
        self.client_id = client_id
        self.client_secret = client_secret
        self.version = version
        self.entity_id = entity_id
        self._cached: tuple[str, dt.datetime] | None = None

    @classmethod
    def from_settings(cls) -> ZuoraClient:
        return cls(
            settings.ZUORA_BASE_URL,
            settings.ZUORA_CLIENT_ID,
            settings.ZUORA_CLIENT_SECRET,
            timeout=settings.ZUORA_TIMEOUT_SECONDS,
            version=settings.ZUORA_VERSION,
            entity_id=settings.ZUORA_ENTITY_ID,
            max_concurrent_calls=settings.ZUORA_MAX_CONCURRENT_CALLS,
        )

    @classmethod
    def for_entity(cls, entity: EntityCredentials | None) -> ZuoraClient:
        """The client for one Zuora entity: its id in Zuora-Entity-Ids on every call, its own OAuth client
        (or ZUORA_CLIENT_ID's), token and concurrency slots. None: the tenant's client (from_settings)."""
        if entity is None:
            return cls.from_settings()
        own = bool(entity.client_id)
        return cls(
            settings.ZUORA_BASE_URL,
            entity.client_id if own else settings.ZUORA_CLIENT_ID,
            entity.client_secret if own else settings.ZUORA_CLIENT_SECRET,
            timeout=settings.ZUORA_TIMEOUT_SECONDS,
            version=settings.ZUORA_VERSION,
            entity_id=entity.entity_id,
            max_concurrent_calls=entity.max_concurrent_calls or settings.ZUORA_MAX_CONCURRENT_CALLS,
            # A token of the tenant's client covers every entity and is shared; an entity's own is its own.
            token_key=f"zuora:{entity.pk}" if own else "zuora",
            slots=f"zuora-call:{entity.pk}",
        )

    def call_slot(self):
        """One of ZUORA_MAX_CONCURRENT_CALLS slots shared by every worker on every machine: zkbridge stays
        below the tenant's concurrency limit (40 by default), leaving room for other integrations."""
        if not self.max_concurrent_calls:
            return super().call_slot()
        return one_of(self.slots, self.max_concurrent_calls, timeout=max(self.timeout, 30))

    def secrets(self) -> list[str]:
        values = [self.client_secret or ""]
        if self._cached:
            values.append(self._cached[0])
        return values

    # --- tokens -----------------------------------------------------------------------------------
    def auth_headers(self, force_refresh: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.access_token(force_refresh)}", "Zuora-Version": self.version}
        if self.entity_id:
            headers["Zuora-Entity-Ids"] = self.entity_id
        return headers

    def access_token(self, force_refresh: bool = False) -> str:
        """The shared token: reused until a minute before expiry; one worker refreshes, the others wait."""
        now = timezone.now()
        if not force_refresh and self._cached and self._cached[1] - TOKEN_MARGIN > now:
            return self._cached[0]
        used = self._cached[0] if self._cached else None
        self._cached = shared_token(
            self.token_key, exchange=self._exchange, margin=TOKEN_MARGIN, force_refresh=force_refresh, used=used
        )
        return self._cached[0]

    def _exchange(self, row: ProviderToken) -> tuple[str, None, int]:
        token, lifetime = self._fetch_token()
        return token, None, lifetime  # client credentials: no refresh token

    def _fetch_token(self) -> tuple[str, int]:
        if not self.client_id or not self.client_secret:
            raise AuthError("Zuora: ZUORA_CLIENT_ID and ZUORA_CLIENT_SECRET are not set", provider=self.provider)
        answer = self.request(
            "POST",
            "/oauth/token",
            form={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "grant_type": "client_credentials",
            },
            authenticated=False,
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        if not body.get("access_token"):
            raise AuthError(
                f"Zuora: the token answer has no access_token: {excerpt(answer.text)}",
                status=answer.status,
                provider=self.provider,
            )
        return body["access_token"], int(body.get("expires_in") or 3599)

    # --- errors -----------------------------------------------------------------------------------
    def classify(self, answer: Answer) -> ApiError | None:
        status, body = answer.status, answer.body
        reasons = body.get("reasons") if isinstance(body, dict) else None
        first = reasons[0] if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict) else {}
        code = first.get("code")
        message = "; ".join(str(r.get("message")) for r in reasons if isinstance(r, dict)) if reasons else ""
        detail = message or excerpt(answer.text) or "(empty body)"
        kw: dict[str, Any] = {"status": status, "code": code, "excerpt": excerpt(answer.text), "provider": "zuora"}
        if status == 429:
            return TransientError(
                f"Zuora rate or concurrency limit (429): {detail}", retry_after=self.retry_after(answer), **kw
            )
        if status == 401 or (status == 200 and category(code) == 11):
            return AuthError(f"Zuora authentication failed ({status}): {detail}", **kw)
        if status == 403:
            return AuthError(f"Zuora permission denied (403): {detail}", **kw)
        if status == 404:
            return NotFoundError(f"Zuora: not found (404): {detail}", **kw)
        if status == 409:
            return TransientError(
                f"Zuora: the same request is still being processed (409): {detail}",
                retry_after=self.retry_after(answer) or 1.0,
                **kw,
            )
        if status >= 500:
            return TransientError(
                f"Zuora server error ({status}): {detail}", retry_after=self.retry_after(answer), **kw
            )
        if status >= 400:
            cls = TransientError if category(code) in TRANSIENT_CATEGORIES else BusinessError
            return cls(f"Zuora refused the request ({status}): {detail}", **kw)
        xml = "xml" in answer.headers.get("Content-Type", "")  # GET /v1/describe answers XML
        if body is None and answer.text.strip() and not xml:
            return TransientError(f"Zuora answered {status} with a body that is not JSON: {excerpt(answer.text)}", **kw)
        if isinstance(body, dict) and (body.get("success") is False or body.get("Success") is False):
            cat = category(code)
            if cat in TRANSIENT_CATEGORIES:
                return TransientError(f"Zuora temporary error {code}: {detail}", **kw)
            if cat == 40:
                return NotFoundError(f"Zuora: {detail} ({code})", **kw)
            return BusinessError(f"Zuora: {detail} ({code})", **kw)
        return None

    # --- API ---------------------------------------------------------------------------------------
    def catalog_pages(self, page_size: int = 40) -> Iterator[list[dict]]:
        """The product catalog, one page of products at a time (following nextPage), each product with its
        rate plans. From Zuora-Version 230.0 a product's `productRatePlans` is the URL of its rate plans
        ("List all product rate plans of a product"), read here page by page; earlier versions embed them."""
        # One read per product: a page's products are read several at once (within the shared concurrency cap),
        # or 1,000 products would be 1,000 round trips one after another.
        for products in self._pages("/v1/catalog/products", "products", page_size):
            linked = [p for p in products if isinstance(p.get("productRatePlans"), str) and p["productRatePlans"]]

            def read_plans(product: dict) -> list[dict]:
                path = self.relative(product["productRatePlans"])
                return [plan for page in self._pages(path, "productRatePlans", 40) for plan in page]

            for product, outcome in zip(linked, each(linked, read_plans, self.max_concurrent_calls or 1), strict=True):
                product["productRatePlans"] = outcome.get()
            yield products

    def _pages(self, path: str, key: str, page_size: int) -> Iterator[list[dict]]:
        """A paged list (pageSize ≤ 40, nextPage links followed under our base URL)."""
        answer = self.request("GET", path, params={"pageSize": page_size})
        while True:
            body = answer.body if isinstance(answer.body, dict) else {}
            items = body.get(key)
            yield items if isinstance(items, list) else []
            next_page = body.get("nextPage")
            if not next_page:
                return
            answer = self.request("GET", self.relative(next_page))

    def query(
        self, resource: str, filters: list[str] | None = None, *, expand: list[str] | None = None, page_size: int = 50
    ) -> Iterator[dict]:
        """Object Query over all pages: `filters` like ["crmId.EQ:company:1"]."""
        params: list[tuple[str, Any]] = [("pageSize", page_size)]
        params += [("filter[]", f) for f in filters or []]
        params += [("expand[]", e) for e in expand or []]
        while True:
            answer = self.request("GET", f"/object-query/{resource}", params=params)
            body = answer.body or {}
            yield from body.get("data") or []
            cursor = body.get("nextPage")
            if not cursor:
                return
            params = [p for p in params if p[0] != "cursor"] + [("cursor", cursor)]

    def zoql(self, query: str) -> Iterator[dict]:
        """ZOQL over all pages (≤ 2000 records each): for bulk reads such as reconciliation."""
        answer = self.request("POST", "/v1/action/query", json_body={"queryString": query}, read_only=True)
        while True:
            body = answer.body or {}
            yield from body.get("records") or []
            if body.get("done", True) or not body.get("queryLocator"):
                return
            answer = self.request(
                "POST", "/v1/action/queryMore", json_body={"queryLocator": body["queryLocator"]}, read_only=True
            )

    def find_accounts(self, field: str, value: str) -> list[dict]:
        return list(self.query("accounts", [f"{field}.EQ:{value}"]))

    def find_accounts_in(self, field: str, values: list[str], chunk: int = 50) -> dict[str, list[dict]]:
        """The accounts whose `field` holds each of `values` (one query per `chunk` values, `IN`): value →
        its accounts, [] for a value no account carries."""
        found: dict[str, list[dict]] = {value: [] for value in values}
        listable = [v for v in values if v and not set(v) & set(",[]")]  # a value IN's list cannot carry
        for value in set(values) - set(listable):
            found[value] = self.find_accounts(field, value)
        parts = [listable[start : start + chunk] for start in range(0, len(listable), chunk)]

        def look_up(part: list[str]) -> list[dict]:
            return list(self.query("accounts", [f"{field}.IN:[{','.join(part)}]"]))

        if len(parts) > 1:  # a burst's 250 customers are five queries: together (the concurrency cap holds)
            answers = [outcome.get() for outcome in each(parts, look_up, settings.ZUORA_MAX_CONCURRENT_CALLS)]
        else:
            answers = [look_up(part) for part in parts]
        for accounts in answers:
            for account in accounts:
                if str(account.get(field)) in found:
                    found[str(account.get(field))].append(account)
        return found

    def find_subscriptions(self, field: str, value: str) -> list[dict]:
        """Subscriptions whose custom field holds `value`: their current versions only (Zuora keeps every
        earlier version as an Expired record with the same number and custom fields)."""
        return list(
            self.query("subscriptions", [f"{field}.EQ:{value}", "status.NE:Expired"], expand=["account", "rateplans"])
        )

    def get_subscription(self, number: str) -> dict:
        """The subscription's latest version, with its rate plans and their charges (charged-through dates)."""
        return (
            self.request("GET", f"/v1/subscriptions/{segment(number, 'subscription number')}", read_only=True).body
            or {}
        )

    def get_account(self, number: str) -> dict:
        return self.request("GET", f"/object-query/accounts/{segment(number, 'account number')}").body or {}

    def update_account(self, number: str, changes: dict) -> None:
        """PUT the changes (a PUT of the same values is harmless to repeat)."""
        self.request("PUT", f"/v1/accounts/{segment(number, 'account number')}", json_body=changes, read_only=True)

    def update_subscription_fields(self, number: str, version: int, fields: dict) -> None:
        """Custom fields of one subscription version, changed in place (no new version)."""
        self.request(
            "PUT",
            f"/v1/subscriptions/{segment(number, 'subscription number')}/versions/{int(version)}/customFields",
            json_body={"customFields": fields},
            read_only=True,
        )

    def orders_of_subscription(self, number: str) -> list[dict]:
        """The orders that changed a subscription, oldest first."""
        body = self.request("GET", f"/v1/orders/subscription/{segment(number, 'subscription number')}").body or {}
        return sorted(body.get("orders") or [], key=lambda o: (o.get("createdDate") or "", o.get("orderNumber") or ""))

    def delete_order(self, order_number: str) -> None:
        """Undo an order: Zuora rolls every subscription it changed back to the previous version."""
        # Safe to repeat: a second DELETE of a deleted order answers 404, which the caller reads as done.
        self.request("DELETE", f"/v1/orders/{segment(order_number, 'order number')}", read_only=True)

    def create_order(self, order: dict, *, idempotency_key: str, track_id: str | None = None) -> OrderResult:
        headers = {"Zuora-Track-Id": track_id[:64]} if track_id else None
        answer = self.request("POST", "/v1/orders", json_body=order, idempotency_key=idempotency_key, headers=headers)
        return read_order_answer(answer.body, answer.text)

    def preview_order(self, order: dict) -> dict:
        return self.request("POST", "/v1/orders/preview", json_body=order, read_only=True).body or {}

    def import_usage(self, csv_bytes: bytes, file_name: str, *, idempotency_key: str) -> str:
        """Upload a usage CSV; returns the path to poll for its status."""
        answer = self.request(
            "POST", "/v1/usage", files={"file": (file_name, csv_bytes, "text/csv")}, idempotency_key=idempotency_key
        )
        return (answer.body or {}).get("checkImportStatus", "")

    def describe(self, object_name: str) -> dict[str, dict[str, Any]]:
        """The fields of a Zuora object as `GET /v1/describe/{object}` lists them: name → {custom, filterable,
        type}. (Zuora's own XML, read with the standard library's parser: expat refuses entity expansion
        attacks since Python 3.7.1, and the document comes from the configured Zuora only.)"""
        from xml.etree import ElementTree

        if not object_name.isalnum():
            raise ValueError(f"not a Zuora object name: {object_name!r}")
        answer = self.request(
            "GET", f"/v1/describe/{segment(object_name, 'object name')}", headers={"Accept": "text/xml"}
        )
        try:
            root = ElementTree.fromstring(answer.text)
        except ElementTree.ParseError as exc:
            raise TransientError(f"Zuora: the describe answer for {object_name} is not XML ({exc})") from None
        fields: dict[str, dict[str, Any]] = {}
        for node in root.iter("field"):
            name = (node.findtext("name") or "").strip()
            if name:
                fields[name] = {
                    "custom": (node.findtext("custom") or "").strip() == "true",
                    "filterable": (node.findtext("filterable") or "").strip() == "true",
                    "type": (node.findtext("type") or "").strip(),
                }
        return fields

    def usage_import_status(self, status_path: str) -> dict:
        return self.request("GET", status_path).body or {}


# Zuora's order statuses (zuora-sdk's OrderStatus): Pending orders wait for activation or acceptance dates.
ORDER_STATUSES = {"Draft", "Pending", "Completed", "Scheduled", "Executing", "Failed", "Cancelled"}


def read_order_answer(body: Any, text: str = "") -> OrderResult:
    """The create-order answer, read as Zuora documents it; UnexpectedAnswer for one that is not (no order number,
    no account number, an unknown status, numbers that are not strings of a number)."""
    if not isinstance(body, dict):
        raise UnexpectedAnswer(f"Zuora's answer to the order is not an object: {excerpt(text) or '(empty)'}")
    subs = body.get("subscriptions")
    if subs is None:  # Zuora-Version before 223.0 answers subscriptionNumbers
        subs = [{"subscriptionNumber": n} for n in body.get("subscriptionNumbers") or []]
    problems = []
    order_number, account_number, status = body.get("orderNumber"), body.get("accountNumber"), body.get("status")
    if not isinstance(order_number, str) or not order_number:
        problems.append("no order number")
    if not isinstance(account_number, str) or not account_number:
        problems.append("no account number")
    if status not in ORDER_STATUSES:
        problems.append(f"an order status Zuora does not document ({status!r})")
    if status == "Failed":
        problems.append("the order failed")
    if not isinstance(subs, list) or not all(isinstance(s, dict) for s in subs):
        problems.append("subscriptions that are not a list of objects")
        subs = []
    numbers = [s.get("subscriptionNumber") for s in subs]
    if any(not isinstance(n, str) or not n for n in numbers):
        problems.append("a subscription without its number")
    if problems:
        raise UnexpectedAnswer(
            f"Zuora's answer to the order cannot be used ({'; '.join(problems)}): {excerpt(text, 300)}",
            provider="zuora",
        )
    return OrderResult(
        order_number=str(order_number),
        account_number=str(account_number),
        subscription_numbers=[str(n) for n in numbers],
        status=str(status),
    )


def category(code: Any) -> int | None:
    """The 2-digit category at the end of Zuora's 8-digit reason codes."""
    try:
        return int(code) % 100
    except (TypeError, ValueError):
        return None
