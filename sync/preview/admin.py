"""The quote previews' admin page: what each lead in a proposal stage was last quoted, or why it cannot be billed.
Read only: the quote_preview flow writes it."""

from __future__ import annotations

from django.contrib import admin
from django.utils.html import format_html

from sync.admin_common import ViewOnlyAdmin, kommo_lead_url
from sync.money import format_money
from sync.preview.models import QuotePreview


@admin.register(QuotePreview)
class QuotePreviewAdmin(ViewOnlyAdmin):
    list_display = ("lead", "summary", "quote", "problem_shown", "updated_at")
    list_filter = (("task_id", admin.EmptyFieldListFilter), "currency")
    search_fields = ("=lead_id", "summary", "problem")

    @admin.display(description="Kommo lead", ordering="lead_id")
    def lead(self, row: QuotePreview) -> str:
        return format_html('<a href="{}" target="_blank">{}</a>', kommo_lead_url(row.lead_id), row.lead_id)

    @admin.display(description="Zuora's preview")
    def quote(self, row: QuotePreview) -> str:
        if row.mrr is None or not row.currency:
            return "—"
        return format_html(
            "{} MRR · {} TCV<br>first invoice {}<br><small>{}</small>",
            self.mrr_shown(row),
            self.tcv_shown(row),
            self.first_invoice_shown(row),
            row.term,
        )

    @admin.display(description="MRR", ordering="mrr")
    def mrr_shown(self, row: QuotePreview) -> str:
        return format_money(row.mrr, row.currency) if row.mrr is not None and row.currency else "—"

    @admin.display(description="TCV", ordering="tcv")
    def tcv_shown(self, row: QuotePreview) -> str:
        return format_money(row.tcv, row.currency) if row.tcv is not None and row.currency else "—"

    @admin.display(description="First invoice", ordering="first_invoice_date")
    def first_invoice_shown(self, row: QuotePreview) -> str:
        if row.first_invoice is None or not row.currency:
            return "—"
        day = f" on {row.first_invoice_date:%Y-%m-%d}" if row.first_invoice_date else ""
        return f"{format_money(row.first_invoice, row.currency)}{day}"

    @admin.display(description="Cannot be billed because")
    def problem_shown(self, row: QuotePreview) -> str:
        text = row.problem or row.refused
        return format_html("<span class='zk-problem'>{}</span>", text) if text else "—"
