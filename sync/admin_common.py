"""What several admin pages share."""

from __future__ import annotations

from django.contrib import admin


class LeadIdSearchAdmin(admin.ModelAdmin):
    """Admin search where a number is most often a Kommo lead id: matched exactly (indexed) as well."""

    def get_search_results(self, request, queryset, search_term):
        results, distinct = super().get_search_results(request, queryset, search_term)
        if search_term.strip().isdigit():
            results |= queryset.filter(kommo_lead_id=int(search_term.strip()))
        return results, distinct
