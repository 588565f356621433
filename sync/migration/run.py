"""The migration run: which subscriptions each active rule moves today, read from Zuora in bulk (ZOQL,
2,000 rows a page, current versions only), and one plan_migration record per move (the workers send the
orders). A dry run answers the same rows and creates nothing.

A subscription is due when its moment — term end (termed) or the charged-through date of its legacy
charges (evergreen, or when the rule says so) — falls within the rule's `days_ahead` days after the run's
date: the order is then dated on that moment, so nothing is prorated and no credit memo appears. A run
that dies half-way is simply run again: the record key (subscription + moment) makes each move once.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from catalog.models import ProductRatePlan
from sync.clients.zuora import ZuoraClient
from sync.lifecycle.subscription import LEAD_FIELD, in_force, zuora_date
from sync.migration.models import MigrationRule, MigrationRun
from sync.models import SyncRecord
from sync.usage.models import UsageRecord
from zkbridge.business_time import business_today

log = logging.getLogger("zkbridge.sync")
ZOQL_FIELD = re.compile(r"^[A-Za-z][A-Za-z0-9_]*__c$")
CHOSEN_WORDS = {"yes", "true", "1", "y"}


@dataclass
class Row:
    """One subscription a rule considered: what would move, when, or why not."""

    subscription: str
    account: str
    lead: int | None
    rule: int
    current: str
    target: str
    effective: str
    discount: str
    outcome: str  # move | moved | scheduled | skipped
    reason: str = ""
    currency: str = ""
    chosen: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Tenant:
    """What the run read from Zuora, once for every rule."""

    subscriptions: dict[str, dict] = field(default_factory=dict)  # current version id → row
    accounts: dict[str, dict] = field(default_factory=dict)
    charged_through: dict[str, dt.date] = field(default_factory=dict)  # rate plan id → date
    plans: dict[str, list[dict]] = field(default_factory=dict)  # product rate plan id → rate plan rows
    reads: int = 0


def read_tenant(zuora: ZuoraClient, rules: list[MigrationRule]) -> Tenant:
    tenant = Tenant()
    before = zuora_calls()
    fields = sorted(
        {
            r.choice_field.strip()
            for r in rules
            if r.choice_source == "zuora" and ZOQL_FIELD.match(r.choice_field.strip())
        }
    )
    extra = "".join(f", {f}" for f in fields)
    for row in zuora.zoql(
        f"select Id, Name, Version, AccountId, Status, TermType, TermEndDate, SubscriptionEndDate, {LEAD_FIELD}"
        f"{extra} from Subscription where Status != 'Expired'"
    ):
        tenant.subscriptions[row["Id"]] = row
    for account in zuora.zoql("select Id, AccountNumber, Currency from Account"):
        tenant.accounts[account["Id"]] = account
    for rule in rules:
        plan_id = rule.source_plan.zuora_id
        if plan_id not in tenant.plans:
            query = (
                "select Id, SubscriptionId, ProductRatePlanId, AmendmentType from RatePlan "
                f"where ProductRatePlanId = '{plan_id}'"
            )
            tenant.plans[plan_id] = [
                p for p in zuora.zoql(query) if p.get("SubscriptionId") in tenant.subscriptions and in_force(p)
            ]
    invoiced = "select RatePlanId, ChargedThroughDate from RatePlanCharge where ChargedThroughDate != null"
    for charge in zuora.zoql(invoiced):
        day = zuora_date(charge.get("ChargedThroughDate"))
        key = charge.get("RatePlanId") or ""
        if day and (key not in tenant.charged_through or day > tenant.charged_through[key]):
            tenant.charged_through[key] = day
    tenant.reads = zuora_calls() - before
    return tenant


def zuora_calls() -> int:
    """ZOQL calls so far (the run's reads; the workers' moves never query in bulk)."""
    from sync.models import ApiCall

    return ApiCall.objects.filter(provider="zuora", path__contains="/v1/action/query").count()


def names_alternative(value: Any, alternative: ProductRatePlan | None) -> bool:
    """Whether a choice field's value picks the alternative: its Zuora id or name, or yes/true/1."""
    if alternative is None or value in (None, ""):
        return False
    text = str(value).strip().lower()
    return text in CHOSEN_WORDS or text in (alternative.zuora_id.lower(), alternative.name.lower())


def chosen(rule: MigrationRule, value: Any) -> bool:
    return names_alternative(value, rule.alternative_plan)


