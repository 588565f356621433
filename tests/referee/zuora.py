"""The Zuora half of the referee: every request zkbridge sends to the Zuora emulator and every answer the
emulator gives, judged against Zuora's official SDK (`zuora-sdk`, see sdk.py).

The models catch unknown fields, wrong types, missing required fields and enumerations the SDK validates.
The rules the SDK states only in words are written once below, each quoting the sentence it enforces
(tests/test_referee.py checks each quote is still in the SDK's text).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, StrictInt, StrictStr, ValidationError

from tests.referee import sdk
from tests.referee.walk import OVERRIDES, custom_field, fields_of, walk

# The SDK declares FailedReason.code a string; Zuora's documented answers carry the 8-digit code as a JSON number
# ({"success": false, "reasons": [{"code": 53100320, …}]}, Zuora's "Responses and errors" page and
# shared/fixtures/zuora-create-order-200-success-false.json). The emulator answers as Zuora's pages show; both are
# accepted here, and zkbridge reads either (tests/test_zuora_client.py).
OVERRIDES[("FailedReason", "code")] = Union[StrictInt, StrictStr]  # noqa: UP007


@dataclass(frozen=True)
class Rule:
    """A rule Zuora states in words: the sentence, where it is written, and the check."""

    quote: str
    source: str  # the SDK model (or operation) whose text carries the quote
    check: Callable[[Any], list[str]]


def _actions(body: Any) -> list[tuple[str, dict]]:
    found = []
    if isinstance(body, dict):
        for s_index, sub in enumerate(body.get("subscriptions") or []):
            for a_index, action in enumerate((sub or {}).get("orderActions") or []):
                if isinstance(action, dict):
                    found.append((f"subscriptions[{s_index}].orderActions[{a_index}]", action))
    return found


def _one_plan_id(body: Any) -> list[str]:
    problems = []
    for where, action in _actions(body):
        change = action.get("changePlan")
        if not isinstance(change, dict):
            continue
        given = [k for k in ("externalCatalogPlanId", "ratePlanId", "productRatePlanId") if change.get(k)]
        if len(given) != 1:
            problems.append(f"{where}.changePlan names {given or 'no rate plan'}: exactly one is needed")
    return problems


def _no_triggers_at_period_end(body: Any) -> list[str]:
    return [
        f"{where}: effectivePolicy EffectiveEndOfBillingPeriod with triggerDates {action.get('triggerDates')}"
        for where, action in _actions(body)
        if (action.get("changePlan") or {}).get("effectivePolicy") == "EffectiveEndOfBillingPeriod"
        and action.get("triggerDates")
    ]


def _specific_date_needs_date(body: Any) -> list[str]:
    problems = []
    for where, action in _actions(body):
        cancel = action.get("cancelSubscription")
        if isinstance(cancel, dict) and cancel.get("cancellationPolicy") == "SpecificDate":
            if not cancel.get("cancellationEffectiveDate"):
                problems.append(f"{where}.cancelSubscription: SpecificDate without cancellationEffectiveDate")
    return problems


def _one_account(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    other = "previewAccountInfo" if "previewOptions" in body else "newAccount"
    if bool(body.get("existingAccountNumber")) == bool(body.get(other)):
        return [f"exactly one of existingAccountNumber and {other} is needed"]
    return []


PAYLOAD_OF = {
    "CreateSubscription": "createSubscription",
    "AddProduct": "addProduct",
    "UpdateProduct": "updateProduct",
    "RemoveProduct": "removeProduct",
    "ChangePlan": "changePlan",
    "RenewSubscription": "renewSubscription",
    "CancelSubscription": "cancelSubscription",
    "TermsAndConditions": "termsAndConditions",
    "OwnerTransfer": "ownerTransfer",
    "Suspend": "suspend",
    "Resume": "resume",
}


def _action_payload_matches_type(body: Any) -> list[str]:
    problems = []
    allowed = {m.value for m in sdk.model("OrderActionType")}  # type: ignore[attr-defined]
    for where, action in _actions(body):
        kind = action.get("type")
        if kind not in allowed:
            problems.append(f"{where}.type {kind!r} is not one of {sorted(allowed)}")
            continue
        payloads = [key for key in PAYLOAD_OF.values() if key in action]
        if payloads and payloads != [PAYLOAD_OF[kind]]:
            problems.append(f"{where}: type {kind} carries {payloads}")
    return problems


def _enumerated(path_model_field: tuple[str, str, str]) -> Callable[[Any], list[str]]:
    """A StrictStr the SDK leaves open whose values its enum class lists."""
    payload, key, enum_name = path_model_field

    def check(body: Any) -> list[str]:
        allowed = {m.value for m in sdk.model(enum_name)}  # type: ignore[attr-defined]
        problems = []
        for where, action in _actions(body):
            holder = action.get(payload) if payload else action
            values = holder if isinstance(holder, list) else [holder]
            for entry in values:
                if isinstance(entry, dict) and key in entry and entry[key] not in allowed:
                    problems.append(f"{where}.{payload}.{key} {entry[key]!r} is not one of {sorted(allowed)}")
        return problems

    return check


ORDER_RULES = [
    Rule(
        "Please provide only one of `externalCatalogPlanId`, `ratePlanId` or `productRatePlanId`. If more than 1 "
        "field is provided then the request would fail.",
        "CreateOrderChangePlan",
        _one_plan_id,
    ),
    Rule(
        "Note that if the `effectivePolicy` field is set to `EffectiveEndOfBillingPeriod`, you cannot set the "
        "billing trigger dates for the subscription as the system will automatically set the trigger dates to "
        "the end of billing period",
        "ChangePlanEffectivePolicy",
        _no_triggers_at_period_end,
    ),
    Rule(
        "If using `SpecificDate`, the `cancellationEffectiveDate` field is required.",
        "CancelSubscriptionRequest",
        _specific_date_needs_date,
    ),
    Rule(
        "It will return an error if both are specified.",
        "CreateOrderRequest",
        _one_account,
    ),
    Rule("allowed enum values", "OrderActionType", _action_payload_matches_type),
    Rule("allowed enum values", "TriggerDateName", _enumerated(("triggerDates", "name", "TriggerDateName"))),
    Rule(
        "allowed enum values",
        "ChangePlanEffectivePolicy",
        _enumerated(("changePlan", "effectivePolicy", "ChangePlanEffectivePolicy")),
    ),
    Rule("allowed enum values", "ChangePlanSubType", _enumerated(("changePlan", "subType", "ChangePlanSubType"))),
    Rule(
        "allowed enum values",
        "SubscriptionCancellationPolicy",
        _enumerated(("cancelSubscription", "cancellationPolicy", "SubscriptionCancellationPolicy")),
    ),
]


# --- ZOQL -------------------------------------------------------------------------------------------------
# The objects a ZOQL query may name, and the model whose fields are theirs (ZOQL spells them in PascalCase).
ZOQL_OBJECTS = {
    "account": "ExpandedAccount",
    "subscription": "ExpandedSubscription",
    "rateplan": "ExpandedRatePlan",
    "rateplancharge": "ExpandedRatePlanCharge",
    "invoice": "ExpandedInvoice",
    "product": "ExpandedProduct",
    "productrateplan": "ExpandedProductRatePlan",
    "productrateplancharge": "ExpandedProductRatePlanCharge",
}
# UnitOfMeasure has no model in the SDK: its fields as Zuora's object reference lists them
# (docs.zuora.com, SOAP API object reference, UnitOfMeasure, "Field descriptions").
UNIT_OF_MEASURE_FIELDS = {
    "Active",
    "CreatedById",
    "CreatedDate",
    "DecimalPlaces",
    "DisplayedAs",
    "Id",
    "RoundingMode",
    "UomName",
    "UpdatedById",
    "UpdatedDate",
}
SELECT = re.compile(r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<object>\w+)(?:\s+where\s+(?P<where>.+))?$", re.I | re.S)
CONDITION_FIELD = re.compile(r"(\w+)\s*(?:=|!=|<|>|<=|>=|\blike\b)", re.I)


def zoql_fields(object_name: str) -> set[str] | None:
    """The object's ZOQL field names (PascalCase), or None for an object the referee does not know."""
    key = object_name.lower()
    if key == "unitofmeasure":
        return UNIT_OF_MEASURE_FIELDS
    model_name = ZOQL_OBJECTS.get(key)
    if model_name is None:
        return None
    names = set()
    for alias, (_attribute, info) in fields_of(sdk.model(model_name)).items():
        if _is_relation(info.annotation):
            continue
        names.add(alias[:1].upper() + alias[1:])
    return names


