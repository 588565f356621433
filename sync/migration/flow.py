"""One subscriber moved off a legacy plan, on its term end or charged-through date — exactly once.

Steps (each recorded; a retry resumes after the last one completed):
  silence       (quiet rules) remember the account's communication profile, switch it to the silent one
  order         re-read the current version; one order dated on the moment: ChangePlan legacy → target
                (or the customer's alternative, plus the discount plan)
  restore       the original profile back — also when the order failed (a step of its own, retried until done)
  clear_choice  the customer's choice field emptied, so it can be used again
  refresh       the mirror and the deal's record name the new plan
  note          a note on the deal (when zkbridge billed it)
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.conf import settings

from catalog.models import ProductRatePlan
from sync import kommo_texts, orders
from sync.clients.errors import BusinessError, TransientError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.sale import field_value
from sync.kommo_tasks import write_note_once
from sync.lifecycle.models import Subscription
from sync.lifecycle.subscription import Current, read_current, refresh, subscription_turn
from sync.migration.run import names_alternative
from sync.models import SyncRecord
from sync.outcomes import Ignored, NeedsAttention
from sync.registry import flow
from zkbridge.business_time import business_today

log = logging.getLogger("zkbridge.sync")


@flow(SyncRecord.Kind.PLAN_MIGRATION)
def plan_migration(record: SyncRecord) -> None:
    zuora = ZuoraClient.for_entity(record.entity)  # the legacy plan's entity
    plan = record.payload
    if plan.get("quiet") and not record.step_done("silence"):
        silence(record, zuora)
    try:
        if not record.step_done("order"):
            with subscription_turn(record.zuora_subscription_number):
                move(record, zuora)
    except (NeedsAttention, Ignored):
        restore(record, zuora)  # the customer must not stay silenced because the move did not happen
        raise
    except TransientError:
        if record.attempts >= settings.ZKBRIDGE_MAX_ATTEMPTS:
            restore(record, zuora)  # giving up: restore before the record fails
        raise
    restore(record, zuora)
    if record.step_data("order").get("chosen") and not record.step_done("clear_choice"):
        clear_choice(record, zuora)
    if not record.step_done("refresh"):
        # The mirror keeps zkbridge's deals (and what it mirrored already); a legacy subscriber nobody
        # billed through zkbridge is not read back a second time.
        if record.kommo_lead_id or Subscription.objects.filter(number=record.zuora_subscription_number).exists():
            refresh(record.zuora_subscription_number, record.kommo_lead_id, zuora)
        update_deal(record)
        record.mark_step("refresh")
    if record.kommo_lead_id and not record.step_done("note"):
        write_note_once(record, KommoClient.from_settings(), "leads", record.lead_id, note_text(record))


def silence(record: SyncRecord, zuora: ZuoraClient) -> None:
    silent = settings.ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID
    if not silent:
        raise NeedsAttention(
            "the rule moves quietly, but ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID names no silent profile; "
            "nothing was sent"
        )
    earlier = record.step_data("silence")
    original = earlier.get("original")
    if not earlier.get("attempted"):
        original = zuora.get_account(record.zuora_account_number).get("communicationProfileId") or ""
        record.mark_step("silence", done=False, attempted=True, original=original)
    if original != silent:
        zuora.update_account(record.zuora_account_number, {"communicationProfileId": silent})
    record.mark_step("silence", original=original, switched=original != silent)


def restore(record: SyncRecord, zuora: ZuoraClient) -> None:
    switched = record.step_data("silence")
    if not switched.get("attempted") or record.step_done("restore"):
        return
    if switched.get("original"):
        zuora.update_account(record.zuora_account_number, {"communicationProfileId": switched["original"]})
    record.mark_step("restore", profile=switched.get("original"))


def customer_choice(record: SyncRecord, current: Current) -> Any:
    plan = record.payload
    if plan.get("choice_source") == "zuora":
        return current.custom.get(plan.get("choice_field") or "")
    if plan.get("choice_source") == "kommo" and record.kommo_lead_id:
        field_id = int(plan.get("choice_field") or 0)
        lead = KommoClient.from_settings().get_lead(record.kommo_lead_id, with_="")
        return field_value(lead, field_id) or None
    return None


def is_chosen(plan: dict, value: Any) -> bool:
    alternative = (
        ProductRatePlan.objects.filter(zuora_id=plan["alternative"]).first() if plan.get("alternative") else None
    )
    return names_alternative(value, alternative)


def move(record: SyncRecord, zuora: ZuoraClient) -> None:
    plan = record.payload
    current = read_current(zuora, record.zuora_subscription_number)
    attempt = record.step_data("order")
    goal = attempt.get("goal") or []
    if attempt.get("attempted") and goal and set(goal) <= current.plan_ids and plan["source"] not in current.plan_ids:
        record.mark_step("order", found=True)  # an earlier attempt's order went through; its answer was lost
        return
    if plan["source"] not in current.plan_ids:
        raise Ignored(f"{current.number} is no longer on the legacy plan (moved by hand?): nothing sent")
    if current.cancelled:
        # Pending cancellation = status Cancelled (its end date may still be ahead). A termed subscription's
        # subscriptionEndDate is its term end date: that alone never means it is being cancelled.
        raise Ignored(f"{current.number} has a pending cancellation (ends {current.ends_on}): not moved")
    moment = dt.date.fromisoformat(plan["moment"])
    chosen = is_chosen(plan, customer_choice(record, current))
    target = plan["alternative"] if chosen else plan["target"]
    discount = plan.get("discount") if chosen else ""
    legacy = next(p for p in current.rate_plans if p.product_rate_plan_id == plan["source"])
    triggers = [
        {"name": n, "triggerDate": moment.isoformat()}
        for n in ("ContractEffective", "ServiceActivation", "CustomerAcceptance")
    ]
    actions: list[dict[str, Any]] = [
        {
            "type": "ChangePlan",
            "triggerDates": triggers,
            "changePlan": {
                "ratePlanId": legacy.id,  # one plan id only: Zuora refuses a ChangePlan naming two
                "effectivePolicy": "SpecificDate",
                "newProductRatePlan": {"productRatePlanId": target},
            },
        }
    ]
    if discount:
        actions.append({"type": "AddProduct", "triggerDates": triggers, "addProduct": {"productRatePlanId": discount}})
    order = orders.change(
        business_today(), account_number=current.account_number, subscription_number=current.number, actions=actions
    )
    goal = [target] + ([discount] if discount else [])
    record.mark_step(
        "order",
        done=False,
        attempted=True,
        goal=goal,
        chosen=chosen,
        effective=moment.isoformat(),
        legacy=legacy.name,
        target=name_of(target),
        discount=name_of(discount) if discount else "",
    )
    try:
        result = zuora.create_order(
            order, idempotency_key=record.idempotency_key("order"), track_id=f"zkbridge-{record.id}"
        )
    except BusinessError as exc:
        raise NeedsAttention(f"Zuora refused the move: {exc.message}") from None
    record.mark_step("order", order_number=result.order_number)


def name_of(plan_id: str) -> str:
    plan = ProductRatePlan.objects.filter(zuora_id=plan_id).first()
    return str(plan.name) if plan else plan_id


def clear_choice(record: SyncRecord, zuora: ZuoraClient) -> None:
    plan = record.payload
    if plan.get("choice_source") == "zuora":
        current = read_current(zuora, record.zuora_subscription_number)
        zuora.update_subscription_fields(current.number, current.version, {plan["choice_field"]: ""})
    elif plan.get("choice_source") == "kommo" and record.kommo_lead_id:
        KommoClient.from_settings().update_lead_fields(record.kommo_lead_id, {int(plan["choice_field"]): ""})
    record.mark_step("clear_choice")


def update_deal(record: SyncRecord) -> None:
    """The deal's won record now names the plans it is billed on (the legacy report counts from it)."""
    if not record.kommo_lead_id:
        return
    deal = SyncRecord.objects.deal_of(record.kommo_lead_id)
    if deal is None:
        return
    goal = record.step_data("order").get("goal") or []
    kept = [p for p in deal.rate_plans.all() if p.zuora_id != record.payload["source"]]
    deal.rate_plans.set(kept + list(ProductRatePlan.objects.filter(zuora_id__in=goal)))


