"""The plan field runs in the admin: what Kommo offers next to what Zuora sells (per entity and currency), the
changes each run made, and buttons to compare now or update Kommo now (the workers do either)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.utils.html import format_html, format_html_join

from sync.admin_common import ViewOnlyAdmin
from sync.offering.models import PlanFieldRun
from zkbridge.audit import log_action


@admin.register(PlanFieldRun)
class PlanFieldRunAdmin(ViewOnlyAdmin):
    list_display = ["started_at", "kind", "ok", "changes_made", "error", "requested_by"]
    list_filter = ["ok", "dry_run"]
    readonly_fields = ["started_at", "finished_at", "kind", "requested_by", "ok", "error", "field_id", "comparison"]
    fields = ["started_at", "finished_at", "kind", "requested_by", "ok", "error", "field_id", "comparison"]
    change_list_template = "admin/sync/planfieldrun/change_list.html"

    @admin.display(description="run")
    def kind(self, run: PlanFieldRun) -> str:
        return "dry run (compared only)" if run.dry_run else "update"

    @admin.display(description="changes")
    def changes_made(self, run: PlanFieldRun) -> str:
        if not run.changes:
            return "none" if run.ok else "—"
        verb = "would make" if run.dry_run or not run.ok else "made"
        return f"{verb} {len(run.changes)}: " + "; ".join(f"{c['action']} '{c['value']}'" for c in run.changes)[:300]

    @admin.display(description="What Kommo offers next to what Zuora sells")
    def comparison(self, run: PlanFieldRun) -> str:
        if not run.rows:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    row["value"],
                    row["kommo"],
                    row["state"],
                    format_html_join(
                        "",
                        "<div>{}{} — {}</div>",
                        (
                            (w["entity"], f" {w['currency']}" if w["entity"] else w["currency"], w["verdict"])
                            for w in row["zuora"]
                        ),
                    )
                    or "—",
                    row["change"] or "—",
                )
                for row in run.rows
            ),
        )
        return format_html(
            '<table class="zk-compare"><thead><tr><th>plan</th><th>Kommo offered</th><th>today</th>'
            "<th>Zuora sells (entity, currency)</th><th>change</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def get_urls(self):
        return [
            path("run/", self.admin_site.admin_view(self.run_now), name="sync_plan_field_run"),
            *super().get_urls(),
        ]

    def run_now(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:sync_planfieldrun_changelist")
        if not request.user.has_perm("catalog.change_planmapping"):
            raise PermissionDenied
        dry_run = request.POST.get("dry_run") == "1"
        from django_q.tasks import async_task

        async_task("sync.offering.run.scheduled", dry_run, str(request.user), task_name=f"plan field by {request.user}")
        what = "a comparison of Kommo's plan field" if dry_run else "an update of Kommo's plan field"
        log_action(request, PlanFieldRun, f"asked for {what}")
        messages.success(request, f"Asked for {what}; it shows below once a worker has run it.")
        return redirect("admin:sync_planfieldrun_changelist")
