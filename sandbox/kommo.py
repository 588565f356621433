"""A Kommo API v4 emulator that follows ../shared/reference/kommo-api.md (not zkbridge's client).

Served under /sandbox/kommo/: OAuth with single-use rotating refresh tokens, long-lived tokens, leads /
contacts / companies with custom fields and products, notes, tasks, web hook subscriptions (and
deliveries, form-encoded like Kommo's), HTTP 204 on empty lists, a non-JSON 429 above 7 requests a
second, problem+json validation errors, and injected faults.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.utils import timezone
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from qs_codec import DecodeOptions, decode

from sandbox.common import emulated, get_setting, json_body, problem, refused_entities, sleep_then
from sandbox.models import (
    Fault,
    KAuthCode,
    KCatalogElement,
    KCompany,
    KContact,
    KLead,
    KToken,
    RequestLog,
)

log = logging.getLogger("zkbridge.sandbox")
PREFIX = "/sandbox/kommo"
ACCOUNT_ID = 29000001
SUBDOMAIN = "sandbox"
WON, LOST = 142, 143
# Lead custom fields this Kommo account has: id → (name, type). PATCHes naming others are refused.
LEAD_FIELDS = {
    881234: ("Plan", "select"),
    881240: ("Contract start", "date"),
    881242: ("Expected close", "date"),
    881250: ("Zuora account", "text"),
    881251: ("Zuora subscription", "text"),
    881260: ("Currency", "text"),
    881270: ("Cancellation date", "date"),
    881271: ("Plan change date", "date"),
    881280: ("Upgrade choice", "text"),
    881290: ("Quote MRR", "numeric"),
    881291: ("Quote TCV", "numeric"),
    881292: ("First invoice", "numeric"),
    881293: ("First invoice date", "date"),
    881294: ("Quote term", "text"),
}
PROPOSAL = 39402113
PIPELINE_ID = 4520110
QUERY = DecodeOptions(depth=10, list_limit=1000, parameter_limit=2000)


def _fault_response(fault: Fault, request: HttpRequest) -> HttpResponse | None:
    if fault.kind in ("http500", "http502", "http503"):
        status = int(fault.kind[4:])
        return HttpResponse(f"<html><body><h1>{status}</h1></body></html>", status=status, content_type="text/html")
    if fault.kind == "http429":
        response = HttpResponse("Too Many Requests", status=429, content_type="text/html")
        response["Retry-After"] = str(fault.retry_after)
        return response
    if fault.kind == "html403":
        return HttpResponse(
            "<html><body><h1>Access denied</h1><p>Your account is blocked.</p></body></html>",
            status=403,
            content_type="text/html",
        )
    if fault.kind == "timeout":
        return sleep_then(fault, HttpResponse("", status=504, content_type="text/html"))
    if fault.kind in ("success_false",):
        return problem(
            400,
            "Bad Request",
            fault.reason_message,
            [{"code": "InjectedError", "path": "", "detail": fault.reason_message}],
        )
    if fault.kind == "unauthorized":
        return problem(401, "Unauthorized", "Token has been revoked")
    return None


def _authenticate(request: HttpRequest) -> HttpResponse | None:
    if not request.path.startswith(f"{PREFIX}/api/v4/"):
        return None
    now = time.time()
    limit = get_setting("kommo_requests_per_second")
    recent = RequestLog.objects.filter(service="kommo", at__gt=now - 1).exclude(status=429).count()
    if recent >= limit:
        # Kommo's 429 is not JSON.
        return HttpResponse("Too Many Requests", status=429, content_type="text/html")
    header = request.headers.get("Authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else ""
    if token and token in get_setting("kommo_long_lived_tokens"):
        return None
    if (
        token
        and KToken.objects.filter(access_token=token, revoked=False, access_expires_at__gt=timezone.now()).exists()
    ):
        return None
    return problem(401, "Unauthorized", "Unauthorized")


def kommo_view(view):
    return emulated("kommo", PREFIX, _fault_response, _authenticate)(view)


CODE_LIFETIME = dt.timedelta(minutes=20)


def unix_now() -> int:
    return int(time.time())


# --- OAuth -----------------------------------------------------------------------------------------
@kommo_view
def oauth_token(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return problem(405, "Method Not Allowed", "Use POST")
    try:
        body = json_body(request)
        assert isinstance(body, dict)
    except (ValueError, AssertionError):
        return problem(400, "Bad Request", "The body must be a JSON object")
    clients = get_setting("kommo_oauth_clients")
    client_id, secret = str(body.get("client_id", "")), str(body.get("client_secret", ""))
    if not client_id or not secrets.compare_digest(clients.get(client_id, "\0"), secret):
        return problem(401, "Unauthorized", "Client authentication failed")
    grant = body.get("grant_type")
    if grant == "authorization_code":
        # Valid 20 minutes, once, for the redirect URI it was issued to (Kommo's OAuth documentation).
        code = KAuthCode.objects.filter(code=str(body.get("code", ""))).first()
        if code is None or code.used:
            return problem(400, "Bad Request", "Authorization code has been revoked")
        if code.created_at < timezone.now() - CODE_LIFETIME:
            return problem(400, "Bad Request", "Authorization code has expired")
        if code.redirect_uri and code.redirect_uri != str(body.get("redirect_uri", "")):
            return problem(400, "Bad Request", "redirect_uri does not match the integration's")
        if not KAuthCode.objects.filter(id=code.id, used=False).update(used=True):
            return problem(400, "Bad Request", "Authorization code has been revoked")
    elif grant == "refresh_token":
        # Single use: the first redemption wins, every later one is refused.
        old = str(body.get("refresh_token", ""))
        if not KToken.objects.filter(refresh_token=old, refresh_used=False, revoked=False).update(refresh_used=True):
            return problem(401, "Unauthorized", "Token has been revoked")
        # The old access token dies with its refresh token.
        KToken.objects.filter(refresh_token=old).update(revoked=True)
    else:
        return problem(400, "Bad Request", "grant_type must be authorization_code or refresh_token")
    token = KToken.objects.create(
        access_token=secrets.token_urlsafe(32),
        refresh_token=secrets.token_urlsafe(32),
        access_expires_at=timezone.now() + dt.timedelta(seconds=86400),
    )
    return JsonResponse(
        {
            "token_type": "Bearer",
            "expires_in": 86400,
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
        }
    )


@csrf_exempt  # a page of Kommo's own site, not zkbridge's
def consent(request: HttpRequest) -> HttpResponse:
    """Kommo's consent page (www.kommo.com/oauth?client_id=…&state=…): "Allow" issues a code and sends the
    browser to the integration's redirect URI with `code`, `state`, `referer` (the account's domain) and
    `client_id`; "Deny" sends `error=access_denied`."""
    client_id, state = request.GET.get("client_id", ""), request.GET.get("state", "")
    redirects = get_setting("kommo_oauth_redirects")
    if client_id not in get_setting("kommo_oauth_clients"):
        return HttpResponse("Unknown integration", status=400, content_type="text/plain")
    target = redirects.get(client_id) or request.GET.get("redirect_uri", "")
    if not target.startswith(("http://", "https://")):
        return HttpResponse("The integration has no redirect URI", status=400, content_type="text/plain")
    account = get_setting("kommo_account")
    if request.method != "POST":
        html = (
            "<!doctype html><title>Kommo: allow access</title><h1>Allow the integration access to "
            f"{escape(account['name'])}?</h1><form method=post><button name=answer value=allow id=allow>Allow</button> "
            "<button name=answer value=deny id=deny>Deny</button></form>"
        )
        return HttpResponse(html)
    query = {"state": state, "client_id": client_id}
    if request.POST.get("answer") == "allow":
        code = KAuthCode.objects.create(code=secrets.token_urlsafe(24), redirect_uri=target)
        query.update(code=code.code, referer=f"{account['subdomain']}.kommo.com", platform="2")
    else:
        query["error"] = "access_denied"
    return HttpResponseRedirect(f"{target}{'&' if '?' in target else '?'}{urlencode(query)}")


@kommo_view
def account(request: HttpRequest) -> HttpResponse:
    """GET /api/v4/account: who the token is for."""
    if request.method != "GET":
        return problem(405, "Method Not Allowed", "Use GET")
    found = get_setting("kommo_account")
    return JsonResponse(
        {
            "id": found["id"],
            "name": found["name"],
            "subdomain": found["subdomain"],
            "currency": "USD",
            "country": "US",
            "_links": link_to("/api/v4/account"),
        }
    )


# --- Shapes ----------------------------------------------------------------------------------------
def link_to(path: str) -> dict:
    return {"self": {"href": f"https://{SUBDOMAIN}.kommo.com{path}"}}


def lead_json(lead: KLead, with_: set[str]) -> dict[str, Any]:
    embedded: dict[str, Any] = {
        "tags": [],
        "companies": [{"id": lead.company_id, "_links": link_to(f"/api/v4/companies/{lead.company_id}")}]
        if lead.company_id
        else [],
    }
    if "contacts" in with_:
        embedded["contacts"] = [
            {"id": c["id"], "is_main": bool(c.get("is_main")), "_links": link_to(f"/api/v4/contacts/{c['id']}")}
            for c in lead.contacts
        ]
    if "catalog_elements" in with_:
        embedded["catalog_elements"] = lead.catalog_elements
    return {
        "id": lead.id,
        "name": lead.name,
        "price": lead.price,
        "responsible_user_id": lead.responsible_user_id,
        "group_id": 0,
        "status_id": lead.status_id,
        "pipeline_id": lead.pipeline_id,
        "loss_reason_id": None,
        "created_by": lead.responsible_user_id,
        "updated_by": lead.responsible_user_id,
        "created_at": lead.created_at,
        "updated_at": lead.updated_at,
        "closed_at": lead.closed_at,
        "closest_task_at": None,
        "is_deleted": lead.is_deleted,
        "custom_fields_values": lead.custom_fields_values,
        "score": None,
        "account_id": ACCOUNT_ID,
        "labor_cost": None,
        "_links": link_to(f"/api/v4/leads/{lead.id}"),
        "_embedded": embedded,
    }


def contact_json(contact: KContact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "responsible_user_id": 7720001,
        "created_at": contact.updated_at,
        "updated_at": contact.updated_at,
        "account_id": ACCOUNT_ID,
        "custom_fields_values": contact.custom_fields_values,
        "_links": link_to(f"/api/v4/contacts/{contact.id}"),
        "_embedded": {
            "tags": [{"id": i + 1, "name": t} for i, t in enumerate(contact.tags)],
            "companies": [{"id": contact.company_id}] if contact.company_id else [],
        },
    }


def company_json(company: KCompany) -> dict[str, Any]:
    return {
        "id": company.id,
        "name": company.name,
        "responsible_user_id": 7720001,
        "created_at": company.updated_at,
        "updated_at": company.updated_at,
        "account_id": ACCOUNT_ID,
        "custom_fields_values": company.custom_fields_values,
        "_links": link_to(f"/api/v4/companies/{company.id}"),
        "_embedded": {"tags": []},
    }


def page_of(request: HttpRequest, queryset, key: str, shape) -> HttpResponse:
    try:
        page = int(request.GET.get("page", "1"))
        limit = int(request.GET.get("limit", "50"))
    except ValueError:
        return problem(400, "Bad Request", "page and limit must be whole numbers")
    if page < 1 or not 1 <= limit <= 250:
        return problem(400, "Bad Request", "limit must be between 1 and 250")
    items = list(queryset[(page - 1) * limit : page * limit + 1])
    if not items:
        return HttpResponse(status=204)  # Kommo answers an empty list with no body at all
    more = len(items) > limit
    base = request.build_absolute_uri(request.path)
    params = request.GET.copy()
    params["page"] = str(page)
    links = {"self": {"href": f"{base}?{params.urlencode()}"}}
    if more:
        params["page"] = str(page + 1)
        links["next"] = {"href": f"{base}?{params.urlencode()}"}
    return JsonResponse({"_page": page, "_links": links, "_embedded": {key: [shape(i) for i in items[:limit]]}})


def ids_in(value: Any) -> list[int]:
    values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    return [int(v) for v in values if str(v).isdigit()]


def query_of(request: HttpRequest) -> dict:
    return decode(request.META.get("QUERY_STRING", ""), QUERY)


def with_of(request: HttpRequest) -> set[str]:
    return {w.strip() for w in request.GET.get("with", "").split(",") if w.strip()}


def batch_body(request: HttpRequest, what: str) -> list | HttpResponse:
    """A batch write's body: an array of 1 to 250 entities, or Kommo's refusal."""
    try:
        body = json_body(request)
    except ValueError:
        return problem(400, "Bad Request", "The body must be JSON")
    if not isinstance(body, list) or not body or len(body) > 250:
        return problem(400, "Bad Request", f"Expected an array of 1 to 250 {what}")
    return body


def single_body(request: HttpRequest, entity_id: int) -> list | HttpResponse:
    """A write of one entity (PATCH …/{id}): the batch of that one entry, or Kommo's refusal."""
    try:
        body = json_body(request)
    except ValueError:
        return problem(400, "Bad Request", "The body must be JSON")
    if not isinstance(body, dict):
        return problem(400, "Bad Request", "Expected a JSON object")
    return [{**body, "id": entity_id}]


