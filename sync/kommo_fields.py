"""The Kommo lead and company fields zkbridge reads and writes: which are configured, whether Kommo has them with a
type that works, and creating the ones that are missing (issue 29, part 4). Field ids are settings (environment
variables): a field found or created is reported with the variable to set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from sync.clients.kommo import KommoClient


@dataclass(frozen=True)
class Need:
    setting: str  # the variable (or KOMMO_PREVIEW_FIELD_IDS:<name>)
    purpose: str
    name: str  # the name zkbridge gives the field it creates
    types: tuple[str, ...]  # the Kommo types that work; the first is the one created
    entity: str = "leads"

    def configured(self) -> int | None:
        if ":" in self.setting:
            variable, name = self.setting.split(":")
            return (getattr(settings, variable, None) or {}).get(name)
        return getattr(settings, self.setting, None)


NEEDS = (
    Need("KOMMO_PLAN_FIELD_ID", "the plan a deal sells (its options kept in step with Zuora)", "Plan", ("select",)),
    Need("KOMMO_ACCOUNT_FIELD_ID", "receives the Zuora account number", "Zuora account", ("text",)),
    Need("KOMMO_SUBSCRIPTION_FIELD_ID", "receives the Zuora subscription number", "Zuora subscription", ("text",)),
    Need("KOMMO_CURRENCY_FIELD_ID", "the deal's currency", "Currency", ("text", "select")),
    Need("KOMMO_TIERS_FIELD_ID", "negotiated usage tiers", "Usage tiers", ("text", "textarea")),
    Need("KOMMO_CLOSE_DATE_FIELD_ID", "the expected close date a quote is priced from", "Expected close", ("date",)),
    Need(
        "KOMMO_CANCEL_DATE_FIELD_ID",
        "the date a SpecificDate cancellation takes effect",
        "Cancellation date",
        ("date",),
    ),
    Need("KOMMO_CHANGE_DATE_FIELD_ID", "the date a date_field plan change takes effect", "Plan change date", ("date",)),
    Need("KOMMO_PREVIEW_FIELD_IDS:mrr", "the quote's MRR", "Quote MRR", ("numeric", "monetary", "text")),
    Need("KOMMO_PREVIEW_FIELD_IDS:tcv", "the quote's TCV", "Quote TCV", ("numeric", "monetary", "text")),
    Need(
        "KOMMO_PREVIEW_FIELD_IDS:first_invoice",
        "the quote's first invoice",
        "First invoice",
        ("numeric", "monetary", "text"),
    ),
    Need("KOMMO_PREVIEW_FIELD_IDS:first_invoice_date", "the first invoice's date", "First invoice date", ("date",)),
    Need("KOMMO_PREVIEW_FIELD_IDS:term", "the quote's term", "Quote term", ("text",)),
    *(
        Need(
            f"KOMMO_{party.upper()}_HEALTH_FIELD_IDS:{name}",
            purpose,
            label,
            types,
            f"{party}s" if party == "contact" else "companies",
        )
        for party in ("company", "contact")
        for name, purpose, label, types in (
            ("status", "the customer's subscription status", "Billing status", ("text",)),
            ("mrr", "the customer's MRR", "MRR", ("numeric", "monetary", "text")),
            ("renewal", "the next renewal or end date", "Renews or ends", ("date",)),
            ("balance", "the account's balance", "Balance", ("numeric", "monetary", "text")),
            ("overdue", "what is overdue", "Overdue", ("numeric", "monetary", "text")),
            ("last_payment", "the last payment's outcome", "Last payment", ("text",)),
            ("account_link", "a link to the Zuora account", "Zuora account", ("url", "text")),
        )
    ),
)


def report(kommo: KommoClient) -> list[dict[str, Any]]:
    """Each field zkbridge can use: its setting, what Kommo has, and what to do."""
    definitions = {entity: kommo.custom_fields(entity) for entity in ("leads", "companies", "contacts")}
    rows = []
    for need in NEEDS:
        fields = definitions[need.entity]
        by_id = {f.get("id"): f for f in fields}
        by_name = {str(f.get("name") or "").strip().casefold(): f for f in fields}
        configured = need.configured()
        field = by_id.get(configured) if configured else None
        if configured and field is None:
            what = {"leads": "lead", "companies": "company", "contacts": "contact"}[need.entity]
            state, todo = "missing", f"Kommo has no {what} field {configured}: fix {need.setting.split(':')[0]}"
        elif field is not None and field.get("type") not in need.types:
            state, todo = "wrong type", f"a {field.get('type')} field; zkbridge needs {' or '.join(need.types)}"
        elif field is not None:
            state, todo = "ok", ""
        else:
            found = by_name.get(need.name.casefold())
            if found is not None and found.get("type") in need.types:
                state, todo = (
                    "not configured",
                    f"Kommo has '{found.get('name')}' ({found.get('id')}): {assignment(need, found['id'])}",
                )
            else:
                state, todo = "not configured", "optional; create it below to use it"
        rows.append(
            {
                "setting": need.setting,
                "entity": {"leads": "lead", "companies": "company", "contacts": "contact"}[need.entity],
                "purpose": need.purpose,
                "configured": configured,
                "name": (field or {}).get("name") or "",
                "type": (field or {}).get("type") or "",
                "state": state,
                "todo": todo,
            }
        )
    return rows


def assignment(need: Need, field_id: int) -> str:
    if ":" in need.setting:
        variable, name = need.setting.split(":")
        return f"add {name}={field_id} to {variable}"
    return f"set {need.setting}={field_id}"


def create_missing(requested_by: str = "") -> str:
    """Create every field zkbridge can use that is neither configured nor found by its name in Kommo (one POST);
    says which variables to set. A worker runs it (the admin's "Create missing fields")."""
    kommo = KommoClient.from_settings()
    said = []
    for entity in ("leads", "companies", "contacts"):
        names = {str(f.get("name") or "").strip().casefold() for f in kommo.custom_fields(entity)}
        wanted = [n for n in NEEDS if n.entity == entity and not n.configured() and n.name.casefold() not in names]
        if not wanted:
            continue
        created = kommo.add_fields(entity, [{"name": need.name, "type": need.types[0]} for need in wanted])
        said += [assignment(need, field["id"]) for need, field in zip(wanted, created, strict=False) if "id" in field]
    if not said:
        return "nothing to create: every field is configured or exists in Kommo"
    from sync.ops.connections import request_check

    request_check(requested_by or "creating Kommo fields")
    return "created: " + "; ".join(said)
