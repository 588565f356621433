"""RevOps' catalog browser and plan map editor."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.autocomplete import AutocompleteJsonView
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Count, IntegerField, Q, Value
from django.forms import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from catalog.hooks import contributions
from catalog.models import (
    MappedRatePlan,
    PlanMapping,
    Product,
    ProductRatePlan,
    ProductRatePlanCharge,
    UnitOfMeasure,
    ZuoraEntity,
    convert_for_plan,
    today,
)
from catalog.planmap import MAX_CSV_BYTES, export_csv, import_csv
from catalog.sellable import status_label
from catalog.tiers import TierError, describe, parse
from zkbridge.audit import log_action


def deals_billed():
    """How many deals each row billed, as the billing app counts them (0 when none is installed)."""
    if contributions.deals_billed is None:
        return Value(0, output_field=IntegerField())
    return contributions.deals_billed()


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
    fields = (
        "name",
        "zuora_id",
        "effective_start",
        "effective_end",
        "sellable",
    )
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
    list_display = ["name", "sku", "category", "effective_start", "effective_end", "removed_at"]
    search_fields = ["name", "sku", "zuora_id"]
    list_filter = ["category"]
    inlines = [RatePlanInline]
    change_list_template = "admin/catalog/product/change_list.html"

    def get_urls(self):
        return [
            path("sync-now/", self.admin_site.admin_view(self.sync_now), name="catalog_sync_now"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        from catalog.models import CatalogSyncRun

        extra = {"last_run": CatalogSyncRun.objects.first(), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def sync_now(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return redirect("admin:catalog_product_changelist")
        if not request.user.has_perm("catalog.add_catalogsyncrun"):
            raise PermissionDenied
        if contributions.start_catalog_sync is None:
            messages.error(request, "No catalog sync is installed.")
            return redirect("admin:catalog_product_changelist")
        contributions.start_catalog_sync(str(request.user))
        log_action(request, Product, "asked for a catalog sync now")
        messages.success(request, "Catalog sync started; this page shows its result when it is done.")
        return redirect("admin:catalog_product_changelist")


class ChargeInline(admin.TabularInline):
    model = ProductRatePlanCharge
    fields = (
        "name",
        "charge_type",
        "charge_model",
        "uom",
        "billing_period",
        "default_quantity",
        "prices",
    )
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
    list_display = ["__str__", "effective_start", "effective_end", "sellable", "currency_list"]
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

    def get_urls(self):
        return [
            path("legacy/", self.admin_site.admin_view(self.legacy_report), name="catalog_legacy_report"),
            *super().get_urls(),
        ]

    def legacy_report(self, request: HttpRequest) -> HttpResponse:
        """Rate plans retired or retiring soon, and how many synced subscriptions are on each."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        day = today()
        asked = request.GET.get("days", "")
        horizon = day + dt.timedelta(days=min(int(asked), 3650) if asked.isdigit() and len(asked) < 6 else 90)
        entities = list(ZuoraEntity.objects.order_by("name"))
        entity = ZuoraEntity.chosen(request.GET.get("entity", ""))
        plans = (
            ProductRatePlan.objects.select_related("product", "product__entity")
            .filter(
                Q(effective_end__lte=horizon) | Q(product__effective_end__lte=horizon) | Q(removed_at__isnull=False)
            )
            .filter(**({"product__entity": entity} if entity else {}))
            .annotate(subscriptions=deals_billed(), mappings_count=Count("mappings", distinct=True))
            .order_by("effective_end", "product__name", "name")
        )
        listed = list(plans)
        status_of = contributions.migration_status
        migration = status_of([p.zuora_id for p in listed]) if status_of else {}
        rows = [
            {
                "plan": p,
                "status": status_label(p, day),
                "subscriptions": p.subscriptions,
                "mappings": p.mappings_count,
                "migration": migration.get(p.zuora_id),
            }
            for p in listed
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Legacy and retiring rate plans: the migration dashboard",
            "migrations": contributions.migration_status is not None,
            "rows": rows,
            "horizon": horizon,
            "days": (horizon - day).days,
            "entities": entities,
            "entity": entity,
            "in_entity": f"&entity={entity.pk}" if entity else "",  # the day links keep the chosen entity
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/catalog/legacy_report.html", context)


class MappedRatePlanFormSet(BaseInlineFormSet):
    preview = False  # "Preview tiers" pressed: show both forms of the tiers, save nothing
    tier_previews: list[str] = []

    def clean(self):
        super().clean()
        plans = [f.cleaned_data for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        picked = [d["product_rate_plan"] for d in plans if d.get("product_rate_plan") is not None]
        carried: set[str] = set()
        if self.instance.pk:
            carried = set(self.instance.mapped_plans.values_list("product_rate_plan__zuora_id", flat=True))
        errors, self.warnings = self.instance.plan_problems(picked, carried=carried)
        if errors:  # the one rule, shared with the CSV import (PlanMapping.plan_problems)
            raise ValidationError(errors)
        self.tier_previews = []
        for data in plans:  # (the tiers themselves were checked by each row's own validation)
            if data.get("product_rate_plan") is not None and (data.get("tiers") or "").strip():
                try:
                    charge, tiers = convert_for_plan(
                        data["product_rate_plan"], data["tiers"], self.instance.tier_policy
                    )
                except TierError:
                    continue
                self.tier_previews.append(
                    f"{data['product_rate_plan']} — charge '{charge.name}' ({charge.uom}): as negotiated "
                    f"{'; '.join(f'{t.bounds()}: {t.price}' for t in parse(data['tiers']))} → in Zuora "
                    f"{describe(tiers)}"
                )
        if self.preview:
            if not self.tier_previews:
                raise ValidationError("Preview: no rate plan of this mapping has tiers to convert.")
            raise ValidationError(
                ["Preview only — nothing was saved. Press Save to keep these tiers:", *self.tier_previews]
            )


def picker_label(plan: ProductRatePlan) -> str:
    """A rate plan as the mapping picker offers it: a plan that cannot be sold today says so ("— retired",
    "— not yet effective", "— removed from Zuora", "— retires 2027-01-31")."""
    status = status_label(plan, today())
    return str(plan) if status == "sellable" else f"{plan} — {status}"


class RatePlanAutocomplete(AutocompleteJsonView):
    """The admin's autocomplete, with each rate plan's sellability in its label (ZkbridgeAdminSite uses it)."""

    def serialize_result(self, obj, to_field_name):
        result = super().serialize_result(obj, to_field_name)
        if isinstance(obj, ProductRatePlan):
            result["text"] = picker_label(obj)
        return result


class MappedRatePlanInline(admin.TabularInline):
    model = MappedRatePlan
    formset = MappedRatePlanFormSet
    extra = 1
    autocomplete_fields = ["product_rate_plan"]
    fields = ["product_rate_plan", "quantity", "price", "tiers", "in_zuora"]
    readonly_fields = ["in_zuora"]
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 2, "cols": 36})}}

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "product_rate_plan" and field is not None:
            # The chosen plan, named as the picker named it.
            field.label_from_instance = picker_label  # type: ignore[method-assign,assignment]
        return field

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.preview = request.method == "POST" and "_preview_tiers" in request.POST  # type: ignore[attr-defined]
        return formset

    @admin.display(description="tiers in Zuora (as saved)")
    def in_zuora(self, obj: MappedRatePlan) -> str:
        if obj.pk is None or not obj.tiers.strip():
            return "—"
        try:
            converted = obj.zuora_tiers(obj.mapping.tier_policy)
        except TierError as exc:  # the catalog changed since it was saved
            return f"cannot be billed: {exc}"
        return describe(converted[1]) if converted else "—"


