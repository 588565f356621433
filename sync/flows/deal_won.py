"""A Won deal becomes one Zuora account (created or reused) and one subscription — exactly once.

Steps, each recorded on the SyncRecord so a retry resumes after the last one completed:
  lead        re-fetch the lead from Kommo (the web hook is an unsigned hint)
  order       find what an earlier attempt created (by KommoLeadId__c), else one POST /v1/orders
  lead_fields write the account and subscription numbers into the configured lead fields
  note        a note on the lead naming them
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings

from catalog.models import ProductRatePlan
from sync.clients.errors import BusinessError, NotFoundError, TransientError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows import NeedsAttention, flow, write_note_once
from sync.flows.customer import Customer, resolve_customer
from sync.flows.sale import Sale, charge_overrides, field_value, line_items, resolve_sale, subscription_terms
from sync.lifecycle.subscription import mirror_new
from sync.locks import named_lock
from sync.models import SyncRecord
from sync.money import format_money

LEAD_FIELD = "KommoLeadId__c"


@flow(SyncRecord.Kind.DEAL_WON)
def deal_won(record: SyncRecord) -> None:
    kommo = KommoClient.from_settings()
    zuora = ZuoraClient.from_settings()
    lead = fetch_lead(kommo, record)
    if not record.step_done("order"):
        place_order(record, kommo, zuora, lead)
    if not record.step_done("lead_fields"):
        write_lead_fields(record, kommo)
    if not record.step_done("note"):
        write_note(record, kommo)


def fetch_any_lead(kommo: KommoClient, record: SyncRecord) -> dict[str, Any]:
    """The lead as Kommo has it now (whatever its status), remembered on the record."""
    try:
        lead = kommo.get_lead(record.lead_id)
    except NotFoundError:
        raise NeedsAttention(
            f"Kommo lead {record.kommo_lead_id} was deleted or is not visible to zkbridge's Kommo user"
        ) from None
    record.mark_step("lead", responsible_user_id=lead.get("responsible_user_id"), name=lead.get("name"))
    return lead


def fetch_lead(kommo: KommoClient, record: SyncRecord) -> dict[str, Any]:
    try:
        lead = kommo.get_lead(record.lead_id)
    except NotFoundError:
        raise NeedsAttention(
            f"Kommo lead {record.kommo_lead_id} was deleted or is not visible to zkbridge's Kommo user"
        ) from None
    if not record.step_done("order") and lead.get("status_id") != settings.KOMMO_WON_STATUS_ID:
        raise NeedsAttention(
            f"the lead is no longer Won in Kommo (status {lead.get('status_id')}); nothing was "
            f"created in Zuora. Cancel this record, or retry once the deal is Won again"
        )
    record.mark_step(
        "lead",
        responsible_user_id=lead.get("responsible_user_id"),
        name=lead.get("name"),
        plan=field_value(lead, settings.KOMMO_PLAN_FIELD_ID),
    )
    return lead


def place_order(record: SyncRecord, kommo: KommoClient, zuora: ZuoraClient, lead: dict) -> None:
    lead_id = str(record.kommo_lead_id)
    # Zuora forgets Idempotency-Keys after 24 h: a retry days later must find what an earlier attempt made.
    existing = zuora.find_subscriptions(LEAD_FIELD, lead_id)
    if existing:
        sub = existing[0]
        account_number = (sub.get("account") or {}).get("accountNumber", "")
        plan_ids = [rp.get("productRatePlanId") for rp in sub.get("ratePlans") or []]
        record.rate_plans.set(ProductRatePlan.objects.filter(zuora_id__in=plan_ids))
        save_order_step(
            record,
            account_number,
            sub.get("name", ""),
            order_number="",
            found=True,
            customer_key=(sub.get("account") or {}).get("crmId") or "",
            summary=record.summary or ", ".join(rp.get("name", "") for rp in sub.get("ratePlans") or []),
        )
        return
    sale = resolve_sale(lead)
    customer = resolve_customer(kommo, lead)
    # Two deals of one company won at once must not both create its account: one at a time per customer.
    with named_lock(f"customer:{customer.key}"):
        account_number = existing_account(zuora, customer, sale)
        order = build_order(record, sale, customer, account_number)
        mrr, tcv = preview(zuora, order) if settings.ZUORA_PREVIEW_ORDERS and sale.subscription_items else (None, None)
        try:
            result = zuora.create_order(
                order, idempotency_key=record.idempotency_key("order"), track_id=f"zkbridge-{record.id}"
            )
        except BusinessError as exc:
            raise NeedsAttention(
                f"Zuora refused the order: {exc.message}",
                task=f"Zuora refused this deal's subscription: {exc.message}. RevOps will fix it and retry.",
            ) from None
        subscription = result.subscription_numbers[0] if result.subscription_numbers else ""
        items = sale.subscription_items + sale.one_time_items
        record.plan_mappings.set({item.mapping for item in items})
        record.rate_plans.set({item.rate_plan for item in items})
        if subscription:
            mirror_new(
                subscription, result.account_number, record.lead_id, subscription_terms(sale), sale.contract_date
            )
        save_order_step(
            record,
            result.account_number,
            subscription,
            order_number=result.order_number,
            summary=sale.label,
            currency=sale.currency,
            mrr=mrr,
            tcv=tcv,
            account_created=account_number is None,
            customer_key=customer.key,
        )


def existing_account(zuora: ZuoraClient, customer: Customer, sale: Sale) -> str | None:
    """The customer's Zuora account, found by its Kommo key; None when there is none yet."""
    accounts = zuora.find_accounts(settings.ZUORA_ACCOUNT_CRM_FIELD, customer.key)
    if not accounts:
        return None
    # Several accounts for one Kommo company is a reconciliation finding; bill the oldest meanwhile.
    account = sorted(accounts, key=lambda a: (a.get("createdDate") or "", a.get("accountNumber") or ""))[0]
    if account.get("currency") and account["currency"] != sale.currency:
        raise NeedsAttention(
            f"the customer's Zuora account {account.get('accountNumber')} bills in {account['currency']} but the "
            f"deal is in {sale.currency}",
            task=f"This customer is billed in {account['currency']} in Zuora; set the deal's currency to match, "
            f"or ask RevOps.",
        )
    return account.get("accountNumber")


