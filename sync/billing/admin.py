"""Billing events in the admin: the rules RevOps edit, their templates checked before they are saved."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from sync.billing.models import BillingEventRule
from sync.billing.rules import template_problems


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
