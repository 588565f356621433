"""Reconciliation: compare Kommo's won deals, zkbridge's sync records and Zuora, and list every deal that
is not billed as sold, with the action that fixes it.

Reads are bulk and paged — Kommo's lead list (250 a page) and Zuora ZOQL (2000 a page) — never one call
per deal. Everything is read first; the report is written in one transaction at the end, so a run that
loses Kommo or Zuora half-way leaves the previous report in force and says what failed.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import PlanMapping, ProductRatePlan, normalize, today
from catalog.sellable import sellable_on
from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.flows.deal_won import LEAD_FIELD
from sync.flows.sale import field_value
from sync.models import ApiCall, Discrepancy, ReconciliationRun, SyncRecord

log = logging.getLogger("zkbridge.reconcile")
K, A = Discrepancy.Kind, Discrepancy.Action
PROBLEM_STATES = (SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED)


@dataclass
class Snapshot:
    """Everything a run compares, read in bulk."""

    won: dict[int, dict] = field(default_factory=dict)  # lead id → lead
    accounts: dict[str, dict] = field(default_factory=dict)  # Zuora account id → account
    subscriptions: list[dict] = field(default_factory=list)
    plans_of: dict[str, list[str]] = field(default_factory=dict)  # subscription id → product rate plan ids
    records: dict[int, SyncRecord] = field(default_factory=dict)  # lead id → deal_won record


def read_snapshot(run: ReconciliationRun) -> Snapshot:
    snap = Snapshot()
    kommo, zuora = KommoClient.from_settings(), ZuoraClient.from_settings()
    statuses = [(p["id"], settings.KOMMO_WON_STATUS_ID) for p in kommo.pipelines()] or None
    for lead in kommo.won_leads(statuses, status_id=settings.KOMMO_WON_STATUS_ID):
        snap.won[lead["id"]] = lead
        if len(snap.won) % 1000 == 0:
            progress(run, f"Kommo: {len(snap.won)} won deals read")
    progress(run, f"Kommo: {len(snap.won)} won deals; reading Zuora accounts")
    crm_field = settings.ZUORA_ACCOUNT_CRM_FIELD
    for account in zuora.zoql(f"select Id, AccountNumber, Name, CrmId, Currency, {crm_field} from Account"):
        snap.accounts[account["Id"]] = account
    progress(run, f"Zuora: {len(snap.accounts)} accounts; reading subscriptions")
    snap.subscriptions = list(
        zuora.zoql(f"select Id, Name, AccountId, Status, {LEAD_FIELD} from Subscription where {LEAD_FIELD} != null")
    )
    for plan in zuora.zoql("select Id, SubscriptionId, ProductRatePlanId from RatePlan"):
        snap.plans_of.setdefault(plan["SubscriptionId"], []).append(plan["ProductRatePlanId"])
    progress(run, f"Zuora: {len(snap.subscriptions)} subscriptions; comparing")
    deals = SyncRecord.objects.filter(kind=SyncRecord.Kind.DEAL_WON, kommo_lead_id__isnull=False)
    snap.records = {r.lead_id: r for r in deals}
    return snap


def progress(run: ReconciliationRun, text: str) -> None:
    run.progress = text[:200]
    run.save(update_fields=["progress"])


def compare(snap: Snapshot) -> list[Discrepancy]:
    """Every difference, one row each; pure over the snapshot (plus the plan map and the catalog)."""
    rows: list[Discrepancy] = []
    subs_by_lead: dict[int, list[dict]] = defaultdict(list)
    for sub in snap.subscriptions:
        carried = str(sub.get(LEAD_FIELD) or "")
        if carried.isdigit():
            subs_by_lead[int(carried)].append(sub)
    expected = expected_plans()
    plans = {p.zuora_id: p for p in ProductRatePlan.objects.select_related("product")}
    day = today()

    for lead_id, lead in snap.won.items():
        record = snap.records.get(lead_id)
        subs = subs_by_lead.get(lead_id, [])
        if not subs:
            if record and record.status in PROBLEM_STATES:
                rows.append(row(K.SYNC_FAILED, A.RETRY, lead_id, record, detail=record.reason or record.status))
            elif record is None or record.status in (
                SyncRecord.Status.SUCCEEDED,
                SyncRecord.Status.RESOLVED,
                SyncRecord.Status.CANCELLED,
                SyncRecord.Status.IGNORED,
            ):
                why = (
                    "no sync record (a lost web hook?)"
                    if record is None
                    else f"sync record is '{record.status}' but Zuora has no subscription for the lead"
                )
                rows.append(row(K.WON_NO_SUBSCRIPTION, A.RESYNC, lead_id, record, detail=why))
            continue
        sub = subs[0]
        account = snap.accounts.get(str(sub.get("AccountId")), {})
        numbers = {
            "zuora_account_number": account.get("AccountNumber") or "",
            "zuora_subscription_number": sub.get("Name") or "",
        }
        if (
            record is None
            or record.status != SyncRecord.Status.SUCCEEDED
            or record.zuora_subscription_number != sub.get("Name")
        ):
            rows.append(
                row(
                    K.FIELDS_MISMATCH,
                    A.RELINK,
                    lead_id,
                    record,
                    **numbers,
                    detail="zkbridge's record does not name Zuora's subscription",
                )
            )
        else:
            mismatch = lead_fields_mismatch(lead, numbers)
            if mismatch:
                rows.append(row(K.FIELDS_MISMATCH, A.RELINK, lead_id, record, **numbers, detail=mismatch))
        actual = set(snap.plans_of.get(sub["Id"], []))
        wanted = expected.get(normalize(field_value(lead, settings.KOMMO_PLAN_FIELD_ID)))
        if wanted and actual and not (wanted & actual):
            names = ", ".join(sorted(str(plans[p]) if p in plans else p for p in actual))
            rows.append(
                row(
                    K.WRONG_PLAN,
                    A.OPEN_ZUORA,
                    lead_id,
                    record,
                    **numbers,
                    detail=f"the deal's plan maps to {', '.join(sorted(str(plans.get(p, p)) for p in wanted))};"
                    f" Zuora bills {names}",
                )
            )
        for plan_id in sorted(actual):
            plan = plans.get(plan_id)
            if plan is not None:
                verdict = sellable_on(plan, day)
                if verdict.ended:
                    rows.append(
                        row(K.RETIRED_PLAN, A.PLAN_MIGRATION, lead_id, record, **numbers, detail=verdict.reason)
                    )
        if len(subs) > 1:
            rows.append(
                row(
                    K.ORPHAN_SUBSCRIPTION,
                    A.OPEN_ZUORA,
                    lead_id,
                    record,
                    **numbers,
                    detail=f"{len(subs)} subscriptions carry this lead: "
                    + ", ".join(s.get("Name") or "?" for s in subs),
                )
            )

    for lead_id, subs in subs_by_lead.items():
        if lead_id not in snap.won:
            for sub in subs:
                account = snap.accounts.get(str(sub.get("AccountId")), {})
                rows.append(
                    row(
                        K.ORPHAN_SUBSCRIPTION,
                        A.OPEN_KOMMO,
                        lead_id,
                        snap.records.get(lead_id),
                        zuora_account_number=account.get("AccountNumber") or "",
                        zuora_subscription_number=sub.get("Name") or "",
                        detail="Kommo does not list this lead as won (lost, reopened or deleted?)",
                    )
                )

    by_customer: dict[str, list[dict]] = defaultdict(list)
    for account in snap.accounts.values():
        key = account.get(settings.ZUORA_ACCOUNT_CRM_FIELD) or account.get("CrmId")
        if key:
            by_customer[key].append(account)
    for key, accounts in sorted(by_customer.items()):
        if len(accounts) > 1:
            account_list = ", ".join(sorted(a.get("AccountNumber") or "?" for a in accounts))
            rows.append(
                Discrepancy(
                    kind=K.DUPLICATE_ACCOUNTS,
                    action=A.OPEN_ZUORA,
                    zuora_account_number=sorted(a.get("AccountNumber") or "" for a in accounts)[0],
                    detail=f"Kommo {key} has {len(accounts)} Zuora accounts: {account_list}",
                )
            )

    for record in SyncRecord.objects.filter(status__in=PROBLEM_STATES).exclude(
        kind=SyncRecord.Kind.DEAL_WON, kommo_lead_id__in=list(snap.won)
    ):
        kind = K.UNPLACED_EVENT if record.kind == SyncRecord.Kind.BILLING_EVENT else K.SYNC_FAILED
        rows.append(
            row(
                kind,
                A.RETRY,
                record.kommo_lead_id,
                record,
                detail=record.reason or record.status,
                zuora_account_number=record.zuora_account_number,
                zuora_subscription_number=record.zuora_subscription_number,
            )
        )
    return rows


def row(
    kind: str,
    action: str,
    lead_id: int | None,
    record: SyncRecord | None,
    *,
    detail: str,
    zuora_account_number: str = "",
    zuora_subscription_number: str = "",
) -> Discrepancy:
    return Discrepancy(
        kind=kind,
        action=action,
        kommo_lead_id=lead_id,
        sync_record=record,
        detail=detail[:2000],
        zuora_account_number=zuora_account_number or (record.zuora_account_number if record else ""),
        zuora_subscription_number=zuora_subscription_number or (record.zuora_subscription_number if record else ""),
    )


def expected_plans() -> dict[str, set[str]]:
    """Plan field value → the Zuora rate plan ids its mappings name (any currency)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for mapping in PlanMapping.objects.filter(kind=PlanMapping.Kind.PLAN, active=True).prefetch_related(
        "rate_plans__product_rate_plan"
    ):
        for item in mapping.rate_plans.all():
            wanted[mapping.normalized_value].add(item.product_rate_plan.zuora_id)
    return wanted


