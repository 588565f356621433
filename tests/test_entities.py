"""Several Zuora entities from one Kommo account (issue 14, part 1): routing rules (pipeline, lead field, the
default entity), each entity's catalog, plan map, OAuth client and Zuora-Entity-Ids header, and the refusals
that keep a deal from being billed by an entity by accident. Over real HTTP against the multi-entity
emulator (sandbox.demo.seed_entities)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from catalog.models import CatalogSyncRun, MappedRatePlan, PlanMapping, Product, ProductRatePlan, ZuoraEntity
from sandbox import demo
from sandbox.models import KLead, ZAccount, ZEntity, ZProduct, ZToken
from sync.flows.models import EntityRoute
from sync.migration.rules import validate as validate_rule
from sync.models import ProviderToken, SyncRecord

US_CLIENT = "5e2f9c14-8a7b-4d3e-b1c0-6f9a2d8e4b71"  # the US entity's OAuth client (demo.ENTITIES)
EU_CLIENT = "9c4d1e7a-2f6b-4a8c-8e3d-1b5f7a9c2e60"  # the EU entity's OAuth client (demo.ENTITIES)

US_ID, EU_ID = list(demo.ENTITIES)
UMBRELLA, ACME_EXPANSION = 24312350, 24312346
REGION_FIELD = 881280


def record(lead_id: int) -> SyncRecord:
    return SyncRecord.objects.get(key=f"deal_won:{lead_id}")


def set_field(lead_id: int, field_id: int, value: str) -> None:
    lead = KLead.objects.get(id=lead_id)
    lead.custom_fields_values += [{"field_id": field_id, "values": [{"value": value}]}]
    lead.catalog_elements = []
    lead.save()


def map_in(entity: ZuoraEntity, value: str, plan_name: str) -> PlanMapping:
    mapping = PlanMapping.objects.create(kommo_value=value, currency=entity.currency(), entity=entity)
    MappedRatePlan.objects.create(mapping=mapping, product_rate_plan=ProductRatePlan.objects.get(name=plan_name))
    return mapping


@pytest.fixture
def multi(emulators, settings):
    """Two entities: US with its own OAuth client (the default), EU through the tenant's client (whose token
    covers both, so every call must carry Zuora-Entity-Ids); both catalogs mirrored; each maps the deals'
    plans 'Starter' and 'Growth' to its own product."""
    demo.seed_entities()
    us = ZuoraEntity.objects.create(
        name="US", entity_id=US_ID, default_currency="USD", client_id=US_CLIENT, client_secret="zkbridge-us-secret"
    )
    us.is_default = True
    us.save()
    eu = ZuoraEntity.objects.create(name="EU", entity_id=EU_ID, default_currency="EUR")
    call_command("sync_catalog", verbosity=0)
    for entity, product in ((us, "US Platform"), (eu, "EU Platform")):
        for value in ("Starter", "Growth", "Platinum"):
            map_in(entity, value, f"{product} Standard")
    emulators.us, emulators.eu = us, eu
    return emulators


def test_each_entitys_catalog_is_mirrored_with_its_own_client(multi):
    assert set(Product.objects.filter(entity=multi.us).values_list("name", flat=True)) == {"US Platform"}
    assert set(Product.objects.filter(entity=multi.eu).values_list("name", flat=True)) == {"EU Platform"}
    assert CatalogSyncRun.objects.filter(entity=multi.us, ok=True).exists()
    # US's catalog was read with US's own OAuth client: its token is one Zuora issued to that client, which
    # covers US only; EU's with the tenant's client, whose token covers both entities.
    own = ProviderToken.objects.get(provider=f"zuora:{multi.us.pk}").access_token
    shared = ProviderToken.objects.get(provider="zuora").access_token
    assert own != shared
    assert set(ZToken.objects.get(token=own).entities.values_list("entity_id", flat=True)) == {US_ID}
    assert {EU_ID, US_ID} <= set(ZToken.objects.get(token=shared).entities.values_list("entity_id", flat=True))
    # and each mirrored product is the one Zuora keeps in that entity (ids are per entity in the emulator)
    for entity, zuora_entity in ((multi.us, US_ID), (multi.eu, EU_ID)):
        ids = set(Product.objects.filter(entity=entity).values_list("zuora_id", flat=True))
        in_zuora = set(ZProduct.objects.filter(entity__entity_id=zuora_entity).values_list("zid", flat=True))
        assert ids and ids <= in_zuora, entity


def test_a_pipeline_rule_sends_the_deal_to_its_entity(multi):
    EntityRoute.objects.create(kind="pipeline", pipeline_id=demo.PIPELINE, entity=multi.eu)
    multi.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "succeeded", rec.reason
    assert rec.entity == multi.eu
    account = ZAccount.objects.get(account_number=rec.zuora_account_number)
    # Billed in EU, in EU's currency, on EU's plan — through the tenant's token, so every call named EU.
    assert account.entity == ZEntity.objects.get(entity_id=EU_ID) and account.currency == "EUR"
    [sub] = multi.subscriptions(UMBRELLA)
    assert [p["ratePlanName"] for p in sub.rate_plans] == ["EU Platform Standard"]
    assert "€500.00 MRR" in multi.notes(UMBRELLA)[0]


def test_a_field_rule_routes_and_other_deals_go_to_the_default_entity(multi):
    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value=" eu ", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    multi.win(ACME_EXPANSION)
    assert record(UMBRELLA).entity == multi.eu and record(UMBRELLA).status == "succeeded"
    acme = record(ACME_EXPANSION)
    assert acme.entity == multi.us and acme.status == "succeeded", acme.reason
    assert ZAccount.objects.get(account_number=acme.zuora_account_number).entity.entity_id == US_ID


def test_two_rules_sending_a_deal_to_different_entities_need_attention(multi):
    EntityRoute.objects.create(kind="pipeline", pipeline_id=demo.PIPELINE, entity=multi.us)
    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "needs_attention" and "two entity routing rules" in rec.reason
    assert multi.subscriptions(UMBRELLA) == [] and multi.calls("zuora", "POST", "/v1/orders$") == 0


def test_no_rule_and_no_default_entity_needs_attention_never_a_guess(multi):
    ZuoraEntity.objects.filter(pk=multi.us.pk).update(is_default=False)
    multi.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "needs_attention" and "no Zuora entity is the default" in rec.reason
    assert multi.subscriptions(UMBRELLA) == []


def test_an_entity_whose_catalog_was_never_mirrored_is_refused(multi):
    bare = ZuoraEntity.objects.create(name="APAC", entity_id="ent-apac-0000000000000000000000000003")
    rule = EntityRoute(kind="pipeline", pipeline_id=demo.PIPELINE, entity=bare)
    with pytest.raises(ValidationError, match="catalog has never been mirrored"):
        rule.full_clean()
    ZuoraEntity.objects.filter(pk=multi.us.pk).update(is_default=False)
    ZuoraEntity.objects.filter(pk=bare.pk).update(is_default=True)
    multi.win(UMBRELLA)
    assert "whose catalog has never been mirrored" in record(UMBRELLA).reason


def test_a_currency_the_entity_does_not_map_needs_attention(multi, settings):
    settings.KOMMO_CURRENCY_FIELD_ID = 881260
    EntityRoute.objects.create(kind="pipeline", pipeline_id=demo.PIPELINE, entity=multi.eu)
    set_field(UMBRELLA, 881260, "USD")
    multi.win(UMBRELLA)
    rec = record(UMBRELLA)
    assert rec.status == "needs_attention" and "mapped only in EUR; the deal is in USD" in rec.reason


@pytest.mark.parametrize(
    "rule, words",
    [
        ({"kind": "pipeline"}, "names the Kommo pipeline's id"),
        ({"kind": "field", "field_id": REGION_FIELD}, "names the lead field's id and the value"),
    ],
)
def test_incomplete_or_duplicate_rules_are_refused_on_save(multi, rule, words):
    with pytest.raises(ValidationError, match=words):
        EntityRoute(entity=multi.eu, **rule).full_clean()
    EntityRoute.objects.create(kind="pipeline", pipeline_id=7, entity=multi.eu)
    with pytest.raises(ValidationError, match="Another rule already routes these deals"):
        EntityRoute(kind="pipeline", pipeline_id=7, entity=multi.us).full_clean()


def test_the_plan_map_refuses_a_rate_plan_of_another_entity(multi, tmp_path, capsys):
    from django.core.management.base import CommandError

    path = tmp_path / "map.csv"
    us_plan = ProductRatePlan.objects.get(name="US Platform Standard").zuora_id
    path.write_text(f"kommo_value,product_rate_plan_id,entity,currency\nScale,{us_plan},EU,EUR\n")
    with pytest.raises(CommandError):
        call_command("import_plan_map", str(path))
    assert "is in entity US's catalog; this mapping is for EU" in capsys.readouterr().err
    path.write_text(f"kommo_value,product_rate_plan_id,entity\nScale,{us_plan},{US_ID}\n")
    call_command("import_plan_map", str(path), verbosity=0)
    assert PlanMapping.objects.get(kommo_value="Scale").entity == multi.us


def test_records_show_and_filter_by_entity(multi, admin_client):
    EntityRoute.objects.create(kind="pipeline", pipeline_id=demo.PIPELINE, entity=multi.eu)
    multi.win(UMBRELLA)
    page = admin_client.get(f"/admin/sync/syncrecord/?entity__id__exact={multi.eu.pk}").content.decode()
    assert f"deal_won:{UMBRELLA}" in page and ">EU<" in page
    other = admin_client.get(f"/admin/sync/syncrecord/?entity__id__exact={multi.us.pk}").content.decode()
    assert f"deal_won:{UMBRELLA}" not in other


def test_the_dashboard_shows_one_entitys_syncs(multi, admin_client):
    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    ZuoraEntity.objects.filter(pk=multi.us.pk).update(is_default=False)
    multi.win(ACME_EXPANSION)  # no rule, no default: needs attention, in no entity
    everything = admin_client.get("/admin/").context["dashboard"]
    assert everything["today"].get("succeeded") == 1 and everything["attention_total"] == 1
    eu = admin_client.get(f"/admin/?entity={multi.eu.pk}").context["dashboard"]
    assert eu["entity"] == multi.eu and eu["today"].get("succeeded") == 1 and eu["attention_total"] == 0
    us = admin_client.get(f"/admin/?entity={multi.us.pk}")
    assert us.context["dashboard"]["today"].get("succeeded") is None and 'name="entity"' in us.content.decode()


def test_usage_goes_to_each_deals_entity_one_file_per_entity(multi, settings):
    from sandbox.common import set_setting
    from sandbox.models import ZUsage, ZUsageImport
    from sync.usage.models import UsageRecord
    from tests.test_usage import imports_finish

    settings.ZUORA_USAGE_UNIQUE_KEY = True  # a tenant with Advanced Consumption Billing: the keys travel
    set_setting("zuora_usage_unique_key", True)

    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    multi.win(ACME_EXPANSION)  # the default entity: US
    eu_deal, us_deal = record(UMBRELLA), record(ACME_EXPANSION)
    for n, deal in enumerate([eu_deal, us_deal, eu_deal, us_deal]):
        UsageRecord.objects.create(
            unique_key=f"e{n}", subscription_number=deal.zuora_subscription_number, uom="Seat", quantity=n + 1,
            start_date="2026-11-01", account_number=deal.zuora_account_number,
        )  # fmt: skip
    call_command("submit_usage", verbosity=0)
    batches = {b.entity.name: b for b in SyncRecord.objects.filter(kind="usage_batch").select_related("entity")}
    assert set(batches) == {"US", "EU"} and {b.payload["records"] for b in batches.values()} == {2}
    imports_finish()
    assert set(UsageRecord.objects.values_list("status", flat=True)) == {"imported"}
    # Each file was imported in its own entity (the emulator looks accounts up in the request's entity only).
    files = {i.entity.entity_id: i for i in ZUsageImport.objects.select_related("entity")}
    assert set(files) == {US_ID, EU_ID}
    eu_rows = ZUsage.objects.filter(usage_import=files[EU_ID])
    assert sorted(eu_rows.values_list("unique_key", flat=True)) == ["e0", "e2"]


def test_usage_of_a_subscription_in_no_entity_or_in_two_is_sent_nowhere(multi):
    from sync.usage.models import UsageRecord

    multi.win(ACME_EXPANSION)  # the default entity: US
    deal = record(ACME_EXPANSION)
    # A deal billed before the entities were listed, and one whose subscription number the EU entity numbered
    # the same as a US one (each entity numbers its own): zkbridge cannot tell where their usage belongs.
    SyncRecord.objects.create(
        kind="deal_won", key="deal_won:1", kommo_lead_id=1, status="succeeded",
        zuora_subscription_number="A-S-OLD", zuora_account_number="A-OLD",
    )  # fmt: skip
    SyncRecord.objects.create(
        kind="deal_won", key="deal_won:2", kommo_lead_id=2, status="succeeded", entity=multi.eu,
        zuora_subscription_number=deal.zuora_subscription_number, zuora_account_number=deal.zuora_account_number,
    )  # fmt: skip
    for key, subscription, account in [
        ("old", "A-S-OLD", "A-OLD"),
        ("twice", deal.zuora_subscription_number, deal.zuora_account_number),
    ]:
        UsageRecord.objects.create(
            unique_key=key, subscription_number=subscription, account_number=account, uom="Seat", quantity=1,
            start_date="2026-11-01",
        )  # fmt: skip
    call_command("submit_usage", verbosity=0)
    assert not SyncRecord.objects.filter(kind="usage_batch").exists()
    for row in UsageRecord.objects.all():
        assert row.status == "unplaceable" and row.entity is None
        assert f"which Zuora entity bills subscription {row.subscription_number} is not known" in row.error


def test_reconciliation_reads_every_entity(multi):
    from sandbox.models import ZSubscription
    from sync.reconcile import run_reconciliation

    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    multi.win(ACME_EXPANSION)
    run = run_reconciliation()
    assert run.ok, run.error
    assert run.summary["won_deals"] == 2 and run.summary["discrepancies"] == 0  # both entities' subscriptions seen
    ZSubscription.objects.filter(id__in=[s.id for s in multi.subscriptions(UMBRELLA)]).delete()  # gone from EU
    run = run_reconciliation()
    [row] = run.discrepancies.filter(kind="won_no_subscription")
    assert row.kommo_lead_id == UMBRELLA


def test_the_reconciliation_report_filters_by_entity(multi, admin_client):
    from sandbox.models import ZSubscription
    from sync.reconcile import run_reconciliation

    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    multi.win(ACME_EXPANSION)
    ZSubscription.objects.all().delete()  # both deals lose their subscriptions
    run_reconciliation()
    eu = admin_client.get(f"/admin/sync/discrepancy/?sync_record__entity__id__exact={multi.eu.pk}").content.decode()
    assert str(UMBRELLA) in eu and str(ACME_EXPANSION) not in eu


def test_plan_migrations_run_in_the_legacy_plans_entity(multi):
    import datetime as dt

    import requests

    from sandbox.models import ZProduct, ZRatePlan, ZSubscription
    from sync.migration.models import MigrationRule
    from sync.migration.run import run_migrations
    from sync.tasks import dispatch_due

    ZRatePlan.objects.create(
        zid=demo.zuora_id("EU Legacy"),
        product=ZProduct.objects.get(name="EU Platform"),
        name="EU Legacy",
        effective_start=dt.date(2020, 1, 1),
        effective_end=dt.date(2099, 12, 31),
        charges=[demo._charge("EU Legacy fee", "Recurring", "FlatFee", {"EUR": "400"})],
    )
    call_command("sync_catalog", verbosity=0)
    token = requests.post(
        f"{multi.zuora}/oauth/token",
        data={"client_id": EU_CLIENT, "client_secret": "zkbridge-eu-secret", "grant_type": "client_credentials"},
        timeout=10,
    ).json()["access_token"]
    made = requests.post(  # a subscriber made in Zuora (EU) before the plan was retired: its term ends 2026-12-20
        f"{multi.zuora}/v1/orders",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        json={
            "orderDate": "2025-12-20",
            "newAccount": {
                "name": "Alte Kunde GmbH",
                "currency": "EUR",
                "billCycleDay": 0,
                "billToContact": {"firstName": "Lea", "lastName": "Alt"},
            },
            "subscriptions": [
                {
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "triggerDates": [{"name": "ContractEffective", "triggerDate": "2025-12-20"}],
                            "createSubscription": {
                                "terms": {
                                    "initialTerm": {"termType": "TERMED", "period": 12, "periodType": "Month"},
                                    "autoRenew": True,
                                    "renewalTerms": [{"period": 12, "periodType": "Month"}],
                                },
                                "subscribeToRatePlans": [{"productRatePlanId": demo.zuora_id("EU Legacy")}],
                            },
                        }
                    ]
                }
            ],
        },
    ).json()
    assert made["success"], made
    number = made["subscriptions"][0]["subscriptionNumber"]
    legacy, successor = (
        ProductRatePlan.objects.get(name="EU Legacy"),
        ProductRatePlan.objects.get(name="EU Platform Standard"),
    )
    across = MigrationRule(
        source_plan=legacy,
        target_plan=ProductRatePlan.objects.get(name="US Platform Standard"),
        starts_on=dt.date(2026, 11, 1),
    )
    with pytest.raises(ValidationError, match="moves within its Zuora entity"):
        validate_rule(across)
    rule = MigrationRule(source_plan=legacy, target_plan=successor, starts_on=dt.date(2026, 11, 1))
    rule.full_clean()
    validate_rule(rule)
    rule.save()
    run = run_migrations(dt.date(2026, 12, 19))
    while dispatch_due():
        pass
    assert run.ok, run.error
    move = SyncRecord.objects.get(kind="plan_migration")
    assert move.entity == multi.eu and move.status == "succeeded", move.reason
    latest = ZSubscription.objects.filter(subscription_number=number).order_by("-version").first()
    assert [p["ratePlanName"] for p in latest.billed_plans] == ["EU Platform Standard"]


def test_the_connection_check_tries_every_entitys_client(multi):
    from sync.ops.connections import check_connections

    zuora = check_connections()["zuora"]
    assert zuora["ok"] and set(zuora["entities"]) == {"US", "EU"}
    ZuoraEntity.objects.filter(pk=multi.us.pk).update(client_secret="wrong")
    ProviderToken.objects.filter(provider=f"zuora:{multi.us.pk}").delete()
    zuora = check_connections()["zuora"]
    assert not zuora["ok"] and zuora["error"].startswith("US: ") and zuora["entities"]["EU"]["ok"]


def test_the_subscription_mirror_is_refreshed_from_every_entity(multi):
    from sync.lifecycle.models import Subscription
    from sync.lifecycle.subscription import refresh, refresh_all

    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    set_field(UMBRELLA, REGION_FIELD, "EU")
    multi.win(UMBRELLA)
    multi.win(ACME_EXPANSION)
    Subscription.objects.all().delete()
    assert refresh_all() == 2  # one in each entity, each read with its entity's client
    eu_number = record(UMBRELLA).zuora_subscription_number
    for lead_id, product in ((UMBRELLA, "EU Platform Standard"), (ACME_EXPANSION, "US Platform Standard")):
        mirror = Subscription.objects.get(number=record(lead_id).zuora_subscription_number)
        [billed] = multi.subscriptions(lead_id)
        assert mirror.kommo_lead_id == lead_id and mirror.account_number == billed.account.account_number
        assert [(p["productRatePlanId"], p["name"]) for p in mirror.rate_plans] == [
            (billed.rate_plans[0]["productRatePlanId"], product)
        ]
    Subscription.objects.all().delete()
    refreshed = refresh(eu_number)  # found in EU through its deal (a billing event names only the number)
    assert refreshed is not None and [p["name"] for p in refreshed.rate_plans] == ["EU Platform Standard"]


def test_a_burst_of_deals_in_two_entities_bills_each_in_its_own(multi):
    import time

    from sandbox.models import KNote, RequestLog
    from sync.records import ensure_record
    from sync.tasks import run_sync

    EntityRoute.objects.create(kind="field", field_id=REGION_FIELD, field_value="EU", entity=multi.eu)
    ids = demo.generate_leads(72_000_001, 12)
    european = set(ids[::2])
    for lead_id in european:
        set_field(lead_id, REGION_FIELD, "EU")
    KLead.objects.filter(id__in=ids).update(status_id=142, closed_at=int(time.time()))
    records = [
        ensure_record(SyncRecord.Kind.DEAL_WON, f"deal_won:{i}", enqueue=False, kommo_lead_id=i, payload={"id": i})[0]
        for i in ids
    ]
    RequestLog.objects.all().delete()
    assert run_sync(records[0].id) == "succeeded"
    done = {r.kommo_lead_id: r for r in SyncRecord.objects.filter(id__in=[r.id for r in records])}
    assert {r.status for r in done.values()} == {"succeeded"}, [r.reason for r in done.values()]
    for lead_id, rec in done.items():
        wanted = multi.eu if lead_id in european else multi.us
        assert rec.entity == wanted
        assert ZAccount.objects.get(account_number=rec.zuora_account_number).entity.entity_id == wanted.entity_id
    # One burst: Kommo read the leads once and wrote the notes in one batch call for all twelve.
    assert RequestLog.objects.filter(service="kommo", method="GET", path="/api/v4/leads").count() == 1
    assert RequestLog.objects.filter(service="kommo", method="POST", path="/api/v4/leads/notes").count() == 1
    assert KNote.objects.filter(entity_id__in=ids).count() == 12


def test_a_billing_event_record_shows_its_deals_entity(multi, settings):
    import requests

    settings.ZUORA_CALLOUT_USERNAME, settings.ZUORA_CALLOUT_PASSWORD = "zuora", "callout-password"
    EntityRoute.objects.create(kind="pipeline", pipeline_id=demo.PIPELINE, entity=multi.eu)
    multi.win(UMBRELLA)
    deal = record(UMBRELLA)
    answer = requests.post(
        f"{multi.url}/webhooks/zuora/",
        json={
            "eventType": "PaymentProcessed",
            "accountNumber": deal.zuora_account_number,
            "subscriptionNumber": deal.zuora_subscription_number,
            "amount": "500.00",
            "currency": "EUR",
        },
        auth=("zuora", "callout-password"),
        timeout=30,
    )
    assert answer.status_code in (200, 202), answer.text
    event = SyncRecord.objects.get(kind="billing_event")
    assert event.entity == multi.eu and event.kommo_lead_id == UMBRELLA


def test_the_legacy_report_filters_by_entity(multi, admin_client):
    import datetime as dt

    from catalog.models import ProductRatePlan

    soon = dt.date.today() + dt.timedelta(days=20)
    ProductRatePlan.objects.filter(name__in=["US Platform Standard", "EU Platform Standard"]).update(effective_end=soon)
    url = "/admin/catalog/productrateplan/legacy/?days=90"
    everything = admin_client.get(url).content.decode()
    assert "US Platform Standard" in everything and "EU Platform Standard" in everything
    assert 'name="entity"' in everything and "<th>Entity</th>" in everything
    eu = admin_client.get(f"{url}&entity={multi.eu.pk}").content.decode()
    assert "EU Platform Standard" in eu and "US Platform Standard" not in eu and "in Zuora entity EU" in eu
    for garbage in ("x", "-1", "99999999999999999999999", "1e9", ""):
        page = admin_client.get(f"{url}&entity={garbage}")
        assert page.status_code == 200 and "US Platform Standard" in page.content.decode()
    assert admin_client.get("/admin/?entity=99999999999999999999999").status_code == 200


def test_plan_mappings_round_trip_through_fixtures_with_their_entity(multi, tmp_path):
    import json

    fixture = tmp_path / "plan_map.json"
    call_command(
        "dumpdata", "catalog.planmapping", "--natural-foreign", "--natural-primary", "-o", str(fixture), verbosity=0
    )
    keys = sorted(tuple(row["fields"].get("entity") or ()) for row in json.loads(fixture.read_text()))
    assert keys.count((US_ID,)) == keys.count((EU_ID,)) == 3  # Starter, Growth and Platinum in each entity
    before = sorted(PlanMapping.objects.values_list("kommo_value", "entity__name", "currency", "label"))
    PlanMapping.objects.filter(kommo_value="Starter", entity=multi.eu).update(label="changed in EU")
    call_command("loaddata", str(fixture), verbosity=0)  # each row finds its own entity's mapping again
    assert sorted(PlanMapping.objects.values_list("kommo_value", "entity__name", "currency", "label")) == before
    assert PlanMapping.objects.get_by_natural_key("plan", "starter", "USD", US_ID).entity == multi.us
    with pytest.raises(PlanMapping.DoesNotExist):
        PlanMapping.objects.get_by_natural_key("plan", "starter", "USD")  # no mapping outside the entities


def test_an_entitys_default_currency_must_be_one_its_catalog_sells_in(multi, admin_client):
    url = f"/admin/catalog/zuoraentity/{multi.eu.pk}/change/"
    form = {
        "name": "EU", "entity_id": EU_ID, "default_currency": "JPY", "client_id": "", "client_secret": "",
        "max_concurrent_calls": "", "active": "on",
    }  # fmt: skip
    page = admin_client.post(url, form)
    assert page.status_code == 200  # the form again, with the reason
    assert "No rate plan of this entity&#x27;s mirrored catalog is priced in JPY (it sells in EUR" in (
        page.content.decode()
    )
    assert ZuoraEntity.objects.get(pk=multi.eu.pk).default_currency == "EUR"
    assert admin_client.post(url, {**form, "default_currency": "EUR"}).status_code == 302
    # An entity whose catalog was never mirrored yet is not judged.
    fresh = ZuoraEntity.objects.create(name="APAC", entity_id="ent-apac", default_currency="JPY")
    fresh.full_clean()
