"""Live checks of the Zuora and Kommo credentials, for the admin's Connections page."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.models import ZuoraEntity
from sync import kommo_fields
from sync.clients.errors import ApiError
from sync.clients.kommo import KommoClient
from sync.clients.zuora import ZuoraClient
from sync.installation import kommo_webhook_url
from sync.models import ConnectionCheck


def _timed(check) -> dict[str, Any]:
    started = time.monotonic()
    try:
        detail = check()
        ok, error = True, ""
    except ApiError as exc:
        detail, ok, error = None, False, str(exc)
    return {"ok": ok, "error": error, "detail": detail, "ms": int((time.monotonic() - started) * 1000)}


def request_check(requested_by: str) -> ConnectionCheck:
    """Record that someone asked for a check and hand it to the workers."""
    from django_q.tasks import async_task

    check = ConnectionCheck.objects.create(requested_by=requested_by[:150])
    transaction.on_commit(lambda: async_task("sync.ops.connections.run_check", check.id, group="connections"))
    return check


def run_check(check_id: int) -> str:
    """Worker: run the live checks and keep their results for the Connections page."""
    results = check_connections()
    ConnectionCheck.objects.filter(id=check_id).update(results=results, finished_at=timezone.now())
    return "ok" if results["zuora"]["ok"] and results["kommo"]["pipelines"]["ok"] else "problems found"


def required_fields() -> list[dict[str, Any]]:
    """The Zuora custom fields zkbridge relies on: object, field, what for, and whether it filters on it."""
    from sync.lifecycle.subscription import LEAD_FIELD
    from sync.migration.models import MigrationRule

    wanted = []
    if settings.ZUORA_ACCOUNT_CRM_FIELD.endswith("__c"):
        wanted.append(
            {
                "object": "Account",
                "field": settings.ZUORA_ACCOUNT_CRM_FIELD,
                "purpose": "finds the customer's account by its Kommo key (ZUORA_ACCOUNT_CRM_FIELD)",
                "filter": True,
            }
        )
    wanted.append(
        {
            "object": "Subscription",
            "field": LEAD_FIELD,
            "purpose": "finds the subscription a won deal already made (retries after 24 h, reconciliation)",
            "filter": True,
        }
    )
    choices = MigrationRule.objects.filter(active=True, choice_source="zuora").values_list("choice_field", flat=True)
    for name in sorted({c.strip() for c in choices if c.strip().endswith("__c")}):
        wanted.append(
            {
                "object": "Subscription",
                "field": name,
                "purpose": "a migration rule reads the customer's choice",
                "filter": False,
            }
        )
    return wanted


def tenant_setup(zuora: ZuoraClient) -> list[dict[str, Any]]:
    """Each required custom field as Zuora's own metadata describes it (GET /v1/describe/{object}): whether it
    exists on its object, can be filtered on where zkbridge filters, and the step to fix it when not."""
    described: dict[str, dict[str, dict[str, Any]]] = {}
    found = []
    for need in required_fields():
        name = need["object"]
        if name not in described:
            described[name] = zuora.describe(name)
        field = described[name].get(need["field"])
        if field is None:
            ok, fix = (
                False,
                (
                    f"Create the custom field {need['field']} on {name} (Settings → Object Manager → {name} → "
                    f"custom fields, type text){', and mark it Filterable (indexed)' if need['filter'] else ''}."
                ),
            )
        elif need["filter"] and not field["filterable"]:
            ok, fix = False, f"Mark {name}.{need['field']} Filterable (indexed) in the Object Manager."
        else:
            ok, fix = True, ""
        found.append(
            {
                **need,
                "exists": field is not None,
                "filterable": bool(field and field["filterable"]),
                "ok": ok,
                "fix": fix,
            }
        )
    return found


def check_connections() -> dict[str, Any]:
    zuora, kommo = ZuoraClient.from_settings(), KommoClient.from_settings()
    url = kommo_webhook_url()

    def zuora_check(client: ZuoraClient = zuora):
        client.access_token(force_refresh=True)
        page = next(client.catalog_pages(page_size=1), [])
        return f"token ok; catalog readable ({len(page)} product on the first page)"

    def zuora_checks() -> dict[str, Any]:
        """The tenant's connection, or (Multi-entity) each active entity's: its client, token and header."""
        entities = list(ZuoraEntity.objects.filter(active=True))
        if not entities:
            return _timed(zuora_check)
        each = {entity.name: _timed(partial(zuora_check, ZuoraClient.for_entity(entity))) for entity in entities}
        failed = {name: result for name, result in each.items() if not result["ok"]}
        return {
            "ok": not failed,
            "error": "; ".join(f"{name}: {result['error']}" for name, result in failed.items()),
            "detail": "; ".join(f"{name}: {result['detail'] or 'failed'}" for name, result in each.items()),
            "ms": sum(result["ms"] for result in each.values()),
            "entities": each,
        }

    def kommo_pipelines():
        return [
            {
                "id": p["id"],
                "name": p.get("name"),
                "statuses": [(s["id"], s.get("name")) for s in (p.get("_embedded") or {}).get("statuses") or []],
            }
            for p in kommo.pipelines()
        ]

    def kommo_hook():
        hooks = [h for h in kommo.webhooks() if h.get("destination") == url]
        if not hooks:
            return {"registered": False, "disabled": None}
        return {"registered": True, "disabled": bool(hooks[0].get("disabled")), "settings": hooks[0].get("settings")}

    return {
        "zuora": {
            "base_url": settings.ZUORA_BASE_URL,
            "version": settings.ZUORA_VERSION,
            "crm_field": settings.ZUORA_ACCOUNT_CRM_FIELD,
            **zuora_checks(),
            "setup": setup_result(zuora),
        },
        "kommo": {
            "base_url": settings.KOMMO_BASE_URL,
            "pipelines": _timed(kommo_pipelines),
            "webhook": _timed(kommo_hook),
            "field_list": _timed(partial(kommo_fields.report, kommo)),
            "won_status": settings.KOMMO_WON_STATUS_ID,
            "fields": {
                "plan": settings.KOMMO_PLAN_FIELD_ID,
                "account": settings.KOMMO_ACCOUNT_FIELD_ID,
                "subscription": settings.KOMMO_SUBSCRIPTION_FIELD_ID,
                "currency": settings.KOMMO_CURRENCY_FIELD_ID,
            },
            "auth": "long-lived token" if settings.KOMMO_ACCESS_TOKEN else "OAuth (rotating refresh tokens)",
        },
        "webhook_url": kommo_webhook_url(masked=True),
        "callout_url": f"{settings.ZKBRIDGE_URL}/webhooks/zuora/",
        "callout_auth": bool(settings.ZUORA_CALLOUT_USERNAME and settings.ZUORA_CALLOUT_PASSWORD),
    }


def setup_result(zuora: ZuoraClient) -> dict[str, Any]:
    """The tenant checklist for the Connections page: every required field's row, ok when all are ready."""
    result = _timed(lambda: tenant_setup(zuora))
    rows = result["detail"] or []
    missing = [f"{row['object']}.{row['field']}" for row in rows if not row["ok"]]
    if missing:
        result["ok"], result["error"] = False, f"the tenant is not ready for zkbridge: {', '.join(missing)}"
    return result


def emulators_unreachable() -> str | None:
    """When zkbridge talks to its built-in emulators, they are served by the zkbridge web process at
    ZKBRIDGE_URL; a command run while it is down would only record a failure. Returns the one line to
    say instead (None when reachable, or when real Zuora and Kommo are configured)."""
    if not (settings.ZKBRIDGE_SANDBOX and (settings.ZUORA_USES_EMULATOR or settings.KOMMO_USES_EMULATOR)):
        return None
    import requests

    url = f"{settings.ZKBRIDGE_URL}/healthz"
    try:
        requests.get(url, timeout=5)
    except requests.RequestException as exc:
        return (
            f"the built-in Zuora and Kommo emulators are served by zkbridge at ZKBRIDGE_URL={settings.ZKBRIDGE_URL}, "
            f"which does not answer ({type(exc).__name__}): start `python3 dev.py demo`, or set ZKBRIDGE_URL to "
            f"where zkbridge runs"
        )
    return None
