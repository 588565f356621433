"""Test data built in bulk, shared by the tests and the benchmarks (bench/ imports it): won deals in the
Kommo emulator, their accounts and subscriptions in the Zuora emulator, zkbridge's records of them, and a
history of sync records and API calls for the dashboard."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from django.utils import timezone

from sandbox.demo import PIPELINE, PLAN_FIELD, zuora_id
from sandbox.models import KLead, ZAccount, ZSubscription
from sync.models import ApiCall, SyncRecord

WON = 142
ACCOUNT_FIELD, SUBSCRIPTION_FIELD = 881250, 881251


def offered_in_kommo(value: str, field_id: int = 881234) -> None:
    """A Kommo administrator adds an option to a select field by hand (Kommo refuses a value that is none of them)."""
    from sandbox.models import KField

    field = KField.objects.get(id=field_id)
    field.enums = [*field.enums, {"id": 559000 + len(field.enums), "value": value, "sort": 1000}]
    field.save()


def account_number(lead_id: int) -> str:
    return f"A{lead_id:09d}"


def subscription_number(lead_id: int) -> str:
    return f"A-S{lead_id:09d}"


def field(field_id: int, value: str) -> dict:
    return {"field_id": field_id, "values": [{"value": value}]}


def won_leads(lead_ids: Iterable[int], plan: str = "Starter", fields: bool = True) -> list[KLead]:
    """Won leads in the Kommo emulator, with the plan field and (by default) Zuora's numbers filled in."""
    leads = [
        KLead(
            id=lead_id,
            name=f"Deal {lead_id}",
            status_id=WON,
            pipeline_id=PIPELINE,
            created_at=0,
            updated_at=0,
            closed_at=0,
            custom_fields_values=[field(PLAN_FIELD, plan)]
            + (
                [field(ACCOUNT_FIELD, account_number(lead_id)), field(SUBSCRIPTION_FIELD, subscription_number(lead_id))]
                if fields
                else []
            ),
        )
        for lead_id in lead_ids
    ]
    return KLead.objects.bulk_create(leads, batch_size=2000)


def billed_in_zuora(lead_ids: Iterable[int], plan_of: Callable[[int], str] = lambda _: "Starter") -> None:
    """One Zuora account and one subscription (carrying KommoLeadId__c) per lead, in the Zuora emulator."""
    ids = list(lead_ids)
    ZAccount.objects.bulk_create(
        [
            ZAccount(
                account_number=account_number(lead_id),
                name=f"Company of {lead_id}",
                currency="USD",
                crm_id=f"company:{lead_id}",
                custom_fields={"KommoId__c": f"company:{lead_id}"},
            )
            for lead_id in ids
        ],
        batch_size=2000,
    )
    accounts = {a.account_number: a for a in ZAccount.objects.filter(account_number__in=map(account_number, ids))}
    ZSubscription.objects.bulk_create(
        [
            ZSubscription(
                subscription_number=subscription_number(lead_id),
                account=accounts[account_number(lead_id)],
                contract_effective_date="2026-11-01",
                term_start_date="2026-11-01",
                custom_fields={"KommoLeadId__c": str(lead_id)},
                rate_plans=[{"productRatePlanId": zuora_id(plan_of(lead_id)), "ratePlanName": plan_of(lead_id)}],
                order_number="O-1",
            )
            for lead_id in ids
        ],
        batch_size=2000,
    )


def synced_records(lead_ids: Iterable[int]) -> None:
    """zkbridge's records of deals it billed, naming the account and subscription billed_in_zuora made."""
    SyncRecord.objects.bulk_create(
        [
            SyncRecord(
                kind=SyncRecord.Kind.DEAL_WON,
                key=f"deal_won:{lead_id}",
                kommo_lead_id=lead_id,
                status=SyncRecord.Status.SUCCEEDED,
                zuora_account_number=account_number(lead_id),
                zuora_subscription_number=subscription_number(lead_id),
            )
            for lead_id in lead_ids
        ],
        batch_size=2000,
    )


def sync_history(count: int, spread: dt.timedelta = dt.timedelta(days=45)) -> None:
    """`count` sync records spread over the past (17 in 20 succeeded; a failed, a needs-attention and a
    retrying one in every 20) and half as many API calls, one in nine of them an error."""
    now = timezone.now()
    states = ["succeeded"] * 17 + ["failed", "needs_attention", "retrying"]
    minutes = int(spread.total_seconds() // 60)
    SyncRecord.objects.bulk_create(
        [
            SyncRecord(
                kind=SyncRecord.Kind.DEAL_WON,
                key=f"history:{n}",
                kommo_lead_id=n,
                status=states[n % len(states)],
                reason="no plan mapping" if n % 20 == 18 else "",
                created_at=now - dt.timedelta(minutes=(n * 37) % minutes),
                finished_at=now - dt.timedelta(minutes=(n * 37) % minutes),
            )
            for n in range(count)
        ],
        batch_size=5000,
    )
    ApiCall.objects.bulk_create(
        [
            ApiCall(
                provider="zuora" if n % 2 else "kommo",
                method="GET",
                path="/x",
                status=200 if n % 9 else 500,
                duration_ms=120,
                at=now - dt.timedelta(seconds=n * 3),
            )
            for n in range(count // 2)
        ],
        batch_size=5000,
    )
