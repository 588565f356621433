"""The Kommo half of the referee. Kommo publishes no OpenAPI document, so its shapes are written here, once,
from Kommo's API v4 documentation (developers.kommo.com: leads, contacts, companies, notes, tasks, web hooks,
catalogs, pipelines, OAuth) and the official PHP SDK's `toApi` methods (amocrm/amocrm-api-php:
LeadModel, BaseCustomFieldValuesModel and its value models, NullCustomFieldValueCollection, NoteModel,
TaskModel, WebhookModel). Every model forbids fields it does not list (the walker reports them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Union  # noqa: UP035 - pydantic reads these annotations at run time

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from tests.referee.walk import walk

Number = Union[StrictInt, StrictFloat]  # noqa: UP007
Scalar = Union[StrictStr, StrictInt, StrictFloat, StrictBool]  # noqa: UP007


# --- custom field values (PHP SDK: BaseCustomFieldValuesModel::toApi, the value models' toApi) ----------------
class FieldValue(BaseModel):
    value: Scalar | None = None
    enum_id: StrictInt | None = None
    enum_code: StrictStr | None = None
    subtype: StrictStr | None = None  # address parts


class CustomFieldValues(BaseModel):
    field_id: StrictInt | None = None
    field_code: StrictStr | None = None
    field_name: StrictStr | None = None  # in answers
    field_type: StrictStr | None = None  # in answers
    # NullCustomFieldValueCollection::toApi() is null: "passing this object clears the field's value".
    values: list[FieldValue] | None


class Link(BaseModel):
    href: StrictStr


class Links(BaseModel):
    self_: Link | None = Field(default=None, alias="self")
    next: Link | None = None
    prev: Link | None = None
    first: Link | None = None


class Tag(BaseModel):
    id: StrictInt | None = None
    name: StrictStr | None = None
    color: StrictStr | None = None


# --- requests -------------------------------------------------------------------------------------------------
class LeadWrite(BaseModel):
    """PATCH /api/v4/leads (an array of these) and /api/v4/leads/{id} (one): LeadModel::toApi and the
    "Updating leads" page."""

    id: StrictInt | None = None
    name: StrictStr | None = None
    price: StrictInt | None = None
    responsible_user_id: StrictInt | None = None
    status_id: StrictInt | None = None
    pipeline_id: StrictInt | None = None
    loss_reason_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    closed_at: StrictInt | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    tags_to_add: list[Tag] | None = None
    tags_to_delete: list[Tag] | None = None
    visitor_uid: StrictStr | None = None
    request_id: StrictStr | None = None
    embedded: dict[str, Any] | None = Field(default=None, alias="_embedded")


class NoteParams(BaseModel):
    text: StrictStr | None = None
    service: StrictStr | None = None
    uniq: StrictStr | None = None


class NoteWrite(BaseModel):
    """POST /api/v4/{entity}/notes: NoteModel::toApi (+ CommonNote's params.text)."""

    entity_id: StrictInt
    id: StrictInt | None = None
    note_type: StrictStr
    params: NoteParams | None = None
    responsible_user_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    request_id: StrictStr | None = None
    is_need_to_trigger_digital_pipeline: StrictBool | None = None


class TaskResult(BaseModel):
    text: StrictStr


class TaskWrite(BaseModel):
    """POST /api/v4/tasks (an array) and PATCH /api/v4/tasks/{id}: TaskModel::toApi."""

    id: StrictInt | None = None
    text: StrictStr | None = None
    responsible_user_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    duration: StrictInt | None = None
    entity_type: StrictStr | None = None
    entity_id: StrictInt | None = None
    is_completed: StrictBool | None = None
    complete_till: StrictInt | None = None
    task_type_id: StrictInt | None = None
    result: TaskResult | None = None
    request_id: Union[StrictStr, StrictInt] | None = None  # noqa: UP007


class WebhookWrite(BaseModel):
    """POST /api/v4/webhooks: WebhookModel::toApi; DELETE takes the destination only (toUnsubscribeApi)."""

    destination: StrictStr
    settings: list[StrictStr] | None = None
    sort: StrictInt | None = None


class WebhookDelete(BaseModel):
    destination: StrictStr


class TokenRequest(BaseModel):
    """POST /oauth2/access_token ("Authorization with OAuth 2.0": JSON with these keys)."""

    client_id: StrictStr
    client_secret: StrictStr
    grant_type: StrictStr
    code: StrictStr | None = None
    refresh_token: StrictStr | None = None
    redirect_uri: StrictStr


# --- answers -----------------------------------------------------------------------------------------------
class EntityLink(BaseModel):
    id: StrictInt
    is_main: StrictBool | None = None
    metadata: dict[str, Any] | None = None
    links: Links | None = Field(default=None, alias="_links")


class LeadEmbedded(BaseModel):
    tags: list[Tag] | None = None
    contacts: list[EntityLink] | None = None
    companies: list[EntityLink] | None = None
    catalog_elements: list[EntityLink] | None = None
    loss_reason: list[dict[str, Any]] | None = None
    source: dict[str, Any] | None = None


class Lead(BaseModel):
    """A lead as GET /api/v4/leads and /api/v4/leads/{id} answer it."""

    id: StrictInt
    name: StrictStr | None = None
    price: StrictInt | None = None
    responsible_user_id: StrictInt | None = None
    group_id: StrictInt | None = None
    status_id: StrictInt | None = None
    pipeline_id: StrictInt | None = None
    loss_reason_id: StrictInt | None = None
    source_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    closed_at: StrictInt | None = None
    closest_task_at: StrictInt | None = None
    is_deleted: StrictBool | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    score: StrictInt | None = None
    account_id: StrictInt | None = None
    labor_cost: StrictInt | None = None
    is_price_modified_by_robot: StrictBool | None = None
    links: Links | None = Field(default=None, alias="_links")
    embedded: LeadEmbedded | None = Field(default=None, alias="_embedded")


class PartyEmbedded(BaseModel):
    tags: list[Tag] | None = None
    companies: list[EntityLink] | None = None
    contacts: list[EntityLink] | None = None
    leads: list[EntityLink] | None = None
    customers: list[EntityLink] | None = None
    catalog_elements: list[EntityLink] | None = None


class Party(BaseModel):
    """A contact or a company (GET /api/v4/contacts, /api/v4/companies)."""

    id: StrictInt
    name: StrictStr | None = None
    first_name: StrictStr | None = None
    last_name: StrictStr | None = None
    responsible_user_id: StrictInt | None = None
    group_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    closest_task_at: StrictInt | None = None
    is_deleted: StrictBool | None = None
    is_unsorted: StrictBool | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    account_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")
    embedded: PartyEmbedded | None = Field(default=None, alias="_embedded")


class Note(BaseModel):
    id: StrictInt
    entity_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    responsible_user_id: StrictInt | None = None
    group_id: StrictInt | None = None
    note_type: StrictStr | None = None
    params: dict[str, Any] | None = None
    account_id: StrictInt | None = None
    is_need_to_trigger_digital_pipeline: StrictBool | None = None
    request_id: StrictStr | None = None
    links: Links | None = Field(default=None, alias="_links")


class Task(BaseModel):
    id: StrictInt
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    responsible_user_id: StrictInt | None = None
    group_id: StrictInt | None = None
    entity_id: StrictInt | None = None
    entity_type: StrictStr | None = None
    duration: StrictInt | None = None
    is_completed: StrictBool | None = None
    task_type_id: StrictInt | None = None
    text: StrictStr | None = None
    result: Union[TaskResult, list[Any]] | None = None  # noqa: UP007 - Kommo answers [] when there is none
    complete_till: StrictInt | None = None
    account_id: StrictInt | None = None
    request_id: Union[StrictStr, StrictInt] | None = None  # noqa: UP007
    links: Links | None = Field(default=None, alias="_links")


class Updated(BaseModel):
    """What a PATCH answers per entity."""

    id: StrictInt
    updated_at: StrictInt | None = None
    request_id: StrictStr | None = None
    links: Links | None = Field(default=None, alias="_links")


class Status(BaseModel):
    id: StrictInt
    name: StrictStr
    sort: StrictInt | None = None
    is_editable: StrictBool | None = None
    pipeline_id: StrictInt | None = None
    color: StrictStr | None = None
    type: StrictInt | None = None
    account_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")


class StatusesEmbedded(BaseModel):
    statuses: list[Status]


class Pipeline(BaseModel):
    id: StrictInt
    name: StrictStr
    sort: StrictInt | None = None
    is_main: StrictBool | None = None
    is_unsorted_on: StrictBool | None = None
    is_archive: StrictBool | None = None
    account_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")
    embedded: StatusesEmbedded | None = Field(default=None, alias="_embedded")


class Webhook(BaseModel):
    id: StrictInt | None = None
    destination: StrictStr
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    account_id: StrictInt | None = None
    created_by: StrictInt | None = None
    sort: StrictInt | None = None
    disabled: StrictBool | None = None
    settings: list[StrictStr] | None = None


class Catalog(BaseModel):
    id: StrictInt
    name: StrictStr
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    sort: StrictInt | None = None
    type: StrictStr
    can_add_elements: StrictBool | None = None
    can_show_in_cards: StrictBool | None = None
    can_link_multiple: StrictBool | None = None
    can_be_deleted: StrictBool | None = None
    sdk_widget_code: StrictStr | None = None
    account_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")


class CatalogElement(BaseModel):
    id: StrictInt
    name: StrictStr
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    is_deleted: StrictBool | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    catalog_id: StrictInt | None = None
    account_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")


class Enum_(BaseModel):
    id: StrictInt
    value: StrictStr
    sort: StrictInt | None = None
    code: StrictStr | None = None


class CustomField(BaseModel):
    """A field definition (GET /api/v4/{entity}/custom_fields)."""

    id: StrictInt
    name: StrictStr
    type: StrictStr
    code: StrictStr | None = None
    sort: StrictInt | None = None
    is_api_only: StrictBool | None = None
    enums: list[Enum_] | None = None
    group_id: StrictStr | None = None
    required_statuses: list[dict[str, Any]] | None = None
    is_deletable: StrictBool | None = None
    is_predefined: StrictBool | None = None
    entity_type: StrictStr | None = None
    remind: StrictStr | None = None
    settings: Any | None = None
    account_id: StrictInt | None = None
    catalog_id: StrictInt | None = None
    links: Links | None = Field(default=None, alias="_links")


class CompanyWrite(BaseModel):
    """PATCH /api/v4/companies (an array of these) and /api/v4/companies/{id} (one): CompanyModel::toApi and the
    "Editing companies" page."""

    id: StrictInt | None = None
    name: StrictStr | None = None
    responsible_user_id: StrictInt | None = None
    created_by: StrictInt | None = None
    updated_by: StrictInt | None = None
    created_at: StrictInt | None = None
    updated_at: StrictInt | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    tags_to_add: list[Tag] | None = None
    tags_to_delete: list[Tag] | None = None
    request_id: StrictStr | None = None


class ElementWrite(BaseModel):
    """PATCH /api/v4/catalogs/{id}/elements (an array of these): CatalogElementModel::toApi and the "Editing list
    elements" page."""

    id: StrictInt | None = None
    name: StrictStr | None = None
    custom_fields_values: list[CustomFieldValues] | None = None
    request_id: StrictStr | None = None


class ContactWrite(CompanyWrite):
    """PATCH /api/v4/contacts (an array of these): ContactModel::toApi and the "Editing contacts" page."""

    first_name: StrictStr | None = None
    last_name: StrictStr | None = None


class EnumWrite(BaseModel):
    """An option of a select field as a field write gives it (the "Updating custom fields" page: `enums` whole,
    each with its `id` when it is an existing option, `value`, `sort`)."""

    id: StrictInt | None = None
    value: StrictStr
    sort: StrictInt | None = None
    code: StrictStr | None = None


class CustomFieldWrite(BaseModel):
    """POST /api/v4/{entity}/custom_fields (an array of these) and PATCH …/custom_fields/{id} (one)."""

    id: StrictInt | None = None
    name: StrictStr | None = None
    type: StrictStr | None = None
    code: StrictStr | None = None
    sort: StrictInt | None = None
    is_api_only: StrictBool | None = None
    enums: list[EnumWrite] | None = None


def _listing(key: str, item: type[BaseModel]) -> type[BaseModel]:
    embedded = type(f"{key.title()}Embedded", (BaseModel,), {"__annotations__": {key: list[item]}})
    return type(
        f"{key.title()}List",
        (BaseModel,),
        {
            "__annotations__": {
                "page": StrictInt | None,
                "total_items": StrictInt | None,
                "links": Links | None,
                "embedded": embedded,
            },
            "page": Field(default=None, alias="_page"),
            "total_items": Field(default=None, alias="_total_items"),
            "links": Field(default=None, alias="_links"),
            "embedded": Field(alias="_embedded"),
        },
    )


class TokenAnswer(BaseModel):
    token_type: StrictStr
    expires_in: StrictInt
    access_token: StrictStr
    refresh_token: StrictStr | None = None
    server_time: StrictInt | None = None


class ValidationError_(BaseModel):
    request_id: StrictStr | None = None
    errors: list[dict[str, Any]]


class Problem_(BaseModel):
    """application/problem+json, Kommo's error answer."""

    title: StrictStr
    type: StrictStr | None = None
    status: StrictInt
    detail: StrictStr | None = None
    validation_errors: list[ValidationError_] | None = Field(default=None, alias="validation-errors")


# --- operations ------------------------------------------------------------------------------------------------
WEBHOOK_EVENTS = {
    f"{action}_{entity}"
    for entity in ("lead", "contact", "company", "customer", "task")
    for action in ("add", "update", "delete", "restore", "responsible", "note")
} | {"status_lead", "status_customer", "add_talk", "update_talk", "add_chat_template_review", "add_message"}
LEAD_WITH = {"catalog_elements", "is_price_modified_by_robot", "loss_reason", "contacts", "only_deleted", "source_id"}
PARTY_WITH = {"catalog_elements", "leads", "customers", "contacts"}
NOTE_TYPES = {
    "common",
    "call_in",
    "call_out",
    "service_message",
    "extended_service_message",
    "message_cashier",
    "geolocation",
    "sms_in",
    "sms_out",
    "attachment",
}
BATCH = 50  # writes of several entities: at most 50 to a request (shared/reference/kommo-api.md)


@dataclass
class Operation:
    name: str
    method: str
    path: str  # a regex under /api/v4 (or /oauth2)
    body: Any = None  # a model, or [model] for an array of them
    answer: Any = None
    with_allowed: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        readable = self.path.strip("^$").replace(r"(\d+)", "{id}").replace("(leads|contacts|companies)", "{entity}")
        return f"{self.method} {readable}"


OPERATIONS = [
    Operation("get_lead", "GET", r"^/api/v4/leads/(\d+)$", answer=Lead, with_allowed=LEAD_WITH),
    Operation("list_leads", "GET", r"^/api/v4/leads$", answer=_listing("leads", Lead), with_allowed=LEAD_WITH),
    Operation("update_lead", "PATCH", r"^/api/v4/leads/(\d+)$", body=LeadWrite, answer=Updated),
    Operation("update_leads", "PATCH", r"^/api/v4/leads$", body=[LeadWrite], answer=_listing("leads", Updated)),
    Operation("pipelines", "GET", r"^/api/v4/leads/pipelines$", answer=_listing("pipelines", Pipeline)),
    Operation(
        "list_contacts", "GET", r"^/api/v4/contacts$", answer=_listing("contacts", Party), with_allowed=PARTY_WITH
    ),
    Operation("get_contact", "GET", r"^/api/v4/contacts/(\d+)$", answer=Party, with_allowed=PARTY_WITH),
    Operation(
        "update_contacts", "PATCH", r"^/api/v4/contacts$", body=[ContactWrite], answer=_listing("contacts", Updated)
    ),
    Operation(
        "list_companies", "GET", r"^/api/v4/companies$", answer=_listing("companies", Party), with_allowed=PARTY_WITH
    ),
    Operation("get_company", "GET", r"^/api/v4/companies/(\d+)$", answer=Party, with_allowed=PARTY_WITH),
    Operation("update_company", "PATCH", r"^/api/v4/companies/(\d+)$", body=CompanyWrite, answer=Updated),
    Operation(
        "update_companies",
        "PATCH",
        r"^/api/v4/companies$",
        body=[CompanyWrite],
        answer=_listing("companies", Updated),
    ),
    Operation(
        "add_notes",
        "POST",
        r"^/api/v4/(leads|contacts|companies)/notes$",
        body=[NoteWrite],
        answer=_listing("notes", Note),
    ),
    Operation("list_notes", "GET", r"^/api/v4/(leads|contacts|companies)/notes$", answer=_listing("notes", Note)),
    Operation("lead_notes", "GET", r"^/api/v4/leads/(\d+)/notes$", answer=_listing("notes", Note)),
    Operation("list_tasks", "GET", r"^/api/v4/tasks$", answer=_listing("tasks", Task)),
    Operation("add_tasks", "POST", r"^/api/v4/tasks$", body=[TaskWrite], answer=_listing("tasks", Task)),
    Operation("update_task", "PATCH", r"^/api/v4/tasks/(\d+)$", body=TaskWrite, answer=Updated),
    Operation("list_webhooks", "GET", r"^/api/v4/webhooks$", answer=_listing("webhooks", Webhook)),
    Operation("add_webhook", "POST", r"^/api/v4/webhooks$", body=WebhookWrite, answer=Webhook),
    Operation("delete_webhook", "DELETE", r"^/api/v4/webhooks$", body=WebhookDelete),
    Operation("list_catalogs", "GET", r"^/api/v4/catalogs$", answer=_listing("catalogs", Catalog)),
    Operation(
        "list_catalog_elements",
        "GET",
        r"^/api/v4/catalogs/(\d+)/elements$",
        answer=_listing("elements", CatalogElement),
    ),
    Operation(
        "catalog_fields",
        "GET",
        r"^/api/v4/catalogs/(\d+)/custom_fields$",
        answer=_listing("custom_fields", CustomField),
    ),
    Operation(
        "update_catalog_elements",
        "PATCH",
        r"^/api/v4/catalogs/(\d+)/elements$",
        body=[ElementWrite],
        answer=_listing("elements", CatalogElement),
    ),
    Operation(
        "lead_fields",
        "GET",
        r"^/api/v4/(leads|contacts|companies)/custom_fields$",
        answer=_listing("custom_fields", CustomField),
    ),
    Operation(
        "add_fields",
        "POST",
        r"^/api/v4/(leads|contacts|companies)/custom_fields$",
        body=[CustomFieldWrite],
        answer=_listing("custom_fields", CustomField),
    ),
    Operation("get_field", "GET", r"^/api/v4/(leads|contacts|companies)/custom_fields/(\d+)$", answer=CustomField),
    Operation(
        "update_field",
        "PATCH",
        r"^/api/v4/(leads|contacts|companies)/custom_fields/(\d+)$",
        body=CustomFieldWrite,
        answer=CustomField,
    ),
    Operation("oauth_token", "POST", r"^/oauth2/access_token$", body=TokenRequest, answer=TokenAnswer),
]


def find(method: str, path: str) -> Operation | None:
    for operation in OPERATIONS:
        if operation.method == method and re.match(operation.path, path):
            return operation
    return None


# --- rules in words --------------------------------------------------------------------------------------------
def _field_values(body: Any) -> list[tuple[str, dict]]:
    entries = body if isinstance(body, list) else [body]
    found = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        for f_index, value in enumerate(entry.get("custom_fields_values") or []):
            if isinstance(value, dict):
                prefix = f"[{index}]." if isinstance(body, list) else ""
                found.append((f"{prefix}custom_fields_values[{f_index}]", value))
    return found


def custom_field_rules(body: Any) -> list[str]:
    problems = []
    for where, value in _field_values(body):
        if value.get("field_id") is None and not value.get("field_code"):
            problems.append(f"{where}: names no field (field_id or field_code)")
        for v_index, item in enumerate(value.get("values") or []):
            if isinstance(item, dict) and item.get("value") == "" and item.get("enum_id") is None:
                problems.append(
                    f'{where}.values[{v_index}]: an empty string; Kommo clears a field with "values": null '
                    f'(the PHP SDK\'s NullCustomFieldValueCollection) and refuses "" on select and numeric fields'
                )
    return problems


def batch_rules(body: Any) -> list[str]:
    if isinstance(body, list):
        if not body:
            return ["an empty array: nothing to write"]
        if len(body) > BATCH:
            return [f"{len(body)} entities in one request: at most {BATCH}"]
    return []


def task_rules(body: Any) -> list[str]:
    problems = []
    for index, task in enumerate(body if isinstance(body, list) else [body]):
        if not isinstance(task, dict):
            continue
        if (task.get("entity_id") is None) != (task.get("entity_type") is None):
            problems.append(f"[{index}]: entity_id and entity_type go together")
        if task.get("entity_type") not in (None, "leads", "contacts", "companies", "customers"):
            problems.append(f"[{index}]: entity_type {task.get('entity_type')!r}")
        if isinstance(body, list) and (not task.get("text") or task.get("complete_till") is None):
            problems.append(f"[{index}]: a new task needs text and complete_till")
        if task.get("is_completed") and "result" not in task:
            problems.append(f"[{index}]: a completed task carries its result text")
    return problems


def note_rules(body: Any) -> list[str]:
    problems = []
    for index, note in enumerate(body if isinstance(body, list) else [body]):
        if not isinstance(note, dict):
            continue
        if note.get("note_type") not in NOTE_TYPES:
            problems.append(f"[{index}]: note_type {note.get('note_type')!r} is not one of {sorted(NOTE_TYPES)}")
        if note.get("note_type") == "common" and not (note.get("params") or {}).get("text"):
            problems.append(f"[{index}]: a common note needs params.text")
    return problems


def webhook_rules(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    unknown = [s for s in body.get("settings") or [] if s not in WEBHOOK_EVENTS]
    return [f"settings {unknown}: not web hook events Kommo documents"] if unknown else []


def token_rules(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    grant = body.get("grant_type")
    if grant == "authorization_code" and not body.get("code"):
        return ["grant_type authorization_code needs the code"]
    if grant == "refresh_token" and not body.get("refresh_token"):
        return ["grant_type refresh_token needs the refresh_token"]
    if grant not in ("authorization_code", "refresh_token"):
        return [f"grant_type {grant!r}"]
    return []


RULES = {
    "update_lead": [custom_field_rules],
    "update_leads": [custom_field_rules, batch_rules],
    "update_company": [custom_field_rules],
    "update_companies": [custom_field_rules, batch_rules],
    "update_contacts": [custom_field_rules, batch_rules],
    "update_catalog_elements": [custom_field_rules, batch_rules],
    "add_notes": [note_rules, batch_rules],
    "add_tasks": [task_rules, batch_rules],
    "update_task": [task_rules],
    "add_webhook": [webhook_rules],
    "oauth_token": [token_rules],
}


def _query_rules(operation: Operation, query: list[tuple[str, str]]) -> list[str]:
    problems = []
    for key, value in query:
        if key == "limit" and (not value.isdigit() or not 1 <= int(value) <= 250):
            problems.append(f"limit={value}: Kommo pages hold 1 to 250")
        elif key == "with":
            unknown = [w for w in value.split(",") if w and w not in operation.with_allowed]
            if unknown:
                problems.append(f"with={value}: {unknown} not offered here (allowed: {sorted(operation.with_allowed)})")
        elif key == "page" and not value.isdigit():
            problems.append(f"page={value}")
        elif not re.match(r"^(limit|with|page|query|filter\[.+\]|order\[.+\])$", key):
            problems.append(f"query parameter {key!r} is not one Kommo documents")
    return problems


def judge_request(operation: Operation, exchange) -> list[str]:
    problems = _query_rules(operation, exchange.query)
    if operation.body is None:
        if exchange.body.strip():
            problems.append("a body on an operation that takes none")
        return problems
    try:
        body = json.loads(exchange.body)
    except ValueError:
        return problems + [f"the body is not JSON: {exchange.body[:80]!r}"]
    expected = list[operation.body[0]] if isinstance(operation.body, list) else operation.body
    if isinstance(operation.body, list) and not isinstance(body, list):
        problems.append("Kommo expects an array of entities here")
    problems += [str(p) for p in walk(body, expected)]
    for rule in RULES.get(operation.name, []):
        problems += rule(body)
    return problems


def judge_answer(operation: Operation, exchange) -> list[str] | None:
    if exchange.status == 204:
        return [] if not exchange.answer.strip() else ["HTTP 204 with a body"]
    try:
        body = json.loads(exchange.answer) if exchange.answer.strip() else None
    except ValueError:
        return None  # an HTML or text page (a fault): Kommo's own shapes do not apply
    if body is None:
        return None
    if exchange.status >= 400:
        return [str(p) for p in walk(body, Problem_)] if "problem" in exchange.answer_type else None
    if operation.answer is None:
        return None
    return [str(p) for p in walk(body, operation.answer)]
