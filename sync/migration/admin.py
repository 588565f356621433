"""Migration rules (edited by RevOps, validated on save) and their runs: a dry run first, exportable as
CSV, then the run itself. The admin never calls Zuora: both are handed to the workers."""

from __future__ import annotations

import copy
import io

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.forms.models import construct_instance
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from sync.admin_common import ViewOnlyAdmin
from sync.migration import rules
from sync.migration.models import MigrationRule, MigrationRun
from sync.records import hand_to_workers
from zkbridge import spreadsheet
from zkbridge.business_time import business_today

COLUMNS = ["outcome", "subscription", "account", "lead", "current", "target", "discount", "effective", "reason"]


class MigrationRuleForm(forms.ModelForm):
    class Meta:
        model = MigrationRule
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if not self.errors:  # the rule as it would be saved, judged by the one place that knows what is safe
            rules.validate(construct_instance(self, copy.copy(self.instance)))
        return cleaned


@admin.register(MigrationRule)
class MigrationRuleAdmin(admin.ModelAdmin):
    form = MigrationRuleForm
    list_display = [
        "__str__",
        "source_plan",
        "target_plan",
        "alternative_plan",
        "moment",
        "starts_on",
        "active",
        "runs",
    ]
    list_filter = ["active", "moment", "quiet"]
    autocomplete_fields = ["source_plan", "target_plan", "alternative_plan", "discount_plan"]
    actions = ["dry_run", "run_now"]
    fieldsets = [
        (None, {"fields": ["name", "source_plan", "target_plan", "active", "starts_on"]}),
        ("When", {"fields": ["moment", "days_ahead", "usage_grace_days"]}),
        ("The customer's choice", {"fields": ["alternative_plan", "discount_plan", "choice_source", "choice_field"]}),
        ("Quiet change", {"fields": ["quiet"]}),
    ]

    @admin.display(description="runs")
    def runs(self, obj: MigrationRule) -> str:
        url = reverse("admin:sync_migrationrun_changelist") + f"?rule__id__exact={obj.id}"
        return format_html('<a href="{}">dry runs and runs</a>', url)

    def _hand_over(self, request, queryset, dry_run: bool) -> None:
        count = 0
        word = "dry run" if dry_run else "run"
        for rule in queryset.filter(active=True):
            handed = hand_to_workers(
                "sync.migration.run.run_for_rule",
                rule.id,
                dry_run,
                str(request.user),
                recovery="ask again",
                group="migration",
            )
            if handed:
                self.log_change(request, rule, f"asked for a {word}")
            count += handed
        messages.info(request, f"{count} {word}(s) handed to the workers; see 'dry runs and runs' in a moment.")

    @admin.action(description="Dry run: list what would move today (the workers read Zuora)", permissions=["change"])
    def dry_run(self, request, queryset) -> None:
        self._hand_over(request, queryset, True)

    @admin.action(description="Run now: move the due subscribers", permissions=["change"])
    def run_now(self, request, queryset) -> None:
        self._hand_over(request, queryset, False)


@admin.register(MigrationRun)
class MigrationRunAdmin(ViewOnlyAdmin):
    list_display = ["started_at", "kind", "rule", "ok", "moved", "skipped", "failed", "csv"]
    list_filter = ["dry_run", "ok", "rule"]
    fields = ["day", "kind", "rule", "requested_by", "ok", "error", "outcome", "table"]
    readonly_fields = ["day", "kind", "rule", "requested_by", "ok", "error", "outcome", "table"]

    @admin.display(description="outcome")
    def outcome(self, obj: MigrationRun) -> str:
        """The run's counts in words, and the subscribers still on each legacy plan by the plan's name."""
        from catalog.models import ProductRatePlan

        counts = format_html(
            "{} {} · {} skipped · {} failed · {} Zuora reads",
            self.moved(obj),
            "would move" if obj.dry_run else "moved",
            self.skipped(obj),
            self.failed(obj),
            self.zuora_reads(obj),
        )
        left = obj.summary.get("subscribers") or {}
        if not left:
            return counts
        names = {p.zuora_id: str(p) for p in ProductRatePlan.objects.filter(zuora_id__in=list(left))}
        still = format_html_join(", ", "{}: {}", ((names.get(plan, plan), count) for plan, count in left.items()))
        return format_html("{}<br>Subscribers on the legacy plan when it ran: {}", counts, still)

    @admin.display(description="kind")
    def kind(self, obj: MigrationRun) -> str:
        return "dry run" if obj.dry_run else "run"

    @admin.display(description="moved (or would)")
    def moved(self, obj: MigrationRun) -> int:
        return int(obj.summary.get("moved", 0))

    @admin.display(description="skipped")
    def skipped(self, obj: MigrationRun) -> int:
        return int(obj.summary.get("skipped", 0))

    @admin.display(description="failed")
    def failed(self, obj: MigrationRun) -> int:
        return int(obj.summary.get("failed", 0))

    @admin.display(description="Zuora reads")
    def zuora_reads(self, obj: MigrationRun) -> int:
        return int(obj.summary.get("zuora_reads", 0))

    @admin.display(description="export")
    def csv(self, obj: MigrationRun) -> str:
        return format_html('<a href="{}">CSV</a>', reverse("admin:sync_migrationrun_csv", args=[obj.id]))

    @admin.display(description="subscriptions")
    def table(self, obj: MigrationRun) -> str:
        if not obj.rows:
            return "none due"
        head = format_html_join("", "<th>{}</th>", ((c,) for c in COLUMNS))
        body = format_html_join(
            "",
            "<tr>" + "<td>{}</td>" * len(COLUMNS) + "</tr>",
            ([row.get(c) if row.get(c) not in (None, "") else "" for c in COLUMNS] for row in obj.rows[:2000]),
        )
        return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)

    def get_urls(self):
        return [
            path("<int:run_id>/csv/", self.admin_site.admin_view(self.csv_view), name="sync_migrationrun_csv"),
            *super().get_urls(),
        ]

    def csv_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = MigrationRun.objects.filter(id=run_id).first()
        if run is None:
            return HttpResponse("no such run", status=404, content_type="text/plain")
        out = io.StringIO()
        writer = spreadsheet.writer(out)
        writer.writerow(COLUMNS)
        for row in run.rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        word = "dry-run" if run.dry_run else "run"
        response["Content-Disposition"] = f'attachment; filename="migration-{word}-{run.day or business_today()}.csv"'
        return response