def _is_relation(annotation: Any) -> bool:
    text = repr(annotation)
    return "zuora_sdk.models" in text


def check_zoql(query: str) -> tuple[str, list[str]]:
    """(the object, problems) for a ZOQL query: the object and every field named must exist."""
    match = SELECT.match(query or "")
    if not match:
        return "", [f"not a ZOQL select: {query!r}"]
    object_name = match["object"]
    known = zoql_fields(object_name)
    if known is None:
        return object_name, [f"ZOQL object {object_name!r} is not one the referee knows"]
    problems = []
    named = [f.strip() for f in match["fields"].split(",")]
    named += CONDITION_FIELD.findall(match["where"] or "")
    for name in named:
        if name not in known and not custom_field(name):
            problems.append(f"{object_name} has no field {name!r}")
    return object_name, problems


# --- the usage file ------------------------------------------------------------------------------------------
def usage_headings(operation: sdk.Operation) -> tuple[set[str], set[str]]:
    """(every heading the usage file may have, the headings it must have), from the operation's own table."""
    rows = re.findall(r"\|\s*([A-Z_]{3,})\s*\|(.*?)\|\s*(Yes|No)\s*\|", operation.description)
    every = {name for name, _text, _req in rows}
    required = {name for name, text, req in rows if req == "Yes" or "the column header is required" in text}
    return every, required


