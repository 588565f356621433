"""Billing health in the admin: what each Kommo company last received, and when."""

from __future__ import annotations

import datetime as dt

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from sync.admin_common import ViewOnlyAdmin, zuora_url
from sync.health.models import BillingHealth

LABELS = {
    "status": "status",
    "mrr": "MRR",
    "renewal": "renews or ends",
    "balance": "balance",
    "overdue": "overdue",
    "last_payment": "last payment",
}


@admin.register(BillingHealth)
class BillingHealthAdmin(ViewOnlyAdmin):
    list_display = ["account", "written_to", "shown", "written_at", "problem"]
    search_fields = ["=account_number", "=kommo_id"]
    list_filter = ["entity", ("written_at", admin.EmptyFieldListFilter)]

    @admin.display(description="Kommo", ordering="kommo_id")
    def written_to(self, row: BillingHealth) -> str:
        return f"{row.get_entity_display()} {row.kommo_id}" if row.kommo_id else "—"

    @admin.display(description="Zuora account", ordering="account_number")
    def account(self, row: BillingHealth) -> str:
        return format_html('<a href="{}" target="_blank">{}</a>', zuora_url(row.account_number), row.account_number)

    @admin.display(description="On the company")
    def shown(self, row: BillingHealth) -> str:
        parts = [
            (
                LABELS[k],
                dt.datetime.fromtimestamp(int(v), dt.UTC).date().isoformat()
                if k == "renewal" and str(v).isdigit()
                else v,
            )
            for k, v in row.values.items()
            if k in LABELS and v not in (None, "")
        ]
        if not parts:
            return "—"
        return format_html_join(format_html("<br>"), "{}: {}", parts)

    @admin.display(description="Kommo's refusal")
    def problem(self, row: BillingHealth) -> str:
        return row.error[:200] or "—"
