"""Demo data for the emulators: a small Zuora catalog and a few Kommo leads, contacts and companies.

Each lead shows one path through the won flow: a clean sale, a second deal of the same company, a
deal with no billing e-mail, a retired plan, an unmapped plan, a person without a company.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time

from django.db import transaction
from django.utils import timezone

from sandbox.models import (
    Fault,
    KAuthCode,
    KCatalogElement,
    KCompany,
    KContact,
    KField,
    KLead,
    KNote,
    KTask,
    KToken,
    KWebhook,
    RequestLog,
    Setting,
    ZAccount,
    ZEntity,
    ZIdempotency,
    ZOrder,
    ZProduct,
    ZRatePlan,
    ZSubscription,
    ZToken,
    ZUnitOfMeasure,
    ZUsage,
    ZUsageImport,
)

FOREVER = dt.date(2099, 12, 31)
NEGOTIATION = 39402112
PIPELINE = 4520110
PLAN_FIELD = 881234


def zuora_id(name: str) -> str:
    """Deterministic 32-hex ids, so the demo plan map can name them."""
    return "8a8" + hashlib.md5(name.encode()).hexdigest()[:29]


def _charge(
    name: str,
    type_: str,
    model: str,
    prices: dict[str, str],
    *,
    uom: str = "",
    period: str = "Month",
    quantity: int = 1,
    tiers: dict[str, list] | None = None,
) -> dict:
    return {
        "id": zuora_id(f"charge:{name}"),
        "name": name,
        "type": type_,
        "model": model,
        "uom": uom or None,
        "billingPeriod": period if type_ != "OneTime" else None,
        "defaultQuantity": quantity,
        "pricing": [
            {
                "currency": cur,
                "price": price if not tiers else None,
                "tiers": (tiers or {}).get(cur, []),
                "includedUnits": None,
                "overagePrice": None,
                "discountPercentage": None,
                "discountAmount": None,
            }
            for cur, price in prices.items()
        ],
    }


def catalog_spec(today: dt.date) -> list[dict]:
    """The demo catalog: one product with a retired (and a retiring) plan, one tiered usage product."""
    soon = today + dt.timedelta(days=20)

    def tiers(rates: list[str]) -> list[dict]:
        bounds = [(0, 10000), (10001, 100000), (100001, None)]
        return [
            {"tier": i + 1, "startingUnit": low, "endingUnit": high, "price": rate, "priceFormat": "PerUnit"}
            for i, ((low, high), rate) in enumerate(zip(bounds, rates, strict=True))
        ]

    return [
        {
            "name": "zkbridge Platform",
            "sku": "SKU-PLATFORM",
            "category": "Base Products",
            "start": dt.date(2020, 1, 1),
            "end": FOREVER,
            "plans": [
                (
                    "Growth (2024)",
                    dt.date(2024, 1, 1),
                    dt.date(2026, 6, 30),
                    [_charge("Growth 2024 monthly fee", "Recurring", "FlatFee", {"USD": "1000", "EUR": "900"})],
                ),
                (
                    "Growth",
                    dt.date(2026, 7, 1),
                    FOREVER,
                    [
                        _charge(
                            "Growth seats",
                            "Recurring",
                            "PerUnit",
                            {"USD": "120", "EUR": "110"},
                            uom="Seat",
                            quantity=10,
                        )
                    ],
                ),
                (
                    "Starter",
                    dt.date(2020, 1, 1),
                    FOREVER,
                    [_charge("Starter monthly fee", "Recurring", "FlatFee", {"USD": "300", "EUR": "280"})],
                ),
                (
                    "Scale (retiring)",
                    dt.date(2025, 1, 1),
                    soon,
                    [_charge("Scale monthly fee", "Recurring", "FlatFee", {"USD": "2500"})],
                ),
                (
                    "Enterprise (2027)",
                    dt.date(2027, 1, 1),
                    FOREVER,
                    [
                        _charge(
                            "Enterprise annual fee",
                            "Recurring",
                            "FlatFee",
                            {"USD": "48000", "EUR": "44000"},
                            period="Annual",
                        )
                    ],
                ),
                (
                    "Onboarding",
                    dt.date(2020, 1, 1),
                    FOREVER,
                    [_charge("Onboarding fee", "OneTime", "FlatFee", {"USD": "2000", "EUR": "1800"})],
                ),
            ],
        },
        {
            "name": "API Usage",
            "sku": "SKU-API",
            "category": "Add On Services",
            "start": dt.date(2020, 1, 1),
            "end": FOREVER,
            "plans": [
                (
                    "API calls (tiered)",
                    dt.date(2020, 1, 1),
                    FOREVER,
                    [
                        _charge(
                            "API calls",
                            "Usage",
                            "Tiered",
                            {"USD": "", "EUR": ""},
                            uom="API call",
                            tiers={"USD": tiers(["0", "0.002", "0.001"]), "EUR": tiers(["0", "0.0018", "0.0009"])},
                        )
                    ],
                ),
            ],
        },
    ]


UNITS_OF_MEASURE = {"Seat": 0, "API call": 0, "GB": 2}


def seed_zuora_catalog(today: dt.date | None = None) -> None:
    today = today or timezone.localdate()
    for unit, places in UNITS_OF_MEASURE.items():
        ZUnitOfMeasure.objects.update_or_create(name=unit, defaults={"decimal_places": places})
    for spec in catalog_spec(today):
        product, _ = ZProduct.objects.update_or_create(
            zid=zuora_id(spec["name"]),
            defaults={
                "sku": spec["sku"],
                "name": spec["name"],
                "category": spec["category"],
                "effective_start": spec["start"],
                "effective_end": spec["end"],
            },
        )
        for name, start, end, charges in spec["plans"]:
            ZRatePlan.objects.update_or_create(
                zid=zuora_id(name),
                defaults={
                    "product": product,
                    "name": name,
                    "effective_start": start,
                    "effective_end": end,
                    "charges": charges,
                },
            )


def _multitext(code: str, value: str, field_id: int) -> dict:
    return {
        "field_id": field_id,
        "field_name": code.title(),
        "field_code": code,
        "field_type": "multitext",
        "values": [{"value": value, "enum_id": 200301 if code == "EMAIL" else 200311, "enum_code": "WORK"}],
    }


def _plan(value: str) -> list[dict]:
    return [
        {
            "field_id": PLAN_FIELD,
            "field_name": "Plan",
            "field_code": None,
            "field_type": "select",
            "values": [
                {
                    "value": value,
                    "enum_id": 553300 + int(hashlib.md5(value.encode()).hexdigest()[:4], 16) % 100,
                    "enum_code": None,
                }
            ],
        }
    ]


def seed_kommo() -> None:
    from sandbox.kommo_fields import seed_fields

    seed_fields()
    now = int(time.time())
    companies = [
        (5550001, "ACME Corp", "billing@acme.example"),
        (5550002, "Globex", None),
        (5550003, "Initech", "ap@initech.example"),
        (5550004, "Umbrella", "finance@umbrella.example"),
    ]
    for cid, name, email in companies:
        KCompany.objects.update_or_create(
            id=cid,
            defaults={
                "name": name,
                "updated_at": now,
                "custom_fields_values": [_multitext("EMAIL", email, 100301)] if email else None,
            },
        )
    contacts = [
        (6660001, "Jane", "Doe", "jane@acme.example", 5550001, []),
        (6660002, "Bob", "Billing", "bob@acme.example", 5550001, ["billing"]),
        (6660003, "Hank", "Scorpio", None, 5550002, []),
        (6660004, "Peter", "Gibbons", "peter@initech.example", 5550003, []),
        (6660005, "Sam", "Solo", "sam@solo.example", None, []),
        (6660006, "Alice", "Wesker", "alice@umbrella.example", 5550004, []),
    ]
    for cid, first, last, email, company, tags in contacts:
        fields = [_multitext("EMAIL", email, 100201)] if email else []
        fields.append(_multitext("PHONE", "+1 555 0100", 100202))
        KContact.objects.update_or_create(
            id=cid,
            defaults={
                "name": f"{first} {last}",
                "first_name": first,
                "last_name": last,
                "company_id": company,
                "custom_fields_values": fields,
                "tags": tags,
                "updated_at": now,
            },
        )
    for eid, name in ((770001, "Onboarding package"), (770002, "Extra seats")):
        KCatalogElement.objects.update_or_create(id=eid, defaults={"catalog_id": 12001, "name": name})
    leads = [
        (
            24312345,
            "ACME annual",
            14400,
            "Growth",
            5550001,
            [(6660001, True), (6660002, False)],
            [{"id": 770001, "metadata": {"quantity": 1, "catalog_id": 12001}}],
        ),
        (24312346, "ACME expansion", 3600, "Starter", 5550001, [(6660001, True)], []),
        (24312347, "Globex pilot", 14400, "Growth", 5550002, [(6660003, True)], []),
        (24312348, "Initech legacy renewal", 12000, "Growth (2024)", 5550003, [(6660004, True)], []),
        (24312349, "Solo consultant", 3600, "Starter", None, [(6660005, True)], []),
        (24312350, "Umbrella platinum", 50000, "Platinum", 5550004, [(6660006, True)], []),
    ]
    for lid, name, price, plan, company, people, products in leads:
        KLead.objects.update_or_create(
            id=lid,
            defaults={
                "name": name,
                "price": price,
                "status_id": NEGOTIATION,
                "pipeline_id": PIPELINE,
                "created_at": now - 86400 * 7,
                "updated_at": now - 3600,
                "closed_at": None,
                "is_deleted": False,
                "custom_fields_values": _plan(plan),
                "company_id": company,
                "contacts": [{"id": c, "is_main": main} for c, main in people],
                "catalog_elements": products,
            },
        )


MAX_GENERATED = 20_000


@transaction.atomic
def generate_leads(first_id: int, count: int, plan: str = "Starter") -> list[int]:
    """`count` leads in Negotiation, each with its own company (with a billing e-mail) and main contact:
    many independent customers, for fault suites and benchmarks. Ids from `first_id`; existing ones stay."""
    now = int(time.time())
    ids = list(range(first_id, first_id + count))
    KCompany.objects.bulk_create(
        [
            KCompany(
                id=i,
                name=f"Customer {i}",
                updated_at=now,
                custom_fields_values=[_multitext("EMAIL", f"billing@c{i}.example", 100301)],
            )
            for i in ids
        ],
        ignore_conflicts=True,
    )
    KContact.objects.bulk_create(
        [
            KContact(
                id=i,
                name=f"Buyer {i}",
                first_name="Buyer",
                last_name=str(i),
                company_id=i,
                custom_fields_values=[_multitext("EMAIL", f"buyer@c{i}.example", 100201)],
                tags=[],
                updated_at=now,
            )
            for i in ids
        ],
        ignore_conflicts=True,
    )
    KLead.objects.bulk_create(
        [
            KLead(
                id=i,
                name=f"Deal {i}",
                price=1200,
                status_id=NEGOTIATION,
                pipeline_id=PIPELINE,
                created_at=now - 86400,
                updated_at=now - 3600,
                closed_at=None,
                is_deleted=False,
                custom_fields_values=_plan(plan),
                company_id=i,
                contacts=[{"id": i, "is_main": True}],
                catalog_elements=[],
            )
            for i in ids
        ],
        ignore_conflicts=True,
    )
    return ids


LEGACY_LEAD, LEGACY_COMPANY, LEGACY_CONTACT = 24312351, 5550005, 6660007
LEGACY_SINCE = dt.date(2025, 7, 1)


def seed_legacy_customer(today: dt.date | None = None) -> ZSubscription:
    """A customer billed on "Growth (2024)" since before it retired (sold on 2025-07-01, before zkbridge, on
    yearly terms that renew): the subscriber a migration off the retired plan moves. Kommo has the won deal
    with Zuora's numbers on it; Zuora the account and the subscription in its current term."""
    from sandbox.zuora_orders import _subscribe

    today = today or timezone.localdate()
    now = int(time.time())
    KCompany.objects.update_or_create(
        id=LEGACY_COMPANY,
        defaults={
            "name": "Hooli",
            "updated_at": now,
            "custom_fields_values": [_multitext("EMAIL", "ap@hooli.example", 100301)],
        },
    )
    KContact.objects.update_or_create(
        id=LEGACY_CONTACT,
        defaults={
            "name": "Gavin Belson",
            "first_name": "Gavin",
            "last_name": "Belson",
            "company_id": LEGACY_COMPANY,
            "custom_fields_values": [_multitext("EMAIL", "gavin@hooli.example", 100201)],
            "tags": [],
            "updated_at": now,
        },
    )
    account, _ = ZAccount.objects.update_or_create(
        crm_id=f"company:{LEGACY_COMPANY}",
        defaults={
            "name": "Hooli",
            "currency": "USD",
            "bill_cycle_day": (today + dt.timedelta(days=1)).day,
            "bill_to": {"firstName": "Gavin", "lastName": "Belson", "workEmail": "ap@hooli.example"},
            "sold_to": {"firstName": "Gavin", "lastName": "Belson", "workEmail": "gavin@hooli.example"},
        },
    )
    if not account.account_number:
        account.account_number = f"A{account.id:08d}"
        account.save(update_fields=["account_number"])
    rate_plans, _, _ = _subscribe([{"productRatePlanId": zuora_id("Growth (2024)")}], "USD", LEGACY_SINCE)
    years = max(today.year - LEGACY_SINCE.year - (today < LEGACY_SINCE.replace(year=today.year)), 0)
    term_start = LEGACY_SINCE.replace(year=LEGACY_SINCE.year + years)  # the yearly term running today
    term_end = term_start.replace(year=term_start.year + 1)
    # Invoiced monthly through tomorrow: a migration rule's dry run on the demo's first day shows the move.
    billed_to = today + dt.timedelta(days=1)
    for plan in rate_plans:
        for charge in plan["charges"]:
            charge["chargedThroughDate"] = billed_to.isoformat()
    subscription = ZSubscription.objects.filter(account=account).first() or ZSubscription(account=account)
    for name, value in dict(
        term_type="TERMED",
        initial_term=12,
        renewal_term=12,
        auto_renew=True,
        contract_effective_date=LEGACY_SINCE,
        term_start_date=term_start,
        term_end_date=term_end,
        subscription_end_date=term_end,
        charged_through_date=billed_to,
        custom_fields={"KommoLeadId__c": str(LEGACY_LEAD)},
        rate_plans=rate_plans,
        order_number="O-LEGACY-2025",
    ).items():
        setattr(subscription, name, value)
    subscription.save()
    if not subscription.subscription_number:
        subscription.subscription_number = f"A-S{subscription.id:08d}"
        subscription.save(update_fields=["subscription_number"])
    won = int(dt.datetime.combine(LEGACY_SINCE, dt.time(12), dt.UTC).timestamp())
    KLead.objects.update_or_create(
        id=LEGACY_LEAD,
        defaults={
            "name": "Hooli (customer since 2025)",
            "price": 12000,
            "status_id": 142,  # Closed - won
            "pipeline_id": PIPELINE,
            "created_at": won - 86400 * 14,
            "updated_at": won,
            "closed_at": won,
            "is_deleted": False,
            "custom_fields_values": _plan("Growth (2024)")
            + [
                {
                    "field_id": 881250,
                    "field_name": "Zuora account",
                    "field_type": "text",
                    "values": [{"value": account.account_number}],
                },
                {
                    "field_id": 881251,
                    "field_name": "Zuora subscription",
                    "field_type": "text",
                    "values": [{"value": subscription.subscription_number}],
                },
            ],
            "company_id": LEGACY_COMPANY,
            "contacts": [{"id": LEGACY_CONTACT, "is_main": True}],
            "catalog_elements": [],
        },
    )
    return subscription


