"""RevOps' catalog browser and plan map editor."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms import BaseInlineFormSet
from django.utils.html import format_html

from catalog.models import MappedRatePlan, PlanMapping, Product, ProductRatePlan, ProductRatePlanCharge, today
from catalog.planmap import check_rate_plan
from catalog.sellable import status_label

BADGE_COLOURS = {
    "sellable": "#1a7f37",
    "retired": "#cf222e",
    "not yet effective": "#8250df",
    "removed from Zuora": "#57606a",
}


def badge(label: str) -> str:
    colour = BADGE_COLOURS.get(label, "#bf8700")  # "retires …" is amber
    return format_html('<b style="color:#fff;background:{};padding:1px 6px;border-radius:8px">{}</b>', colour, label)


class ReadOnlyMirror(admin.ModelAdmin):
    """The mirror changes only through sync_catalog."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class RatePlanInline(admin.TabularInline):
    model = ProductRatePlan
    fields = ["name", "zuora_id", "effective_start", "effective_end", "sellable"]
    readonly_fields = fields
    extra = 0
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="status")
    def sellable(self, obj: ProductRatePlan) -> str:
        return badge(status_label(obj, today()))


@admin.register(Product)
class ProductAdmin(ReadOnlyMirror):
    list_display = ["name", "sku", "category", "effective_start", "effective_end", "zuora_id", "removed_at"]
    search_fields = ["name", "sku", "zuora_id"]
    list_filter = ["category"]
    inlines = [RatePlanInline]


class ChargeInline(admin.TabularInline):
    model = ProductRatePlanCharge
    fields = ["name", "charge_type", "charge_model", "uom", "billing_period", "default_quantity", "prices"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="prices")
    def prices(self, obj: ProductRatePlanCharge) -> str:
        lines = []
        for price in obj.pricing:
            if price.get("tiers"):
                tiers = "; ".join(
                    f"{t.get('startingUnit')}–{t.get('endingUnit') or '∞'}: {t.get('price')}" for t in price["tiers"]
                )
                lines.append(f"{price.get('currency')} tiers {tiers}")
            else:
                lines.append(f"{price.get('currency')} {price.get('price')}")
        return format_html("<br>".join(["{}"] * len(lines)), *lines) if lines else "—"


@admin.register(ProductRatePlan)
class ProductRatePlanAdmin(ReadOnlyMirror):
    list_display = ["__str__", "zuora_id", "effective_start", "effective_end", "sellable", "currency_list"]
    list_select_related = ["product"]
    search_fields = ["name", "zuora_id", "product__name", "product__sku"]
    list_filter = ["product"]
    inlines = [ChargeInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("charges")

    @admin.display(description="status")
    def sellable(self, obj: ProductRatePlan) -> str:
        return badge(status_label(obj, today()))

    @admin.display(description="currencies")
    def currency_list(self, obj: ProductRatePlan) -> str:
        return ", ".join(sorted(obj.currencies()))


class MappedRatePlanFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        currency = self.instance.currency
        plans = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        if not plans:
            raise ValidationError("Map the value to at least one Zuora rate plan.")
        self.warnings = []
        for data in plans:
            plan = data.get("product_rate_plan")
            if plan is None:
                continue
            check = check_rate_plan(plan, currency)
            if check.errors:
                raise ValidationError(check.errors)
            self.warnings += check.warnings


class MappedRatePlanInline(admin.TabularInline):
    model = MappedRatePlan
    formset = MappedRatePlanFormSet
    extra = 1
    autocomplete_fields = ["product_rate_plan"]


@admin.register(PlanMapping)
class PlanMappingAdmin(admin.ModelAdmin):
    list_display = ["kommo_value", "kind", "currency", "label", "resolved_plans", "active", "updated_at"]
    list_filter = ["kind", "currency", "active"]
    search_fields = [
        "kommo_value",
        "label",
        "rate_plans__product_rate_plan__name",
        "rate_plans__product_rate_plan__zuora_id",
    ]
    inlines = [MappedRatePlanInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rate_plans__product_rate_plan__product")

    @admin.display(description="Zuora rate plan(s)")
    def resolved_plans(self, obj: PlanMapping) -> str:
        items = [(str(i.product_rate_plan), status_label(i.product_rate_plan, today())) for i in obj.rate_plans.all()]
        return (
            format_html(
                "<br>".join(["{} {}"] * len(items)), *[x for name, label in items for x in (name, badge(label))]
            )
            if items
            else "—"
        )

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for warning in getattr(formset, "warnings", []):
            messages.warning(request, warning)