# --- Leads -----------------------------------------------------------------------------------------
@kommo_view
def leads(request: HttpRequest) -> HttpResponse:
    if request.method == "PATCH":
        body = batch_body(request, "leads")
        return body if isinstance(body, HttpResponse) else _patch_leads(request, body)
    if request.method != "GET":
        return problem(405, "Method Not Allowed", "Use GET or PATCH")
    filters = query_of(request).get("filter") or {}
    queryset = KLead.objects.filter(is_deleted=False)
    if not isinstance(filters, dict):
        return problem(400, "Bad Request", "filter must be an object")
    statuses = filters.get("statuses")
    if statuses:
        condition = Q()
        for item in statuses.values() if isinstance(statuses, dict) else statuses:
            try:
                condition |= Q(pipeline_id=int(item["pipeline_id"]), status_id=int(item["status_id"]))
            except (KeyError, TypeError, ValueError):
                return problem(400, "Bad Request", "filter[statuses] needs pipeline_id and status_id")
        queryset = queryset.filter(condition)
    for field in ("closed_at", "updated_at", "created_at"):
        bounds = filters.get(field)
        if isinstance(bounds, dict):
            try:
                if "from" in bounds:
                    queryset = queryset.filter(**{f"{field}__gte": int(bounds["from"])})
                if "to" in bounds:
                    queryset = queryset.filter(**{f"{field}__lte": int(bounds["to"])})
            except ValueError:
                return problem(400, "Bad Request", f"filter[{field}] bounds must be unix timestamps")
    if "id" in filters:
        queryset = queryset.filter(id__in=ids_in(filters["id"]))
    with_ = with_of(request)
    return page_of(request, queryset.order_by("id"), "leads", lambda lead: lead_json(lead, with_))


