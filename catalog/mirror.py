"""Applying Zuora's catalog payloads to the mirror: the one way in (as dj-stripe's sync_from_data).

`apply_catalog` takes every product of a complete catalog read and, in one transaction, upserts
products, rate plans and charges and marks what Zuora no longer lists. Nothing is ever deleted: a
mapping or a subscription may still point at it. The number of queries does not grow with the size
of the catalog (bulk reads, bulk creates, bulk updates).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from catalog.models import Product, ProductRatePlan, ProductRatePlanCharge, UnitOfMeasure, ZuoraEntity

BATCH = 500


class CatalogError(ValueError):
    """A payload that is not a catalog as Zuora describes it."""


def _date(value: Any, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise CatalogError(f"{what}: bad date {value!r}") from None


def _decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _differs(obj: Any, values: dict[str, Any]) -> bool:
    for key, value in values.items():
        if isinstance(value, models.Model):  # compare foreign keys by id: no query per row
            if getattr(obj, f"{key}_id") != value.pk:
                return True
        elif getattr(obj, key) != value:
            return True
    return obj.removed_at is not None


def _upsert(
    model, rows: dict[str, dict], fields: list[str], now: dt.datetime, counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """Create or update rows keyed by zuora_id; returns zuora_id → instance.

    Only rows whose values changed are rewritten (bulk_update's CASE statements are slow on large
    tables); unchanged rows just get their synced_at stamped, a chunk of ids per query."""
    existing = {o.zuora_id: o for o in model.objects.filter(zuora_id__in=list(rows))}
    created, updated, unchanged = [], [], []
    for zid, values in rows.items():
        obj = existing.get(zid)
        if obj is None:
            obj = model(zuora_id=zid, synced_at=now, **values)
            created.append(obj)
            existing[zid] = obj
        elif _differs(obj, values):
            for key, value in values.items():
                setattr(obj, key, value)
            obj.removed_at = None
            obj.synced_at = now
            updated.append(obj)
        else:
            unchanged.append(obj.pk)
    model.objects.bulk_create(created, batch_size=BATCH)
    if updated:
        model.objects.bulk_update(updated, fields + ["removed_at", "synced_at"], batch_size=BATCH)
    for start in range(0, len(unchanged), 900):  # 900: under SQLite's 999 variables a statement
        model.objects.filter(pk__in=unchanged[start : start + 900]).update(synced_at=now)
    counts[model.__name__] = {"created": len(created), "updated": len(updated), "unchanged": len(unchanged)}
    return existing


def apply_units(units: list[dict], now: dt.datetime, entity: ZuoraEntity | None = None) -> dict[str, int]:
    """Zuora's units of measure (ZOQL rows: UomName, DecimalPlaces, RoundingMode, Active), keyed by name."""
    seen, created, updated = set(), 0, 0
    for row in units:
        name = str(row.get("UomName") or "").strip()[:50]
        try:
            places = int(str(row.get("DecimalPlaces")))
        except (TypeError, ValueError):
            raise CatalogError(f"unit of measure {name!r}: DecimalPlaces {row.get('DecimalPlaces')!r}") from None
        if not name or not 0 <= places <= 9:
            raise CatalogError(f"unit of measure {name!r}: DecimalPlaces must be 0 to 9, got {places}")
        seen.add(name)
        _, made = UnitOfMeasure.objects.update_or_create(
            name=name,
            entity=entity,
            defaults={
                "decimal_places": places,
                "rounding_mode": str(row.get("RoundingMode") or "")[:10],
                "active": row.get("Active") not in (False, "false", "False"),
                "removed_at": None,
                "synced_at": now,
            },
        )
        created, updated = created + made, updated + (not made)
    listed = UnitOfMeasure.objects.filter(entity=entity, removed_at__isnull=True)
    removed = listed.exclude(name__in=seen).update(removed_at=now)
    return {"created": created, "updated": updated, "removed": removed}


@transaction.atomic
def apply_catalog(
    products: list[dict], units: list[dict] | None = None, entity: ZuoraEntity | None = None
) -> dict[str, dict[str, int]]:
    """Mirror a complete catalog read of one entity (none: a tenant without entities), and, when read, its
    units of measure. What the entity's catalog no longer lists is marked removed; other entities' rows are
    never touched. Returns counts per model: created, updated, removed."""
    now = timezone.now()
    counts: dict[str, dict[str, int]] = {}
    if units is not None:
        counts["UnitOfMeasure"] = apply_units(units, now, entity)
    product_rows, plan_rows, charge_rows = {}, {}, {}
    plan_product, charge_plan = {}, {}
    for product in products:
        if not isinstance(product, dict) or not product.get("id"):
            raise CatalogError(f"a product without an id: {str(product)[:100]}")
        product_rows[product["id"]] = {
            "entity": entity,
            "name": str(product.get("name") or "")[:255],
            "sku": str(product.get("sku") or "")[:100],
            "description": product.get("description") or "",
            "category": str(product.get("category") or "")[:100],
            "effective_start": _date(product.get("effectiveStartDate"), f"product {product['id']}"),
            "effective_end": _date(product.get("effectiveEndDate"), f"product {product['id']}"),
        }
        for plan in product.get("productRatePlans") or []:
            plan_product[plan["id"]] = product["id"]
            plan_rows[plan["id"]] = {
                "name": str(plan.get("name") or "")[:255],
                "description": plan.get("description") or "",
                "zuora_status": str(plan.get("status") or "")[:20],
                "effective_start": _date(plan.get("effectiveStartDate"), f"rate plan {plan['id']}"),
                "effective_end": _date(plan.get("effectiveEndDate"), f"rate plan {plan['id']}"),
            }
            for charge in plan.get("productRatePlanCharges") or []:
                charge_plan[charge["id"]] = plan["id"]
                charge_rows[charge["id"]] = {
                    "name": str(charge.get("name") or "")[:255],
                    "charge_type": str(charge.get("type") or ""),
                    "charge_model": str(charge.get("model") or ""),
                    "uom": str(charge.get("uom") or "")[:50],
                    "billing_period": str(charge.get("billingPeriod") or "")[:30],
                    "default_quantity": _decimal(charge.get("defaultQuantity")),
                    "pricing": charge.get("pricing") or [],
                }
    products_by_id = _upsert(Product, product_rows, [*next(iter(product_rows.values()), {})], now, counts)
    for zid, values in plan_rows.items():
        values["product"] = products_by_id[plan_product[zid]]
    plans_by_id = _upsert(ProductRatePlan, plan_rows, [*next(iter(plan_rows.values()), {})], now, counts)
    for zid, values in charge_rows.items():
        values["rate_plan"] = plans_by_id[charge_plan[zid]]
    _upsert(ProductRatePlanCharge, charge_rows, [*next(iter(charge_rows.values()), {})], now, counts)
    for model, seen, owner in (
        (Product, product_rows, "entity"),
        (ProductRatePlan, plan_rows, "product__entity"),
        (ProductRatePlanCharge, charge_rows, "rate_plan__product__entity"),
    ):
        mine = model.objects.filter(removed_at__isnull=True, **{owner: entity})
        removed = mine.exclude(zuora_id__in=list(seen)).update(removed_at=now)
        counts.setdefault(model.__name__, {"created": 0, "updated": 0})["removed"] = removed
    return counts
