"""The Zuora product catalog mirror and the plan map. Knows nothing of Kommo or of sync."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from catalog.tiers import LOWER_UPPER, TierError, parse, to_zuora
from catalog.tiers import POLICIES as TIER_POLICIES
from zkbridge.business_time import business_today
from zkbridge.vault import EncryptedTextField

TIERED_MODELS = ("Tiered", "Volume")


class MirroredQuerySet(models.QuerySet):
    def present(self):
        return self.filter(removed_at__isnull=True)

    def get_by_natural_key(self, zuora_id: str):
        return self.get(zuora_id=zuora_id)


currency_code = RegexValidator(r"^[A-Z]{3}$", "a three-letter ISO currency code such as USD")


class ZuoraEntityManager(models.Manager):
    def get_by_natural_key(self, entity_id: str):
        return self.get(entity_id=entity_id)


class ZuoraEntity(models.Model):
    """A legal entity of a Zuora Multi-entity tenant. With none listed, zkbridge works in one entity (the
    tenant, or ZUORA_ENTITY_ID); with entities listed, every deal is routed to one of them (sync's routing
    rules, else the default entity) and uses its catalog, plan map, OAuth client and concurrency cap."""

    name = models.CharField(max_length=100, unique=True)
    entity_id = models.CharField(
        "entity id", max_length=64, unique=True, help_text="Zuora's id of the entity, sent as Zuora-Entity-Ids"
    )
    default_currency = models.CharField(
        max_length=3,
        blank=True,
        validators=[currency_code],
        help_text="The currency of a deal that names none; empty: ZKBRIDGE_DEFAULT_CURRENCY",
    )
    client_id = models.CharField(
        "OAuth client id", max_length=100, blank=True, help_text="Its own OAuth client; empty: ZUORA_CLIENT_ID"
    )
    client_secret = EncryptedTextField("OAuth client secret", blank=True)  # encrypted at rest (zkbridge/vault.py)
    max_concurrent_calls = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Calls at once to this entity, shared by every worker; empty: ZUORA_MAX_CONCURRENT_CALLS",
    )
    is_default = models.BooleanField(
        "default entity", default=False, help_text="Bills the deals no routing rule sends elsewhere (one at most)"
    )
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "Zuora entity"
        verbose_name_plural = "Zuora entities"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_entity"
            )
        ]

    objects = ZuoraEntityManager()

    def natural_key(self) -> tuple[str]:
        """Zuora's entity id: fixtures name an entity the way Zuora does."""
        return (self.entity_id,)

    @classmethod
    def chosen(cls, value: str) -> ZuoraEntity | None:
        """The entity a page's `?entity=` names (None: all entities, or a value that names none)."""
        return cls.objects.filter(pk=int(value)).first() if value.isdigit() and len(value) < 10 else None

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if bool(self.client_id) != bool(self.client_secret):
            raise ValidationError("Give both the OAuth client id and its secret, or neither (ZUORA_CLIENT_ID is used).")
        if self.is_default and not self.active:
            raise ValidationError({"is_default": "An inactive entity cannot be the default."})
        if self.pk and self.default_currency:
            priced = self.priced_currencies()
            if priced and self.default_currency not in priced:
                raise ValidationError(
                    {
                        "default_currency": f"No rate plan of this entity's mirrored catalog is priced in "
                        f"{self.default_currency} (it sells in {', '.join(sorted(priced))}): every deal that names "
                        f"no currency would need attention."
                    }
                )

    def priced_currencies(self) -> set[str]:
        """The currencies the entity's mirrored catalog prices its present rate plans in (empty: not mirrored)."""
        plans = ProductRatePlan.objects.present().filter(product__entity=self).prefetch_related("charges")
        return set().union(*(plan.currencies() for plan in plans))

    def currency(self) -> str:
        return self.default_currency or settings.ZKBRIDGE_DEFAULT_CURRENCY


class Mirrored(models.Model):
    """A row copied from Zuora's catalog; `removed_at` is set when Zuora stopped listing it."""

    zuora_id = models.CharField("Zuora id", max_length=64, unique=True)
    name = models.CharField(max_length=255)
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Zuora no longer lists it")
    synced_at = models.DateTimeField(default=timezone.now)

    objects = MirroredQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name

    def natural_key(self) -> tuple[str]:
        """Zuora's id: fixtures and exports name catalog rows the way Zuora does."""
        return (self.zuora_id,)