@kommo_view
def lead_detail(request: HttpRequest, lead_id: int) -> HttpResponse:
    lead = KLead.objects.filter(id=lead_id, is_deleted=False).first()
    if lead is None:
        return HttpResponse(status=204) if request.method == "GET" else problem(404, "Not Found", "Lead not found")
    if request.method == "PATCH":
        items = single_body(request, lead_id)
        return items if isinstance(items, HttpResponse) else _patch_leads(request, items, single=True)
    if request.method != "GET":
        return problem(405, "Method Not Allowed", "Use GET or PATCH")
    return JsonResponse(lead_json(lead, with_of(request)))


def _patch_leads(request: HttpRequest, items: list, single: bool = False) -> HttpResponse:
    """PATCH one lead or a batch: every entry is checked first, and one refused entry refuses the request
    (Kommo writes all or nothing); a batch's problem+json names each refused entry by request_id."""
    refused = refused_entities("kommo", request, PREFIX)
    known = lead_fields()
    named = [int(item["id"]) for item in items if isinstance(item, dict) and str(item.get("id", "")).isdigit()]
    locked = {  # (in id order: two batches naming the same leads never wait for each other in a circle)
        lead.id: lead
        for lead in KLead.objects.select_for_update().filter(id__in=named, is_deleted=False).order_by("id")
    }
    by_entry: dict[int, list[dict]] = {}
    for index, item in enumerate(items):
        errors = by_entry.setdefault(index, [])
        if not isinstance(item, dict) or not str(item.get("id", "")).isdigit():
            errors.append({"code": "NotSupportedChoice", "path": "id", "detail": "id is required"})
            continue
        if not single and int(item["id"]) not in locked:
            errors.append({"code": "NotFound", "path": "id", "detail": f"Lead {item['id']} not found"})
        if int(item["id"]) in refused:
            errors.append({"code": "InvalidValue", "path": "custom_fields_values", "detail": refused[int(item["id"])]})
        errors += _fields_errors(item.get("custom_fields_values"), lambda f: known.get(f.get("field_id")))
    by_entry = {index: errors for index, errors in by_entry.items() if errors}
    if by_entry:  # one invalid entry rejects the whole request
        return problem(400, "Bad Request", "Request validation failed", by_entry=by_entry)
    missing = next((item["id"] for item in items if int(item["id"]) not in locked), None)
    if missing is not None:
        return problem(404, "Not Found", f"Lead {missing} not found")
    from sandbox.kommo_webhooks import one_delivery  # (kommo_webhooks imports this module)

    changed = []
    with one_delivery():
        for item in items:
            changed.append(_patch_lead(locked[int(item["id"])], item, known))
    shaped = [
        {"id": lead.id, "updated_at": lead.updated_at, "_links": link_to(f"/api/v4/leads/{lead.id}")}
        for lead in changed
    ]
    if single:
        return JsonResponse(shaped[0])
    return JsonResponse({"_links": link_to("/api/v4/leads"), "_embedded": {"leads": shaped}})