def has_usage(plan: ProductRatePlan) -> bool:
    return any(c.charge_type == "Usage" and c.removed_at is None for c in plan.charges.all())


QUEUED_KINDS = (SyncRecord.Kind.PLAN_CHANGE, SyncRecord.Kind.PLAN_MIGRATION, SyncRecord.Kind.CANCELLATION)


def changes_on_their_way(numbers: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """zkbridge's own changes to these subscriptions that are open or succeeded: number → [(key, status,
    effective date)]. Read in chunks, not one query per subscription."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    wanted = (*SyncRecord.OPEN, SyncRecord.Status.SUCCEEDED)
    for start in range(0, len(numbers), 1000):
        records = SyncRecord.objects.filter(
            kind__in=QUEUED_KINDS, status__in=wanted, zuora_subscription_number__in=numbers[start : start + 1000]
        ).only("key", "status", "steps", "zuora_subscription_number")
        for record in records.iterator():
            effective = str(record.step_data("order").get("effective") or "")
            found.setdefault(record.zuora_subscription_number, []).append((record.key, record.status, effective))
    return found


def queued_change(changes: list[tuple[str, str, str]], day: dt.date, own_key: str) -> str:
    """A change to the subscription already on its way: it is never moved over it."""
    for key, status, effective in changes:
        if key == own_key:
            continue
        if status in SyncRecord.OPEN:
            return f"another change is in progress ({key})"
        if effective and effective > day.isoformat():
            return f"a change dated {effective} is already queued ({key})"
    return ""


def consider(rule: MigrationRule, tenant: Tenant, day: dt.date) -> list[Row]:
    """The subscriptions of the rule's legacy plan whose moment falls in its window."""
    rows: list[Row] = []
    source, target = rule.source_plan, rule.target_plan
    usage = has_usage(source)
    grace = dt.timedelta(days=rule.usage_grace_days if usage else 0)
    candidates = tenant.plans.get(source.zuora_id, [])
    numbers = [tenant.subscriptions[p["SubscriptionId"]].get("Name") or "" for p in candidates]
    on_their_way = changes_on_their_way(numbers)
    for plan_row in candidates:
        sub = tenant.subscriptions[plan_row["SubscriptionId"]]
        account = tenant.accounts.get(sub.get("AccountId") or "", {})
        ctd = tenant.charged_through.get(plan_row["Id"])
        termed = sub.get("TermType") == "TERMED" and zuora_date(sub.get("TermEndDate"))
        if rule.moment == MigrationRule.Moment.TERM_END and termed:
            moment, moment_said = zuora_date(sub.get("TermEndDate")), "term end"
        else:
            moment, moment_said = ctd, "charged-through date"
        lead = str(sub.get(LEAD_FIELD) or "")
        choice = sub.get(rule.choice_field.strip()) if rule.choice_source == "zuora" else None
        picked = chosen(rule, choice)
        goes_to = rule.alternative_plan if picked and rule.alternative_plan else target
        row = Row(
            subscription=sub.get("Name") or "",
            account=account.get("AccountNumber") or "",
            lead=int(lead) if lead.isdigit() else None,
            rule=rule.id,
            current=str(source),
            target=str(goes_to),
            effective=moment.isoformat() if moment else "",
            discount=str(rule.discount_plan) if picked and rule.discount_plan else "",
            outcome="move",
            currency=account.get("Currency") or "",
            chosen=picked,
            extra={"moment": moment_said, "rate_plan_id": plan_row["Id"], "version": sub.get("Version")},
        )
        if rule.choice_source == "kommo" and rule.alternative_plan:
            row.target = f"{target} (or {rule.alternative_plan} if the customer chose it in Kommo)"
        if moment is None:
            continue  # never invoiced yet: its charged-through date decides later
        ahead = day < moment <= day + dt.timedelta(days=rule.days_ahead)
        late = usage and grace.days > 0 and day - grace <= moment <= day  # waited for usage, within its grace
        if not (ahead or late):
            continue  # not due today
        key = record_key(row)
        if sub.get("Status") == "Cancelled":
            # Pending cancellation is the status (with its end date); a termed subscription always carries a
            # SubscriptionEndDate — its term end — so the date alone says nothing about a cancellation.
            row.outcome, row.reason = "skipped", f"pending cancellation (ends {sub.get('SubscriptionEndDate')})"
        elif sub.get("Status") != "Active":
            row.outcome, row.reason = "skipped", f"the subscription is {sub.get('Status')}, not Active"
        elif goes_to is not None and row.currency and row.currency not in goes_to.currencies():
            row.outcome, row.reason = "skipped", f"'{goes_to}' has no price in {row.currency}"
        elif reason := queued_change(on_their_way.get(row.subscription, []), day, key):
            row.outcome, row.reason = "skipped", reason
        elif usage and not final_usage_arrived(row.subscription, moment):
            if moment + grace > day or grace.days == 0:
                row.outcome = "skipped"
                row.reason = f"waiting for the final period's usage (through {moment - dt.timedelta(days=1)})"
            else:
                row.extra["without_final_usage"] = True
                row.reason = f"moved without the final period's usage after {grace.days} day(s) of grace"
        rows.append(row)
    return rows


def final_usage_arrived(subscription: str, moment: dt.date) -> bool:
    """Usage for the final period's last day is in zkbridge's ledger."""
    last_day = moment - dt.timedelta(days=1)
    return UsageRecord.objects.filter(subscription_number=subscription, start_date__gte=last_day).exists()


def record_key(row: Row) -> str:
    return f"plan_migration:{row.subscription}:{row.effective}"


def run_migrations(
    day: dt.date | None = None, *, rule_id: int | None = None, dry_run: bool = False, requested_by: str = ""
) -> MigrationRun:
    day = day or business_today()
    rules = list(
        MigrationRule.objects.filter(active=True, starts_on__lte=day).select_related(
            "source_plan__product__entity", "target_plan", "alternative_plan", "discount_plan"
        )
    )
    if rule_id is not None:
        rules = [r for r in rules if r.id == rule_id]
    run = MigrationRun.objects.create(day=day, dry_run=dry_run, rule_id=rule_id, requested_by=requested_by[:150])
    try:
        # Each rule's subscribers are read in its legacy plan's Zuora entity (one read per entity).
        by_entity: dict[int | None, list[MigrationRule]] = {}
        for rule in rules:
            by_entity.setdefault(rule.source_plan.product.entity_id, []).append(rule)
        tenants = {
            entity_id: read_tenant(ZuoraClient.for_entity(group[0].source_plan.product.entity), group)
            for entity_id, group in by_entity.items()
        }
        rows = [row for rule in rules for row in consider(rule, tenants[rule.source_plan.product.entity_id], day)]
        tenant = merged(list(tenants.values()))
        rules_by_id = {r.id: r for r in rules}
        if not dry_run:
            schedule_all(rules_by_id, [row for row in rows if row.outcome == "move"])
        run.rows = [asdict(r) for r in rows]
        run.summary = summarize(rows, tenant.reads, rules)
        run.summary["subscribers"] = {plan: len(found) for plan, found in tenant.plans.items()}
        run.ok = True
    except Exception as exc:  # the run is a report: say what stopped it, keep what it did
        log.exception("migration run for %s failed", day)
        run.error = str(exc)[:2000]
    run.finished_at = timezone.now()
    run.save()
    return run


def merged(tenants: list[Tenant]) -> Tenant:
    """What every entity's read found, for the run's summary."""
    whole = Tenant()
    for part in tenants:
        whole.plans.update(part.plans)
        whole.reads += part.reads
    return whole


def summarize(rows: list[Row], reads: int, rules: list[MigrationRule]) -> dict[str, int]:
    failed_moves = SyncRecord.objects.filter(
        kind=SyncRecord.Kind.PLAN_MIGRATION,
        status__in=(SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED),
    )
    failed = sum(failed_moves.filter(payload__rule=r.id).count() for r in rules)
    return {
        "moved": sum(r.outcome in ("move", "moved") for r in rows),
        "scheduled": sum(r.outcome == "scheduled" for r in rows),
        "skipped": sum(r.outcome == "skipped" for r in rows),
        "failed": failed,
        "zuora_reads": reads,
    }


SCHEDULE_BATCH = 500


def schedule_all(rules: dict[int, MigrationRule], rows: list[Row]) -> None:
    """One plan_migration record per subscription and moment, inserted in batches; the key makes a
    record that an earlier (perhaps killed) run inserted count as scheduled, never twice. The records are
    due at once: the workers' dispatcher hands them over (200 a second), so a large run never floods the
    queue in one go, and each batch is committed before the next (a run killed half-way keeps them)."""
    for start in range(0, len(rows), SCHEDULE_BATCH):
        batch = rows[start : start + SCHEDULE_BATCH]
        keys = [record_key(row) for row in batch]
        existing = set(SyncRecord.objects.filter(key__in=keys).values_list("key", flat=True))
        SyncRecord.objects.bulk_create(
            [new_record(rules[row.rule], row) for row in batch if record_key(row) not in existing],
            ignore_conflicts=True,
        )
        for row in batch:
            row.outcome = "scheduled" if record_key(row) in existing else "moved"


def new_record(rule: MigrationRule, row: Row) -> SyncRecord:
    return SyncRecord(
        kind=SyncRecord.Kind.PLAN_MIGRATION,
        key=record_key(row),
        entity=rule.source_plan.product.entity,
        kommo_lead_id=row.lead,
        zuora_account_number=row.account,
        zuora_subscription_number=row.subscription,
        summary=f"{row.current} → {row.target} on {row.effective}"[:300],
        next_attempt_at=timezone.now(),
        payload=payload_of(rule, row),
    )


def payload_of(rule: MigrationRule, row: Row) -> dict[str, Any]:
    return {
        "rule": rule.id,
        "moment": row.effective,
        "moment_said": row.extra.get("moment"),
        "source": rule.source_plan.zuora_id,
        "target": rule.target_plan.zuora_id,
        "alternative": rule.alternative_plan.zuora_id if rule.alternative_plan else "",
        "discount": rule.discount_plan.zuora_id if rule.discount_plan else "",
        "choice_source": rule.choice_source,
        "choice_field": rule.choice_field.strip(),
        "quiet": rule.quiet,
        "currency": row.currency,
        "without_final_usage": bool(row.extra.get("without_final_usage")),
    }


def run_for_rule(rule_id: int, dry_run: bool, requested_by: str = "") -> str:
    """Worker: a run (or dry run) of one rule, asked for from the admin (by `requested_by`)."""
    run = run_migrations(rule_id=rule_id, dry_run=dry_run, requested_by=requested_by)
    return f"{run}: {run.summary}" if run.ok else f"{run} failed: {run.error}"


def scheduled() -> str:
    run = run_migrations()
    return f"migration run: {run.summary}" if run.ok else f"migration run failed: {run.error}"


def silent_profile() -> str:
    return settings.ZKBRIDGE_SILENT_COMMUNICATION_PROFILE_ID or ""


def count_move(entry: dict, record: SyncRecord, month: dt.date) -> None:
    if record.status in SyncRecord.OPEN:
        entry["scheduled"] += 1
    elif record.status == SyncRecord.Status.SUCCEEDED and record.finished_at and record.finished_at.date() >= month:
        entry["moved_this_month"] += 1
    elif record.status in (SyncRecord.Status.NEEDS_ATTENTION, SyncRecord.Status.FAILED):
        entry["failures"].append((record.id, f"{record.zuora_subscription_number}: {record.reason[:120]}"))


def migration_status(plan_ids: list[str]) -> dict[str, dict]:
    """The legacy report's migration columns (registered as a catalog contribution at start-up)."""
    today = business_today()
    month = today.replace(day=1)
    status: dict[str, dict] = {
        p: {"remaining": None, "scheduled": 0, "moved_this_month": 0, "failures": [], "rule": "", "rule_id": None}
        for p in plan_ids
    }
    # Subscribers still on each plan, as the latest run counted them in Zuora (current versions).
    for run in MigrationRun.objects.filter(ok=True).order_by("-started_at")[:20]:
        for plan, count in (run.summary.get("subscribers") or {}).items():
            if plan in status and status[plan]["remaining"] is None:
                status[plan]["remaining"] = count
                status[plan]["counted_on"] = run.day
    for plan_id in plan_ids:
        entry = status[plan_id]
        moves = SyncRecord.objects.filter(kind=SyncRecord.Kind.PLAN_MIGRATION, payload__source=plan_id)
        for record in moves.only("id", "status", "finished_at", "reason", "zuora_subscription_number").iterator():
            count_move(entry, record, month)
    for rule in MigrationRule.objects.filter(active=True, source_plan__zuora_id__in=plan_ids).select_related(
        "source_plan"
    ):
        status[rule.source_plan.zuora_id].update(rule=str(rule), rule_id=rule.id)
    return status
