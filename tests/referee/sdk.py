"""Zuora's official Python SDK (`zuora-sdk`, generated from Zuora's OpenAPI document) as a source of truth:
its pydantic models, and the operations its API modules declare (method, path, parameters, body model,
answer model), read from the SDK's own source.

The SDK's package `__init__` imports all 87 API modules and 1,740 models (about 8 s); only the models a
test needs are imported here, through stand-in packages that skip those `__init__`s. The API modules are
read with `ast`, never imported (they need the SDK's HTTP client, whose pins we do not install).
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
import importlib
import importlib.util
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

VERSION = "3.21.0"
# The API modules holding every operation zkbridge calls (and those it may call one day nearby).
API_MODULES = (
    "o_auth_api",
    "orders_api",
    "subscriptions_api",
    "accounts_api",
    "object_queries_api",
    "actions_api",
    "usage_api",
    "describe_api",
    "products_api",
    "product_rate_plans_api",
    "catalog_api",
)


@functools.cache
def root() -> Path:
    spec = importlib.util.find_spec("zuora_sdk")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the referee needs Zuora's SDK: `pip install --no-deps -r requirements-referee.txt` "
            "(python3 dev.py test does it)"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    meta = next(folder.parent.glob("zuora_sdk-*.dist-info"), None)
    if meta is not None and meta.name != f"zuora_sdk-{VERSION}.dist-info":
        raise RuntimeError(f"the referee is written against zuora-sdk {VERSION}; installed: {meta.name}")
    for name, path in (("zuora_sdk", folder), ("zuora_sdk.models", folder / "models")):
        if name not in sys.modules:
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [str(path)]  # type: ignore[attr-defined]
            sys.modules[name] = stand_in
    return folder


def model(name: str) -> type[pydantic.BaseModel]:
    """An SDK model by class name (CreateOrderRequest)."""
    module = _model_modules().get(name)
    if module is None:
        raise KeyError(f"zuora-sdk {VERSION} has no model {name}")
    return getattr(importlib.import_module(f"zuora_sdk.models.{module}"), name)


@functools.cache
def _model_modules() -> dict[str, str]:
    """Class name → module, from the models package's own import list (read, not executed)."""
    text = (root() / "models" / "__init__.py").read_text()
    return dict((m[2], m[1]) for m in re.finditer(r"from zuora_sdk\.models\.(\w+) import (\w+)", text) if m)


def text_of(name: str) -> str:
    """The text of a model's module (its docstrings and field descriptions) as a reader sees it: HTML tags
    dropped, whitespace collapsed — what a rule's quote is checked against."""
    source = (root() / "models" / f"{_model_modules()[name]}.py").read_text()
    source = source.replace('\\"', '"')
    return " ".join(re.sub(r"<[^>]+>", "", source).split())


@dataclass
class Parameter:
    name: str  # the SDK's argument name
    annotation: Any


@dataclass
class Operation:
    """One REST operation as the SDK declares it."""

    name: str  # the SDK method: create_order
    method: str
    path: str  # /v1/orders/{orderNumber}
    body: str = ""  # the request model's class name
    answer: str = ""  # the 200 answer's model name
    query: dict[str, Parameter] = field(default_factory=dict)  # query key → parameter
    headers: dict[str, Parameter] = field(default_factory=dict)
    form: dict[str, Parameter] = field(default_factory=dict)
    files: dict[str, Parameter] = field(default_factory=dict)
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @functools.cached_property
    def pattern(self) -> re.Pattern:
        parts = re.split(r"(\{[^}]+\})", self.path)
        regex = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
        return re.compile(f"^{regex}$")

    @property
    def literal_length(self) -> int:
        return len(re.sub(r"\{[^}]+\}", "", self.path))


def _namespace(imports: dict[str, str]) -> dict[str, Any]:
    names: dict[str, Any] = {n: getattr(typing, n) for n in ("Optional", "List", "Dict", "Union", "Tuple", "Any")}
    names.update(
        Annotated=typing.Annotated,
        Field=pydantic.Field,
        date=dt.date,
        datetime=dt.datetime,
        bytearray=bytearray,
        **{n: getattr(pydantic, n) for n in ("StrictStr", "StrictInt", "StrictBool", "StrictFloat", "StrictBytes")},
    )
    return names


class _Lazy(dict):
    """Annotation namespace that imports an SDK model the first time an annotation names it."""

    def __missing__(self, key: str) -> Any:
        found = model(key)
        self[key] = found
        return found


