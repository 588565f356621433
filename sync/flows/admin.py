"""The won flow's tables in the admin: entity routing rules, and which account bills each customer."""

from __future__ import annotations

from django.contrib import admin

from sync.admin_common import ViewOnlyAdmin
from sync.flows.models import CustomerAccount, EntityRoute


@admin.register(EntityRoute)
class EntityRouteAdmin(admin.ModelAdmin):
    """Which Zuora entity bills a deal: by Kommo pipeline or by a lead field's value (else the default entity).
    Refused on save: a rule another rule already covers, an inactive entity, an entity whose catalog was never
    mirrored."""

    list_display = ["__str__", "kind", "pipeline_id", "field_id", "field_value", "entity", "active"]
    list_filter = ["kind", "entity", "active"]
    search_fields = ["field_value", "pipeline_id", "field_id"]
    list_select_related = ["entity"]
    fields = ["kind", "pipeline_id", "field_id", "field_value", "entity", "active"]


@admin.register(CustomerAccount)
class CustomerAccountAdmin(ViewOnlyAdmin):
    """Which Zuora account each Kommo customer is billed on, as zkbridge remembers it. Deleting a row makes the
    customer's next deal ask Zuora again (after accounts were merged in Zuora, say)."""

    list_display = ["customer_key", "account", "currency", "linked_at"]
    search_fields = ["customer_key", "account_number"]
    list_filter = ["currency"]
    readonly_fields = ["customer_key", "account_number", "currency", "linked_at"]

    @admin.display(description="Zuora account", ordering="account_number")
    def account(self, obj: CustomerAccount) -> str:
        # An order creating the account was sent and its answer is not known yet: the next deal asks Zuora.
        return obj.account_number or "(being created: the next deal asks Zuora)"
