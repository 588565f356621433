"""The Kommo emulator behaves as ../shared/reference/kommo-api.md says."""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import pytest
import requests

from sandbox.common import set_setting
from sandbox.models import KAuthCode, KLead, KWebhookDelivery

TOKEN = {"Authorization": "Bearer kommo-demo-long-lived-token"}
OAUTH = {
    "client_id": "kommo-demo-client",
    "client_secret": "kommo-demo-client-secret",
    "redirect_uri": "https://zkbridge.example/oauth",
}


def get(emulators, path, **kw):
    return requests.get(f"{emulators.kommo}{path}", headers=kw.pop("headers", TOKEN), timeout=10, **kw)


def test_lead_comes_with_contacts_companies_and_products(emulators):
    lead = get(emulators, "/api/v4/leads/24312345", params={"with": "contacts,catalog_elements"}).json()
    assert lead["_embedded"]["companies"][0]["id"] == 5550001
    assert {c["id"]: c["is_main"] for c in lead["_embedded"]["contacts"]} == {6660001: True, 6660002: False}
    assert lead["_embedded"]["catalog_elements"][0]["metadata"]["quantity"] == 1
    assert lead["custom_fields_values"][0]["values"][0]["value"] == "Growth"


def test_contacts_carry_multitext_emails(emulators):
    contact = get(emulators, "/api/v4/contacts/6660001").json()
    email = next(f for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL")
    assert email["values"][0] == {"value": "jane@acme.example", "enum_id": 200301, "enum_code": "WORK"}


def test_empty_lists_and_unknown_leads_are_204_without_body(emulators):
    answer = get(
        emulators,
        "/api/v4/leads",
        params={"filter[statuses][0][pipeline_id]": 4520110, "filter[statuses][0][status_id]": 142},
    )
    assert answer.status_code == 204 and answer.content == b""
    assert get(emulators, "/api/v4/leads/1").status_code == 204


def test_lists_page_with_next_links(emulators):
    first = get(emulators, "/api/v4/leads", params={"limit": 4}).json()
    assert len(first["_embedded"]["leads"]) == 4 and "next" in first["_links"]
    second = requests.get(first["_links"]["next"]["href"], headers=TOKEN, timeout=10).json()
    assert len(second["_embedded"]["leads"]) == 2 and "next" not in second["_links"]
    assert get(emulators, "/api/v4/leads", params={"limit": 251}).status_code == 400


def test_wrong_token_is_401_problem_json(emulators):
    answer = get(emulators, "/api/v4/leads/24312345", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401 and answer.headers["Content-Type"] == "application/problem+json"


def test_invalid_field_rejects_the_whole_patch(emulators):
    answer = requests.patch(
        f"{emulators.kommo}/api/v4/leads/24312345",
        headers=TOKEN,
        timeout=10,
        json={"name": "renamed", "custom_fields_values": [{"field_id": 999, "values": [{"value": "x"}]}]},
    )
    body = answer.json()
    assert answer.status_code == 400 and body["validation-errors"][0]["errors"][0]["code"] == "NotSupportedChoice"
    assert KLead.objects.get(id=24312345).name == "ACME annual"


def test_notes_and_tasks_are_written_and_listed(emulators):
    requests.post(
        f"{emulators.kommo}/api/v4/leads/notes",
        headers=TOKEN,
        timeout=10,
        json=[{"entity_id": 24312345, "note_type": "common", "params": {"text": "hello"}}],
    ).raise_for_status()
    notes = get(emulators, "/api/v4/leads/24312345/notes").json()["_embedded"]["notes"]
    assert notes[0]["params"]["text"] == "hello"
    bad = requests.post(f"{emulators.kommo}/api/v4/tasks", headers=TOKEN, timeout=10, json=[{"text": "x"}])
    assert bad.status_code == 400 and "complete_till" in bad.text


def test_more_than_seven_requests_a_second_get_a_non_json_429(emulators):
    set_setting("kommo_requests_per_second", 7)
    answers = [get(emulators, "/api/v4/leads/pipelines") for _ in range(12)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "the emulator let more than 7 requests a second through"
    assert limited[0].headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        limited[0].json()
    time.sleep(1.1)
    assert get(emulators, "/api/v4/leads/pipelines").status_code == 200


def test_refresh_tokens_are_single_use_and_rotate(emulators):
    KAuthCode.objects.create(code="code-1")
    url = f"{emulators.kommo}/oauth2/access_token"
    first = requests.post(url, json={**OAUTH, "grant_type": "authorization_code", "code": "code-1"}, timeout=10).json()
    second = requests.post(
        url, json={**OAUTH, "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, timeout=10
    )
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    reused = requests.post(
        url, json={**OAUTH, "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, timeout=10
    )
    assert reused.status_code == 401 and "revoked" in reused.json()["detail"]
    # The old access token died with its refresh token; the new one works.
    assert (
        get(
            emulators, "/api/v4/leads/pipelines", headers={"Authorization": f"Bearer {first['access_token']}"}
        ).status_code
        == 401
    )
    assert (
        get(
            emulators, "/api/v4/leads/pipelines", headers={"Authorization": f"Bearer {second.json()['access_token']}"}
        ).status_code
        == 200
    )


def test_oauth_refuses_wrong_client_secret(emulators):
    answer = requests.post(
        f"{emulators.kommo}/oauth2/access_token",
        timeout=10,
        json={**OAUTH, "client_secret": "nope", "grant_type": "refresh_token", "refresh_token": "x"},
    )
    assert answer.status_code == 401


def test_status_change_posts_a_form_encoded_web_hook(emulators):
    emulators.win(24312346)
    delivery = KWebhookDelivery.objects.get()
    pairs = dict(parse_qsl(delivery.body))
    assert pairs["leads[status][0][id]"] == "24312346" and pairs["leads[status][0][status_id]"] == "142"
    assert pairs["leads[status][0][old_status_id]"] == "39402112" and pairs["account[subdomain]"] == "sandbox"
    assert pairs["leads[status][0][custom_fields][0][values][0][value]"] == "Starter"
    assert delivery.status == 200


def test_a_batch_edit_is_reported_in_one_web_hook_carrying_every_lead(emulators):
    requests.post(
        f"{emulators.kommo}/api/v4/webhooks",
        json={"destination": emulators.webhook_url, "settings": ["status_lead", "update_lead"]},
        headers=TOKEN,
        timeout=10,
    ).raise_for_status()
    leads = [24312345, 24312346, 24312347]
    answer = requests.patch(
        f"{emulators.kommo}/api/v4/leads",
        headers=TOKEN,
        timeout=10,
        json=[
            {"id": leads[0], "name": "ACME renamed"},
            {"id": leads[1], "status_id": 142},  # moved to Won in the same edit: a status and an update
            {"id": leads[2], "price": 999},
        ],
    )
    assert answer.status_code == 200
    delivery = KWebhookDelivery.objects.get()  # one post for the whole batch, as Kommo reports a mass edit
    pairs = dict(parse_qsl(delivery.body))
    assert [pairs[f"leads[update][{n}][id]"] for n in range(3)] == [str(lead) for lead in leads]
    assert pairs["leads[update][0][name]"] == "ACME renamed" and pairs["leads[update][2][price]"] == "999"
    assert pairs["leads[status][0][id]"] == "24312346" and pairs["leads[status][0][status_id]"] == "142"
    assert "leads[status][1][id]" not in pairs and delivery.status == 200


def test_a_batch_naming_a_deleted_lead_changes_nothing_and_reports_nothing(emulators):
    KLead.objects.filter(id=24312347).update(is_deleted=True)
    answer = requests.patch(
        f"{emulators.kommo}/api/v4/leads",
        headers=TOKEN,
        timeout=10,
        json=[{"id": 24312345, "name": "ACME renamed"}, {"id": 24312347, "name": "gone"}],
    )
    assert answer.status_code == 400 and answer.json()["validation-errors"][0]["request_id"] == "1"
    assert KLead.objects.get(id=24312345).name == "ACME annual" and not KWebhookDelivery.objects.exists()


def test_html_403_fault_imitates_a_blocked_account(emulators):
    emulators.fault("kommo", "html403", "/api/v4/")
    answer = get(emulators, "/api/v4/leads/24312345")
    assert answer.status_code == 403 and "<html>" in answer.text
