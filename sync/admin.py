"""RevOps' view of every sync: filters, search, the step timeline, the redacted calls, and repairs."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from sync.admin_common import LeadIdSearchAdmin, ViewOnlyAdmin, outside_links
from sync.billing import template_problems
from sync.inbox import requeue
from sync.models import ApiCall, BillingEventRule, SyncRecord, UsageRecord, WebhookEvent

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
RETRYABLE = (
    SyncRecord.Status.NEEDS_ATTENTION,
    SyncRecord.Status.FAILED,
    SyncRecord.Status.RETRYING,
    SyncRecord.Status.CANCELLED,
)


def status_badge(status: str, label: str) -> str:
    return format_html(
        '<b style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</b>',
        STATUS_COLOURS.get(status, "#57606a"),
        label,
    )


class ApiCallInline(admin.TabularInline):
    model = ApiCall
    extra = 0
    can_delete = False
    fields = (
        "at",
        "provider",
        "method",
        "path",
        "status",
        "duration_ms",
        "request_id",
        "error",
    )
    readonly_fields = fields
    ordering = ["at"]
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SyncRecord)
class SyncRecordAdmin(LeadIdSearchAdmin):
    list_display = [
        "key",
        "kind",
        "badge",
        "kommo_lead_id",
        "zuora_account_number",
        "zuora_subscription_number",
        "summary",
        "attempts",
        "created_at",
        "short_reason",
        "links",
    ]
    list_filter = [
        "status",
        "kind",
        ("created_at", admin.DateFieldListFilter),
        ("rate_plans", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["key", "zuora_account_number", "zuora_subscription_number", "summary", "reason"]
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over a large table on every page
    readonly_fields = (
        "kind",
        "key",
        "badge",
        "reason",
        "kommo_lead_id",
        "zuora_account_number",
        "zuora_subscription_number",
        "summary",
        "timeline",
        "generation",
        "attempts",
        "next_attempt_at",
        "created_at",
        "started_at",
        "finished_at",
        "source_event",
        "links",
        "payload_pretty",
    )
    fields = readonly_fields
    inlines = [ApiCallInline]
    actions = ["retry", "mark_resolved", "cancel"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def badge(self, obj: SyncRecord) -> str:
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="open in")
    def links(self, obj: SyncRecord) -> str:
        return outside_links(obj.kommo_lead_id, obj.zuora_subscription_number or obj.zuora_account_number)

    @admin.display(description="reason")
    def short_reason(self, obj: SyncRecord) -> str:
        return (obj.reason[:90] + "…") if len(obj.reason) > 90 else obj.reason

    @admin.display(description="steps")
    def timeline(self, obj: SyncRecord) -> str:
        if not obj.steps:
            return "—"
        steps = sorted(obj.steps.items(), key=lambda item: item[1].get("at", ""))
        return format_html(
            "<table>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td><b>{}</b></td><td>{}</td><td><code>{}</code></td></tr>",
                (
                    (
                        data.get("at", "")[:19].replace("T", " "),
                        name,
                        "done" if data.get("done") else "attempted",
                        json.dumps({k: v for k, v in data.items() if k not in ("at", "done")}, ensure_ascii=False),
                    )
                    for name, data in steps
                ),
            ),
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: SyncRecord) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, ensure_ascii=False)[:5000])

    @admin.action(description="Retry (resumes after the last completed step)", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Re-checked inside the UPDATE: a record that changed meanwhile (e.g. already re-run) is left alone.
        ids = list(queryset.filter(status__in=RETRYABLE).values_list("id", flat=True))
        count = requeue(ids, RETRYABLE, f"retry requested by {request.user} at {timezone.now():%Y-%m-%d %H:%M}")
        skipped = queryset.count() - count
        self.message_user(
            request,
            f"{count} record(s) queued for retry."
            + (f" {skipped} skipped (running, succeeded or resolved)." if skipped else ""),
            messages.SUCCESS if count else messages.WARNING,
        )

    @admin.action(description="Mark resolved (fixed by hand)", permissions=["change"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.exclude(status__in=[SyncRecord.Status.SUCCEEDED, SyncRecord.Status.RUNNING]).update(
            status=SyncRecord.Status.RESOLVED,
            finished_at=timezone.now(),
            next_attempt_at=None,
            reason=f"resolved by {request.user} at {timezone.now():%Y-%m-%d %H:%M}",
        )
        self.message_user(request, f"{count} record(s) marked resolved.")

    @admin.action(description="Cancel (do not sync)", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.exclude(status__in=[SyncRecord.Status.SUCCEEDED, SyncRecord.Status.RUNNING]).update(
            status=SyncRecord.Status.CANCELLED,
            finished_at=timezone.now(),
            next_attempt_at=None,
            reason=f"cancelled by {request.user} at {timezone.now():%Y-%m-%d %H:%M}",
        )
        self.message_user(request, f"{count} record(s) cancelled.")


@admin.register(ApiCall)
class ApiCallAdmin(ViewOnlyAdmin):
    list_display = ["at", "provider", "method", "path", "status", "duration_ms", "request_id", "sync_record"]
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


@admin.register(WebhookEvent)
class WebhookEventAdmin(ViewOnlyAdmin):
    list_display = ["received_at", "source", "dedup_key", "duplicates", "processed_at", "remote_addr"]
    list_filter = ["source"]
    search_fields = ["dedup_key", "body"]
    show_full_result_count = False
    readonly_fields = [
        "source",
        "dedup_key",
        "received_at",
        "processed_at",
        "duplicates",
        "remote_addr",
        "headers",
        "body",
        "error",
    ]


class BillingEventRuleForm(forms.ModelForm):
    class Meta:
        model = BillingEventRule
        fields = "__all__"

    def clean(self):
        data = super().clean() or {}
        for name in ("note_template", "task_template"):
            for problem in template_problems(data.get(name) or ""):
                self.add_error(name, problem)
        if data.get("open_task") and not (data.get("task_template") or "").strip():
            self.add_error("task_template", "A task needs a text.")
        return data


@admin.register(BillingEventRule)
class BillingEventRuleAdmin(admin.ModelAdmin):
    form = BillingEventRuleForm
    list_display = ["event_type", "active", "note_template", "open_task", "task_template", "task_due_days"]
    list_editable = ["active"]
    fieldsets = [
        (None, {"fields": ["event_type", "active"]}),
        (
            "Note",
            {
                "fields": ["note_template"],
                "description": "Placeholders: {amount} {currency} {account} {subscription} {date} {event}",
            },
        ),
        ("Task", {"fields": ["open_task", "task_template", "task_due_days", "task_type_id", "responsible_user_id"]}),
    ]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = [
        "unique_key",
        "subscription_number",
        "uom",
        "quantity",
        "start_date",
        "end_date",
        "status",
        "batch",
        "received_at",
    ]
    list_filter = ["status", "uom"]
    search_fields = ["unique_key", "subscription_number", "account_number"]
    list_select_related = ["batch"]
    show_full_result_count = False
    readonly_fields = [
        "unique_key",
        "subscription_number",
        "kommo_lead_id",
        "account_number",
        "uom",
        "quantity",
        "start_date",
        "end_date",
        "description",
        "status",
        "error",
        "batch",
        "received_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False


from sync import admin_reports  # noqa: E402,F401  (registers the reconciliation report)
