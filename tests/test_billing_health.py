"""The customer's billing health on its Kommo company (issue 29, part 3): status, MRR, renewal, balance, overdue,
last payment and the Zuora account's link, refreshed by the billing callouts and a daily bulk pass, written only
when a value changed.

Over real HTTP: callouts are posted to zkbridge on a live server; Zuora's balances and invoices are read from the
Zuora emulator by ZOQL; the fields land on the Kommo emulator's company.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import requests

from sandbox.models import Fault, KCompany, RequestLog, ZAccount, ZInvoice
from sync.health.models import BillingHealth
from sync.health.run import refresh, scheduled
from sync.lifecycle.models import Subscription
from sync.models import SyncRecord
from tests.test_billing_events import ACME_EXPANSION, AUTH, SOLO, callout, event

ACME = 5550001
STATUS, MRR, RENEWAL, BALANCE, OVERDUE, LAST_PAYMENT, LINK = range(882001, 882008)


@pytest.fixture
def billed(catalog, settings):
    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = AUTH
    settings.KOMMO_CONTACT_HEALTH_FIELD_IDS = {}
    settings.KOMMO_COMPANY_HEALTH_FIELD_IDS = {
        "status": STATUS,
        "mrr": MRR,
        "renewal": RENEWAL,
        "balance": BALANCE,
        "overdue": OVERDUE,
        "last_payment": LAST_PAYMENT,
        "account_link": LINK,
    }
    catalog.win(ACME_EXPANSION)
    catalog.win(SOLO)
    catalog.deal = SyncRecord.objects.get(key=f"deal_won:{ACME_EXPANSION}")
    assert catalog.deal.status == "succeeded", catalog.deal.reason
    return catalog


def company_fields(company_id: int = ACME) -> dict[int, str]:
    company = KCompany.objects.get(id=company_id)
    return {f["field_id"]: f["values"][0]["value"] for f in company.custom_fields_values or []}


def bill(env, number: str, overdue_days: int = 0) -> ZInvoice:
    """A bill run invoices the subscription's first month; the invoice is past due by `overdue_days`."""
    answer = requests.post(
        f"{env.url}/sandbox/control/zuora/subscriptions/{number}/bill",
        json={"through": dt.date.today().isoformat()},
        timeout=10,
    )
    answer.raise_for_status()
    invoice = ZInvoice.objects.latest("id")
    if overdue_days:
        ZInvoice.objects.filter(id=invoice.id).update(due_date=dt.date.today() - dt.timedelta(days=overdue_days))
    return invoice


def test_a_failed_payment_callout_updates_the_companys_health(billed):
    account = billed.deal.zuora_account_number
    bill(billed, billed.deal.zuora_subscription_number, overdue_days=5)
    answer = callout(billed, event(billed, "PaymentProcessingError", amount="300", currency="USD"))
    assert answer.status_code == 200
    fields = company_fields()
    today = dt.date.today()
    assert fields[STATUS] == "Active" and fields[MRR] == "300.00"
    assert fields[BALANCE] == "300.00" and fields[OVERDUE] == "300.00"
    assert fields[LAST_PAYMENT] == f"failed $300.00 on {today:%Y-%m-%d}"
    term_end = Subscription.objects.get(number=billed.deal.zuora_subscription_number).term_end
    assert dt.datetime.fromtimestamp(int(fields[RENEWAL]), dt.UTC).date() == term_end
    assert fields[LINK].startswith("http")
    # The event's own note is written as before.
    assert "failed" in billed.notes(ACME_EXPANSION)[-1]
    row = BillingHealth.objects.get(account_number=account)
    assert (row.entity, row.kommo_id) == ("companies", ACME)


def test_a_processed_payment_clears_the_balance_and_an_unchanged_refresh_writes_nothing(billed):
    account = billed.deal.zuora_account_number
    bill(billed, billed.deal.zuora_subscription_number, overdue_days=5)
    callout(billed, event(billed, "PaymentProcessingError", amount="300", currency="USD"))
    requests.post(
        f"{billed.url}/sandbox/control/zuora/accounts/{account}/payment",
        json={"amount": "300", "outcome": "processed"},
        timeout=10,
    ).raise_for_status()
    callout(billed, event(billed, "PaymentProcessed", amount="300", currency="USD"))
    fields = company_fields()
    assert fields[BALANCE] == "0.00" and fields[OVERDUE] == "0.00"
    assert fields[LAST_PAYMENT].startswith("paid $300.00 on ")
    writes = RequestLog.objects.filter(service="kommo", method="PATCH", path="/api/v4/companies").count()
    assert refresh([account]).endswith("0 written, 1 unchanged")
    assert scheduled().endswith("0 written, 1 unchanged")
    assert RequestLog.objects.filter(service="kommo", method="PATCH", path="/api/v4/companies").count() == writes


