"""Usage in the admin: the rows on their way to Zuora, and the bodies kept as they arrived (download, replay)."""

from __future__ import annotations

from functools import cached_property

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast
from django.http import Http404, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from sync.admin_common import ViewOnlyAdmin
from sync.usage.models import UsageDelivery, UsageRecord


class CappedPaginator(Paginator):
    """Counts at most CAP rows (a count of millions takes seconds): past that the pages stop at CAP, and a
    filter or a search narrows the list."""

    CAP = 100_000

    @cached_property
    def count(self) -> int:
        rows = self.object_list
        if isinstance(rows, QuerySet):  # only the keys, unordered: the page's annotations cost nothing here
            rows = rows.order_by().values("pk")
        return rows[: self.CAP].count()  # type: ignore[union-attr]


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    """Usage as it arrived. The quantity is read as text, so a row whose stored quantity cannot be read
    back as a number (SQLite keeps decimals as floats) is listed with its reason instead of breaking the page."""

    # What a person checking a feed scans, narrow enough for 1024 px; the rest is on the row's page.
    list_display = ["unique_key", "subscription_number", "uom", "quantity_shown", "period", "status"]
    # Built for millions of rows: newest first by the primary key (no sort of the table), a status filter
    # whose choices need no query, and search by exact key, subscription or account number (each indexed).
    ordering = ["-id"]
    list_filter = ["status"]
    search_fields = ["unique_key"]  # searched exactly, below
    search_help_text = "An exact unique key, subscription number or account number."
    list_select_related = ["batch"]
    show_full_result_count = False
    paginator = CappedPaginator

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        exact = Q(unique_key=term) | Q(subscription_number=term) | Q(account_number=term)
        return queryset.filter(exact), False

    readonly_fields = [
        "unique_key",
        "subscription_number",
        "kommo_lead_id",
        "account_number",
        "uom",
        "quantity_shown",
        "start_date",
        "end_date",
        "description",
        "status",
        "error",
        "batch",
        "received_at",
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("quantity").annotate(quantity_text=Cast("quantity", CharField()))

    @admin.display(description="period", ordering="start_date")
    def period(self, obj: UsageRecord) -> str:
        start = f"{obj.start_date:%Y-%m-%d}" if obj.start_date else "—"
        return f"{start} – {obj.end_date:%Y-%m-%d}" if obj.end_date else start

    @admin.display(description="quantity")
    def quantity_shown(self, obj: UsageRecord) -> str:
        return getattr(obj, "quantity_text", "") or "—"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(UsageDelivery)
class UsageDeliveryAdmin(ViewOnlyAdmin):
    """Every body the usage feed sent, with what zkbridge made of it; the body itself (kept gzip-compressed
    until ZKBRIDGE_RETENTION_DAYS) is downloaded from the delivery's page, and replayed with
    `manage.py replay_usage ID`."""

    list_display = ["received_at", "feed", "size_shown", "accepted", "duplicates", "rejected", "problem_shown"]
    list_filter = ["feed"]
    show_full_result_count = False
    readonly_fields = [
        "received_at",
        "feed",
        "remote_addr",
        "content_type",
        "size_shown",
        "sha256",
        "accepted",
        "duplicates",
        "rejected",
        "problem",
        "body_link",
    ]
    fields = tuple(readonly_fields)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("body_gzip")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # evidence: the retention drops the bodies, nobody deletes the record of a delivery

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/body/",
                self.admin_site.admin_view(self.download_body),
                name="sync_usagedelivery_body",
            )
        ]
        return extra + super().get_urls()

    def download_body(self, request, pk: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        kept = UsageDelivery.objects.filter(pk=pk).first()
        if kept is None or kept.body_gzip is None:
            raise Http404("no kept body (past its retention?)")
        answer = HttpResponse(bytes(kept.body_gzip), content_type="application/gzip")
        kind = "csv" if "csv" in kept.content_type else "json"
        answer["Content-Disposition"] = f'attachment; filename="usage-{kept.pk}.{kind}.gz"'
        return answer

    @admin.display(description="size", ordering="size")
    def size_shown(self, obj: UsageDelivery) -> str:
        return f"{obj.size:,} bytes"

    @admin.display(description="problem")
    def problem_shown(self, obj: UsageDelivery) -> str:
        return (obj.problem[:100] + "…") if len(obj.problem) > 100 else (obj.problem or "—")

    @admin.display(description="body")
    def body_link(self, obj: UsageDelivery) -> str:
        if obj.pk is None or not UsageDelivery.objects.filter(pk=obj.pk, body_gzip__isnull=False).exists():
            return "dropped after the retention period"
        url = reverse("admin:sync_usagedelivery_body", args=[obj.pk])
        return format_html(
            '<a href="{}">download (gzip)</a> · replay: <code>python manage.py replay_usage {}</code>', url, obj.pk
        )
