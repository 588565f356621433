"""Quote previews before Won (issue 29, part 2): a lead moved to a proposal stage is priced by Zuora's order preview
and told so on its card; a sale that cannot be billed gets its task then; nothing is created in Zuora.

End to end over real HTTP: the Kommo emulator posts its web hooks to zkbridge on a live server, the flow runs
(django-q2 sync mode) and calls both emulators; the referee judges every request and answer.
"""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from sandbox.kommo import PROPOSAL
from sandbox.models import Fault, KLead, KTask, ZAccount, ZOrder, ZSubscription
from sync.models import SyncRecord
from sync.preview.models import QuotePreview
from sync.tasks import run_sync
from zkbridge import config
from zkbridge.business_time import business_today

ACME_EXPANSION, GLOBEX, UMBRELLA = 24312346, 24312347, 24312350
MRR, TCV, FIRST, FIRST_DATE, TERM = 881290, 881291, 881292, 881293, 881294


@pytest.fixture
def quotes(catalog, settings):
    """The emulators with previews at the Proposal stage, the web hook also reporting lead edits."""
    settings.KOMMO_PREVIEW_STATUS_IDS = [PROPOSAL]
    settings.KOMMO_PREVIEW_FIELD_IDS = {
        "mrr": MRR,
        "tcv": TCV,
        "first_invoice": FIRST,
        "first_invoice_date": FIRST_DATE,
        "term": TERM,
    }
    settings.KOMMO_CLOSE_DATE_FIELD_ID = 881242
    requests.post(
        f"{catalog.kommo}/api/v4/webhooks",
        json={"destination": catalog.webhook_url, "settings": ["status_lead", "update_lead"]},
        headers={"Authorization": f"Bearer {settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=10,
    ).raise_for_status()
    return catalog


def previews(lead_id: int) -> list[SyncRecord]:
    return list(SyncRecord.objects.filter(kind="quote_preview", kommo_lead_id=lead_id).order_by("id"))


def quoted(lead_id: int) -> SyncRecord:
    """The lead's first preview, once the previews Kommo's echo of its own field write asked for have run: each of
    those waited for the first to finish (one in flight per lead), then found nothing changed."""
    first, *echoes = previews(lead_id)
    for echo in echoes:
        SyncRecord.objects.filter(id=echo.id).update(next_attempt_at=timezone.now())
        run_sync(echo.id)
        echo.refresh_from_db()
        assert echo.status in ("succeeded", "ignored"), echo.reason
    first.refresh_from_db()
    return first


def fields(lead_id: int) -> dict[int, str]:
    lead = KLead.objects.get(id=lead_id)
    return {f["field_id"]: f["values"][0]["value"] for f in lead.custom_fields_values or []}


def edit_lead(env, settings, lead_id: int, values: dict[int, str]) -> None:
    """A salesperson edits the lead in Kommo (the emulator reports the edit by web hook)."""
    answer = requests.patch(
        f"{env.kommo}/api/v4/leads/{lead_id}",
        json={"custom_fields_values": [{"field_id": k, "values": [{"value": v}]} for k, v in values.items()]},
        headers={"Authorization": f"Bearer {settings.SANDBOX_KOMMO_TOKEN}"},
        timeout=30,
    )
    answer.raise_for_status()


def test_a_lead_in_proposal_gets_zuoras_figures_and_nothing_is_created_in_zuora(quotes):
    quotes.win(ACME_EXPANSION, status_id=PROPOSAL)
    record = quoted(ACME_EXPANSION)
    assert record.status == "succeeded", record.reason
    assert len(quotes.notes(ACME_EXPANSION)) == 1, "the echo of zkbridge's own write wrote again"
    today = business_today()
    # Starter: $300 a month, billed monthly in advance, 12 months renewing for 12.
    got = fields(ACME_EXPANSION)
    assert got[MRR] == "300.00" and got[TCV] == "3600.00" and got[FIRST] == "300.00"
    assert dt.datetime.fromtimestamp(int(got[FIRST_DATE]), dt.UTC).date() == today
    assert got[TERM] == "12 months, renews for 12 months"
    assert quotes.notes(ACME_EXPANSION) == [
        f"Zuora: quote for Starter from {today:%Y-%m-%d}: $300.00 MRR, $3,600.00 TCV, first invoice $300.00 on "
        f"{today:%Y-%m-%d}, 12 months, renews for 12 months. Nothing is billed until the deal is won."
    ]
    assert not ZAccount.objects.exists() and not ZSubscription.objects.exists() and not ZOrder.objects.exists()
    assert quotes.calls("zuora", "POST", "/v1/orders/preview$") == 1
    assert not SyncRecord.objects.deals().exists()  # a preview is never a billed deal
    row = QuotePreview.objects.get(lead_id=ACME_EXPANSION)
    assert (row.mrr, row.tcv, row.first_invoice, row.problem) == (300, 3600, 300, "")


def test_the_figures_are_the_ones_zuora_previews_for_a_plan_with_a_one_time_fee(quotes, settings):
    """Growth with its onboarding product: the first invoice holds the first month and the one-time fee; TCV is
    the subscription's (Zuora's chargeMetrics)."""
    quotes.win(24312345, status_id=PROPOSAL)
    record = quoted(24312345)
    assert record.status == "succeeded", record.reason
    got = fields(24312345)
    assert not ZOrder.objects.exists()
    mrr, first = float(got[MRR]), float(got[FIRST])
    assert mrr == 1200.0 and first > mrr  # the first month and the onboarding package
    assert float(got[TCV]) == mrr * 12


def test_an_edit_that_changes_the_sale_is_previewed_again_and_our_own_write_is_not(quotes, settings):
    quotes.win(ACME_EXPANSION, status_id=PROPOSAL)
    quoted(ACME_EXPANSION)
    assert len(quotes.notes(ACME_EXPANSION)) == 1
    edit_lead(quotes, settings, ACME_EXPANSION, {881234: "Growth"})
    assert fields(ACME_EXPANSION)[MRR] == "1200.00"
    notes = quotes.notes(ACME_EXPANSION)
    assert len(notes) == 2 and "quote for Growth" in notes[1]
    assert quotes.calls("zuora", "POST", "/v1/orders/preview$") == 2
    for record in previews(ACME_EXPANSION):  # the echoes of zkbridge's own writes: nothing changed, nothing written
        if record.status == "pending":
            SyncRecord.objects.filter(id=record.id).update(next_attempt_at=timezone.now())
            run_sync(record.id)
            record.refresh_from_db()
            assert record.summary == "unchanged since the last preview: nothing written"
    assert len(quotes.notes(ACME_EXPANSION)) == 2 and quotes.calls("zuora", "POST", "/v1/orders/preview$") == 2


def test_an_unmapped_plan_gets_its_task_now_once_and_the_won_deal_takes_it_over(quotes, settings):
    quotes.win(UMBRELLA, status_id=PROPOSAL)
    record = quoted(UMBRELLA)
    assert record.status == "succeeded" and "no plan mapping for plan 'Platinum'" in record.summary
    [task] = quotes.tasks(UMBRELLA)
    assert "Platinum" in task.text and not task.is_completed
    edit_lead(quotes, settings, UMBRELLA, {881260: "USD"})  # an edit that fixes nothing
    assert len(quotes.tasks(UMBRELLA)) == 1, "a second task for the same reason"
    assert quotes.calls("zuora", "POST", "/v1/orders/preview") == 0
    quotes.win(UMBRELLA)  # won anyway: the deal meets the same problem and keeps the one task
    deal = SyncRecord.objects.get(key=f"deal_won:{UMBRELLA}")
    assert deal.status == "needs_attention"
    assert len(quotes.tasks(UMBRELLA)) == 1
    assert deal.step_data("attention_task")["task_id"] == task.id


def test_a_fixed_sale_completes_the_preview_task(quotes, settings):
    quotes.win(UMBRELLA, status_id=PROPOSAL)
    edit_lead(quotes, settings, UMBRELLA, {881234: "Starter"})
    [task] = quotes.tasks(UMBRELLA)
    assert task.is_completed and task.result == "Zuora: fixed: the deal now prices in Zuora."
    assert fields(UMBRELLA)[MRR] == "300.00"


def test_no_billing_email_is_told_before_won(quotes):
    quotes.win(GLOBEX, status_id=PROPOSAL)
    [task] = quotes.tasks(GLOBEX)
    assert "billing e-mail" in task.text
    assert quotes.calls("zuora", "POST", "/v1/orders/preview") == 0


def test_a_preview_zuora_refuses_is_said_once_and_not_retried(quotes, settings):
    Fault.objects.create(
        service="zuora",
        kind="success_false",
        path_prefix="/v1/orders/preview",
        reason_message="Rate plan is not available for preview",
    )
    quotes.win(ACME_EXPANSION, status_id=PROPOSAL)
    record = quoted(ACME_EXPANSION)
    assert record.status == "succeeded" and record.attempts == 1
    assert "Rate plan is not available for preview" in record.summary
    assert quotes.notes(ACME_EXPANSION) == [
        "Zuora: the quote was refused in preview: Rate plan is not available for preview (53100030). Ask RevOps "
        "before the deal is won."
    ]
    edit_lead(quotes, settings, ACME_EXPANSION, {881260: "USD"})  # the same sale, refused again: no second note
    assert len(quotes.notes(ACME_EXPANSION)) == 1
    assert not KTask.objects.filter(entity_id=ACME_EXPANSION).exists()


def test_a_lead_outside_the_preview_stages_is_not_previewed(quotes):
    quotes.win(ACME_EXPANSION, status_id=39402112)  # Negotiation
    assert previews(ACME_EXPANSION) == [] and quotes.notes(ACME_EXPANSION) == []


def test_previews_are_off_without_stages(catalog, settings):
    settings.KOMMO_PREVIEW_STATUS_IDS = []
    catalog.win(ACME_EXPANSION, status_id=PROPOSAL)
    assert previews(ACME_EXPANSION) == []


def test_the_field_ids_variable_refuses_garbage(monkeypatch):
    names = ("mrr", "tcv")
    monkeypatch.setenv("X_FIELDS", "mrr=881290, tcv=881291")
    assert config.field_ids("X_FIELDS", names) == {"mrr": 881290, "tcv": 881291}
    for bad in ("mrr", "mrr=abc", "arr=1", "mrr=1,mrr=2", "mrr=0", "mrr=-3"):
        monkeypatch.setenv("X_FIELDS", bad)
        with pytest.raises(ImproperlyConfigured, match="X_FIELDS"):
            config.field_ids("X_FIELDS", names)
