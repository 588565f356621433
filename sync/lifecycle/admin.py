"""RevOps' list of billed subscriptions (the mirror of each one's current Zuora version): what renews or
ends soon, with the deal and the account."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from sync.admin_common import LeadIdSearchAdmin, deal_cell, outside_links
from sync.lifecycle.models import Subscription
from sync.models import SyncRecord
from sync.records import hand_to_workers
from zkbridge.business_time import business_today


class EndsWithin(admin.SimpleListFilter):
    title = "ends or renews within"
    parameter_name = "ends_within"

    def lookups(self, request, model_admin):
        days = sorted({7, 30, 60, 90, settings.ZKBRIDGE_RENEWAL_WINDOW_DAYS})
        return [(str(d), f"{d} days") for d in days]

    def queryset(self, request, queryset):
        value = self.value()
        if not value or not value.isdigit() or len(value) > 5:  # days, at most 99,999
            return queryset
        today = business_today()
        until = today + dt.timedelta(days=int(value))
        return queryset.filter(
            Q(status="Active", term_end__gte=today, term_end__lte=until)
            | Q(status="Cancelled", ends_on__gte=today, ends_on__lte=until)
        )


@admin.register(Subscription)
class SubscriptionAdmin(LeadIdSearchAdmin):
    # The subscription, whose deal, what it bills, and the dates RevOps plans renewals by; the rest on its page.
    list_display = ["subscription", "deal", "status", "plans", "term_end", "charged_through", "links"]
    list_filter = [EndsWithin, "status", "auto_renew"]
    search_fields = ["number", "account_number"]
    readonly_fields = [f.name for f in Subscription._meta.fields]
    actions = ["refresh_from_zuora"]
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="deal", ordering="kommo_lead_id")
    def deal(self, obj: Subscription) -> str:
        record = SyncRecord.objects.deal_of(obj.kommo_lead_id)
        if record is None:
            return str(obj.kommo_lead_id or "—")
        return deal_cell(record, reverse("admin:sync_syncrecord_change", args=[record.id]))

    @admin.display(description="subscription", ordering="number")
    def subscription(self, obj: Subscription) -> str:
        url = reverse("admin:sync_subscription_change", args=[obj.pk])
        return format_html(
            '<a class="zk-key" href="{}">{}</a><span class="zk-sub">{}</span>', url, obj.number, obj.account_number
        )

    @admin.display(description="rate plans")
    def plans(self, obj: Subscription) -> str:
        return ", ".join(p.get("name") or p.get("productRatePlanId") or "?" for p in obj.rate_plans) or "—"

    @admin.display(description="open in")
    def links(self, obj: Subscription) -> str:
        return outside_links(obj.kommo_lead_id, obj.number)

    @admin.action(description="Refresh from Zuora (current version)", permissions=["refresh"])
    def refresh_from_zuora(self, request, queryset) -> None:
        count = 0
        for row in queryset[:500]:
            handed = hand_to_workers(
                "sync.lifecycle.subscription.refresh",
                row.number,
                row.kommo_lead_id,
                recovery="the daily refresh reads it",
                group="subscriptions",
            )
            if handed:
                self.log_change(request, row, "asked for a refresh from Zuora")
            count += handed
        messages.info(request, f"{count} refresh(es) queued; the workers read Zuora.")

    def has_refresh_permission(self, request) -> bool:
        """Queuing work is a repair: RevOps, not the read-only group."""
        return request.user.has_perm("sync.change_syncrecord")
