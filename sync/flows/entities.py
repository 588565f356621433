"""Which Zuora entity bills a deal (Zuora Multi-entity). With no entities listed, none: zkbridge works in one
entity as before. With entities, the routing rules decide (a Kommo pipeline, or a lead field's value), else
the default entity — and anything doubtful needs attention: never a deal billed by an entity by accident."""

from __future__ import annotations

from typing import Any

from catalog.models import CatalogSyncRun, ZuoraEntity, normalize
from sync import kommo_texts
from sync.clients.zuora import ZuoraClient
from sync.flows.models import EntityRoute
from sync.flows.sale import field_value
from sync.models import SyncRecord
from sync.outcomes import NeedsAttention


def entities_listed() -> bool:
    return ZuoraEntity.objects.exists()


def route(lead: dict[str, Any]) -> ZuoraEntity | None:
    """The entity that bills this lead's deal (None without entities); NeedsAttention saying why not."""
    if not entities_listed():
        return None
    matched = []
    for rule in EntityRoute.objects.filter(active=True).select_related("entity"):
        if rule.kind == EntityRoute.Kind.PIPELINE:
            if lead.get("pipeline_id") is not None and int(lead["pipeline_id"]) == rule.pipeline_id:
                matched.append(rule)
        elif normalize(field_value(lead, rule.field_id)) == rule.normalized_value:
            matched.append(rule)
    if len({rule.entity_id for rule in matched}) > 1:
        said = "; ".join(str(rule) for rule in matched)
        raise NeedsAttention(
            f"two entity routing rules send this deal to different Zuora entities ({said})",
            task=kommo_texts.task(
                "the deal matches two billing entities",
                "ask RevOps to decide which one bills it (entity routing rules)",
            ),
        )
    entity = matched[0].entity if matched else ZuoraEntity.objects.filter(is_default=True, active=True).first()
    if entity is None:
        raise NeedsAttention(
            f"no entity routing rule matches this deal (pipeline {lead.get('pipeline_id')}) and no Zuora entity "
            "is the default",
            task=kommo_texts.task(
                "no billing entity is set up for this deal", "ask RevOps to add an entity routing rule for it"
            ),
        )
    if not entity.active:
        raise NeedsAttention(f"the deal routes to the Zuora entity {entity}, which is inactive")
    if not CatalogSyncRun.objects.filter(entity=entity, ok=True).exists():
        raise NeedsAttention(
            f"the deal routes to the Zuora entity {entity}, whose catalog has never been mirrored: run "
            "sync_catalog (or the catalog's Sync now)"
        )
    return entity


def route_record(record: SyncRecord, lead: dict[str, Any]) -> ZuoraEntity | None:
    """The record's entity: routed now, unless an order may already have left for the one routed before
    (then it stays there whatever the rules say today: a retry never bills a second entity). A deal whose order
    is done keeps the entity it was billed in, none for one billed before entities were listed."""
    if record.step_done("order"):
        return record.entity
    if record.entity_id is not None and record.step_data("order").get("sent"):
        return record.entity
    entity = route(lead)
    if (entity.pk if entity else None) != record.entity_id:
        SyncRecord.objects.filter(id=record.id).update(entity=entity)
        record.entity = entity
    return entity


def entity_of_lead(lead_id: int | None, subscription_number: str = "") -> ZuoraEntity | None:
    """The entity a deal was billed in, where its subscription lives: its lead's latest won deal's, else (a
    billing event names only the subscription) the latest record of that subscription's."""
    if not entities_listed():
        return None
    billed = SyncRecord.objects.filter(entity__isnull=False).select_related("entity").order_by("-id")
    if lead_id is not None:
        won = billed.deals().filter(kommo_lead_id=lead_id).first()
        if won is not None:
            return won.entity
    deal = billed.filter(zuora_subscription_number=subscription_number).first() if subscription_number else None
    return deal.entity if deal else None


def adopt_entity(record: SyncRecord) -> ZuoraEntity | None:
    """A record about a deal's subscription (a plan change, a cancellation…) works in its deal's entity; the
    record shows it."""
    if record.entity_id is None and (entity := entity_of_lead(record.kommo_lead_id)) is not None:
        SyncRecord.objects.filter(id=record.id).update(entity=entity)
        record.entity = entity
    return record.entity


def zuora_for(record: SyncRecord) -> ZuoraClient:
    """The Zuora client for a record about a deal's subscription: in its deal's entity."""
    return ZuoraClient.for_entity(adopt_entity(record))


def link_key(customer_key: str, entity: ZuoraEntity | None) -> str:
    """The customer's link to its Zuora account, per entity (a customer may be billed in two)."""
    return customer_key if entity is None else f"{customer_key}@{entity.pk}"