def note_text(record: SyncRecord) -> str:
    order = record.step_data("order")
    when = order.get("effective")
    said = record.payload.get("moment_said") or "billing date"
    text = (
        f"subscription {record.zuora_subscription_number} moves from {order.get('legacy')} to "
        f"{order.get('target')} on {when} (its {said}: no proration, no credit)"
    )
    if order.get("chosen"):
        text += " — the customer's choice" + (f", with {order['discount']}" if order.get("discount") else "")
    if record.payload.get("without_final_usage"):
        text += "; the final period's usage had not arrived"
    return kommo_texts.note(text)


def restore_stragglers(limit: int = 50) -> int:
    """The minute sweep: moves that ended (refused, failed, cancelled by staff) while their account was
    still on the silent profile get it restored — retried every minute until Zuora takes it."""
    ended = (
        SyncRecord.Status.NEEDS_ATTENTION,
        SyncRecord.Status.FAILED,
        SyncRecord.Status.CANCELLED,
        SyncRecord.Status.RESOLVED,
        SyncRecord.Status.IGNORED,
    )
    candidates = list(
        SyncRecord.objects.filter(
            kind=SyncRecord.Kind.PLAN_MIGRATION,
            status__in=ended,
            steps__silence__attempted=True,
            steps__restore__isnull=True,  # the restore step is written once, when it is done
        ).order_by("updated_at")[:limit]
    )
    if not candidates:
        return 0
    restored = 0
    for record in candidates:
        try:
            restore(record, ZuoraClient.for_entity(record.entity))
            restored += 1
        except (TransientError, BusinessError) as exc:
            log.warning("sync_record=%s could not restore the communication profile yet: %s", record.id, exc)
    return restored