class Product(Mirrored):
    # The entity whose catalog lists it (none: a tenant without entities). Rate plans and charges follow.
    entity = models.ForeignKey(ZuoraEntity, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    sku = models.CharField("SKU", max_length=100, blank=True, db_index=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    effective_start = models.DateField()
    effective_end = models.DateField()

    class Meta:
        ordering = ["name"]


class ProductRatePlan(Mirrored):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="rate_plans")
    description = models.TextField(blank=True)
    zuora_status = models.CharField(max_length=20, blank=True, help_text="Active, Expired or NotStarted")
    effective_start = models.DateField()
    effective_end = models.DateField()

    class Meta:
        ordering = ["product__name", "name"]
        verbose_name = "product rate plan"

    def __str__(self) -> str:
        return f"{self.product.name} / {self.name}"

    @property
    def one_time_only(self) -> bool:
        """Sells one-time charges only (an order line item, not a subscription)."""
        charges = [c for c in self.charges.all() if c.removed_at is None]
        return bool(charges) and all(c.charge_type == "OneTime" for c in charges)

    def currencies(self) -> set[str]:
        """Currencies in which every charge of the plan has a price."""
        charges = list(self.charges.all())
        if not charges:
            return set()
        sets = [{p.get("currency") for p in c.pricing} for c in charges]
        return set.intersection(*sets)


class ProductRatePlanCharge(Mirrored):
    rate_plan = models.ForeignKey(ProductRatePlan, on_delete=models.CASCADE, related_name="charges")
    charge_type = models.CharField(max_length=20, help_text="OneTime, Recurring or Usage")
    charge_model = models.CharField(max_length=40)
    uom = models.CharField("unit of measure", max_length=50, blank=True)
    billing_period = models.CharField(max_length=30, blank=True)
    default_quantity = models.DecimalField(max_digits=18, decimal_places=4, null=True, blank=True)
    # [{"currency": "USD", "price": "120", "tiers": [{tier, startingUnit, endingUnit, price, priceFormat}]}]
    pricing = models.JSONField(default=list)

    class Meta:
        ordering = ["rate_plan", "name"]
        verbose_name = "product rate plan charge"

    def price_in(self, currency: str) -> dict | None:
        return next((p for p in self.pricing if p.get("currency") == currency), None)


class UnitOfMeasure(models.Model):
    """A Zuora unit of measure (ZOQL object UnitOfMeasure), mirrored with the catalog: how finely its
    quantities — and so tier bounds — are counted."""

    entity = models.ForeignKey(ZuoraEntity, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=50)
    decimal_places = models.PositiveSmallIntegerField(help_text="0: whole units; 2: hundredths")
    rounding_mode = models.CharField(max_length=10, blank=True)
    active = models.BooleanField(default=True)
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Zuora no longer lists it")
    synced_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name = "unit of measure"
        verbose_name_plural = "units of measure"
        constraints = [
            models.UniqueConstraint(fields=["entity", "name"], name="uom_name_per_entity"),
            models.UniqueConstraint(fields=["name"], condition=models.Q(entity__isnull=True), name="uom_name_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.decimal_places} decimal places)"


def uom_decimal_places(uom: str, entity_id: int | None = None) -> int | None:
    """The unit's decimal places in the entity's settings (units are per entity): the mirrored unit, else
    ZKBRIDGE_UOM_DECIMAL_PLACES, else None (unknown)."""
    unit = UnitOfMeasure.objects.filter(name=uom, entity_id=entity_id, removed_at__isnull=True).first()
    if unit is not None:
        return unit.decimal_places
    return settings.ZKBRIDGE_UOM_DECIMAL_PLACES.get(uom)


class CatalogSyncRun(models.Model):
    """One run of sync_catalog: counts for the admin, and the error when Zuora failed half-way."""

    entity = models.ForeignKey(ZuoraEntity, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    pages = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]


def normalize(value: str) -> str:
    """Kommo values are matched ignoring case and surrounding spaces."""
    return " ".join(str(value).split()).casefold()


def default_currency() -> str:
    return settings.ZKBRIDGE_DEFAULT_CURRENCY


CHANGE_TIMINGS = [
    ("immediately", "immediately (prorated)"),
    ("end_of_billing_period", "at the end of the billing period (no proration, no credit)"),
    ("date_field", "on the date in the deal's plan change date field"),
]


class PlanMappingManager(models.Manager):
    def get_by_natural_key(self, kind: str, normalized_value: str, currency: str, entity_id: str = ""):
        """A mapping by what it maps and where: its entity by Zuora's entity id ("" or absent: no entity, as
        fixtures written before entities name it)."""
        where = {"entity__entity_id": entity_id} if entity_id else {"entity__isnull": True}
        return self.get(kind=kind, normalized_value=normalized_value, currency=currency, **where)


class PlanMapping(models.Model):
    """What a Kommo value (a plan option's text, or a Kommo product) means in Zuora."""

    class Kind(models.TextChoices):
        PLAN = "plan", "Plan field value"
        PRODUCT = "product", "Kommo product (catalog element id)"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PLAN)
    entity = models.ForeignKey(
        ZuoraEntity,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mappings",
        help_text="The Zuora entity whose deals this maps (its catalog's rate plans); empty without entities",
    )
    kommo_value = models.CharField(max_length=255, help_text="As Kommo shows it; matched ignoring case and spaces")
    normalized_value = models.CharField(max_length=255, editable=False, db_index=True)
    currency = models.CharField(max_length=3, default=default_currency, validators=[currency_code])
    label = models.CharField(max_length=255, blank=True, help_text="Shown in notes, e.g. 'Growth'")
    term_months = models.PositiveIntegerField(
        default=12, validators=[MinValueValidator(1)], help_text="Initial term (TERMED)"
    )
    evergreen = models.BooleanField(default=False, help_text="EVERGREEN instead of a fixed term")
    auto_renew = models.BooleanField(default=True)
    renewal_term_months = models.PositiveIntegerField(default=12, validators=[MinValueValidator(1)])
    payment_term = models.CharField(max_length=100, blank=True, help_text="Empty: Zuora's 'Due Upon Receipt'")
    # When a billed deal moves onto this mapping's plan: empty follows ZKBRIDGE_UPGRADE_TIMING /
    # ZKBRIDGE_DOWNGRADE_TIMING.
    upgrade_timing = models.CharField(
        max_length=30,
        blank=True,
        choices=CHANGE_TIMINGS,
        help_text="When a deal moving up to this plan changes in Zuora; empty: ZKBRIDGE_UPGRADE_TIMING",
    )
    downgrade_timing = models.CharField(
        max_length=30,
        blank=True,
        choices=CHANGE_TIMINGS,
        help_text="When a deal moving down to this plan changes in Zuora; empty: ZKBRIDGE_DOWNGRADE_TIMING",
    )
    tier_policy = models.CharField(
        max_length=20,
        choices=TIER_POLICIES,
        default=LOWER_UPPER,
        help_text="How negotiated tiers (written with an exclusive upper bound, as CRMs do) become Zuora's "
        "inclusive tiers",
    )
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()
    objects = PlanMappingManager()

    class Meta:
        ordering = ["kind", "kommo_value"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "normalized_value", "currency"],
                condition=models.Q(entity__isnull=True),
                name="plan_mapping_value_currency",
            ),
            models.UniqueConstraint(
                fields=["kind", "normalized_value", "currency", "entity"], name="plan_mapping_value_currency_entity"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kommo_value} ({self.currency})"

    def natural_key(self) -> tuple[str, str, str, str]:
        return (self.kind, self.normalized_value, self.currency, self.entity.entity_id if self.entity else "")

    def save(self, *args, **kwargs):
        self.normalized_value = normalize(self.kommo_value)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.normalized_value = normalize(self.kommo_value or "")
        if self.kind == self.Kind.PRODUCT and not str(self.kommo_value).strip().isdigit():
            raise ValidationError({"kommo_value": "A Kommo product is named by its catalog element id (a number)"})

    def plan_problems(
        self, plans: list[ProductRatePlan], *, carried: set[str] | frozenset[str] = frozenset(), day=None
    ) -> tuple[list[str], list[str]]:
        """What refuses (errors) or only flags (warnings) this mapping with these rate plans on `day` (today):
        the one rule the admin's form and the CSV import both apply. A plan the mapping already carries
        (`carried`, Zuora ids) that can no longer be sold is kept with a warning: an export always imports
        back, and a mapping is edited without first replacing a plan being retired."""
        from catalog.sellable import sellable_on  # sellable reads the models: imported when judging

        errors: list[str] = []
        warnings: list[str] = []
        if not plans:
            return ["Map the value to at least one Zuora rate plan."], []
        if (self.upgrade_timing or self.downgrade_timing) and all(p.one_time_only for p in plans):
            errors.append(
                "A plan change timing applies to subscriptions; this mapping sells one-time products only. "
                "Clear the upgrade and downgrade timings."
            )
        day = day or business_today()
        for plan in plans:
            if plan.product.entity_id != self.entity_id:
                where = f"entity {plan.product.entity}'s catalog" if plan.product.entity_id else "no entity's catalog"
                errors.append(
                    f"'{plan}' is in {where}; this mapping is for {self.entity or 'no entity'}: choose that "
                    f"entity's rate plan"
                )
                continue
            verdict = sellable_on(plan, day, self.currency)
            if not verdict.ok and plan.zuora_id in carried:
                warnings.append(f"{verdict.reason}; kept (the mapping already has it)")
            elif not verdict.ok:
                errors.append(verdict.reason)
            elif verdict.retires_soon:
                warnings.append(
                    f"rate plan '{plan}' retires on {verdict.retires_on:%Y-%m-%d}: plan the move to its successor"
                )
        return errors, warnings


class MappedRatePlan(models.Model):
    """One Zuora rate plan a mapping subscribes to, with optional quantity and price overrides."""

    mapping = models.ForeignKey(PlanMapping, on_delete=models.CASCADE, related_name="mapped_plans")
    product_rate_plan = models.ForeignKey(ProductRatePlan, on_delete=models.PROTECT, related_name="mappings")
    quantity = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Overrides the charge's default quantity (per-unit charges)",
    )
    price = models.DecimalField(
        max_digits=18,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Overrides the list price (per unit, or the flat fee)",
    )
    tiers = models.TextField(
        blank=True,
        help_text="Negotiated tiers of the plan's tiered charge as the CRM writes them (upper bound exclusive), "
        "e.g. 0-185:0.10;185-999:0.08;999+:0.05",
    )
    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mapping", "product_rate_plan"], name="mapped_rate_plan_once")]

    def __str__(self) -> str:
        return str(self.product_rate_plan)

    def clean(self) -> None:
        if not self.tiers.strip() or self.product_rate_plan_id is None:
            return
        try:
            policy = self.mapping.tier_policy  # the admin's inline: the mapping being saved, perhaps not yet stored
        except PlanMapping.DoesNotExist:
            policy = LOWER_UPPER
        try:
            self.zuora_tiers(policy)
        except TierError as exc:
            raise ValidationError({"tiers": str(exc)}) from None

    def zuora_tiers(self, policy: str) -> tuple[ProductRatePlanCharge, list[dict]] | None:
        """The tiered charge and its tiers as Zuora takes them; TierError says why they cannot be."""
        if not self.tiers.strip():
            return None
        return convert_for_plan(self.product_rate_plan, self.tiers, policy)