@transaction.atomic
def reset() -> None:
    """Forget everything both emulators know (settings and faults included)."""
    for model in (
        Fault,
        Setting,
        RequestLog,
        ZToken,
        ZIdempotency,
        ZUsage,
        ZUsageImport,
        ZSubscription,
        ZOrder,
        ZAccount,
        ZRatePlan,
        ZProduct,
        ZUnitOfMeasure,
        ZEntity,
        KToken,
        KAuthCode,
        KNote,
        KTask,
        KLead,
        KContact,
        KCompany,
        KCatalogElement,
        KField,
        KWebhook,
    ):
        model.objects.all().delete()


ENTITIES = {
    # entity id: (name, its own OAuth client (Zuora's client ids are 36 characters), its secret, currencies,
    # a product only it sells)
    "ent-us-0000000000000000000000000001": (
        "zkbridge Inc. (US)",
        "5e2f9c14-8a7b-4d3e-b1c0-6f9a2d8e4b71",
        "zkbridge-us-secret",
        ["USD"],
        "US Platform",
    ),
    "ent-eu-0000000000000000000000000002": (
        "zkbridge GmbH (EU)",
        "9c4d1e7a-2f6b-4a8c-8e3d-1b5f7a9c2e60",
        "zkbridge-eu-secret",
        ["EUR"],
        "EU Platform",
    ),
}


