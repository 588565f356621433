"""Small HTML pages so a person can watch the emulators during the demo."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from sandbox.demo import PLAN_FIELD
from sandbox.kommo import LEAD_FIELDS, LOST, PROPOSAL, WON, set_status
from sandbox.models import KLead, KNote, KTask, KWebhook, ZAccount, ZOrder, ZSubscription

STAGES = {PROPOSAL: "Proposal", 39402112: "Negotiation", 142: "Won", 143: "Lost"}
# The demo's lead fields by id (a field written through the API carries its id only).
FIELD_NAMES = {
    PLAN_FIELD: "Plan",
    881250: "Zuora account",
    881251: "Zuora subscription",
    881290: "Quote MRR",
    881291: "Quote TCV",
    881292: "First invoice",
    881293: "First invoice date",
    881294: "Quote term",
}


def shown(field_id: int | None, value: object) -> str:
    """A field's value as Kommo's card shows it: a date field's Unix time as its date."""
    if LEAD_FIELDS.get(field_id or 0, ("", ""))[1] == "date" and str(value).lstrip("-").isdigit():
        return dt.datetime.fromtimestamp(int(str(value)), dt.UTC).date().isoformat()
    return str(value)


@require_POST
def zuora_account_action(request: HttpRequest, number: str) -> HttpResponse:
    """The demo's bill run and payment run on one account: "bill" invoices its active subscriptions through today;
    "paid" and "failed" run a payment of what it owes (a month's MRR when it owes nothing) and post Zuora's
    callout."""
    from decimal import Decimal

    from django.contrib import messages

    from sandbox.zuora_callouts import send
    from sandbox.zuora_subscriptions import bill_through, pay, plan_mrr

    account = get_object_or_404(ZAccount, account_number=number)
    action = request.POST.get("action", "")
    today = timezone.localdate()
    subs = [s for s in ZSubscription.objects.filter(account=account, status="Active").order_by("-version")]
    latest = {s.subscription_number: s for s in reversed(subs)}
    if action == "bill":
        for sub_number in latest:
            bill_through(sub_number, today)
        messages.info(request, f"{number}: billed through {today:%Y-%m-%d}")
    elif action in ("paid", "failed"):
        owed = sum((i.balance for i in account.invoices.all()), Decimal(0))
        monthly = sum((plan_mrr(p) for s in latest.values() for p in s.rate_plans), Decimal(0))
        amount = owed if owed > 0 else monthly
        if action == "paid":
            pay(account, amount)
        event = "PaymentProcessed" if action == "paid" else "PaymentProcessingError"
        said = send(event, account, amount.quantize(Decimal("0.01")), next(iter(latest), "") or "")
        messages.info(request, f"{number}: payment of {amount:.2f} {action}; {said}")
    return redirect("sandbox-zuora-home")


def shown_company(field_id: int | None, value: object) -> str:
    from sandbox.kommo_fields import COMPANY_FIELDS

    if COMPANY_FIELDS.get(field_id or 0, ("", ""))[1] == "date" and str(value).lstrip("-").isdigit():
        return dt.datetime.fromtimestamp(int(str(value)), dt.UTC).date().isoformat()
    return str(value)


def kommo_home(request: HttpRequest) -> HttpResponse:
    leads = list(KLead.objects.filter(is_deleted=False).select_related("company").order_by("id"))
    notes: dict[int, list] = {}
    for note in KNote.objects.filter(entity_type="leads").order_by("id"):
        notes.setdefault(note.entity_id, []).append(note)
    tasks: dict[int, list] = {}
    for task in KTask.objects.filter(entity_type="leads").order_by("id"):
        tasks.setdefault(task.entity_id, []).append(task)
    from sandbox.models import KCatalogElement

    products = dict(KCatalogElement.objects.values_list("id", "name"))
    rows = []
    for lead in leads:
        fields = {
            f.get("field_name") or FIELD_NAMES.get(f.get("field_id"), f"field {f.get('field_id')}"): ", ".join(
                shown(f.get("field_id"), v.get("value")) for v in f.get("values") or []
            )
            for f in lead.custom_fields_values or []
        }
        for element in lead.catalog_elements or []:
            quantity = (element.get("metadata") or {}).get("quantity") or 1
            fields.setdefault("Products", "")
            fields["Products"] += (
                f"{', ' if fields['Products'] else ''}{products.get(element.get('id'), element.get('id'))} × {quantity}"
            )
        rows.append(
            {
                "lead": lead,
                "stage": STAGES.get(lead.status_id, lead.status_id),
                "company_fields": [
                    (
                        f.get("field_name"),
                        ", ".join(shown_company(f.get("field_id"), v.get("value")) for v in f.get("values") or []),
                    )
                    for f in (lead.company.custom_fields_values if lead.company else None) or []
                ],
                "fields": fields,
                "notes": notes.get(lead.id, []),
                "tasks": tasks.get(lead.id, []),
            }
        )
    context = {
        "rows": rows,
        "hooks": KWebhook.objects.all(),
        "WON": WON,
        "LOST": LOST,
        "PROPOSAL": PROPOSAL,
        "plans": DEMO_PLANS,
    }
    return render(request, "sandbox/kommo.html", context)


