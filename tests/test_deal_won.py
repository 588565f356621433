"""A Won deal becomes the right Zuora account and subscription — exactly once, or a visible reason why.

End to end over real HTTP: the Kommo emulator posts its web hook to zkbridge on a live server, the flow
runs (django-q2 sync mode) and calls both emulators.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
import requests
from django.core.management import call_command

from catalog.models import PlanMapping
from sandbox.models import KContact, KLead, RequestLog, ZAccount, ZIdempotency
from sync.flows.models import CustomerAccount
from sync.models import ApiCall, SyncRecord
from sync.tasks import run_sync
from tests.conftest import map_plan

ACME, ACME_EXPANSION, GLOBEX, INITECH, SOLO, UMBRELLA = 24312345, 24312346, 24312347, 24312348, 24312349, 24312350


def record(lead_id: int) -> SyncRecord:
    return SyncRecord.objects.get(key=f"deal_won:{lead_id}")


def test_won_deal_creates_account_and_subscription_with_the_right_plan_and_date(catalog):
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "succeeded", rec.reason
    [sub] = catalog.subscriptions(ACME_EXPANSION)
    lead = catalog.lead(ACME_EXPANSION)
    assert [rp["ratePlanName"] for rp in sub.rate_plans] == ["Starter"]
    assert sub.contract_effective_date == dt.datetime.fromtimestamp(lead.closed_at, dt.UTC).date()
    assert sub.term_type == "TERMED" and sub.initial_term == 12 and sub.auto_renew
    assert sub.account.crm_id == "company:5550001" and sub.account.custom_fields == {"KommoId__c": "company:5550001"}
    assert sub.account.name == "ACME Corp" and sub.account.currency == "USD"
    assert (
        sub.account.bill_to
        == sub.account.sold_to
        == {"firstName": "Jane", "lastName": "Doe", "workEmail": "jane@acme.example"}
    )
    assert rec.zuora_account_number == sub.account.account_number
    assert rec.zuora_subscription_number == sub.subscription_number


def test_the_lead_gets_the_numbers_and_a_note(catalog):
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    fields = {f["field_id"]: f["values"][0]["value"] for f in catalog.lead(ACME_EXPANSION).custom_fields_values}
    assert fields[881250] == rec.zuora_account_number and fields[881251] == rec.zuora_subscription_number
    assert catalog.notes(ACME_EXPANSION) == [
        f"Zuora: subscription {rec.zuora_subscription_number} on account {rec.zuora_account_number} is active "
        f"(Starter, $300.00 MRR)."
    ]


def test_plan_and_products_together_with_one_time_items(catalog):
    catalog.win(ACME)
    rec = record(ACME)
    assert rec.status == "succeeded", rec.reason
    [sub] = catalog.subscriptions(ACME)
    assert [rp["ratePlanName"] for rp in sub.rate_plans] == ["Growth"]
    from sandbox.models import ZOrder

    order = ZOrder.objects.get(order_number=sub.order_number)
    assert [i["itemName"] for i in order.line_items] == ["Onboarding package"]
    page = requests.get(f"{catalog.url}/sandbox/zuora/", timeout=10).text  # the one-time item, on the page
    assert f"<td>{order.order_number}</td><td>{sub.account.account_number}</td>" in page
    assert "Onboarding package × 1" in page
    assert catalog.notes(ACME)[0].endswith(" is active (Growth, Onboarding package, $1,200.00 MRR).")
    # Bill-to: the contact tagged "billing" wins over the main contact; sold-to is the main contact.
    assert sub.account.bill_to["workEmail"] == "bob@acme.example"
    assert sub.account.sold_to["workEmail"] == "jane@acme.example"


def test_contract_date_is_the_close_date_in_the_business_time_zone(catalog, settings):
    settings.ZKBRIDGE_TIME_ZONE = "Pacific/Auckland"
    catalog.win(ACME_EXPANSION)
    lead = catalog.lead(ACME_EXPANSION)
    [sub] = catalog.subscriptions(ACME_EXPANSION)
    assert sub.contract_effective_date == dt.datetime.fromtimestamp(lead.closed_at, ZoneInfo("Pacific/Auckland")).date()


def test_second_won_deal_of_same_company_reuses_the_account(catalog):
    catalog.win(ACME_EXPANSION)
    catalog.win(ACME)
    assert len(catalog.accounts()) == 1
    assert len(catalog.subscriptions()) == 2
    assert record(ACME).zuora_account_number == record(ACME_EXPANSION).zuora_account_number


def test_a_person_without_a_company_becomes_a_contact_account(catalog):
    catalog.win(SOLO)
    [account] = catalog.accounts()
    assert account.crm_id == "contact:6660005" and account.bill_to["workEmail"] == "sam@solo.example"


def test_one_zuora_write_per_deal(catalog):
    catalog.win(ACME_EXPANSION)
    assert catalog.calls("zuora", "POST", "/v1/orders$") == 1
    assert ApiCall.objects.filter(provider="zuora", method="POST", path="/v1/orders").count() == 1


# --- needs attention, never silent -------------------------------------------------------------------
@pytest.mark.parametrize(
    "lead_id, words",
    [
        (UMBRELLA, "no plan mapping for plan 'Platinum'"),
        (GLOBEX, "no billing e-mail"),
    ],
)
def test_needs_attention_has_a_reason_and_a_kommo_task(catalog, lead_id, words):
    catalog.win(lead_id)
    rec = record(lead_id)
    assert rec.status == "needs_attention" and words in rec.reason
    [task] = catalog.tasks(lead_id)
    assert task.responsible_user_id == 7720001 and task.entity_type == "leads"
    assert catalog.subscriptions(lead_id) == [] and catalog.notes(lead_id) == []


def test_a_retired_plan_is_never_sold(catalog):
    map_plan("Growth (2024)", "Growth (2024)")
    catalog.win(INITECH)
    rec = record(INITECH)
    assert rec.status == "needs_attention" and "retired on 2026-06-30" in rec.reason
    assert catalog.tasks(INITECH) and not catalog.subscriptions()


def test_a_plan_not_yet_effective_is_never_sold(catalog):
    map_plan("Platinum", "Enterprise (2027)")
    catalog.win(UMBRELLA)
    assert "not yet effective" in record(UMBRELLA).reason and not catalog.subscriptions()


def test_a_currency_the_plan_is_not_priced_in_is_refused(catalog, settings):
    settings.KOMMO_CURRENCY_FIELD_ID = 881260
    map_plan("Platinum", "Scale (retiring)", currency="EUR")
    lead = KLead.objects.get(id=UMBRELLA)
    lead.custom_fields_values += [{"field_id": 881260, "field_name": "Currency", "values": [{"value": "EUR"}]}]
    lead.save()
    catalog.win(UMBRELLA)
    assert "no price in EUR" in record(UMBRELLA).reason


def test_a_deal_in_another_currency_than_its_account_needs_attention(catalog, settings):
    catalog.win(ACME_EXPANSION)  # ACME's account bills in USD
    settings.KOMMO_CURRENCY_FIELD_ID = 881260
    lead = KLead.objects.get(id=ACME)
    lead.custom_fields_values += [{"field_id": 881260, "field_name": "Currency", "values": [{"value": "EUR"}]}]
    lead.catalog_elements = []
    lead.save()
    catalog.win(ACME)
    assert "bills in USD but the deal is in EUR" in record(ACME).reason
    assert len(catalog.subscriptions()) == 1


def test_a_zuora_business_error_needs_attention_with_zuoras_words(catalog):
    catalog.fault(
        "zuora",
        "success_false",
        "/v1/orders$",
        reason_code=53100320,
        reason_message="'termType' value should be one of: TERMED, EVERGREEN",
    )
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "needs_attention" and "termType" in rec.reason and "53100320" in rec.reason
    assert "Zuora refused" in catalog.tasks(ACME_EXPANSION)[0].text


def test_a_deleted_lead_needs_attention(catalog):
    KLead.objects.filter(id=ACME_EXPANSION).update(is_deleted=True)
    from sync.records import ensure_record

    rec, _ = ensure_record("deal_won", f"deal_won:{ACME_EXPANSION}", kommo_lead_id=ACME_EXPANSION, enqueue=False)
    run_sync(rec.id)
    rec.refresh_from_db()
    assert rec.status == "needs_attention" and "deleted or is not visible" in rec.reason


def test_same_reason_twice_opens_one_task(catalog):
    catalog.win(UMBRELLA)
    SyncRecord.objects.filter(key=f"deal_won:{UMBRELLA}").update(status="pending")
    run_sync(record(UMBRELLA).id)
    assert len(catalog.tasks(UMBRELLA)) == 1


# --- faults end in exactly one subscription ------------------------------------------------------------
@pytest.mark.parametrize(
    "kind, extra",
    [
        ("http500", {}),
        ("http429", {"retry_after": 1}),
        ("drop_after_commit", {}),
    ],
)
def test_zuora_faults_on_the_order_end_in_exactly_one_subscription(catalog, kind, extra):
    catalog.fault("zuora", kind, "/v1/orders$", remaining=1, **{"method": "POST", **extra})
    catalog.win(ACME_EXPANSION)
    assert record(ACME_EXPANSION).status == "succeeded", record(ACME_EXPANSION).reason
    assert len(catalog.subscriptions(ACME_EXPANSION)) == 1 and len(catalog.notes(ACME_EXPANSION)) == 1


def test_a_timeout_retries_later_and_still_makes_one_subscription(catalog, settings):
    settings.ZUORA_TIMEOUT_SECONDS = 1
    # Zuora commits the order but the answer never comes back in time, three times in a row.
    catalog.fault("zuora", "drop_after_commit", "/v1/orders$", remaining=1)
    catalog.fault("zuora", "timeout", "/v1/orders$", sleep_seconds=1.5, remaining=2)
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "retrying" and rec.next_attempt_at is not None and "no answer" in rec.reason
    SyncRecord.objects.filter(id=rec.id).update(next_attempt_at=None)
    assert run_sync(rec.id) == "succeeded"
    assert len(catalog.subscriptions(ACME_EXPANSION)) == 1 and len(catalog.notes(ACME_EXPANSION)) == 1


def test_transient_errors_give_up_after_the_bounded_attempts(catalog, settings):
    settings.ZKBRIDGE_MAX_ATTEMPTS = 2
    catalog.fault("kommo", "http503", "/api/v4/leads/")
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "retrying"
    SyncRecord.objects.filter(id=rec.id).update(next_attempt_at=None)
    run_sync(rec.id)
    rec.refresh_from_db()
    assert rec.status == "failed" and "gave up after 2 attempts" in rec.reason


def test_a_kommo_failure_after_zuora_resumes_without_a_second_order(catalog):
    catalog.fault("kommo", "http500", "/api/v4/leads/notes", remaining=1)
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "retrying" and rec.step_done("order") and not rec.step_done("note")
    SyncRecord.objects.filter(id=rec.id).update(next_attempt_at=None)
    run_sync(rec.id)
    assert record(ACME_EXPANSION).status == "succeeded"
    assert catalog.calls("zuora", "POST", "/v1/orders$") == 1 and len(catalog.notes(ACME_EXPANSION)) == 1


def test_a_note_written_before_its_answer_was_lost_is_not_written_twice(catalog):
    catalog.fault("kommo", "drop_after_commit", "/api/v4/leads/notes", remaining=1)
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    # Kommo kept the note, but its answer never arrived: the record cannot know, so it retries later.
    assert rec.status == "retrying" and len(catalog.notes(ACME_EXPANSION)) == 1
    SyncRecord.objects.filter(id=rec.id).update(next_attempt_at=None)
    run_sync(rec.id)
    assert record(ACME_EXPANSION).status == "succeeded"
    assert len(catalog.notes(ACME_EXPANSION)) == 1  # the retry found the note instead of writing it again


def test_a_retry_days_later_finds_the_subscription_instead_of_creating_another(catalog):
    catalog.win(ACME_EXPANSION)
    # Days later: Zuora has forgotten the Idempotency-Key, and our record lost its order step.
    ZIdempotency.objects.all().delete()
    rec = record(ACME_EXPANSION)
    SyncRecord.objects.filter(id=rec.id).update(status="pending", steps={}, generation=5)
    run_sync(rec.id)
    assert record(ACME_EXPANSION).status == "succeeded"
    assert len(catalog.subscriptions()) == 1


def test_staff_retry_after_fixing_the_mapping_syncs_the_deal(catalog, admin_client):
    catalog.win(UMBRELLA)
    assert record(UMBRELLA).status == "needs_attention"
    mapping = map_plan("Platinum", "Starter")
    assert mapping.currency == "USD"
    answer = admin_client.post(
        "/admin/sync/syncrecord/", {"action": "retry", "_selected_action": [record(UMBRELLA).id]}
    )
    assert answer.status_code == 302
    rec = record(UMBRELLA)
    assert rec.status == "succeeded", rec.reason
    assert rec.generation == 2 and [rp["ratePlanName"] for rp in catalog.subscriptions(UMBRELLA)[0].rate_plans] == [
        "Starter"
    ]


def test_a_lead_moved_out_of_won_before_the_flow_ran_is_not_billed(catalog):
    from sync.records import ensure_record

    rec, _ = ensure_record("deal_won", f"deal_won:{ACME_EXPANSION}", kommo_lead_id=ACME_EXPANSION, enqueue=False)
    run_sync(rec.id)
    rec.refresh_from_db()
    assert rec.status == "needs_attention" and "no longer Won" in rec.reason and not catalog.subscriptions()


def test_poll_kommo_catches_a_lost_web_hook(catalog):
    from sandbox.models import KWebhook

    KWebhook.objects.all().delete()  # the web hook never arrives
    catalog.win(ACME_EXPANSION)
    assert not SyncRecord.objects.exists()
    call_command("poll_kommo", verbosity=0)
    assert record(ACME_EXPANSION).status == "succeeded"
    call_command("poll_kommo", verbosity=0)  # a second run finds nothing new
    assert SyncRecord.objects.count() == 1 and len(catalog.subscriptions()) == 1


def test_contact_email_is_required_but_company_email_is_enough(catalog):
    KContact.objects.filter(id=6660004).update(custom_fields_values=[])
    map_plan("Growth (2024)", "Starter")  # map Initech's old plan value to a sellable plan
    catalog.win(INITECH)
    assert record(INITECH).status == "succeeded"
    assert ZAccount.objects.get().bill_to["workEmail"] == "ap@initech.example"


def test_mapping_lookup_ignores_case_and_spaces(catalog):
    KLead.objects.filter(id=ACME_EXPANSION).update(
        custom_fields_values=[
            {"field_id": 881234, "field_name": "Plan", "field_type": "select", "values": [{"value": "  starter "}]}
        ]
    )
    catalog.win(ACME_EXPANSION)
    assert record(ACME_EXPANSION).status == "succeeded"
    assert PlanMapping.objects.filter(normalized_value="starter").exists()


# --- the won flow at its floor: independent calls together, no read that cannot change the outcome --------
def zuora_reads(path: str) -> int:
    return ApiCall.objects.filter(provider="zuora", method="GET", path__startswith=path).count()


def test_a_first_attempt_skips_the_lookup_by_lead_and_a_repeat_customer_skips_the_account_lookup(catalog):
    catalog.win(ACME_EXPANSION)
    assert record(ACME_EXPANSION).status == "succeeded"
    # Nothing can have reached Zuora before the first attempt: no lookup by lead; the new customer is looked up.
    assert zuora_reads("/object-query/subscriptions") == 0 and zuora_reads("/object-query/accounts") == 1
    catalog.win(ACME)  # the same company again: zkbridge billed it, so it knows the account
    assert record(ACME).status == "succeeded" and record(ACME).step_data("order")["account_known"] is True
    assert zuora_reads("/object-query/accounts") == 1 and len(catalog.accounts()) == 1
    kommo = ApiCall.objects.filter(provider="kommo", sync_record=record(ACME))
    assert kommo.count() == 5 and kommo.exclude(method="GET").count() == 2  # lead, contacts, company; fields, note


def test_independent_calls_travel_together(catalog):
    """With every call priced (300 ms per Zuora call, 250 ms per Kommo call) the calls that need nothing from
    each other arrive together: after the lead, its contacts and company with the account lookup and the
    preview; then the order alone; then the field write with the note."""
    catalog.fault("zuora", "latency", "/", latency_ms=300)
    catalog.fault("kommo", "latency", "/api/v4/", latency_ms=250)
    catalog.win(ACME_EXPANSION)
    assert record(ACME_EXPANSION).status == "succeeded"
    arrived = {
        (log.method, log.path.split("?")[0]): log.at
        for log in RequestLog.objects.exclude(path__startswith="/oauth").exclude(path__contains="webhooks")
    }
    lead = arrived["GET", f"/api/v4/leads/{ACME_EXPANSION}"]
    reads = [
        arrived["GET", "/api/v4/contacts"],
        arrived["GET", next(p for m, p in arrived if p.startswith("/api/v4/companies/"))],
        arrived["GET", "/object-query/accounts"],
        arrived["POST", "/v1/orders/preview"],
    ]
    order = arrived["POST", "/v1/orders"]
    writes = [arrived["PATCH", f"/api/v4/leads/{ACME_EXPANSION}"], arrived["POST", "/api/v4/leads/notes"]]
    # Apart by less than the cheapest call they would otherwise wait for (250 ms: a margin for threads that
    # start late on a busy machine, which 100 ms had not left); each round after the last.
    assert max(reads) - min(reads) < 0.2 and max(writes) - min(writes) < 0.2
    assert min(reads) - lead >= 0.25 and order - max(reads) >= 0.3 and min(writes) - order >= 0.3


def test_an_account_zuora_no_longer_has_is_forgotten_and_the_retry_looks_again(catalog, admin_client):
    catalog.win(ACME_EXPANSION)
    first = record(ACME_EXPANSION).zuora_account_number
    ZAccount.objects.filter(account_number=first).update(account_number="A-MERGED-AWAY")
    catalog.win(ACME)
    rec = record(ACME)
    assert rec.status == "needs_attention" and f"Account {first} does not exist" in rec.reason
    assert not CustomerAccount.objects.filter(account_number=first).exists()
    answer = admin_client.post("/admin/sync/syncrecord/", {"action": "retry", "_selected_action": [rec.id]})
    assert answer.status_code == 302
    rec = record(ACME)
    assert rec.status == "succeeded" and rec.zuora_account_number == "A-MERGED-AWAY"
    assert CustomerAccount.objects.get(account_number="A-MERGED-AWAY")


def test_a_retry_after_the_order_was_sent_looks_for_it_first(catalog):
    """The order left, Zuora made the subscription, and its answer was lost: the retry finds it (by lead)."""
    catalog.fault("zuora", "drop_after_commit", "/v1/orders$", remaining=3)  # the call's inline tries too
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    assert rec.status == "retrying" and rec.step_data("order")["sent"] and len(catalog.subscriptions()) == 1
    ZIdempotency.objects.all().delete()  # even past Zuora's 24 hours
    SyncRecord.objects.filter(id=rec.id).update(next_attempt_at=None)
    run_sync(rec.id)
    assert record(ACME_EXPANSION).status == "succeeded" and len(catalog.subscriptions()) == 1
    assert zuora_reads("/object-query/subscriptions") == 1


def test_the_facts_other_rooms_read_of_a_won_deal(catalog):
    """Billing events, tasks, plan changes and the admin read these of a deal: each, as the won flow
    recorded it (a step renamed in the flow breaks this test, not them in production)."""
    catalog.win(ACME_EXPANSION)
    rec = record(ACME_EXPANSION)
    lead = catalog.lead(ACME_EXPANSION)
    assert rec.deal_name == lead.name and rec.deal_name
    assert rec.responsible_user_id == lead.responsible_user_id and rec.responsible_user_id
    assert rec.customer_key == "company:5550001"
    assert rec.sold_plan == "Starter"
    assert rec.own_write_at == lead.updated_at
    assert SyncRecord.objects.deal_of(ACME_EXPANSION) == rec == SyncRecord.objects.billed_deal_of(ACME_EXPANSION)
    assert list(SyncRecord.objects.billing(rec.zuora_subscription_number)) == [rec]
    assert SyncRecord.deal_key(ACME_EXPANSION) == rec.key