def evaluate(annotation: str) -> Any:
    return eval(annotation, _LAZY)  # noqa: S307 - the SDK's own annotation source, not outside input


_LAZY = _Lazy(_namespace({}))


@functools.cache
def operations() -> list[Operation]:
    """Every operation of API_MODULES, most specific path first (literal paths before templated ones)."""
    found: list[Operation] = []
    for module in API_MODULES:
        path = root() / "api" / f"{module}.py"
        if path.exists():
            found += _read_module(path)
    return sorted(found, key=lambda o: -o.literal_length)


def _read_module(path: Path) -> list[Operation]:
    tree = ast.parse(path.read_text())
    functions = {
        node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name[:1] != "__"
    }
    result = []
    for name, node in functions.items():
        if not (name.startswith("_") and name.endswith("_serialize")):
            continue
        public = functions.get(name[1 : -len("_serialize")])
        if public is None:
            continue
        operation = _read_serializer(node, public.name)
        if operation is None:
            continue
        annotations = {a.arg: ast.unparse(a.annotation) for a in public.args.args if a.annotation is not None}
        for group in (operation.query, operation.headers, operation.form, operation.files):
            for parameter in group.values():
                parameter.annotation = annotations.get(parameter.name, "Any")
        if operation.body:
            operation.body = annotations.get(operation.body, "")
        operation.answer = _answer_type(public)
        operation.description = ast.get_docstring(public) or ""
        result.append(operation)
    return result


def _read_serializer(node: ast.FunctionDef, name: str) -> Operation | None:
    method = resource = body = ""
    query: dict[str, Parameter] = {}
    headers: dict[str, Parameter] = {}
    form: dict[str, Parameter] = {}
    files: dict[str, Parameter] = {}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") == "param_serialize":
            for keyword in sub.keywords:
                if keyword.arg == "method" and isinstance(keyword.value, ast.Constant):
                    method = str(keyword.value.value)
                if keyword.arg == "resource_path" and isinstance(keyword.value, ast.Constant):
                    resource = str(keyword.value.value)
        if isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") == "append":
            target = getattr(sub.func.value, "id", "")  # type: ignore[attr-defined]
            if target in ("_query_params", "_form_params") and sub.args and isinstance(sub.args[0], ast.Tuple):
                key, value = sub.args[0].elts
                if isinstance(key, ast.Constant) and isinstance(value, ast.Name):
                    group = query if target == "_query_params" else form
                    group[str(key.value)] = Parameter(value.id, None)
        if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
            target_node = sub.targets[0]
            if isinstance(target_node, ast.Subscript) and isinstance(sub.value, ast.Name):
                owner = getattr(target_node.value, "id", "")
                key = target_node.slice
                if isinstance(key, ast.Constant) and owner in ("_header_params", "_files"):
                    (headers if owner == "_header_params" else files)[str(key.value)] = Parameter(sub.value.id, None)
            if (
                isinstance(target_node, ast.Name)
                and target_node.id == "_body_params"
                and isinstance(sub.value, ast.Name)
            ):
                body = sub.value.id
    if not method or not resource:
        return None
    return Operation(name, method, resource, body=body, query=query, headers=headers, form=form, files=files)


def _answer_type(node: ast.FunctionDef) -> str:
    for sub in ast.walk(node):
        target = (
            sub.target if isinstance(sub, ast.AnnAssign) else sub.targets[0] if isinstance(sub, ast.Assign) else None
        )
        if getattr(target, "id", "") == "_response_types_map":
            if isinstance(sub.value, ast.Dict):  # type: ignore[union-attr]
                for key, value in zip(sub.value.keys, sub.value.values, strict=False):  # type: ignore[union-attr]
                    if isinstance(key, ast.Constant) and key.value == "200" and isinstance(value, ast.Constant):
                        return str(value.value or "")
    return ""


def find(method: str, path: str) -> Operation | None:
    for operation in operations():
        if operation.method == method and operation.pattern.match(path):
            return operation
    return None


def warm() -> None:
    """Read the SDK's operations and import the models they name, once per test process, before any emulator
    answers: judging is synchronous in the emulator's response, and a first exchange that had to load them
    (seconds on a busy machine) would outlast the client's timeout."""
    for operation in operations():
        operation.pattern  # noqa: B018 (compiled and cached)
        for name in (operation.body, operation.answer):
            if name in _model_modules():
                model(name)