def seed_entities() -> list[ZEntity]:
    """Make the emulated tenant multi-entity: two entities with their own OAuth clients, currencies, units of
    measure and a catalog of one product each. The demo's catalog and customers (made before) belong to no
    entity: a request in an entity does not see them."""
    made = []
    for entity_id, (name, client, secret, currencies, product_name) in ENTITIES.items():
        entity, _ = ZEntity.objects.update_or_create(
            entity_id=entity_id,
            defaults={"name": name, "client_id": client, "client_secret": secret, "currencies": currencies},
        )
        ZUnitOfMeasure.objects.update_or_create(entity=entity, name="Seat", defaults={"decimal_places": 0})
        product, _ = ZProduct.objects.update_or_create(
            zid=zuora_id(product_name),
            defaults={
                "entity": entity,
                "sku": f"SKU-{entity_id[4:6].upper()}",
                "name": product_name,
                "category": "Base Products",
                "effective_start": dt.date(2020, 1, 1),
                "effective_end": FOREVER,
            },
        )
        plan_name = f"{product_name} Standard"
        ZRatePlan.objects.update_or_create(
            zid=zuora_id(plan_name),
            defaults={
                "product": product,
                "name": plan_name,
                "effective_start": dt.date(2020, 1, 1),
                "effective_end": FOREVER,
                "charges": [
                    _charge(f"{plan_name} fee", "Recurring", "FlatFee", {currencies[0]: "500"}),
                ],
            },
        )
        made.append(entity)
    return made


@transaction.atomic
def seed() -> None:
    """What every emulated world starts from (the tests' too): the catalog, the demo leads, the OAuth code."""
    seed_zuora_catalog()
    seed_kommo()
    KAuthCode.objects.get_or_create(code="kommo-demo-auth-code")