def lead_fields_mismatch(lead: dict, numbers: dict[str, str]) -> str:
    problems = []
    for field_id, key, label in (
        (settings.KOMMO_ACCOUNT_FIELD_ID, "zuora_account_number", "account"),
        (settings.KOMMO_SUBSCRIPTION_FIELD_ID, "zuora_subscription_number", "subscription"),
    ):
        if field_id:
            have = field_value(lead, field_id)
            if have != numbers[key]:
                problems.append(f"the deal's {label} field says {have or '(empty)'!r}, Zuora says {numbers[key]!r}")
    return "; ".join(problems)


def run_reconciliation() -> ReconciliationRun:
    run = ReconciliationRun.objects.create(progress="starting")
    started_calls = ApiCall.objects.order_by("-id").values_list("id", flat=True).first() or 0
    try:
        snap = read_snapshot(run)
        rows = compare(snap)
    except ApiError as exc:
        run.error = f"{exc.provider or 'API'} failed half-way: {exc}; the previous report stays in force"
        run.finished_at = timezone.now()
        run.progress = "failed"
        run.save()
        log.error("reconciliation %s failed: %s", run.id, exc)
        return run
    calls = ApiCall.objects.filter(id__gt=started_calls)
    summary: dict[str, Any] = {
        "won_deals": len(snap.won),
        "zuora_subscriptions": len(snap.subscriptions),
        "zuora_accounts": len(snap.accounts),
        "discrepancies": len(rows),
        "zuora_calls": calls.filter(provider="zuora").exclude(path="/oauth/token").count(),
        "kommo_calls": calls.filter(provider="kommo").count(),
    }
    for item in rows:
        summary[item.kind] = summary.get(item.kind, 0) + 1
    with transaction.atomic():
        for item in rows:
            item.run = run
        Discrepancy.objects.bulk_create(rows, batch_size=1000)
        run.summary = summary
        run.ok = True
        run.progress = "done"
        run.finished_at = timezone.now()
        run.save()
    return run


def latest_report() -> ReconciliationRun | None:
    return ReconciliationRun.objects.filter(ok=True).first()


def report_csv(run: ReconciliationRun) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["kind", "action", "kommo_lead_id", "zuora_account_number", "zuora_subscription_number", "detail", "fixed_at"]
    )
    for item in run.discrepancies.order_by("kind", "kommo_lead_id").iterator(chunk_size=2000):
        writer.writerow(
            [
                item.kind,
                item.action,
                item.kommo_lead_id or "",
                item.zuora_account_number,
                item.zuora_subscription_number,
                item.detail,
                item.fixed_at.isoformat() if item.fixed_at else "",
            ]
        )
    return out.getvalue()


def scheduled() -> str:
    run = run_reconciliation()
    return "ok" if run.ok else run.error