def check_usage_file(operation: sdk.Operation, files: dict[str, tuple[str, bytes]]) -> list[str]:
    problems = []
    if set(files) != {"file"}:
        return [f"the upload must carry one multipart field 'file', got {sorted(files)}"]
    name, content = files["file"]
    if len(name) > 50 or not name.lower().endswith(".csv"):
        problems.append(f"file name {name!r}: a .csv file name of at most 50 characters")
    if len(content) > 4 * 1024 * 1024:
        problems.append(f"the file is {len(content)} bytes: at most 4 MB")
    every, required = usage_headings(operation)
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig")))
    header = next(reader, [])
    unknown = [h for h in header if h not in every]
    missing = sorted(required - set(header))
    if unknown:
        problems.append(f"headings Zuora does not document: {unknown}")
    if missing:
        problems.append(f"headings Zuora requires are missing: {missing}")
    for number, row in enumerate(reader, start=2):
        record = dict(zip(header, row, strict=False))
        for column in ("STARTDATE", "ENDDATE"):
            value = record.get(column, "")
            if value and not re.fullmatch(r"\d{2}/\d{2}/\d{4}", value):
                problems.append(f"line {number}: {column} {value!r} is not MM/DD/YYYY (Zuora's default)")
        try:
            float(record.get("QTY", ""))
        except ValueError:
            problems.append(f"line {number}: QTY {record.get('QTY')!r} is not a number")
        if len(problems) > 20:
            break
    return problems