def lead_fields() -> dict[int, Field]:
    """The account's lead fields (their definitions, options included), as Kommo has them now."""
    from sandbox.models import KField

    defined = {f.id: Field(f.name, f.type, f.enums, f.id, f.code) for f in KField.objects.filter(entity_type="leads")}
    return defined or {fid: Field(name, kind, None, fid) for fid, (name, kind) in LEAD_FIELDS.items()}


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    enums: list[dict] | None
    id: int = 0
    code: str = ""

    def option(self, entry: dict) -> dict | None:
        """The option a select value names (by enum_id, else by its text); None when it names none."""
        for enum in self.enums or []:
            if entry.get("enum_id") == enum["id"] or (
                entry.get("enum_id") is None and entry.get("value") == enum["value"]
            ):
                return enum
        return None


def _value_errors(field: Field, values: list, f_index: int) -> list[dict]:
    """What Kommo refuses in a field's values: an empty string on a select, multiselect or numeric field (Kommo
    clears with "values": null), a number field holding no number, a date that is not a Unix time, a select
    value that is none of the field's options."""
    kind = field.type
    errors = []
    for v_index, entry in enumerate(values):
        value = entry.get("value") if isinstance(entry, dict) else None
        path = f"custom_fields_values.{f_index}.values.{v_index}.value"
        if not isinstance(entry, dict) or (value in (None, "") and entry.get("enum_id") is None):
            if kind in ("select", "multiselect", "numeric", "date", "checkbox"):
                errors.append({"code": "InvalidValue", "path": path, "detail": "This value should not be blank."})
            continue
        if kind in ("numeric", "price", "monetary") and not re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
            errors.append({"code": "InvalidType", "path": path, "detail": "This value should be of type numeric."})
        if kind == "date" and not str(value).lstrip("-").isdigit():
            errors.append({"code": "InvalidType", "path": path, "detail": "This value should be a Unix timestamp."})
        if kind in ("select", "multiselect", "radiobutton") and field.enums is not None and field.option(entry) is None:
            errors.append(
                {"code": "InvalidValue", "path": path, "detail": "The value is not one of the field's options."}
            )
    return errors