class ZuoraEntityForm(forms.ModelForm):
    """The OAuth secret is never shown back; left empty when changing an entity, the stored one is kept."""

    client_secret = forms.CharField(
        label="OAuth client secret", required=False, widget=forms.PasswordInput(render_value=False), max_length=200
    )

    class Meta:
        model = ZuoraEntity
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = bool(self.instance.pk and self.instance.client_secret)
        self.fields["client_secret"].help_text = (
            "set — leave empty to keep it, or type a new one to replace it" if stored else "not set"
        )

    def clean_client_secret(self) -> str:
        given = self.cleaned_data.get("client_secret") or ""
        return given or (self.instance.client_secret if self.instance.pk else "")


@admin.register(ZuoraEntity)
class ZuoraEntityAdmin(admin.ModelAdmin):
    """Zuora Multi-entity: each entity with its id (sent as Zuora-Entity-Ids), default currency, and optionally
    its own OAuth client and concurrency cap. With none listed, zkbridge works in one entity."""

    form = ZuoraEntityForm
    list_display = ["name", "entity_id", "default_currency", "own_client", "max_concurrent_calls", "is_default"]
    list_filter = ["is_default", "active"]
    search_fields = ["name", "entity_id"]
    fields = [
        "name",
        "entity_id",
        "default_currency",
        "client_id",
        "client_secret",
        "max_concurrent_calls",
        "is_default",
        "active",
    ]
    formfield_overrides = {models.CharField: {"widget": forms.TextInput(attrs={"size": 50})}}

    readonly_fields = ["client_secret_state"]

    def get_fields(self, request, obj=None):
        """The secret itself is never shown, to anyone: who may not change the entity sees whether it is set."""
        fields = list(super().get_fields(request, obj))
        if not self.has_change_permission(request, obj):
            fields = ["client_secret_state" if f == "client_secret" else f for f in fields]
        return [f for f in fields if f != "client_secret_state" or not self.has_change_permission(request, obj)]

    @admin.display(description="OAuth client secret")
    def client_secret_state(self, obj: ZuoraEntity) -> str:
        return "set" if obj.client_secret else "not set"

    @admin.display(description="own OAuth client", boolean=True)
    def own_client(self, obj: ZuoraEntity) -> bool:
        return bool(obj.client_id)