# --- judging ---------------------------------------------------------------------------------------------------
def _parameters(group: dict[str, sdk.Parameter], given: list[tuple[str, str]], what: str) -> list[str]:
    problems = []
    values: dict[str, list[str]] = {}
    for key, value in given:
        values.setdefault(key, []).append(value)
    for key, found in values.items():
        parameter = group.get(key)
        if parameter is None:
            problems.append(f"{what} '{key}' is not a parameter of this operation")
            continue
        annotation = sdk.evaluate(parameter.annotation)
        several = "List[" in parameter.annotation
        if several:
            annotation = _item_type(annotation)
        elif len(found) > 1:
            problems.append(f"{what} '{key}' given {len(found)} times")
        adapter = _adapter(annotation)
        for value in found:
            try:
                adapter.validate_strings(value)
            except ValidationError as exc:
                problems.append(f"{what} '{key}' = {value!r}: " + "; ".join(e["msg"] for e in exc.errors()))
    return problems


def _item_type(annotation: Any) -> Any:
    """List[X] (inside Annotated and Optional) → X."""
    import typing

    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin is typing.Union:
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is list:
            return typing.get_args(annotation)[0]
        else:
            return annotation


_ADAPTERS: dict[str, Any] = {}


def _adapter(annotation: Any):
    from pydantic import TypeAdapter

    key = repr(annotation)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = TypeAdapter(annotation)
    return _ADAPTERS[key]


HEADERS_JUDGED = ("Idempotency-Key", "Zuora-Track-Id", "Zuora-Entity-Ids", "Zuora-Version")


def judge_request(operation: sdk.Operation, exchange) -> list[str]:
    problems = _parameters(operation.query, exchange.query, "query parameter")
    if operation.name in OBJECT_QUERY_MODELS:
        problems += _object_query_filters(operation, exchange.query)
    headers = [(k, v) for k, v in exchange.headers.items() if k in HEADERS_JUDGED and k in operation.headers]
    problems += _parameters(operation.headers, headers, "header")
    for key in (k for k in exchange.headers if k in HEADERS_JUDGED and k not in operation.headers):
        if key == "Idempotency-Key":
            problems.append("Idempotency-Key on an operation that does not take one")
    if operation.form:
        return problems + _parameters(operation.form, exchange.form, "form field")
    if operation.files:
        problems += check_usage_file(operation, exchange.files)
        return problems
    if not operation.body:
        if exchange.body.strip():
            problems.append("a body on an operation that takes none")
        return problems
    try:
        body = json.loads(exchange.body)
    except ValueError:
        return problems + [f"the body is not JSON: {exchange.body[:80]!r}"]
    problems += [str(p) for p in walk(body, sdk.model(operation.body))]
    if operation.body in ("CreateOrderRequest", "PreviewOrderRequest"):
        for rule in ORDER_RULES:
            problems += [f"{message} — {rule.source}: “{rule.quote}”" for message in rule.check(body)]
    if operation.body == "ProxyActionqueryRequest" and isinstance(body, dict):
        problems += check_zoql(str(body.get("queryString") or ""))[1]
    return problems


OBJECT_QUERY_MODELS = {"query_accounts": "ExpandedAccount", "query_subscriptions": "ExpandedSubscription"}


def _object_query_filters(operation: sdk.Operation, query: list[tuple[str, str]]) -> list[str]:
    fields = fields_of(sdk.model(OBJECT_QUERY_MODELS[operation.name]))
    problems = []
    for key, value in query:
        if key != "filter[]":
            continue
        match = re.match(r"^(\w+)\.(EQ|NE|LT|GT|GE|LE|SW|IN):", value)
        if not match:
            problems.append(f"filter {value!r} is not <field>.<EQ|NE|LT|GT|GE|LE|SW|IN>:<value>")
        elif match[1] not in fields and not custom_field(match[1]):
            problems.append(f"filter on {match[1]!r}, which {OBJECT_QUERY_MODELS[operation.name]} does not have")
    return problems


def _legacy_catalog(exchange) -> bool:
    """Before Zuora-Version 230.0 a product's productRatePlans is an array of rate plans, from 230.0 a URL
    (zuora-sdk's Product.productRatePlans: "This field is in Zuora REST API version control")."""
    try:
        return float(exchange.headers.get("Zuora-Version") or 0) < 230
    except ValueError:
        return True