def _fields_errors(entries: Any, find: Callable[[dict], Field | None]) -> list[dict]:
    """What Kommo refuses in an entity's custom_fields_values: a field it does not have, values missing, values
    the field's type refuses ("values": null clears a field: the PHP SDK's NullCustomFieldValueCollection)."""
    errors: list[dict] = []
    for f_index, field in enumerate(entries or []):
        definition = find(field) if isinstance(field, dict) else None
        if definition is None:
            errors.append(
                {
                    "code": "NotSupportedChoice",
                    "path": f"custom_fields_values.{f_index}.field_id",
                    "detail": "The value you have provided is not supported",
                }
            )
        elif field.get("values") is None:
            continue
        elif not isinstance(field.get("values"), list) or not field["values"]:
            errors.append(
                {
                    "code": "FieldMissing",
                    "path": f"custom_fields_values.{f_index}.values",
                    "detail": "This field is missing",
                }
            )
        else:
            errors += _value_errors(definition, field["values"], f_index)
    return errors


def _stored_fields(
    current: list[dict] | None, entries: list[dict], find: Callable[[dict], Field | None]
) -> list[dict] | None:
    """An entity's custom_fields_values after a write of `entries` (checked by _fields_errors): a field given
    values replaces its own, `"values": null` clears it; a select value is stored with its option's id."""
    fields = {f["field_id"]: f for f in current or []}
    for field in entries:
        definition = find(field)
        assert definition is not None  # (checked before)
        if field.get("values") is None:
            fields.pop(definition.id, None)
            continue
        values = []
        for entry in field["values"]:
            option = definition.option(entry) if definition.enums is not None else None
            values.append(
                {"value": option["value"], "enum_id": option["id"]} if option else {"value": entry.get("value")}
            )
        fields[definition.id] = {
            "field_id": definition.id,
            "field_name": definition.name,
            "field_code": definition.code or None,
            "field_type": definition.type,
            "values": values,
        }
    return list(fields.values()) or None