DEMO_PLANS = ["Starter", "Growth", "Scale", "Platinum"]


@require_POST
def kommo_plan(request: HttpRequest, lead_id: int) -> HttpResponse:
    """A salesperson changes the deal's plan field: saved, then the lead update web hook fires."""
    lead = get_object_or_404(KLead, id=lead_id)
    plan = str(request.POST.get("plan") or "")[:100]
    fields = [f for f in lead.custom_fields_values or [] if f.get("field_id") != PLAN_FIELD]
    fields.append(
        {
            "field_id": PLAN_FIELD,
            "field_name": "Plan",
            "field_code": None,
            "field_type": "select",
            "values": [{"value": plan}],
        }
    )
    lead.custom_fields_values = fields
    set_status(lead, lead.status_id, lead.status_id)
    from sandbox.kommo_webhooks import fire_webhooks

    fire_webhooks("update", lead, lead.status_id)
    return redirect("sandbox-kommo-home")


@require_POST
def kommo_move(request: HttpRequest, lead_id: int) -> HttpResponse:
    lead = get_object_or_404(KLead, id=lead_id)
    try:
        status_id = int(request.POST.get("status_id", WON))
    except ValueError:
        status_id = WON
    set_status(lead, status_id, lead.status_id)
    return redirect("sandbox-kommo-home")


def custom_fields(values: dict) -> list[tuple[str, str]]:
    """Custom fields as a person reads them: name without Zuora's __c, and the value."""
    return [(str(name).removesuffix("__c"), "" if value is None else str(value)) for name, value in values.items()]


def plan_lines(subscription: ZSubscription, today: dt.date) -> list[dict]:
    """Each rate plan of a version with what a person asks of it: billed now, starting on a later date (a
    change at the end of the billing period), or removed (and from when)."""
    lines = []
    for plan in subscription.rate_plans:
        charges = plan.get("charges") or []
        starts = min((c.get("effectiveStartDate") or "" for c in charges), default="")
        ends = max((c.get("effectiveEndDate") or "" for c in charges), default="")
        if plan.get("amendmentType") == "RemoveProduct":
            state = f"removed from {ends}" if ends > today.isoformat() else f"removed on {ends}"
        elif starts > today.isoformat():
            state = f"starts {starts}"
        else:
            state = ""
        lines.append(
            {
                "name": f"{plan.get('productName')} / {plan.get('ratePlanName')}",
                "state": state,
                "pending": bool(state) and not state.startswith("removed on"),
                "charges": [
                    f"{c.get('name')} × {c.get('quantity')}"
                    + (f", MRR {c['mrr']}" if c.get("mrr") not in (None, "0.00") else "")
                    for c in charges
                ],
            }
        )
    return lines


def zuora_home(request: HttpRequest) -> HttpResponse:
    today = timezone.localdate()
    accounts = list(ZAccount.objects.prefetch_related("invoices").order_by("-id")[:200])
    subscriptions = list(ZSubscription.objects.select_related("account").order_by("-id")[:200])
    for account in accounts:
        account.fields = custom_fields(account.custom_fields)
        account.owes = f"{sum((i.balance for i in account.invoices.all()), Decimal(0)):.2f} {account.currency}"
    for subscription in subscriptions:
        subscription.fields = custom_fields(subscription.custom_fields)
        subscription.plans = plan_lines(subscription, today)
        subscription.pending = any(line["pending"] for line in subscription.plans)
    orders = [o for o in ZOrder.objects.order_by("-id")[:200] if o.line_items]
    return render(
        request,
        "sandbox/zuora.html",
        {"accounts": accounts, "subscriptions": subscriptions, "orders": orders, "today": today},
    )
