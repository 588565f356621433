"""Reading Kommo's web hook bodies: PHP-style nested form keys, every value a string.

Only what zkbridge acts on is extracted (lead events); the raw body is kept in the inbox as it came.
The payload is a hint, never the truth: it is unsigned, so the won flow re-fetches the lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from qs_codec import DecodeOptions, decode

from sync.webhooks import values

MAX_PARAMETERS = 5000
# Deep enough for leads[status][0][custom_fields][0][values][0][value]; lists up to Kommo's batch sizes.
OPTIONS = DecodeOptions(depth=10, list_limit=1000, parameter_limit=MAX_PARAMETERS, raise_on_limit_exceeded=True)
LEAD_ACTIONS = ("add", "update", "status", "delete", "restore", "responsible")
# The lead events that show a lead's stage and fields as they are now (a delete, a restore or a new owner do not).
STATE_ACTIONS = ("status", "add", "update")
ENTITIES = ("leads", "contacts", "companies", "customers", "tasks", "catalogs", "unsorted", "talk", "message")


class NotKommoFormat(ValueError):
    """The body is not a Kommo web hook; the message says why, briefly."""


@dataclass(frozen=True)
class LeadEvent:
    action: str
    lead_id: int
    status_id: int | None
    pipeline_id: int | None
    entity: dict


def _items(value) -> list:
    """A decoded "list": a list, or a dict keyed by (string) indices when the decoder gave up on lists."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    raise NotKommoFormat("an entity list is not a list")


def _int(value, what: str, required: bool = True) -> int | None:
    if value in (None, "") and not required:
        return None
    try:
        return values.whole_number(value, what)
    except ValueError as exc:
        raise NotKommoFormat(str(exc)) from None


def parse(body: bytes) -> tuple[dict, list[LeadEvent]]:
    """Decode a body into (nested payload, lead events). Raises NotKommoFormat."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise NotKommoFormat("the body is not UTF-8 form data") from None
    if not text.strip():
        raise NotKommoFormat("the body is empty")
    if text.lstrip().startswith(("{", "[", "<")):
        raise NotKommoFormat("the body is JSON or XML; Kommo sends application/x-www-form-urlencoded")
    if not parse_qsl(text, keep_blank_values=True):
        raise NotKommoFormat("the body has no form fields")
    try:
        payload = decode(text, OPTIONS)
    except (ValueError, IndexError) as exc:
        raise NotKommoFormat(f"the body cannot be decoded as form data ({str(exc)[:80]})") from None
    if not isinstance(payload, dict) or not any(isinstance(payload.get(e), dict) for e in ENTITIES):
        raise NotKommoFormat("no Kommo entity (leads, contacts, companies, …) in the body")
    try:
        values.check_tree(payload)
    except ValueError as exc:
        raise NotKommoFormat(str(exc)) from None
    events: list[LeadEvent] = []
    leads = payload.get("leads")
    if isinstance(leads, dict):
        for action, entities in leads.items():
            if action not in LEAD_ACTIONS:  # notes, or an action Kommo added since: not ours, the rest is read
                continue
            for index, entity in enumerate(_items(entities)):
                if not isinstance(entity, dict):
                    raise NotKommoFormat(f"leads[{action}][{index}] is not an entity")
                if "id" not in entity:
                    raise NotKommoFormat(f"leads[{action}][{index}] has no id")
                lead_id = _int(entity["id"], f"leads[{action}][{index}][id]")
                if lead_id is None or lead_id <= 0:
                    raise NotKommoFormat(f"leads[{action}][{index}][id] must be a positive number")
                events.append(
                    LeadEvent(
                        action=action,
                        lead_id=lead_id,
                        status_id=_int(entity.get("status_id"), f"leads[{action}][{index}][status_id]", required=False),
                        pipeline_id=_int(
                            entity.get("pipeline_id"), f"leads[{action}][{index}][pipeline_id]", required=False
                        ),
                        entity=entity,
                    )
                )
    return payload, events


def latest_by_lead(events: list[LeadEvent]) -> dict[int, LeadEvent]:
    """Each lead's latest event that shows its state (a delivery may report one lead several times)."""
    return {item.lead_id: item for item in events if item.action in STATE_ACTIONS}


def won_leads(events: list[LeadEvent], won_status_id: int) -> list[LeadEvent]:
    """Lead events that put a lead in the Won status (a stage change, or a lead added or edited there)."""
    seen: set[int] = set()
    result = []
    for event in events:
        if event.action in STATE_ACTIONS and event.status_id == won_status_id and event.lead_id not in seen:
            seen.add(event.lead_id)
            result.append(event)
    return result