def _patch_lead(lead: KLead, item: dict, known: dict[int, Field]) -> KLead:
    """Apply one entry of a PATCH to its (locked) lead and report the edit."""
    old_status = lead.status_id
    if "name" in item:
        lead.name = str(item["name"])[:255]
    if "price" in item:
        lead.price = int(item["price"])
    if "status_id" in item:
        lead.status_id = int(item["status_id"])
    entries = item.get("custom_fields_values") or []
    lead.custom_fields_values = _stored_fields(
        lead.custom_fields_values, entries, lambda f: known.get(f.get("field_id"))
    )
    set_status(lead, lead.status_id, old_status)
    from sandbox.kommo_webhooks import fire_webhooks

    fire_webhooks("update", lead, old_status)  # Kommo reports every edit, API edits included
    return lead


def set_status(lead: KLead, status_id: int, old_status: int) -> None:
    """Save a lead; a stage change closes it (Won/Lost) and fires the status web hooks."""
    lead.status_id = status_id
    lead.updated_at = unix_now()
    if status_id != old_status:
        lead.closed_at = unix_now() if status_id in (WON, LOST) else None
    lead.save()
    if status_id != old_status:
        from sandbox.kommo_webhooks import fire_webhooks  # (kommo_webhooks imports this module)

        fire_webhooks("status", lead, old_status)


@kommo_view
def pipelines(request: HttpRequest) -> HttpResponse:
    statuses = [
        {"id": PROPOSAL, "name": "Proposal", "sort": 20},
        {"id": 39402112, "name": "Negotiation", "sort": 30},
        {"id": WON, "name": "Closed - won", "sort": 10000},
        {"id": LOST, "name": "Closed - lost", "sort": 11000},
    ]
    return JsonResponse(
        {
            "_embedded": {
                "pipelines": [
                    {"id": PIPELINE_ID, "name": "Sales", "is_main": True, "_embedded": {"statuses": statuses}}
                ]
            }
        }
    )


