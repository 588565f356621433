"""The reconciliation report in the admin: runs with their progress and summary, and the rows of the
latest successful run with one-click fixes."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path
from django.utils.html import format_html

from sync.admin_common import LeadIdSearchAdmin, ViewOnlyAdmin, deal_cell, outside_links
from sync.reconcile.fixes import fix, outcome
from sync.reconcile.models import Discrepancy, ReconciliationRun
from sync.reconcile.run import latest_report, report_csv
from zkbridge.audit import log_action


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ViewOnlyAdmin):
    list_display = ["started_at", "ok", "progress", "deals", "found", "calls", "error", "csv_link"]
    readonly_fields = ["started_at", "finished_at", "ok", "progress", "error", "summary"]
    change_list_template = "admin/sync/reconciliationrun/change_list.html"

    @admin.display(description="won deals")
    def deals(self, run: ReconciliationRun):
        return run.summary.get("won_deals", "—")

    @admin.display(description="discrepancies")
    def found(self, run: ReconciliationRun) -> str:
        if not run.ok:
            return "—"
        url = f"../discrepancy/?run__id__exact={run.id}"
        return format_html('<a href="{}">{}</a>', url, run.summary.get("discrepancies", 0))

    @admin.display(description="API calls (Zuora / Kommo)")
    def calls(self, run: ReconciliationRun) -> str:
        return f"{run.summary.get('zuora_calls', '—')} / {run.summary.get('kommo_calls', '—')}"

    @admin.display(description="CSV")
    def csv_link(self, run: ReconciliationRun) -> str:
        return format_html('<a href="{}/csv/">download</a>', run.id) if run.ok else "—"

    def get_urls(self):
        return [
            path("run-now/", self.admin_site.admin_view(self.run_now), name="sync_reconcile_now"),
            path("<int:run_id>/csv/", self.admin_site.admin_view(self.csv_view), name="sync_reconcile_csv"),
            *super().get_urls(),
        ]

    def run_now(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:sync_reconciliationrun_changelist")
        if not request.user.has_perm("sync.change_syncrecord"):
            raise PermissionDenied
        from django_q.tasks import async_task

        async_task("sync.reconcile.scheduled", str(request.user), task_name=f"reconcile by {request.user}")
        log_action(request, ReconciliationRun, "asked for a reconciliation run now")  # (the worker makes the run)
        messages.success(request, "Reconciliation started; its progress shows below.")
        return redirect("admin:sync_reconciliationrun_changelist")

    def csv_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(ReconciliationRun, id=run_id, ok=True)
        response = HttpResponse(report_csv(run), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="reconciliation-{run.started_at:%Y%m%d-%H%M}.csv"'
        return response


class LatestRunFilter(admin.SimpleListFilter):
    """Rows of the latest successful run by default; older runs on request."""

    title = "run"
    parameter_name = "run__id__exact"

    def lookups(self, request, model_admin):
        return [(r.id, f"{r.started_at:%Y-%m-%d %H:%M}") for r in ReconciliationRun.objects.filter(ok=True)[:10]]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(run_id=self.value())
        latest = latest_report()
        return queryset.filter(run_id=latest.id if latest else None)


@admin.register(Discrepancy)
class DiscrepancyAdmin(LeadIdSearchAdmin, ViewOnlyAdmin):
    # What is wrong, on which deal, and its fix; the numbers are under the deal, the run on the row's page.
    list_display = ["kind", "deal", "detail", "action", "fix_outcome", "links"]
    list_filter = [
        LatestRunFilter,
        "kind",
        "action",
        ("fixed_at", admin.EmptyFieldListFilter),
        ("sync_record__entity", admin.RelatedOnlyFieldListFilter),  # a multi-entity tenant: one entity's deals
    ]
    search_fields = ["zuora_account_number", "zuora_subscription_number", "detail"]
    list_select_related = ["run", "sync_record"]
    list_per_page = 100
    show_full_result_count = False
    actions = ["apply_fix"]

    @admin.display(description="deal", ordering="kommo_lead_id")
    def deal(self, row: Discrepancy) -> str:
        number = row.zuora_subscription_number or row.zuora_account_number
        if row.sync_record_id:
            cell = deal_cell(row.sync_record)
        else:
            cell = format_html("{}", f"lead {row.kommo_lead_id}" if row.kommo_lead_id else "—")
        return format_html('{}<span class="zk-sub">{}</span>', cell, number) if number else cell

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # a report is re-made by the next run, never edited

    @admin.display(description="open in")
    def links(self, row: Discrepancy) -> str:
        sync = (
            format_html('<a href="../syncrecord/{}/change/">sync</a>', row.sync_record_id) if row.sync_record_id else ""
        )
        return outside_links(row.kommo_lead_id, row.zuora_subscription_number or row.zuora_account_number, sync)

    @admin.display(description="fix", ordering="fixed_at")
    def fix_outcome(self, row: Discrepancy) -> str:
        return outcome(row) or "—"

    def has_fix_permission(self, request) -> bool:
        return request.user.has_perm("sync.change_syncrecord")

    @admin.action(description="Apply the one-click fix (re-checked first)", permissions=["fix"])
    def apply_fix(self, request: HttpRequest, queryset) -> None:
        results: dict[str, int] = {}
        for row in queryset.select_related("sync_record")[:500]:
            result = fix(row, str(request.user))
            self.log_change(request, row, f"applied the one-click fix: {result.outcome}")
            results[result.outcome] = results.get(result.outcome, 0) + 1
        messages.info(request, "; ".join(f"{n} × {outcome}" for outcome, n in sorted(results.items())))