@admin.register(UnitOfMeasure)
class UnitOfMeasureAdmin(ReadOnlyMirror):
    """Mirrored with the catalog (Zuora's settings are where units change); decimal places convert tiers."""

    list_display = ["name", "decimal_places", "rounding_mode", "active", "removed_at", "synced_at"]
    search_fields = ["name"]


class ImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV: kommo_value,product_rate_plan_id[,currency,label,kind,quantity,price,term_months,auto_renew,"
        "evergreen,renewal_term_months,payment_term,active,tier_policy,tiers,entity]; several rate plans of one "
        "mapping separated by ';'; tiers (the CRM's form) apply to the one rate plan with a tiered charge, 'none' "
        "clears them; entity: the Zuora entity's name or id"
    )


@admin.register(PlanMapping)
class PlanMappingAdmin(SimpleHistoryAdmin):
    # The value, what it bills and whether that is still sellable; kind, entity and dates are filters and details.
    list_display = ["kommo_value", "label", "currency", "resolved_plans", "deals_synced", "active"]
    list_filter = ["kind", "entity", "currency", "active"]
    search_fields = [
        "kommo_value",
        "label",
        "mapped_plans__product_rate_plan__name",
        "mapped_plans__product_rate_plan__zuora_id",
    ]
    inlines = [MappedRatePlanInline]
    change_list_template = "admin/catalog/planmapping/change_list.html"
    history_list_display = ["label", "currency", "active"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("mapped_plans__product_rate_plan__product")
            .annotate(synced=deals_billed())
        )

    @admin.display(description="Zuora rate plan(s)")
    def resolved_plans(self, obj: PlanMapping) -> str:
        items = [(str(i.product_rate_plan), status_label(i.product_rate_plan, today())) for i in obj.mapped_plans.all()]
        if not items:
            return "—"
        return format_html(
            "<br>".join(["{} {}"] * len(items)), *[x for name, label in items for x in (name, badge(label))]
        )

    @admin.display(description="deals synced", ordering="synced")
    def deals_synced(self, obj: PlanMapping) -> int:
        return getattr(obj, "synced", 0)  # annotated by get_queryset

    def save_formset(self, request, form, formset, change):
        super().save_formset(request, form, formset, change)
        for warning in getattr(formset, "warnings", []):
            messages.warning(request, warning)
        for preview in getattr(formset, "tier_previews", []):
            messages.info(request, f"Tiers saved: {preview}")

    # --- CSV import (with a preview) and export --------------------------------------------------
    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="catalog_planmapping_import"),
            path("export/", self.admin_site.admin_view(self.export_view), name="catalog_planmapping_export"),
            *super().get_urls(),
        ]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = HttpResponse(export_csv(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="plan-map-{today():%Y-%m-%d}.csv"'
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload → preview of every change (or every bad line) → confirm → import, all or nothing."""
        if not self.has_add_permission(request) or not self.has_change_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Import the plan map from CSV",
            "opts": self.model._meta,
            "form": ImportForm(),
        }
        if request.method == "POST" and request.POST.get("confirm"):
            data = request.session.pop("plan_map_upload", "").encode()
            result = import_csv(data, settings.ZKBRIDGE_DEFAULT_CURRENCY)
            if result.errors:  # the catalog changed between preview and confirm
                context["result"] = result
                return TemplateResponse(request, "admin/catalog/planmapping/import.html", context)
            for warning in result.warnings:
                messages.warning(request, warning)
            messages.success(request, f"{result.created} mapping(s) created, {result.updated} updated.")
            log_action(
                request, PlanMapping, f"imported the plan map: {result.created} created, {result.updated} updated"
            )
            return redirect("admin:catalog_planmapping_changelist")
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES)
            context["form"] = form
            if form.is_valid():
                upload = form.cleaned_data["file"]
                if upload.size > MAX_CSV_BYTES:
                    form.add_error("file", f"The file is {upload.size:,} bytes; the limit is {MAX_CSV_BYTES:,}.")
                else:
                    data = upload.read()
                    result = import_csv(data, settings.ZKBRIDGE_DEFAULT_CURRENCY, dry_run=True)
                    context["result"] = result
                    if not result.errors:
                        request.session["plan_map_upload"] = data.decode("utf-8-sig")
        return TemplateResponse(request, "admin/catalog/planmapping/import.html", context)