# --- Contacts, companies, catalogs -----------------------------------------------------------------
def by_ids(request: HttpRequest, queryset, key: str, shape) -> HttpResponse:
    """A list (GET …?filter[id][]=…), paged like every Kommo list."""
    filters = query_of(request).get("filter") or {}
    if isinstance(filters, dict) and "id" in filters:
        queryset = queryset.filter(id__in=ids_in(filters["id"]))
    return page_of(request, queryset.order_by("id"), key, shape)


@kommo_view
def contacts(request: HttpRequest) -> HttpResponse:
    if request.method == "PATCH":
        body = batch_body(request, "contacts")
        return body if isinstance(body, HttpResponse) else _patch_parties(request, body, "contacts")
    return by_ids(request, KContact.objects.all(), "contacts", contact_json)


@kommo_view
def companies(request: HttpRequest) -> HttpResponse:
    if request.method == "PATCH":
        body = batch_body(request, "companies")
        return body if isinstance(body, HttpResponse) else _patch_parties(request, body, "companies")
    return by_ids(request, KCompany.objects.all(), "companies", company_json)


def party_fields(entity_type: str) -> dict[int, Field]:
    from sandbox.models import KField

    return {f.id: Field(f.name, f.type, f.enums, f.id, f.code) for f in KField.objects.filter(entity_type=entity_type)}


def _patch_parties(request: HttpRequest, items: list, entity_type: str, single: bool = False) -> HttpResponse:
    """PATCH companies or contacts (their name and custom fields), all or nothing, as leads are."""
    model = KCompany if entity_type == "companies" else KContact
    what = "Company" if entity_type == "companies" else "Contact"
    known = party_fields(entity_type)
    refused = refused_entities("kommo", request, PREFIX)
    named = [int(item["id"]) for item in items if isinstance(item, dict) and str(item.get("id", "")).isdigit()]
    locked = {c.id: c for c in model.objects.select_for_update().filter(id__in=named).order_by("id")}
    by_entry: dict[int, list[dict]] = {}
    for index, item in enumerate(items):
        errors = by_entry.setdefault(index, [])
        if not isinstance(item, dict) or not str(item.get("id", "")).isdigit():
            errors.append({"code": "NotSupportedChoice", "path": "id", "detail": "id is required"})
            continue
        if int(item["id"]) not in locked:
            errors.append({"code": "NotFound", "path": "id", "detail": f"{what} {item['id']} not found"})
        if int(item["id"]) in refused:
            errors.append({"code": "InvalidValue", "path": "custom_fields_values", "detail": refused[int(item["id"])]})
        errors += _fields_errors(item.get("custom_fields_values"), lambda f: known.get(f.get("field_id")))
    by_entry = {index: errors for index, errors in by_entry.items() if errors}
    if by_entry:
        return problem(400, "Bad Request", "Request validation failed", by_entry=by_entry)
    now = unix_now()
    shaped = []
    for item in items:
        company = locked[int(item["id"])]
        if "name" in item:
            company.name = str(item["name"])[:255]
        entries = item.get("custom_fields_values") or []
        company.custom_fields_values = _stored_fields(
            company.custom_fields_values, entries, lambda f: known.get(f.get("field_id"))
        )
        company.updated_at = now
        company.save()
        shaped.append({"id": company.id, "updated_at": now, "_links": link_to(f"/api/v4/{entity_type}/{company.id}")})
    if single:
        return JsonResponse(shaped[0])
    return JsonResponse({"_links": link_to(f"/api/v4/{entity_type}"), "_embedded": {entity_type: shaped}})


@kommo_view
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = KContact.objects.filter(id=contact_id).first()
    return JsonResponse(contact_json(contact)) if contact else HttpResponse(status=204)


