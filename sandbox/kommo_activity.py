"""The Kommo emulator's notes and tasks."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from sandbox.common import json_body, problem, refused_entities
from sandbox.kommo import ACCOUNT_ID, PREFIX, ids_in, kommo_view, link_to, page_of, query_of, unix_now
from sandbox.models import (
    KLead,
    KNote,
    KTask,
)


# --- Notes and tasks -------------------------------------------------------------------------------
def _list(request: HttpRequest, queryset, key: str, shape) -> HttpResponse:
    """GET …?filter[entity_id][]=…&filter[entity_type]=…, paged like every Kommo list."""
    filters = query_of(request).get("filter") or {}
    if isinstance(filters, dict):
        if "entity_id" in filters:
            queryset = queryset.filter(entity_id__in=ids_in(filters["entity_id"]))
        if isinstance(filters.get("entity_type"), str):
            queryset = queryset.filter(entity_type=filters["entity_type"])
    return page_of(request, queryset.order_by("id"), key, shape)


def _json(request: HttpRequest):
    """The JSON body, or the problem+json answer Kommo gives for one that is not JSON."""
    try:
        return json_body(request)
    except ValueError:
        return problem(400, "Bad Request", "The body must be JSON")


def _batch(request: HttpRequest, what: str) -> list | HttpResponse:
    """A POSTed JSON array of 1 to 250 entities, or the problem+json answer Kommo gives instead."""
    if request.method != "POST":
        return problem(405, "Method Not Allowed", "Use GET or POST")
    body = _json(request)
    if isinstance(body, HttpResponse):
        return body
    if not isinstance(body, list) or not 1 <= len(body) <= 250:
        return problem(400, "Bad Request", f"Expected an array of 1 to 250 {what}")
    return body


def _note_json(note: KNote) -> dict[str, Any]:
    return {
        "id": note.id,
        "entity_id": note.entity_id,
        "note_type": note.note_type,
        "params": note.params,
        "created_at": note.created_at,
        "account_id": ACCOUNT_ID,
    }


@kommo_view
def notes(request: HttpRequest, entity_type: str) -> HttpResponse:
    if request.method == "GET":
        return _list(request, KNote.objects.filter(entity_type=entity_type), "notes", _note_json)
    body = _batch(request, "notes")
    if isinstance(body, HttpResponse):
        return body
    refused = refused_entities("kommo", request, PREFIX)
    missing: set[int] = set()
    if entity_type == "leads":
        named = {i.get("entity_id") for i in body if isinstance(i, dict) and isinstance(i.get("entity_id"), int)}
        missing = named - set(KLead.objects.filter(id__in=named, is_deleted=False).values_list("id", flat=True))
    by_entry: dict[int, list[dict]] = {}
    for index, item in enumerate(body):
        if not isinstance(item, dict) or not isinstance(item.get("entity_id"), int):
            error = {"code": "FieldMissing", "path": "entity_id", "detail": "This field is missing"}
        elif item.get("note_type") not in ("common", "service_message", "extended_service_message"):
            error = {
                "code": "NotSupportedChoice",
                "path": "note_type",
                "detail": "The value you have provided is not supported",
            }
        elif not str((item.get("params") or {}).get("text", "")).strip():
            error = {"code": "FieldMissing", "path": "params.text", "detail": "This field is missing"}
        elif entity_type == "leads" and item["entity_id"] in missing:
            error = {"code": "NotFound", "path": "entity_id", "detail": f"Lead {item['entity_id']} not found"}
        elif item["entity_id"] in refused:
            error = {"code": "InvalidValue", "path": "entity_id", "detail": refused[item["entity_id"]]}
        else:
            continue
        by_entry[index] = [error]
    if by_entry:  # Kommo writes all or nothing; the problem names each refused entry by request_id
        return problem(400, "Bad Request", "Request validation failed", by_entry=by_entry)
    created = [
        KNote.objects.create(
            entity_type=entity_type,
            entity_id=i["entity_id"],
            note_type=i["note_type"],
            params=i["params"],
            created_at=unix_now(),
        )
        for i in body
    ]
    return JsonResponse(
        {
            "_links": link_to(f"/api/v4/{entity_type}/notes"),
            "_embedded": {"notes": [{"id": n.id, "entity_id": n.entity_id} for n in created]},
        }
    )


@kommo_view
def lead_notes(request: HttpRequest, lead_id: int) -> HttpResponse:
    queryset = KNote.objects.filter(entity_type="leads", entity_id=lead_id).order_by("id")
    return page_of(request, queryset, "notes", _note_json)


def _task_json(task: KTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "entity_id": task.entity_id,
        "entity_type": task.entity_type,
        "text": task.text,
        "complete_till": task.complete_till,
        "task_type_id": task.task_type_id,
        "responsible_user_id": task.responsible_user_id,
        "is_completed": task.is_completed,
        "result": {"text": task.result} if task.result else [],
        "created_at": task.created_at,
        "updated_at": task.updated_at or task.created_at,
        "account_id": ACCOUNT_ID,
    }


@kommo_view
def tasks(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _list(request, KTask.objects.all(), "tasks", _task_json)
    body = _batch(request, "tasks")
    if isinstance(body, HttpResponse):
        return body
    errors = []
    for index, item in enumerate(body):
        for name in ("text", "complete_till"):
            if not isinstance(item, dict) or item.get(name) in (None, ""):
                errors.append({"code": "FieldMissing", "path": f"{index}.{name}", "detail": "This field is missing"})
        if isinstance(item, dict) and item.get("entity_type") not in (None, "leads", "contacts", "companies"):
            errors.append(
                {
                    "code": "NotSupportedChoice",
                    "path": f"{index}.entity_type",
                    "detail": "The value you have provided is not supported",
                }
            )
    if errors:
        return problem(400, "Bad Request", "Request validation failed", errors)
    created = [
        KTask.objects.create(
            entity_type=i.get("entity_type") or "leads",
            entity_id=int(i.get("entity_id") or 0),
            text=str(i["text"]),
            complete_till=int(i["complete_till"]),
            task_type_id=int(i.get("task_type_id") or 1),
            responsible_user_id=i.get("responsible_user_id"),
            created_at=unix_now(),
        )
        for i in body
    ]
    return JsonResponse(
        {
            "_links": link_to("/api/v4/tasks"),
            "_embedded": {"tasks": [{"id": t.id, "request_id": str(n)} for n, t in enumerate(created)]},
        }
    )


@kommo_view
def task_detail(request: HttpRequest, task_id: int) -> HttpResponse:
    """GET one task, or PATCH it: `{"is_completed": true, "result": {"text": …}}` completes it (Kommo asks for
    a result text when a task is completed); text and complete_till may change too."""
    task = KTask.objects.filter(id=task_id).first()
    if task is None:
        return problem(404, "Not Found", "Task not found")
    if request.method == "GET":
        return JsonResponse(_task_json(task))
    if request.method != "PATCH":
        return problem(405, "Method Not Allowed", "Use GET or PATCH")
    body = _json(request)
    if isinstance(body, HttpResponse):
        return body
    if not isinstance(body, dict):
        return problem(400, "Bad Request", "Expected a task object")
    errors = []
    result = body.get("result")
    result_text = result.get("text") if isinstance(result, dict) else None
    if body.get("is_completed") is True and not str(result_text or "").strip():
        errors.append({"code": "FieldMissing", "path": "result.text", "detail": "This field is missing"})
    if "is_completed" in body and not isinstance(body["is_completed"], bool):
        errors.append({"code": "InvalidType", "path": "is_completed", "detail": "Must be a boolean"})
    if "complete_till" in body and not isinstance(body["complete_till"], int):
        errors.append({"code": "InvalidType", "path": "complete_till", "detail": "Must be a unix time"})
    if errors:
        return problem(400, "Bad Request", "Request validation failed", errors)
    if "is_completed" in body:
        task.is_completed = body["is_completed"]
    if result_text:
        task.result = str(result_text)
    if body.get("text"):
        task.text = str(body["text"])
    if "complete_till" in body:
        task.complete_till = body["complete_till"]
    task.updated_at = unix_now()
    task.save()
    return JsonResponse({"id": task.id, "updated_at": task.updated_at, "_links": link_to(f"/api/v4/tasks/{task.id}")})
