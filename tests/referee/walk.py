"""Judge a JSON value against a pydantic model, field by field, the way a strict server would read it.

The vendors' models are the referee (Zuora's generated SDK models; our own transcription of Kommo's
documented shapes). pydantic's own `model_validate` cannot be used on Zuora's SDK models: each overrides
`__init__` to skip validation, so nested models are never checked. This walker reads the models' field
declarations instead and reports, with the path to each value:
- a field the model does not have (custom fields, `<Name>__c`, are allowed anywhere);
- a required field that is missing;
- a value of the wrong type (a number sent as a string, a string where an object belongs), or outside the
  bounds or enumerations the model declares (its `field_validator`s run too).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError


@dataclass(frozen=True)
class Problem:
    path: str  # where in the body: "subscriptions[0].orderActions[0].changePlan.productRatePlanId"
    model: str  # the model that declares (or lacks) the field
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(body)'} [{self.model}]: {self.message}"


# Where a model and Zuora's own documented answers disagree, both shapes are accepted, each with its reason
# (model name, JSON key) → the annotation used instead. Filled by the vendor modules (zuora.py).
OVERRIDES: dict[tuple[str, str], Any] = {}


def custom_field(name: str) -> bool:
    return name.endswith("__c")


_ADAPTERS: dict[str, TypeAdapter] = {}


def _adapter(annotation: Any) -> TypeAdapter:
    key = repr(annotation)
    found = _ADAPTERS.get(key)
    if found is None:
        found = _ADAPTERS[key] = TypeAdapter(annotation)
    return found


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip_annotated(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> list[Any] | None:
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return list(typing.get_args(annotation))
    return None


def fields_of(model: type[BaseModel]) -> dict[str, tuple[str, Any]]:
    """The model's JSON keys: key → (attribute name, annotation)."""
    known = {}
    for name, info in model.model_fields.items():
        if name == "additional_properties":
            continue
        known[info.alias or name] = (name, info)
    return known


def walk(value: Any, annotation: Any, path: str = "", owner: str = "") -> list[Problem]:
    """Every problem with `value` read as `annotation` (a model, a list of them, a leaf type)."""
    problems: list[Problem] = []
    _walk(value, annotation, path, owner, problems)
    return problems


def _walk(value: Any, annotation: Any, path: str, owner: str, problems: list[Problem]) -> None:
    if annotation is Any or annotation is None:
        return
    members = _union_members(annotation)
    if members is not None:
        if value is None:
            if type(None) not in members:
                problems.append(Problem(path, owner, "null is not allowed here"))
            return
        candidates = [m for m in members if m is not type(None)]
        if len(candidates) == 1:
            _walk(value, candidates[0], path, owner, problems)
            return
        # Several types (a float or an int, say): the value must be one of them.
        for candidate in candidates:
            trial: list[Problem] = []
            _walk(value, candidate, path, owner, trial)
            if not trial:
                return
        problems.append(Problem(path, owner, f"{_show(value)} is none of {_names(candidates)}"))
        return
    bare = _strip_annotated(annotation)
    if _is_model(bare):
        _walk_model(value, bare, path, problems)
        return
    origin = typing.get_origin(bare)
    if origin in (list, typing.List):  # noqa: UP006 - the SDK's annotations use typing.List
        if not isinstance(value, list):
            problems.append(Problem(path, owner, f"expected a list, got {_show(value)}"))
            return
        (item,) = typing.get_args(bare) or (Any,)
        for index, entry in enumerate(value):
            _walk(entry, item, f"{path}[{index}]", owner, problems)
        return
    if origin in (dict, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            problems.append(Problem(path, owner, f"expected an object, got {_show(value)}"))
            return
        args = typing.get_args(bare)
        item = args[1] if len(args) == 2 else Any
        for key, entry in value.items():
            _walk(entry, item, f"{path}.{key}" if path else str(key), owner, problems)
        return
    if isinstance(bare, type) and issubclass(bare, enum.Enum):
        allowed = [m.value for m in bare]
        if value not in allowed:
            problems.append(Problem(path, owner, f"{_show(value)} is not one of {allowed} ({bare.__name__})"))
        return
    if value is None:
        problems.append(Problem(path, owner, "null is not allowed here"))
        return
    try:
        _adapter(annotation).validate_json(json.dumps(value))
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        problems.append(Problem(path, owner, f"{_show(value)}: {reason}"))


def _walk_model(value: Any, model: type[BaseModel], path: str, problems: list[Problem]) -> None:
    name = model.__name__
    if not isinstance(value, dict):
        problems.append(Problem(path, name, f"expected an object, got {_show(value)}"))
        return
    known = fields_of(model)
    for key, entry in value.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in known:
            if not custom_field(str(key)):
                problems.append(Problem(where, name, f"{name} has no field '{key}'"))
            continue
        attribute, info = known[key]
        _walk(entry, OVERRIDES.get((name, key), info.annotation), where, name, problems)
        for check in _validators(model, attribute):
            if entry is None:
                continue
            try:
                check(model, entry)
            except (ValueError, TypeError) as exc:
                problems.append(Problem(where, name, f"{_show(entry)}: {exc}"))
    for key, (_attribute, info) in known.items():
        if info.is_required() and key not in value:
            problems.append(Problem(f"{path}.{key}" if path else key, name, f"required field '{key}' is missing"))


_VALIDATORS: dict[tuple[type, str], list] = {}


def _validators(model: type[BaseModel], attribute: str) -> list:
    key = (model, attribute)
    if key not in _VALIDATORS:
        found = []
        for decorator in model.__pydantic_decorators__.field_validators.values():
            if attribute in decorator.info.fields:
                found.append(decorator.func.__func__ if hasattr(decorator.func, "__func__") else decorator.func)
        _VALIDATORS[key] = found
    return _VALIDATORS[key]


def _names(types_: list[Any]) -> str:
    return ", ".join(getattr(_strip_annotated(t), "__name__", repr(t)) for t in types_)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "…"


def json_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None
