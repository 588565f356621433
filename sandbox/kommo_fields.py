"""Kommo's custom field definitions (API v4 "Custom fields"): list them, create them, change a select field's
options. As Kommo documents: changing fields is for administrators; `enums` are given whole, so an option left
out is removed — and removing an option clears it on every lead that carries it; renaming one renames it on
those leads (they keep the option's id). Types without options refuse `enums`."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.common import json_body, problem, refused_entities
from sandbox.kommo import LEAD_FIELDS, PREFIX, kommo_view, link_to, page_of
from sandbox.models import KCompany, KContact, KField, KLead

ENUM_TYPES = ("select", "multiselect", "radiobutton")
TYPES = ("text", "numeric", "checkbox", "date", "url", "textarea", "date_time", "price", "monetary", *ENUM_TYPES)
ENTITIES = {"leads": KLead, "contacts": KContact, "companies": KCompany}
FIRST_FIELD_ID, FIRST_ENUM_ID = 900000, 560000
# The demo account's plan field offers these (their ids as the demo's leads carry them).
DEMO_PLAN_OPTIONS = ["Starter", "Growth", "Growth (2024)", "Scale", "Platinum"]


def plan_enum_id(value: str) -> int:
    return 553300 + int(hashlib.md5(value.encode()).hexdigest()[:4], 16) % 100  # noqa: S324 (an id, not a secret)


# The demo account's company fields that receive the customer's billing health.
COMPANY_FIELDS = {
    882001: ("Billing status", "text"),
    882002: ("MRR", "numeric"),
    882003: ("Renews or ends", "date"),
    882004: ("Balance", "numeric"),
    882005: ("Overdue", "numeric"),
    882006: ("Last payment", "text"),
    882007: ("Zuora account", "url"),
}


# The demo products catalog's fields (Kommo's predefined SKU and price).
PRODUCTS_CATALOG = 12001
CATALOG_FIELDS = {883001: ("SKU", "text", "SKU"), 883002: ("Price", "price", "PRICE")}


def seed_fields() -> None:
    """The demo account's lead fields (sandbox.kommo.LEAD_FIELDS), the plan field with its options, and its
    company fields."""
    KField.objects.all().delete()
    for sort, (field_id, (name, kind, code)) in enumerate(CATALOG_FIELDS.items()):
        KField.objects.create(
            id=field_id, entity_type=f"catalogs/{PRODUCTS_CATALOG}", name=name, type=kind, code=code, sort=sort + 1
        )
    for sort, (field_id, (name, kind)) in enumerate(COMPANY_FIELDS.items()):
        KField.objects.create(id=field_id, entity_type="companies", name=name, type=kind, sort=(sort + 1) * 10)
        # The same fields on contacts (a customer billed as a person): ids 884001…
        KField.objects.create(id=field_id + 2000, entity_type="contacts", name=name, type=kind, sort=(sort + 1) * 10)
    for sort, (field_id, (name, kind)) in enumerate(LEAD_FIELDS.items()):
        enums = None
        if kind == "select":
            enums = [{"id": plan_enum_id(v), "value": v, "sort": (i + 1) * 10} for i, v in enumerate(DEMO_PLAN_OPTIONS)]
        KField.objects.create(id=field_id, entity_type="leads", name=name, type=kind, sort=(sort + 1) * 10, enums=enums)


def field_json(field: KField) -> dict[str, Any]:
    return {
        "id": field.id,
        "name": field.name,
        "type": field.type,
        "code": field.code or None,
        "sort": field.sort,
        "is_api_only": False,
        "entity_type": field.entity_type if "/" not in field.entity_type else "catalogs",
        "enums": field.enums if field.type in ENUM_TYPES else None,
        "required_statuses": [],
        "_links": link_to(f"/api/v4/{field.entity_type}/custom_fields/{field.id}"),
    }


@kommo_view
def custom_fields(request: HttpRequest, entity_type: str) -> HttpResponse:
    if request.method == "GET":
        return page_of(
            request, KField.objects.filter(entity_type=entity_type).order_by("sort", "id"), "custom_fields", field_json
        )
    if request.method != "POST":
        return problem(405, "Method Not Allowed", f"{request.method} is not supported here")
    try:
        items = json_body(request)
    except ValueError:
        return problem(400, "Bad Request", "The body is not JSON")
    if not isinstance(items, list) or not items:
        return problem(
            400,
            "Bad Request",
            "Request validation failed",
            [{"code": "FieldMissing", "path": "", "detail": "An array of fields is expected"}],
        )
    by_entry: dict[int, list[dict]] = {}
    for index, item in enumerate(items):
        errors = by_entry.setdefault(index, [])
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            errors.append({"code": "FieldMissing", "path": "name", "detail": "This field is missing"})
            continue
        if item.get("type") not in TYPES:
            errors.append(
                {"code": "NotSupportedChoice", "path": "type", "detail": "The value you have provided is not supported"}
            )
        errors += enum_errors(item.get("type"), item.get("enums"), [])
    by_entry = {i: e for i, e in by_entry.items() if e}
    if by_entry:
        return problem(400, "Bad Request", "Request validation failed", by_entry=by_entry)
    created = []
    with transaction.atomic():
        next_id = max(KField.objects.aggregate(m=Max("id"))["m"] or 0, FIRST_FIELD_ID) + 1
        for offset, item in enumerate(items):
            enums = None
            if item["type"] in ENUM_TYPES:
                enums = numbered(item.get("enums") or [], [])
            created.append(
                KField.objects.create(
                    id=next_id + offset,
                    entity_type=entity_type,
                    name=str(item["name"]).strip()[:255],
                    type=item["type"],
                    code=str(item.get("code") or ""),
                    sort=int(item.get("sort") or 500),
                    enums=enums,
                )
            )
    return JsonResponse(
        {"_total_items": len(created), "_embedded": {"custom_fields": [field_json(f) for f in created]}}
    )


@kommo_view
def custom_field(request: HttpRequest, entity_type: str, field_id: str) -> HttpResponse:
    return one_field(request, entity_type, int(field_id))


def one_field(request: HttpRequest, entity_type: str, field_id: int) -> HttpResponse:
    field = KField.objects.filter(entity_type=entity_type, id=field_id).first()
    if field is None:
        return (
            HttpResponse(status=204)
            if request.method == "GET"
            else problem(404, "Not Found", f"Field {field_id} not found")
        )
    if request.method == "GET":
        return JsonResponse(field_json(field))
    if request.method != "PATCH":
        return problem(405, "Method Not Allowed", f"{request.method} is not supported here")
    refused = refused_entities("kommo", request, PREFIX)
    if field_id in refused:  # "The method is available for administrator users only."
        return problem(403, "Forbidden", refused[field_id] or "Access denied: only administrators can change fields")
    try:
        body = json_body(request)
    except ValueError:
        return problem(400, "Bad Request", "The body is not JSON")
    if not isinstance(body, dict):
        return problem(
            400,
            "Bad Request",
            "Request validation failed",
            [{"code": "FieldMissing", "path": "", "detail": "An object is expected"}],
        )
    errors = []
    if "enums" in body:
        errors = enum_errors(field.type, body["enums"], field.enums or [])
    if "name" in body and not str(body.get("name") or "").strip():
        errors.append({"code": "FieldMissing", "path": "name", "detail": "This field is missing"})
    if errors:
        return problem(400, "Bad Request", "Request validation failed", errors)
    with transaction.atomic():
        field = KField.objects.select_for_update().get(pk=field.pk)
        if "name" in body:
            field.name = str(body["name"]).strip()[:255]
        if "sort" in body and str(body["sort"]).lstrip("-").isdigit():
            field.sort = int(body["sort"])
        if "enums" in body:
            before = {e["id"]: e["value"] for e in field.enums or []}
            field.enums = numbered(body["enums"], field.enums or [])
            after = {e["id"]: e["value"] for e in field.enums}
            carry_over(
                field,
                {i for i in before if i not in after},
                {i: v for i, v in after.items() if i in before and before[i] != v},
            )
        field.save()
    return JsonResponse(field_json(field))


def enum_errors(kind: Any, enums: Any, current: list[dict]) -> list[dict]:
    if enums is None:
        return []
    if kind not in ENUM_TYPES:
        return [
            {"code": "NotSupportedChoice", "path": "enums", "detail": f"A field of type {kind} has no list of values"}
        ]
    if not isinstance(enums, list):
        return [{"code": "InvalidType", "path": "enums", "detail": "This value should be of type array."}]
    errors, seen = [], set()
    known = {e["id"] for e in current}
    for index, enum in enumerate(enums):
        value = str((enum or {}).get("value") or "").strip() if isinstance(enum, dict) else ""
        if not value:
            errors.append({"code": "FieldMissing", "path": f"enums.{index}.value", "detail": "This field is missing"})
        elif value in seen:
            errors.append(
                {"code": "NotUnique", "path": f"enums.{index}.value", "detail": "The value is already in the list"}
            )
        seen.add(value)
        if isinstance(enum, dict) and enum.get("id") is not None and enum.get("id") not in known:
            errors.append({"code": "NotFound", "path": f"enums.{index}.id", "detail": "No such value in the list"})
    return errors


def numbered(enums: list[dict], current: list[dict]) -> list[dict]:
    """The options as given, new ones numbered after every option the account has."""
    used = [e["id"] for f in KField.objects.exclude(enums=None) for e in f.enums or []] + [e["id"] for e in current]
    next_id = max([FIRST_ENUM_ID, *used]) + 1
    result = []
    for index, enum in enumerate(enums):
        enum_id = enum.get("id")
        if enum_id is None:
            enum_id, next_id = next_id, next_id + 1
        result.append(
            {
                "id": enum_id,
                "value": str(enum["value"]).strip()[:255],
                "sort": int(enum.get("sort") or (index + 1) * 10),
            }
        )
    return result


def carry_over(field: KField, removed: set[int], renamed: dict[int, str]) -> None:
    """What an option's removal or rename does to the entities that carry it: a removed option's value is cleared,
    a renamed one shows its new name."""
    if not removed and not renamed:
        return
    model = ENTITIES.get(field.entity_type)
    if model is None:
        return
    for entity in model.objects.exclude(custom_fields_values=None):
        values = entity.custom_fields_values or []
        changed = False
        kept = []
        for item in values:
            if item.get("field_id") != field.id:
                kept.append(item)
                continue
            entries = []
            for entry in item.get("values") or []:
                if entry.get("enum_id") in removed:
                    changed = True
                    continue
                if entry.get("enum_id") in renamed:
                    entry = {**entry, "value": renamed[entry["enum_id"]]}
                    changed = True
                entries.append(entry)
            if entries:
                kept.append({**item, "values": entries})
        if changed:
            entity.custom_fields_values = kept or None
            entity.save(update_fields=["custom_fields_values"])