def judge_answer(operation: sdk.Operation, exchange) -> list[str] | None:
    """Problems with the emulator's answer; None when there is nothing the SDK describes (not JSON, a fault)."""
    try:
        body = json.loads(exchange.answer) if exchange.answer.strip() else None
    except ValueError:
        return None
    if body is None:
        return None
    failed = exchange.status >= 400 or (isinstance(body, dict) and (body.get("success") is False))
    if operation.name == "create_token":
        return [str(p) for p in walk(body, sdk.model("TokenResponse"))] if exchange.status == 200 else None
    if failed:
        return [str(p) for p in walk(body, sdk.model("CommonResponse"))]
    if not operation.answer or operation.answer == "str":
        return None
    answer_model = sdk.model(operation.answer)
    if operation.name == "get_products" and _legacy_catalog(exchange) and isinstance(body, dict):
        problems = []
        for index, product in enumerate(body.get("products") or []):
            if isinstance(product, dict) and isinstance(product.get("productRatePlans"), list):
                plans = product.pop("productRatePlans")
                problems += [
                    str(p)
                    for p in walk(plans, list[sdk.model("ProductRatePlan")], f"products[{index}].productRatePlans")
                ]
        return problems + [str(p) for p in walk(body, answer_model)]
    problems = [str(p) for p in walk(body, answer_model)]
    if operation.name in ("action_post_query", "action_postquery_more") and isinstance(body, dict):
        problems += _zoql_records(exchange, body)
    return problems


def _zoql_records(exchange, body: dict) -> list[str]:
    query = ""
    try:
        sent = json.loads(exchange.body)
        query = sent.get("queryString") or ""
    except (ValueError, AttributeError):
        pass
    if not query:
        return []  # queryMore: the locator hides the query
    object_name, _ = check_zoql(query)
    known = zoql_fields(object_name) or set()
    problems = []
    for index, record in enumerate(body.get("records") or []):
        for key in record:
            if key not in known and not custom_field(key):
                problems.append(f"records[{index}].{key}: {object_name} has no such field")
    return problems


def model_of(name: str) -> type[BaseModel]:
    return sdk.model(name)


# --- what the SDK does not define ------------------------------------------------------------------------------
class UsageImportStatus(BaseModel):
    """GET /v1/usage/{import id}/status — the `checkImportStatus` URL the usage upload answers with. zuora-sdk
    has no operation for it; its upload_usage_file text names the statuses: "Of the five possible results
    displayed at that URL (Pending, Processing, Completed, Canceled, and Failed) only a Completed status
    indicates that the import was successful." This definition is ours, from that sentence."""

    success: bool | None = None
    importStatus: str  # noqa: N815 - Zuora's name
    message: str | None = None
    id: str | None = None


USAGE_STATUSES = {"Pending", "Processing", "Completed", "Canceled", "Failed"}
USAGE_STATUS = sdk.Operation("usage_import_status", "GET", "/v1/usage/{import-id}/status", answer="")


def judge_usage_status(exchange) -> tuple[list[str], list[str] | None]:
    request = ["a body on an operation that takes none"] if exchange.body.strip() else []
    try:
        body = json.loads(exchange.answer) if exchange.answer.strip() else None
    except ValueError:
        return request, None
    if body is None:
        return request, None
    if exchange.status >= 400 or (isinstance(body, dict) and body.get("success") is False):
        return request, [str(p) for p in walk(body, sdk.model("CommonResponse"))]
    answer = [str(p) for p in walk(body, UsageImportStatus)]
    if isinstance(body, dict) and body.get("importStatus") not in USAGE_STATUSES:
        answer.append(f"importStatus {body.get('importStatus')!r} is not one of {sorted(USAGE_STATUSES)}")
    return request, answer