def build_order(record: SyncRecord, sale: Sale, customer: Customer, account_number: str | None) -> dict:
    contract = sale.contract_date.isoformat()
    order: dict[str, Any] = {"orderDate": contract, "processingOptions": {"runBilling": False, "collectPayment": False}}
    if account_number:
        order["existingAccountNumber"] = account_number
    else:
        account: dict[str, Any] = {
            "name": customer.name,
            "currency": sale.currency,
            "billCycleDay": 0,
            "autoPay": False,
            "crmId": customer.key,
            "customFields": {settings.ZUORA_ACCOUNT_CRM_FIELD: customer.key},
            "billToContact": customer.bill_to.as_zuora(),
            "soldToContact": customer.sold_to.as_zuora(),
        }
        if sale.terms is not None and sale.terms.payment_term:
            account["paymentTerm"] = sale.terms.payment_term
        order["newAccount"] = account
    if sale.subscription_items:
        order["subscriptions"] = [
            {
                "orderActions": [
                    {
                        "type": "CreateSubscription",
                        "triggerDates": [
                            {"name": n, "triggerDate": contract}
                            for n in ("ContractEffective", "ServiceActivation", "CustomerAcceptance")
                        ],
                        "createSubscription": {
                            "terms": subscription_terms(sale),
                            "subscribeToRatePlans": [
                                {
                                    "productRatePlanId": item.rate_plan.zuora_id,
                                    "chargeOverrides": charge_overrides(item),
                                }
                                for item in sale.subscription_items
                            ],
                        },
                    }
                ],
                "customFields": {LEAD_FIELD: str(record.kommo_lead_id)},
            }
        ]
    items = line_items(sale)
    if items:
        order["orderLineItems"] = items
    return order


