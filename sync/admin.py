"""RevOps' view of every sync: filters, search, the step timeline, the redacted calls, and repairs."""

from __future__ import annotations

import json
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from sync.admin_common import (
    LeadIdSearchAdmin,
    ViewOnlyAdmin,
    age,
    breakable,
    deal_cell,
    kommo_lead_url,
    outside_links,
    zuora_url,
)
from sync.models import TRANSITIONS, ApiCall, ApiToken, SyncRecord, WebhookEvent
from sync.records import enqueue_task_close, requeue
from sync.registry import load_admins

STATUS_COLOURS = {
    "succeeded": "#1a7f37",
    "needs_attention": "#bf8700",
    "failed": "#cf222e",
    "retrying": "#8250df",
    "running": "#0969da",
    "pending": "#57606a",
    "resolved": "#57606a",
    "cancelled": "#57606a",
    "ignored": "#8c959f",
}
TIMELINE_CALLS = 200


def status_badge(status: str, label: str) -> str:
    return format_html(
        '<b class="zk-badge" style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</b>',
        STATUS_COLOURS.get(status, "#57606a"),
        label,
    )


@admin.register(SyncRecord)
class SyncRecordAdmin(LeadIdSearchAdmin):
    """The list of every sync, and each record's page: the place to read what happened and repair it."""

    # The columns RevOps scans first; the key, numbers, attempts and dates are on the record's page.
    list_display = ["deal", "badge", "what", "short_reason", "age", "links"]
    list_display_links = None
    list_filter = [
        "status",
        "kind",
        ("created_at", admin.DateFieldListFilter),
        ("rate_plans", admin.RelatedOnlyFieldListFilter),
        ("entity", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["key", "zuora_account_number", "zuora_subscription_number", "summary", "reason"]
    list_select_related = ["entity"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over a large table on every page
    fieldsets = [
        (None, {"fields": ["badge", "reason", "open_in", "kind", "key", "summary"]}),
        (
            "Zuora and Kommo",
            {"fields": ["kommo_lead_id", "entity", "zuora_account_number", "zuora_subscription_number"]},
        ),
        (
            "Details",
            {
                "classes": ["collapse"],
                "fields": [
                    "generation",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "started_at",
                    "finished_at",
                    "source_event",
                    "payload_pretty",
                ],
            },
        ),
    ]
    readonly_fields = [str(name) for _, options in fieldsets for name in options["fields"]]
    actions = ["retry", "mark_resolved", "cancel"]
    change_form_template = "admin/sync/syncrecord/change_form.html"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a record is the memory that makes a sync exactly-once: cancel it instead

    @admin.display(description="status", ordering="status")
    def badge(self, obj: SyncRecord) -> str:
        return format_html(
            '{}<span class="zk-sub">{}</span>',
            status_badge(obj.status, obj.get_status_display()),
            obj.get_kind_display(),
        )

    @admin.display(description="deal", ordering="kommo_lead_id")
    def deal(self, obj: SyncRecord) -> str:
        return deal_cell(obj, reverse("admin:sync_syncrecord_change", args=[obj.pk]))

    @admin.display(description="what")
    def what(self, obj: SyncRecord) -> str:
        number = obj.zuora_subscription_number or obj.zuora_account_number
        summary = breakable(obj.summary[:80] + ("…" if len(obj.summary) > 80 else ""))
        return format_html('{}<span class="zk-sub">{}</span>', summary or "—", number) if number else summary or "—"

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: SyncRecord) -> str:
        return age(obj.created_at)

    @admin.display(description="open in")
    def links(self, obj: SyncRecord) -> str:
        return outside_links(obj.kommo_lead_id, obj.zuora_subscription_number or obj.zuora_account_number)

    @admin.display(description="open in")
    def open_in(self, obj: SyncRecord) -> str:
        parts = []
        if obj.kommo_lead_id:
            parts.append(("the deal in Kommo", kommo_lead_url(obj.kommo_lead_id)))
        if obj.zuora_account_number:
            parts.append((f"account {obj.zuora_account_number} in Zuora", zuora_url(obj.zuora_account_number)))
        if obj.zuora_subscription_number:
            parts.append(
                (f"subscription {obj.zuora_subscription_number} in Zuora", zuora_url(obj.zuora_subscription_number))
            )
        if not parts:
            return "—"
        return format_html_join(" · ", '<a href="{}" target="_blank" rel="noopener">{}</a>', ((u, t) for t, u in parts))

    @admin.display(description="reason")
    def short_reason(self, obj: SyncRecord) -> str:
        return (obj.reason[:90] + "…") if len(obj.reason) > 90 else obj.reason

    def timeline(self, obj: SyncRecord) -> str:
        """The record's steps and its API calls, in the order they happened (shown under the fields)."""
        events: list[tuple[str, str, str, str, str, str]] = []
        for name, data in obj.steps.items():
            detail = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in data.items() if k not in ("at", "done"))
            state = "done" if data.get("done") else "attempted"
            events.append((data.get("at", ""), f"step: {name.replace('_', ' ')}", state, "", "", detail[:500]))
        for call in obj.api_calls.order_by("at")[:TIMELINE_CALLS]:
            path, _, query = call.path.partition("?")
            outcome = str(call.status or "no answer") + (f" · {call.error}" if call.error else "")
            detail = f"{call.duration_ms} ms" + (f" · request id {call.request_id}" if call.request_id else "")
            events.append(
                (
                    call.at.isoformat(),
                    f"{call.provider.title()} {call.method} {path}" + ("?…" if query else ""),
                    outcome,
                    reverse("admin:sync_apicall_change", args=[call.id]),
                    call.path,
                    detail,
                )
            )
        if not events:
            return format_html("<p>Nothing has happened yet.</p>")
        events.sort(key=lambda event: event[0])
        rows = format_html_join(
            "",
            "<tr><td class='nowrap'>{}</td><td class='zk-wrap'>{}</td><td class='zk-wrap'>{}</td>"
            "<td class='zk-wrap'>{}</td></tr>",
            (
                (
                    at[:19].replace("T", " "),
                    format_html('<a href="{}" title="{}">{}</a>', link, full, what) if link else what,
                    outcome,
                    detail,
                )
                for at, what, outcome, link, full, detail in events
            ),
        )
        more = obj.api_calls.count() - TIMELINE_CALLS
        tail = format_html("<p>… and {} more API calls (see API calls).</p>", more) if more > 0 else ""
        return format_html(
            '<table class="zk-timeline"><thead><tr><th>when (UTC)</th><th>what</th><th>outcome</th>'
            "<th>detail</th></tr></thead><tbody>{}</tbody></table>{}",
            rows,
            tail,
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: SyncRecord) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False)[:5000])

    # --- the record's page: read only, with its repairs as buttons --------------------------------
    def change_view(self, request, object_id, form_url="", extra_context=None):
        record = self.get_object(request, object_id)
        can_repair = self.has_change_permission(request, record)
        extra = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "repairs": self.repairs_for(record) if record is not None and can_repair else [],
            "timeline": self.timeline(record) if record is not None else "",
            "history": self.deal_history(record) if record is not None else "",
        }
        return super().change_view(request, object_id, form_url, extra)

    @staticmethod
    def deal_history(record: SyncRecord) -> str:
        """The deal's life in zkbridge: its won sync and every change after it, oldest first."""
        if record.kommo_lead_id is None:
            return ""
        kinds = (SyncRecord.Kind.DEAL_WON, *SyncRecord.LIFECYCLE)
        others = SyncRecord.objects.filter(kommo_lead_id=record.kommo_lead_id, kind__in=kinds).order_by("id")[:50]
        if len(others) < 2:
            return ""
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="../../{}/change/">{}</a>{}</td><td>{}</td><td class="zk-wrap">{}</td></tr>',
            (
                (
                    f"{timezone.localtime(r.created_at):%Y-%m-%d %H:%M}",
                    r.id,
                    r.get_kind_display(),
                    " (this record)" if r.id == record.id else "",
                    r.get_status_display(),
                    r.summary or r.reason[:200],
                )
                for r in others
            ),
        )
        return format_html(
            '<table class="zk-timeline"><thead><tr><th>when</th><th>what</th><th>outcome</th><th>detail</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    @staticmethod
    def repairs_for(record: SyncRecord) -> list[dict[str, str]]:
        offered = [
            ("retry", "requeue", "Retry", "resumes after the last completed step"),
            ("resolve", "resolve", "Mark resolved", "fixed by hand elsewhere"),
            ("cancel", "cancel", "Cancel", "zkbridge will not sync it"),
        ]
        return [
            {"name": name, "label": label, "help": help_text}
            for name, transition, label, help_text in offered
            if record.status in TRANSITIONS[transition].sources
        ]

    def get_urls(self):
        return [
            path(
                "<path:object_id>/repair/<str:repair>/",
                self.admin_site.admin_view(self.repair_view),
                name="sync_syncrecord_repair",
            ),
            *super().get_urls(),
        ]

    def repair_view(self, request: HttpRequest, object_id: str, repair: str) -> HttpResponse:
        record = self.get_object(request, object_id)
        if record is None:
            raise Http404("no such sync record")
        if not self.has_change_permission(request, record):
            raise PermissionDenied
        page = reverse("admin:sync_syncrecord_change", args=[record.id])
        if request.method != "POST" or repair not in ("retry", "resolve", "cancel"):
            return redirect(page)
        if repair == "retry":
            moved = self.queue_retry(request, [record.id]) == 1
            done, refused = "Retry queued: it resumes after the last completed step.", "retried"
        else:
            status = SyncRecord.Status.RESOLVED if repair == "resolve" else SyncRecord.Status.CANCELLED
            moved = self.close(request, record, status)
            done = "Marked resolved." if repair == "resolve" else "Cancelled: zkbridge will not sync it."
            refused = "resolved" if repair == "resolve" else "cancelled"
        if moved:
            self.message_user(request, done, messages.SUCCESS)
        else:
            record.refresh_from_db()
            self.message_user(
                request, f"Not {refused}: the record is '{record.get_status_display()}' now.", messages.WARNING
            )
        return redirect(page)

    def queue_retry(self, request: HttpRequest, ids: list[int]) -> int:
        # Re-checked inside the UPDATE: a record that changed meanwhile (e.g. already re-run) is left alone.
        # One transaction: the records that moved are logged before any worker can pick them up.
        with transaction.atomic():
            count = requeue(ids, f"retry requested by {request.user} at {timezone.now():%Y-%m-%d %H:%M}")
            if count:
                for record in SyncRecord.objects.filter(id__in=ids, status=SyncRecord.Status.PENDING):
                    self.log_change(request, record, "Retry requested")
        return count

    def close(self, request: HttpRequest, record: SyncRecord, status: str) -> bool:
        if not record.close_by_staff(status, request.user):
            return False
        self.log_change(request, record, "Marked resolved" if status == SyncRecord.Status.RESOLVED else "Cancelled")
        transaction.on_commit(partial(enqueue_task_close, record.id))
        return True

    @admin.action(description="Retry (resumes after the last completed step)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        ids = list(queryset.filter(status__in=TRANSITIONS["requeue"].sources).values_list("id", flat=True))
        count = self.queue_retry(request, ids)
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"{count} record(s) queued for retry."
            + (f" {skipped} skipped (running, succeeded or resolved)." if skipped else ""),
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description="Mark resolved (fixed by hand)", permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(self.close(request, record, SyncRecord.Status.RESOLVED) for record in queryset[:500])
        self.message_user(request, f"{count} record(s) marked resolved.")

    @admin.action(description="Cancel (do not sync)", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = sum(self.close(request, record, SyncRecord.Status.CANCELLED) for record in queryset[:500])
        self.message_user(request, f"{count} record(s) cancelled.")


@admin.register(ApiCall)
class ApiCallAdmin(ViewOnlyAdmin):
    list_display = ["at", "call", "status", "duration_ms", "record"]
    list_filter = ["provider", "status", "method"]
    search_fields = ["path", "request_id", "idempotency_key"]
    list_select_related = ["sync_record"]
    show_full_result_count = False
    date_hierarchy = "at"
    readonly_fields = [
        "at",
        "provider",
        "method",
        "path",
        "status",
        "duration_ms",
        "request_id",
        "idempotency_key",
        "sync_record",
        "error",
        "request_body",
        "response_body",
    ]

    @admin.display(description="call", ordering="path")
    def call(self, obj: ApiCall) -> str:
        return format_html('{} {} <span class="zk-url">{}</span>', obj.provider.title(), obj.method, obj.path)

    @admin.display(description="sync record", ordering="sync_record")
    def record(self, obj: ApiCall) -> str:
        if obj.sync_record_id is None:
            return "—"
        return deal_cell(obj.sync_record, reverse("admin:sync_syncrecord_change", args=[obj.sync_record_id]))


class InboxOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in WebhookEvent.OUTCOMES.items()]

    def queryset(self, request, queryset):
        chosen = WebhookEvent.OUTCOMES.get(self.value() or "")
        return queryset.filter(chosen[1]) if chosen else queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ViewOnlyAdmin):
    list_display = ["received_at", "source", "outcome", "short_error", "duplicates"]
    list_filter = ["source", InboxOutcomeFilter]
    search_fields = ["dedup_key", "body"]
    show_full_result_count = False
    readonly_fields = [
        "source",
        "valid",
        "dedup_key",
        "received_at",
        "processed_at",
        "duplicates",
        "remote_addr",
        "headers",
        "body",
        "error",
    ]

    @admin.display(description="outcome")
    def outcome(self, obj: WebhookEvent) -> str:
        return obj.outcome

    @admin.display(description="why", ordering="error")
    def short_error(self, obj) -> str:
        return (obj.error[:120] + "…") if len(obj.error) > 120 else (obj.error or "—")


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["user"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Usage feeds' API tokens (superusers only, see zkbridge/admin_site.py): the key is shown once, when the token
    is made; only its digest is stored, so a lost key is replaced, never looked up."""

    form = ApiTokenForm
    list_display = ["prefix", "user", "created", "last_used"]
    search_fields = ["user__username", "prefix"]
    readonly_fields = ["prefix", "created", "last_used"]

    def get_fields(self, request, obj=None):
        return ["user"] if obj is None else ["user", "prefix", "created", "last_used"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a token is made or revoked, not edited

    def save_model(self, request, obj, form, change) -> None:
        made, key = ApiToken.issue(obj.user)
        obj.pk, obj.digest, obj.prefix = made.pk, made.digest, made.prefix
        messages.warning(request, f"The token's key, shown this once (zkbridge keeps only its digest): {key}")


# Each package registers its own pages in its own admin module; Django's autodiscovery imports an app's `admin`
# only, so this one loads the packages' from the explicit list in sync/registry.py.
load_admins()
