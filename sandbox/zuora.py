"""A Zuora REST API emulator that follows ../shared/reference/zuora-api.md (not zkbridge's client).

Served under /sandbox/zuora/. Covers OAuth client credentials, the product catalog with pagination,
POST /v1/orders (account + subscription atomically, with Zuora's validation) and its preview, Object
Query with filters and cursors, usage CSV imports with status polling, Idempotency-Key replay /
409 / 422, HTTP 200 `success: false` with 8-digit reason codes, and injected faults.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from functools import wraps
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone

from sandbox.common import emulated, get_setting, process, sleep_then
from sandbox.models import (
    CURRENT_ENTITY,
    Fault,
    ZEntity,
    ZIdempotency,
    ZProduct,
    ZRatePlan,
    ZToken,
)

PREFIX = "/sandbox/zuora"
ORDERS = 531003  # resource code used for order errors (code = resource * 100 + category)


class Reject(Exception):
    """A Zuora business/validation error: HTTP 200 (or the given status) with success: false."""

    def __init__(self, category: int, message: str, status: int = 200, resource: int = ORDERS):
        super().__init__(message)
        self.code = resource * 100 + category
        self.message = message
        self.status = status


def failure(code: int, message: str, status: int = 200) -> JsonResponse:
    return JsonResponse(
        {"success": False, "processId": secrets.token_hex(8).upper(), "reasons": [{"code": code, "message": message}]},
        status=status,
    )


def _fault_response(fault: Fault, request: HttpRequest) -> HttpResponse | None:
    if fault.kind == "http500":
        return failure(90000060, "Internal Server Error", status=500)
    if fault.kind == "http502":
        return HttpResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", status=502, content_type="text/html")
    if fault.kind == "http503":
        return HttpResponse("Service Unavailable", status=503, content_type="text/plain")
    if fault.kind == "http429":
        response = failure(90000070, "You have exceeded the rate limit. Try again later.", status=429)
        response["Retry-After"] = str(fault.retry_after)
        response["ratelimit-limit"] = "2500"
        response["ratelimit-remaining"] = "0"
        response["ratelimit-reset"] = str(fault.retry_after)
        return response
    if fault.kind == "timeout":
        return sleep_then(fault, HttpResponse("Gateway Timeout", status=504, content_type="text/plain"))
    if fault.kind == "success_false":
        return failure(fault.reason_code, fault.reason_message)
    if fault.kind == "unauthorized":
        return failure(90000011, "Authentication error", status=401)
    if fault.kind == "answer":  # an HTTP 200 whose body is `reason_message` as given (answers zkbridge must survive)
        return HttpResponse(fault.reason_message, status=200, content_type="application/json")
    return None


def _authenticate(request: HttpRequest) -> HttpResponse | None:
    request.zuora_entity = None  # type: ignore[attr-defined]
    if request.path == f"{PREFIX}/oauth/token":
        return None
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    found = ZToken.objects.filter(token=token, expires_at__gt=timezone.now()).first() if token else None
    if found is None:
        return failure(90000011, "Authentication error", status=401)
    return _choose_entity(request, found)


def _choose_entity(request: HttpRequest, token: ZToken) -> HttpResponse | None:
    """A multi-entity tenant: the request works in its token's one entity, or in the entity its
    Zuora-Entity-Ids header names (required when the token covers several); never in one it does not cover."""
    covered = list(token.entities.all())
    named = request.headers.get("Zuora-Entity-Ids", "").strip()
    if not covered:  # a tenant without entities (or a token from before they existed)
        if named and ZEntity.objects.exists():
            return failure(90000011, f"The token does not cover entity {named}", status=401)
        return None
    if not named:
        if len(covered) > 1:
            return failure(
                90000020, "This token covers several entities: the Zuora-Entity-Ids header is required", status=400
            )
        request.zuora_entity = covered[0]  # type: ignore[attr-defined]
        return None
    if "," in named:
        return failure(90000020, "Zuora-Entity-Ids must name one entity for this call", status=400)
    entity = next((e for e in covered if e.entity_id == named), None)
    if entity is None:
        return failure(90000011, f"The token does not cover entity {named}", status=401)
    request.zuora_entity = entity  # type: ignore[attr-defined]
    return None


def zuora_view(view):
    @wraps(view)
    def in_entity(request: HttpRequest, *args, **kwargs):
        scope = CURRENT_ENTITY.set(getattr(request, "zuora_entity", None))
        try:
            return view(request, *args, **kwargs)
        finally:
            CURRENT_ENTITY.reset(scope)

    in_entity.manages_transactions = getattr(view, "manages_transactions", False)  # type: ignore[attr-defined]
    return emulated("zuora", PREFIX, _fault_response, _authenticate)(in_entity)


def idempotent(view):
    """Zuora's Idempotency-Key: store the answer for 24 h; replay it, 409 while running, 422 on misuse.

    As Zuora does, the key is reserved (committed) before the work starts, so a duplicate that arrives
    while the first request is still being processed gets a 409 at once rather than waiting for it."""

    def wrapper(request: HttpRequest, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if not key:
            return process(view, request, *args, **kwargs)
        if len(key) > 255:
            return failure(90000020, "Idempotency-Key must be at most 255 characters", status=400)
        entity = CURRENT_ENTITY.get()
        if entity is not None:  # each entity keeps its own keys
            key = f"{entity.entity_id}/{key}"[:255]
        cutoff = timezone.now() - dt.timedelta(hours=24)
        ZIdempotency.objects.filter(key=key, created__lt=cutoff).delete()
        try:
            with transaction.atomic():
                ZIdempotency.objects.create(key=key, method=request.method, path=request.path)
        except IntegrityError:
            seen = ZIdempotency.objects.get(key=key)
            if seen.method != request.method or seen.path != request.path:
                return failure(90000020, "Idempotency-Key was used with another URL or method", status=422)
            if not seen.done:
                return failure(90000050, "A request with this Idempotency-Key is still being processed", status=409)
            response = JsonResponse(seen.body, status=seen.status, safe=False)
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            response = process(view, request, *args, **kwargs)
        except BaseException:
            ZIdempotency.objects.filter(key=key, done=False).delete()  # nothing was done: the key is free again
            raise
        try:
            stored = json.loads(response.content)
        except ValueError:
            stored = {"raw": response.content.decode("utf-8", "replace")}
        ZIdempotency.objects.filter(key=key).update(done=True, status=response.status_code, body=stored)
        return response

    wrapper.manages_transactions = True  # type: ignore[attr-defined]
    return wrapper


# --- OAuth -----------------------------------------------------------------------------------------
@zuora_view
def oauth_token(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return failure(90000045, "Method not allowed", status=405)
    client_id = request.POST.get("client_id", "")
    client_secret = request.POST.get("client_secret", "")
    if request.POST.get("grant_type") != "client_credentials":
        return JsonResponse({"error": "unsupported_grant_type"}, status=400)
    clients = get_setting("zuora_clients")
    own = ZEntity.objects.filter(client_id=client_id).first() if client_id else None
    if own is not None:  # an entity's own OAuth client: its tokens cover that entity only
        if not secrets.compare_digest(own.client_secret, client_secret):
            return JsonResponse({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
    elif not client_id or not secrets.compare_digest(clients.get(client_id, "\0"), client_secret):
        return JsonResponse({"error": "invalid_client", "error_description": "Bad credentials"}, status=401)
    token = secrets.token_hex(16)
    made = ZToken.objects.create(token=token, expires_at=timezone.now() + dt.timedelta(seconds=3599))
    made.entities.set([own] if own is not None else ZEntity.objects.all())  # the tenant's client: every entity
    return JsonResponse(
        {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": 3599,
            "scope": "entity.1a2b7a37 tenant.19",
            "jti": secrets.token_hex(16),
        }
    )


# --- Catalog ---------------------------------------------------------------------------------------
def _plan_status(plan: ZRatePlan, today: dt.date) -> str:
    if today < plan.effective_start:
        return "NotStarted"
    if today > plan.effective_end:
        return "Expired"
    return "Active"


def _decimal_text(value: Any) -> Any:
    """The catalog's decimals as Zuora's catalog answers carry them: strings ("Decimal defining start of tier
    range", zuora-sdk's GetProductRatePlanChargePricingTierType and GetProductRatePlanChargePricingType)."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def charge_json(charge: dict) -> dict[str, Any]:
    pricing = []
    for entry in charge.get("pricing") or []:
        shown = {k: _decimal_text(v) for k, v in entry.items() if k != "tiers"}
        if entry.get("tiers") is not None:
            shown["tiers"] = [
                {k: v if k == "tier" else _decimal_text(v) for k, v in tier.items()} for tier in entry["tiers"]
            ]
        pricing.append(shown)
    return {**charge, "defaultQuantity": _decimal_text(charge.get("defaultQuantity")), "pricing": pricing}


def rate_plan_json(plan: ZRatePlan, today: dt.date) -> dict[str, Any]:
    return {
        "id": plan.zid,
        "name": plan.name,
        "description": plan.description,
        "status": _plan_status(plan, today),
        "effectiveStartDate": plan.effective_start.isoformat(),
        "effectiveEndDate": plan.effective_end.isoformat(),
        "productRatePlanCharges": [charge_json(c) for c in plan.charges],
    }


def plans_as_urls(request: HttpRequest) -> bool:
    """Zuora-Version 230.0 or later: a product's `productRatePlans` is the URL of its rate plans (Zuora's
    GET /v1/catalog/products, "this field is in Zuora REST API version control"); earlier, the plans."""
    try:
        return float(request.headers.get("Zuora-Version") or 0) >= 230
    except ValueError:
        return False


def product_json(product: ZProduct, plans: list[ZRatePlan], today: dt.date, urls: bool = False) -> dict[str, Any]:
    return {
        "id": product.zid,
        "sku": product.sku,
        "name": product.name,
        "description": product.description,
        "category": product.category,
        "effectiveStartDate": product.effective_start.isoformat(),
        "effectiveEndDate": product.effective_end.isoformat(),
        "productRatePlans": (
            f"/v1/rateplan/{product.zid}/productRatePlan" if urls else [rate_plan_json(p, today) for p in plans]
        ),
    }


@zuora_view
def catalog_products(request: HttpRequest) -> HttpResponse:
    try:
        page = int(request.GET.get("page", "1"))
        page_size = int(request.GET.get("pageSize", "10"))
    except ValueError:
        return failure(90000027, "page and pageSize must be whole numbers", status=400)
    if page < 1 or not 1 <= page_size <= 40:
        return failure(90000027, "pageSize must be between 1 and 40; page starts at 1", status=400)
    start = (page - 1) * page_size
    products = list(ZProduct.objects.all()[start : start + page_size + 1])
    has_more = len(products) > page_size
    products = products[:page_size]
    plans: dict[int, list[ZRatePlan]] = {}
    for plan in ZRatePlan.objects.filter(product__in=products):
        plans.setdefault(plan.product_id, []).append(plan)
    today = timezone.localdate()
    urls = plans_as_urls(request)
    body: dict[str, Any] = {
        "success": True,
        "products": [product_json(p, plans.get(p.id, []), today, urls) for p in products],
    }
    if has_more:
        body["nextPage"] = request.build_absolute_uri(
            f"{PREFIX}/v1/catalog/products?page={page + 1}&pageSize={page_size}"
        )
    return JsonResponse(body)


@zuora_view
def product_rate_plans(request: HttpRequest, product_key: str) -> HttpResponse:
    """GET /v1/rateplan/{product-key}/productRatePlan: a product's rate plans with their charges, paged
    (pageSize at most 40, as Zuora's SDK bounds it)."""
    if request.method != "GET":
        return failure(90000045, "Method not allowed", status=405)
    try:
        page = int(request.GET.get("page", "1"))
        page_size = int(request.GET.get("pageSize", "20"))
    except ValueError:
        return failure(90000027, "page and pageSize must be whole numbers", status=400)
    if page < 1 or not 1 <= page_size <= 40:
        return failure(90000027, "pageSize must be between 1 and 40; page starts at 1", status=400)
    product = ZProduct.objects.filter(zid=product_key).first()
    if product is None:
        return failure(50000040, f"Product {product_key} does not exist", status=404)
    start = (page - 1) * page_size
    plans = list(ZRatePlan.objects.filter(product=product).order_by("id")[start : start + page_size + 1])
    today = timezone.localdate()
    body: dict[str, Any] = {
        "success": True,
        "productRatePlans": [rate_plan_json(p, today) for p in plans[:page_size]],
    }
    if len(plans) > page_size:
        body["nextPage"] = request.build_absolute_uri(
            f"{PREFIX}/v1/rateplan/{product_key}/productRatePlan?page={page + 1}&pageSize={page_size}"
        )
    return JsonResponse(body)
