"""What several admin pages share."""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import admin
from django.utils.html import format_html


class ViewOnlyAdmin(admin.ModelAdmin):
    """Records zkbridge writes itself (API calls, the inbox, reconciliation runs): read, never edited."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class LeadIdSearchAdmin(admin.ModelAdmin):
    """Admin search where a number is most often a Kommo lead id: matched exactly (indexed) as well."""

    def get_search_results(self, request, queryset, search_term):
        results, distinct = super().get_search_results(request, queryset, search_term)
        if search_term.strip().isdigit():
            results |= queryset.filter(kommo_lead_id=int(search_term.strip()))
        return results, distinct


def breakable(text: str) -> str:
    """A text whose long CamelCase words (Zuora's event names: PaymentProcessingError) may wrap between their
    parts in a narrow column."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "\u200b", text)


def kommo_lead_url(lead_id: int) -> str:
    if "/sandbox/kommo" in settings.KOMMO_BASE_URL:
        return f"{settings.KOMMO_BASE_URL}/#lead-{lead_id}"
    return f"{settings.KOMMO_BASE_URL}/leads/detail/{lead_id}"


def zuora_url(number: str) -> str:
    """The emulator's page, or the Zuora UI's search for the number (the UI host is the API host without
    'rest.'; the search path is not confirmed against every tenant)."""
    if "/sandbox/zuora" in settings.ZUORA_BASE_URL:
        return f"{settings.ZUORA_BASE_URL}/"
    return f"{settings.ZUORA_BASE_URL.replace('://rest.', '://')}/apps/NewSearch.do?searchTerm={number}"


def outside_links(lead_id: int | None, zuora_number: str, *extra: str) -> str:
    """ "Kommo · Zuora" links for a deal, as far as its ids are known."""
    parts: list[str] = []
    if lead_id:
        parts.append(format_html('<a href="{}" target="_blank">Kommo</a>', kommo_lead_url(lead_id)))
    if zuora_number:
        parts.append(format_html('<a href="{}" target="_blank">Zuora</a>', zuora_url(zuora_number)))
    parts += [e for e in extra if e]
    return format_html(" · ".join(["{}"] * len(parts)), *parts) if parts else "—"


def deal_title(record) -> str:
    """What RevOps calls a record's deal: the lead's name as Kommo had it, else the lead, the subscription or the
    account the record is about (a record key is for machines)."""
    name = record.deal_name if record is not None else ""
    if name:
        return str(name)
    if record is None:
        return "—"
    if record.kommo_lead_id:
        return f"lead {record.kommo_lead_id}"
    return record.zuora_subscription_number or record.zuora_account_number or record.get_kind_display()


def deal_cell(record, url: str = "") -> str:
    """The deal's name (a link to `url`), with its lead id beneath it."""
    title = deal_title(record)
    sub = f"lead {record.kommo_lead_id}" if record is not None and record.kommo_lead_id else ""
    name = format_html('<a href="{}">{}</a>', url, title) if url else title
    return format_html('{}<span class="zk-sub">{}</span>', name, sub) if sub else format_html("{}", name)


def age(moment) -> str:
    """How long ago, in one short phrase ("3 min", "2 h", "5 d")."""
    from django.utils import timezone

    if moment is None:
        return "—"
    seconds = max(int((timezone.now() - moment).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
