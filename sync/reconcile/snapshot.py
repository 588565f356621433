"""What a reconciliation compares, read in bulk: Kommo's won deals (its lead list, 250 a page), Zuora's
accounts, subscriptions and rate plans (ZOQL, 2,000 a page), and zkbridge's own records, plan map and
catalog mirror. Never one call per deal. The checks are pure functions of a Snapshot."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from catalog.models import PlanMapping, ProductRatePlan
from sync.catalog_sync import catalogs_to_sync
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.lifecycle.subscription import LEAD_FIELD, in_force
from sync.models import SyncRecord
from zkbridge.business_time import business_today

PROBLEM_STATES = (SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED)


@dataclass
class Snapshot:
    """Everything one run compares."""

    won: dict[int, dict] = field(default_factory=dict)  # lead id → Kommo lead
    lost: dict[int, dict] = field(default_factory=dict)  # lead id → a billed lead now in a churn status
    accounts: dict[str, dict] = field(default_factory=dict)  # Zuora account id → account
    # Zuora subscriptions carrying a lead id: current versions only (Zuora keeps each earlier version as
    # an Expired record with the same number and custom fields; counting those would double every deal).
    subscriptions: list[dict] = field(default_factory=list)
    plans_of: dict[str, list[str]] = field(default_factory=dict)  # subscription id → product rate plan ids
    records: dict[int, SyncRecord] = field(default_factory=dict)  # lead id → its deal_won record
    problem_records: list[SyncRecord] = field(default_factory=list)  # every record needing attention or failed
    # (Zuora entity id or None, plan field value) → rate plan ids: each entity has its own plan map
    plan_map: dict[tuple[int | None, str], set[str]] = field(default_factory=dict)
    catalog: dict[str, ProductRatePlan] = field(default_factory=dict)  # rate plan id → mirrored plan
    day: dt.date = field(default_factory=business_today)

    def subscriptions_of(self) -> dict[int, list[dict]]:
        """Lead id → the Zuora subscriptions carrying it."""
        found: dict[int, list[dict]] = defaultdict(list)
        for sub in self.subscriptions:
            carried = str(sub.get(LEAD_FIELD) or "")
            if carried.isdigit():
                found[int(carried)].append(sub)
        return found

    def account_of(self, subscription: dict) -> dict:
        return self.accounts.get(str(subscription.get("AccountId")), {})


def read_snapshot(progress: Callable[[str], None]) -> Snapshot:
    snap = Snapshot()
    kommo = KommoClient.from_settings()
    statuses = [(p["id"], settings.KOMMO_WON_STATUS_ID) for p in kommo.pipelines()] or None
    for lead in kommo.won_leads(statuses, status_id=settings.KOMMO_WON_STATUS_ID):
        snap.won[lead["id"]] = lead
        if len(snap.won) % 1000 == 0:
            progress(f"Kommo: {len(snap.won)} won deals read")
    progress(f"Kommo: {len(snap.won)} won deals; reading Zuora accounts")
    for entity in catalogs_to_sync():  # a multi-entity tenant: every entity's customers, each with its client
        read_zuora(snap, ZuoraClient.for_entity(entity), progress, f" in {entity}" if entity else "")
    progress(f"Zuora: {len(snap.subscriptions)} subscriptions; reading the deals Kommo no longer lists as won")
    active_elsewhere = sorted(
        {
            lead
            for lead, subs in snap.subscriptions_of().items()
            if lead not in snap.won and any(active(s) for s in subs)
        }
    )
    churn = set(settings.ZKBRIDGE_CHURN_STATUS_IDS)
    for lead in kommo.leads_by_ids(active_elsewhere):
        if lead.get("status_id") in churn:
            snap.lost[lead["id"]] = lead
    progress("comparing")
    read_zkbridge(snap)
    return snap


def read_zuora(snap: Snapshot, zuora: ZuoraClient, progress: Callable[[str], None], where: str) -> None:
    crm_field = settings.ZUORA_ACCOUNT_CRM_FIELD
    for account in zuora.zoql(f"select Id, AccountNumber, Name, CrmId, Currency, {crm_field} from Account"):
        snap.accounts[account["Id"]] = account
    progress(f"Zuora{where}: {len(snap.accounts)} accounts; reading subscriptions")
    subscriptions = list(
        zuora.zoql(
            f"select Id, Name, Version, AccountId, Status, SubscriptionEndDate, {LEAD_FIELD} from Subscription "
            f"where {LEAD_FIELD} != null and Status != 'Expired'"
        )
    )
    snap.subscriptions += subscriptions
    current = {s["Id"] for s in subscriptions}
    for plan in zuora.zoql("select Id, SubscriptionId, ProductRatePlanId, AmendmentType from RatePlan"):
        # rate plans of earlier versions, and removed ones kept on the current version, are not billed any more
        if plan["SubscriptionId"] in current and in_force(plan):
            snap.plans_of.setdefault(plan["SubscriptionId"], []).append(plan["ProductRatePlanId"])
    progress(f"Zuora{where}: {len(snap.subscriptions)} subscriptions")


def active(subscription: dict) -> bool:
    """Billing now or later: not cancelled (a cancelled subscription of a lost deal is as it should be)."""
    return subscription.get("Status") not in ("Cancelled", "Expired")


def read_zkbridge(snap: Snapshot) -> None:
    """zkbridge's side: its deal records, the records in trouble, the plan map and the catalog mirror."""
    deals = SyncRecord.objects.deals().filter(kommo_lead_id__isnull=False)
    snap.records = {r.lead_id: r for r in deals}
    snap.problem_records = list(SyncRecord.objects.filter(status__in=PROBLEM_STATES).order_by("id"))
    mapped: dict[tuple[int | None, str], set[str]] = defaultdict(set)
    for mapping in PlanMapping.objects.filter(kind=PlanMapping.Kind.PLAN, active=True).prefetch_related(
        "mapped_plans__product_rate_plan"
    ):
        for item in mapping.mapped_plans.all():
            mapped[(mapping.entity_id, mapping.normalized_value)].add(item.product_rate_plan.zuora_id)
    snap.plan_map = dict(mapped)
    snap.catalog = {p.zuora_id: p for p in ProductRatePlan.objects.select_related("product")}