def preview(zuora: ZuoraClient, order: dict) -> tuple[str | None, str | None]:
    """MRR and TCV for the note. A preview that fails only makes the note shorter."""
    body = {k: v for k, v in order.items() if k not in ("newAccount", "processingOptions", "orderLineItems")}
    if "newAccount" in order:
        body["previewAccountInfo"] = {"currency": order["newAccount"]["currency"], "billCycleDay": 1}
    body["previewOptions"] = {"previewTypes": ["ChargeMetrics"], "previewThruType": "TermEnd"}
    try:
        result = zuora.preview_order(body)
    except (BusinessError, TransientError, NotFoundError):
        return None, None
    metrics = (result.get("previewResult") or {}).get("chargeMetrics") or []
    if not metrics:
        return None, None
    return str(metric_sum(metrics, "cmrr", "regular")), str(metric_sum(metrics, "tcv", "regular"))


def metric_sum(metrics: list[dict], figure: str, part: str) -> Decimal:
    """Sum one figure of an order preview. Zuora writes `cmrr` / `tcv` on each charge of each
    subscription's `chargeMetrics[].charges[]`; a figure on the subscription itself is read only when
    its charges carry none."""
    total = Decimal(0)
    for metric in metrics:
        charges = [c for c in metric.get("charges") or [] if isinstance(c.get(figure), dict)]
        sources = charges or [metric]
        for source in sources:
            value = (source.get(figure) or {}).get(part)
            total += Decimal(str(value or 0))
    return total


def save_order_step(record: SyncRecord, account_number: str, subscription_number: str, **data: Any) -> None:
    summary = data.pop("summary", "") or ""
    record.zuora_account_number = account_number
    record.zuora_subscription_number = subscription_number
    record.summary = summary[:300]
    record.save(update_fields=["zuora_account_number", "zuora_subscription_number", "summary", "updated_at"])
    record.mark_step("order", account_number=account_number, subscription_number=subscription_number, **data)


def lead_field_values(account_number: str, subscription_number: str) -> dict[int, str]:
    """The configured lead fields that receive Zuora's numbers (none when not configured)."""
    values = {}
    if settings.KOMMO_ACCOUNT_FIELD_ID and account_number:
        values[settings.KOMMO_ACCOUNT_FIELD_ID] = account_number
    if settings.KOMMO_SUBSCRIPTION_FIELD_ID and subscription_number:
        values[settings.KOMMO_SUBSCRIPTION_FIELD_ID] = subscription_number
    return values


def write_lead_fields(record: SyncRecord, kommo: KommoClient) -> None:
    values = lead_field_values(record.zuora_account_number, record.zuora_subscription_number)
    updated_at = None
    if values:
        try:
            updated_at = kommo.update_lead_fields(record.lead_id, values)
        except BusinessError as exc:
            raise NeedsAttention(
                f"Zuora is done, but Kommo refused the lead fields: {exc.message} (check "
                f"KOMMO_ACCOUNT_FIELD_ID / KOMMO_SUBSCRIPTION_FIELD_ID)"
            ) from None
    # updated_at: Kommo reports this write back as a lead `update` web hook; routing knows it for ours.
    record.mark_step("lead_fields", fields={str(k): v for k, v in values.items()}, updated_at=updated_at)


def note_text(record: SyncRecord) -> str:
    order = record.step_data("order")
    what = [record.summary] if record.summary else []
    if order.get("mrr") and order.get("currency"):
        what.append(f"{format_money(order['mrr'], order['currency'])} MRR")
    detail = f" ({', '.join(what)})" if what else ""
    subscription = f", subscription {record.zuora_subscription_number}" if record.zuora_subscription_number else ""
    return f"Zuora: account {record.zuora_account_number}{subscription}{detail} active"


def write_note(record: SyncRecord, kommo: KommoClient) -> None:
    write_note_once(record, kommo, "leads", record.lead_id, note_text(record))