def has_tiered_charge(plan: ProductRatePlan) -> bool:
    return any(c.removed_at is None and c.charge_model in TIERED_MODELS for c in plan.charges.all())


def tiered_charge(plan: ProductRatePlan) -> ProductRatePlanCharge:
    """The one charge of `plan` that negotiated tiers apply to (Tiered or Volume); TierError otherwise."""
    charges = [c for c in plan.charges.all() if c.removed_at is None and c.charge_model in TIERED_MODELS]
    if len(charges) != 1:
        found = ", ".join(f"'{c.name}'" for c in charges) or "none"
        raise TierError(f"the plan '{plan}' must have exactly one Tiered or Volume charge for tiers (it has {found})")
    return charges[0]


def convert_for_plan(plan: ProductRatePlan, text: str, policy: str) -> tuple[ProductRatePlanCharge, list[dict]]:
    """CRM tiers for `plan`'s tiered charge, converted at its unit of measure's precision."""
    charge = tiered_charge(plan)
    places = uom_decimal_places(charge.uom, plan.product.entity_id)
    if places is None:
        raise TierError(
            f"the decimal places of the unit '{charge.uom}' (charge '{charge.name}') are not known: sync the "
            "catalog, or name them in ZKBRIDGE_UOM_DECIMAL_PLACES"
        )
    return charge, to_zuora(parse(text), places, policy, charge.uom)


def today() -> dt.date:
    """Today in the business time zone: what "sellable today" means."""
    return business_today()
