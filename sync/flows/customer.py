"""Who is billed: the Kommo company (or the main contact) as the Zuora account, and its contacts.

Bill-to precedence: a contact marked as billing contact, else the main contact, else the company's
e-mail. Sold-to: the main contact, else the bill-to. A billing e-mail is required.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sync import kommo_texts
from sync.clients.kommo import KommoClient
from sync.outcomes import NeedsAttention

BILLING_MARKERS = {"billing", "billing contact", "bill-to", "bill to"}


@dataclass(frozen=True)
class Person:
    first_name: str
    last_name: str
    email: str

    def as_zuora(self) -> dict[str, str]:
        return {"firstName": self.first_name[:100], "lastName": self.last_name[:100], "workEmail": self.email}


@dataclass(frozen=True)
class Customer:
    key: str  # "company:<id>" or "contact:<id>": the Kommo key Zuora's account carries
    name: str
    bill_to: Person
    sold_to: Person


def field_values(entity: dict, code: str) -> list[dict]:
    for field in entity.get("custom_fields_values") or []:
        if str(field.get("field_code") or "").upper() == code:
            return field.get("values") or []
    return []


def email_of(entity: dict | None) -> str:
    """The entity's e-mail, WORK first."""
    if not entity:
        return ""
    values = field_values(entity, "EMAIL")
    values = sorted(values, key=lambda v: v.get("enum_code") != "WORK")
    return next((str(v.get("value")).strip() for v in values if str(v.get("value") or "").strip()), "")


def is_billing_contact(contact: dict) -> bool:
    tags = ((contact.get("_embedded") or {}).get("tags")) or []
    if any(str(t.get("name", "")).strip().lower() in BILLING_MARKERS for t in tags if isinstance(t, dict)):
        return True
    for field in contact.get("custom_fields_values") or []:
        if str(field.get("field_name", "")).strip().lower() in BILLING_MARKERS:
            return any(str(v.get("value")).lower() in ("1", "true", "yes") for v in field.get("values") or [])
    return False


def names(contact: dict, fallback: str) -> tuple[str, str]:
    first = str(contact.get("first_name") or "").strip()
    last = str(contact.get("last_name") or "").strip()
    if not first and not last:
        parts = str(contact.get("name") or fallback).split()
        first, last = (parts[0], " ".join(parts[1:])) if parts else (fallback, fallback)
    # Zuora requires both names; a one-word name fills both.
    return first or last, last or first


@dataclass(frozen=True)
class Refs:
    """Who the lead names, as the lead itself says (ids only): its company, its contacts and the main one."""

    company: dict | None
    contacts: list[dict]
    main: dict | None


def refs(lead: dict[str, Any]) -> Refs:
    embedded = lead.get("_embedded") or {}
    contacts = embedded.get("contacts") or []
    main = next((c for c in contacts if c.get("is_main")), contacts[0] if contacts else None)
    return Refs(next(iter(embedded.get("companies") or []), None), contacts, main)


def no_customer() -> NeedsAttention:
    return NeedsAttention(
        "the deal has no company and no contact in Kommo: zuora needs a customer to bill",
        task=kommo_texts.task("the deal has no company and no contact", "add the customer's company or contact to it"),
    )


def customer_key(lead: dict[str, Any]) -> str:
    """The key the customer's Zuora account carries, read from the lead alone: its company, else its main
    contact (so the account can be looked up while the contacts are still being read)."""
    named = refs(lead)
    if named.company:
        return f"company:{named.company['id']}"
    if named.main:
        return f"contact:{named.main['id']}"
    raise no_customer()


def people_reads(kommo: KommoClient, lead: dict[str, Any]) -> tuple[Callable[[], list[dict]], Callable[[], Any]]:
    """The two Kommo reads a customer needs (the lead's contacts, its company), to be made together."""
    named = refs(lead)
    contact_ids = [c["id"] for c in named.contacts]
    return (
        lambda: kommo.get_contacts(contact_ids),
        lambda: kommo.get_company(named.company["id"]) if named.company else None,
    )


def customer_of(lead: dict[str, Any], contact_list: list[dict], company: dict | None) -> Customer:
    """Who is billed, from the lead and what Kommo answered for its contacts and company."""
    main_ref = refs(lead).main
    contacts = {c["id"]: c for c in contact_list}
    main = contacts.get(main_ref["id"]) if main_ref else None

    if company:
        key, name = f"company:{company['id']}", str(company.get("name") or f"Kommo company {company['id']}")
    elif main:
        key, name = f"contact:{main['id']}", str(main.get("name") or f"Kommo contact {main['id']}")
    else:
        raise no_customer()

    candidates: list[tuple[dict | None, str]] = []
    for contact in contacts.values():
        if is_billing_contact(contact):
            candidates.append((contact, email_of(contact)))
    if main:
        candidates.append((main, email_of(main)))
    if company:
        candidates.append((main, email_of(company)))  # the company's e-mail, addressed to the main contact
    chosen = next(((c, e) for c, e in candidates if e), None)
    if chosen is None:
        raise NeedsAttention(
            f"no billing e-mail for '{name}': neither a billing contact, the main contact nor the company has "
            f"an e-mail in Kommo",
            task=kommo_texts.task(
                "the deal has no billing e-mail", "add one to the main contact or to the company of this deal"
            ),
        )
    bill_contact, bill_email = chosen
    first, last = names(bill_contact or {}, name)
    bill_to = Person(first, last, bill_email)
    if main and email_of(main):
        m_first, m_last = names(main, name)
        sold_to = Person(m_first, m_last, email_of(main))
    else:
        sold_to = bill_to
    return Customer(key=key, name=name[:255], bill_to=bill_to, sold_to=sold_to)