def test_a_company_with_hundreds_of_subscriptions_is_one_paged_read_and_one_write(billed):
    account = billed.deal.zuora_account_number
    zaccount = ZAccount.objects.get(account_number=account)
    today = dt.date.today()
    Subscription.objects.bulk_create(
        Subscription(
            number=f"A-S9{i:06d}",
            account_number=account,
            status="Active",
            term_type="TERMED",
            term_end=today + dt.timedelta(days=30 + i),
            mrr=Decimal("10"),
            currency="USD",
        )
        for i in range(300)
    )
    ZInvoice.objects.bulk_create(
        ZInvoice(
            account=zaccount,
            invoice_number=f"INV9{i:06d}",
            invoice_date=today,
            due_date=today - dt.timedelta(days=1) if i % 2 else today + dt.timedelta(days=30),
            amount=Decimal("10"),
            balance=Decimal("10"),
        )
        for i in range(300)
    )
    RequestLog.objects.all().delete()
    said = refresh([account])
    assert said.endswith("1 written, 0 unchanged"), said
    fields = company_fields()
    assert fields[STATUS] == "Active (301 subscriptions)" and fields[MRR] == "3300.00"
    assert fields[BALANCE] == "3000.00" and fields[OVERDUE] == "1500.00"
    zuora = RequestLog.objects.filter(service="zuora").exclude(path="/oauth/token")
    assert sorted(zuora.values_list("path", flat=True)) == ["/v1/action/query", "/v1/action/query"]
    assert RequestLog.objects.filter(service="kommo", method="PATCH").count() == 1


def test_a_customer_billed_as_a_person_gets_it_on_the_contact(billed, settings):
    from sandbox.models import KContact

    solo = SyncRecord.objects.get(key=f"deal_won:{SOLO}")
    settings.KOMMO_CONTACT_HEALTH_FIELD_IDS = {"status": 884001, "mrr": 884002}
    assert refresh([solo.zuora_account_number]).endswith("1 written, 0 unchanged")
    contact = KContact.objects.get(id=6660005)
    shown = {f["field_id"]: f["values"][0]["value"] for f in contact.custom_fields_values if f["field_id"] > 884000}
    assert shown == {884001: "Active", 884002: "300.00"}
    row = BillingHealth.objects.get(account_number=solo.zuora_account_number)
    assert (row.entity, row.kommo_id) == ("contacts", 6660005)
    settings.KOMMO_CONTACT_HEALTH_FIELD_IDS = {}
    assert refresh([solo.zuora_account_number]).startswith("no company or contact with health fields")


def test_kommo_refusing_the_company_write_is_kept_on_the_row_and_the_event_goes_on(billed):
    Fault.objects.create(
        service="kommo",
        kind="refuse_entity",
        path_prefix="/api/v4/companies",
        reason_code=ACME,
        reason_message="The field is read only",
    )
    callout(billed, event(billed, "PaymentProcessed", amount="300", currency="USD"))
    row = BillingHealth.objects.get(account_number=billed.deal.zuora_account_number)
    assert "The field is read only" in row.error and row.values == {}
    assert billed.notes(ACME_EXPANSION)[-1].startswith("Zuora: payment of $300.00 received")
    record = SyncRecord.objects.filter(kind="billing_event").latest("id")
    assert record.status == "succeeded" and "Kommo refused" in record.step_data("health")["result"]


def test_without_health_fields_nothing_is_written(billed, settings):
    settings.KOMMO_COMPANY_HEALTH_FIELD_IDS = {}
    settings.KOMMO_CONTACT_HEALTH_FIELD_IDS = {}
    callout(billed, event(billed, "PaymentProcessed", amount="300", currency="USD"))
    assert company_fields() == {} or STATUS not in company_fields()
    assert not BillingHealth.objects.exists()


def test_the_demo_tenant_posts_its_payment_callouts_and_the_company_shows_them(billed, client):
    """The Zuora emulator's bill run and payment run buttons: the tenant's notification posts the callout to
    zkbridge, as Zuora does, and the company's health follows."""
    from sandbox.common import set_setting

    set_setting("zuora_callout", {"url": f"{billed.url}/webhooks/zuora/", "username": AUTH[0], "password": AUTH[1]})
    number = billed.deal.zuora_account_number
    assert client.post(f"/sandbox/zuora/demo/accounts/{number}/", {"action": "bill"}).status_code == 302
    assert ZInvoice.objects.get(account__account_number=number).balance == Decimal("300.00")
    assert client.post(f"/sandbox/zuora/demo/accounts/{number}/", {"action": "failed"}).status_code == 302
    fields = company_fields()
    assert fields[BALANCE] == "300.00" and fields[LAST_PAYMENT].startswith("failed $300.00 on ")
    assert client.post(f"/sandbox/zuora/demo/accounts/{number}/", {"action": "paid"}).status_code == 302
    fields = company_fields()
    assert fields[BALANCE] == "0.00" and fields[LAST_PAYMENT].startswith("paid $300.00 on ")
    page = client.get("/sandbox/kommo/").content.decode()
    assert "Company billing" in page and "Last payment: paid $300.00" in page
