"""A Zuora billing event becomes a note (and, by rule, a task) on the right Kommo deal — exactly once.

Steps: note, task. An event zkbridge cannot place needs attention (it shows in the admin and the
reconciliation view) instead of being dropped; an event type with no rule is kept and marked ignored.
"""

from __future__ import annotations

from django.conf import settings

from sync.billing.models import BillingEventRule
from sync.billing.rules import due_at, place, render
from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.health.run import after_event
from sync.kommo_tasks import write_note_once
from sync.lifecycle.models import Subscription
from sync.lifecycle.subscription import refresh
from sync.models import SyncRecord
from sync.outcomes import Ignored, NeedsAttention
from sync.registry import flow
from sync.webhooks.zuora import BillingEvent

SUBSCRIPTION_EVENTS = {"SubscriptionRenewed", "SubscriptionCanceled", "SubscriptionAmended", "OrderProcessed"}


@flow(SyncRecord.Kind.BILLING_EVENT)
def billing_event(record: SyncRecord) -> None:
    event = BillingEvent(**record.payload["event"])
    if event.subscription_number and not known_subscription(event.subscription_number):
        # A callout's number is outside data: a subscription zkbridge never billed is no reason to call Zuora, nor
        # to write on a deal the event may not be about.
        raise Ignored(
            f"{event.event_type} names subscription {event.subscription_number[:60]!r}, which zkbridge did not bill "
            f"and does not mirror: recorded, nothing read from Zuora, nothing sent to Kommo"
        )
    if event.event_type in SUBSCRIPTION_EVENTS and event.subscription_number and not record.step_done("mirror"):
        # Renewals, cancellations and amendments change the subscription's current version: re-read it.
        refresh(event.subscription_number)
        record.mark_step("mirror")
    wants_health = settings.KOMMO_COMPANY_HEALTH_FIELD_IDS or settings.KOMMO_CONTACT_HEALTH_FIELD_IDS
    if wants_health and event.account_number and not record.step_done("health"):
        # The customer's billing health on its Kommo company (status, MRR, balance, last payment…): a courtesy
        # beside the note, so Zuora or Kommo failing it leaves the event's own work to go on.
        try:
            said = after_event(event)
        except ApiError as exc:
            said = f"not refreshed: {exc}"
        record.mark_step("health", result=said[:300])
    rule = BillingEventRule.objects.filter(event_type=event.event_type, active=True).first()
    if rule is None:
        raise Ignored(f"no active rule for Zuora event '{event.event_type}': stored, nothing sent to Kommo")
    where = place(event)
    if where is None:
        raise NeedsAttention(
            f"cannot place {event.event_type} for account {event.account_number or '?'}"
            f"{', subscription ' + event.subscription_number if event.subscription_number else ''}: "
            f"zkbridge never synced it to a Kommo deal"
        )
    if where.entity == "leads":
        record.kommo_lead_id = where.entity_id
    record.zuora_account_number = event.account_number
    record.zuora_subscription_number = event.subscription_number
    record.summary = event.event_type
    record.entity = where.deal.entity if where.deal is not None else None  # the deal's Zuora entity
    record.save(
        update_fields=[
            "kommo_lead_id",
            "zuora_account_number",
            "zuora_subscription_number",
            "summary",
            "entity",
            "updated_at",
        ]
    )
    kommo = KommoClient.from_settings()
    if rule.note_template.strip() and not record.step_done("note"):
        write_note_once(record, kommo, where.entity, where.entity_id, render(rule.note_template, event))
    if rule.open_task and rule.task_template.strip() and not record.step_done("task"):
        write_task_once(record, kommo, where, rule, render(rule.task_template, event))


def known_subscription(number: str) -> bool:
    """A subscription zkbridge billed or mirrors."""
    return Subscription.objects.filter(number=number).exists() or SyncRecord.objects.billing(number).exists()


def write_task_once(record: SyncRecord, kommo: KommoClient, where, rule: BillingEventRule, text: str) -> None:
    if record.step_data("task").get("attempted"):
        if any(t.get("text") == text for t in kommo.tasks(where.entity_id, where.entity)):
            record.mark_step("task", text=text)
            return
    responsible = rule.responsible_user_id or (where.deal.responsible_user_id if where.deal else None)
    record.mark_step("task", done=False, attempted=True)
    task_id = kommo.add_task(
        where.entity_id,
        text,
        due=due_at(rule.task_due_days),
        task_type_id=rule.task_type_id,
        responsible_user_id=responsible,
        entity_type=where.entity,
    )
    record.mark_step("task", text=text, task_id=task_id)
