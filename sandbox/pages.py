"""Small HTML pages so a person can watch the emulators during the demo."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from sandbox.demo import PLAN_FIELD
from sandbox.kommo import LOST, WON, set_status
from sandbox.models import KLead, KNote, KTask, KWebhook, ZAccount, ZSubscription

STAGES = {39402112: "Negotiation", 142: "Won", 143: "Lost"}


def kommo_home(request: HttpRequest) -> HttpResponse:
    leads = list(KLead.objects.filter(is_deleted=False).select_related("company").order_by("id"))
    notes: dict[int, list] = {}
    for note in KNote.objects.filter(entity_type="leads").order_by("id"):
        notes.setdefault(note.entity_id, []).append(note)
    tasks: dict[int, list] = {}
    for task in KTask.objects.filter(entity_type="leads").order_by("id"):
        tasks.setdefault(task.entity_id, []).append(task)
    rows = []
    for lead in leads:
        fields = {
            f.get("field_name"): ", ".join(str(v.get("value")) for v in f.get("values") or [])
            for f in lead.custom_fields_values or []
        }
        rows.append(
            {
                "lead": lead,
                "stage": STAGES.get(lead.status_id, lead.status_id),
                "fields": fields,
                "notes": notes.get(lead.id, []),
                "tasks": tasks.get(lead.id, []),
            }
        )
    context = {"rows": rows, "hooks": KWebhook.objects.all(), "WON": WON, "LOST": LOST, "plans": DEMO_PLANS}
    return render(request, "sandbox/kommo.html", context)


DEMO_PLANS = ["Starter", "Growth", "Scale", "Platinum"]


@require_POST
def kommo_plan(request: HttpRequest, lead_id: int) -> HttpResponse:
    """A salesperson changes the deal's plan field: saved, then the lead update web hook fires."""
    lead = get_object_or_404(KLead, id=lead_id)
    plan = str(request.POST.get("plan") or "")[:100]
    fields = [f for f in lead.custom_fields_values or [] if f.get("field_id") != PLAN_FIELD]
    fields.append(
        {
            "field_id": PLAN_FIELD,
            "field_name": "Plan",
            "field_code": None,
            "field_type": "select",
            "values": [{"value": plan}],
        }
    )
    lead.custom_fields_values = fields
    set_status(lead, lead.status_id, lead.status_id)
    from sandbox.kommo_webhooks import fire_webhooks

    fire_webhooks("update", lead, lead.status_id)
    return redirect("sandbox-kommo-home")


@require_POST
def kommo_move(request: HttpRequest, lead_id: int) -> HttpResponse:
    lead = get_object_or_404(KLead, id=lead_id)
    try:
        status_id = int(request.POST.get("status_id", WON))
    except ValueError:
        status_id = WON
    set_status(lead, status_id, lead.status_id)
    return redirect("sandbox-kommo-home")


def zuora_home(request: HttpRequest) -> HttpResponse:
    accounts = ZAccount.objects.order_by("-id")
    subscriptions = ZSubscription.objects.select_related("account").order_by("-id")
    return render(request, "sandbox/zuora.html", {"accounts": accounts, "subscriptions": subscriptions})