@kommo_view
def company_detail(request: HttpRequest, company_id: int) -> HttpResponse:
    if request.method == "PATCH":
        items = single_body(request, company_id)
        return items if isinstance(items, HttpResponse) else _patch_parties(request, items, "companies", single=True)
    company = KCompany.objects.filter(id=company_id).first()
    return JsonResponse(company_json(company)) if company else HttpResponse(status=204)


@kommo_view
def catalogs(request: HttpRequest) -> HttpResponse:
    ids = sorted(set(KCatalogElement.objects.values_list("catalog_id", flat=True)))
    if not ids:
        return HttpResponse(status=204)
    return JsonResponse({"_embedded": {"catalogs": [{"id": i, "name": "Products", "type": "products"} for i in ids]}})


def _patch_elements(request: HttpRequest, catalog_id: int) -> HttpResponse:
    """PATCH /api/v4/catalogs/{id}/elements: elements' names and fields (by field_id or field_code), all or nothing."""
    from sandbox.models import KField

    items = batch_body(request, "elements")
    if isinstance(items, HttpResponse):
        return items
    definitions = [
        Field(f.name, f.type, f.enums, f.id, f.code)
        for f in KField.objects.filter(entity_type=f"catalogs/{catalog_id}")
    ]
    by_id = {f.id: f for f in definitions}
    by_code = {f.code: f for f in definitions if f.code}

    def find(field: dict) -> Field | None:  # a list's field is named by its id or its code (SKU, PRICE)
        return by_id.get(field.get("field_id")) or by_code.get(field.get("field_code"))

    named = [int(i["id"]) for i in items if isinstance(i, dict) and str(i.get("id", "")).isdigit()]
    locked = {e.id: e for e in KCatalogElement.objects.select_for_update().filter(catalog_id=catalog_id, id__in=named)}
    refused = refused_entities("kommo", request, PREFIX)
    by_entry: dict[int, list[dict]] = {}
    for index, item in enumerate(items):
        errors = by_entry.setdefault(index, [])
        if not isinstance(item, dict) or not str(item.get("id", "")).isdigit() or int(item["id"]) not in locked:
            errors.append({"code": "NotFound", "path": "id", "detail": "Element not found"})
            continue
        if "name" in item and not str(item.get("name") or "").strip():
            errors.append({"code": "FieldMissing", "path": "name", "detail": "This field is missing"})
        if int(item["id"]) in refused:
            errors.append({"code": "InvalidValue", "path": "id", "detail": refused[int(item["id"])]})
        errors += _fields_errors(item.get("custom_fields_values"), find)
    by_entry = {i: e for i, e in by_entry.items() if e}
    if by_entry:
        return problem(400, "Bad Request", "Request validation failed", by_entry=by_entry)
    shaped = []
    for item in items:
        element = locked[int(item["id"])]
        if "name" in item:
            element.name = str(item["name"]).strip()[:255]
        element.custom_fields_values = _stored_fields(
            element.custom_fields_values, item.get("custom_fields_values") or [], find
        )
        element.save()
        shaped.append({"id": element.id, "name": element.name, "catalog_id": catalog_id})
    return JsonResponse({"_embedded": {"elements": shaped}})


@kommo_view
def catalog_custom_fields(request: HttpRequest, catalog_id: int) -> HttpResponse:
    from sandbox.kommo_fields import field_json
    from sandbox.models import KField

    fields = KField.objects.filter(entity_type=f"catalogs/{catalog_id}").order_by("sort", "id")
    return page_of(request, fields, "custom_fields", field_json)


@kommo_view
def catalog_elements(request: HttpRequest, catalog_id: int) -> HttpResponse:
    if request.method == "PATCH":
        return _patch_elements(request, catalog_id)
    return page_of(
        request,
        KCatalogElement.objects.filter(catalog_id=catalog_id).order_by("id"),
        "elements",
        lambda e: {
            "id": e.id,
            "name": e.name,
            "catalog_id": e.catalog_id,
            "custom_fields_values": e.custom_fields_values,
        },
    )
