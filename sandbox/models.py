"""The emulators' own state. Kept in tables (not memory) so that several processes — the web server,
the workers, a live test server — see one Zuora and one Kommo, and a restart keeps them.

Nothing here is imported by zkbridge's own code: the emulators stand in for the outside world.
"""

from __future__ import annotations

import contextvars

from django.db import models
from django.utils import timezone


class Fault(models.Model):
    """A fault or latency injected into the emulators, matched by service, method and path prefix."""

    KINDS = [
        ("http500", "HTTP 500"),
        ("http502", "HTTP 502 (HTML)"),
        ("http503", "HTTP 503"),
        ("http429", "HTTP 429 with Retry-After"),
        ("timeout", "answer after a long sleep"),
        ("success_false", "HTTP 200 with success: false"),
        ("drop_after_commit", "do the work, commit, drop the connection"),
        ("latency", "add latency, then answer normally"),
        ("slow", "take sleep_seconds to process the request (after an Idempotency-Key is reserved)"),
        ("html403", "HTTP 403 HTML page (Kommo block)"),
        ("unauthorized", "HTTP 401"),
        # Kommo: the entries of a write (lead PATCH, notes POST) naming entity `reason_code` are refused with a
        # validation error (reason_message); the request's other entries are fine. Nothing is written.
        ("refuse_entity", "refuse one entity's entries in a Kommo write"),
        # Zuora: HTTP 200 whose body is reason_message, as given (an answer the vendor would not send, to prove
        # zkbridge reads unexpected answers as a clear reason, never a crash or a silent default).
        ("answer", "HTTP 200 with reason_message as the body"),
    ]
    service = models.CharField(max_length=10, choices=[("zuora", "Zuora"), ("kommo", "Kommo")])
    method = models.CharField(max_length=10, default="*")
    # A path prefix under the emulator ("/v1/orders" also matches "/v1/orders/preview"); a trailing "$"
    # makes it exact ("/v1/orders$").
    path_prefix = models.CharField(max_length=200, default="/")
    kind = models.CharField(max_length=20, choices=KINDS)
    # How many matching requests it still applies to; null = every one until removed.
    remaining = models.IntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    retry_after = models.PositiveIntegerField(default=1)
    sleep_seconds = models.FloatField(default=10)
    reason_code = models.BigIntegerField(default=53100030)
    reason_message = models.CharField(max_length=300, default="Injected business error")
    # The chance that the fault applies to a matching request (1 = always): random faults for fault suites.
    probability = models.FloatField(default=1.0)
    hits = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]


class Setting(models.Model):
    """Emulator knobs (credentials, rate limits, webhook delivery mode) as key → JSON value."""

    key = models.CharField(max_length=100, primary_key=True)
    value = models.JSONField()


class RequestLog(models.Model):
    """Every request the emulators answered: for the Kommo rate limit and for tests counting calls."""

    service = models.CharField(max_length=10)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField(default=0)
    at = models.FloatField(db_index=True)  # time.time(): cheap comparisons for the 1-second window

    class Meta:
        indexes = [models.Index(fields=["service", "at"])]


# --- Zuora -----------------------------------------------------------------------------------------
# Multi-entity: a tenant with ZEntity rows has one catalog, set of customers and units per entity. A request
# works in one entity (its token's only one, or the one its Zuora-Entity-Ids header names) and every query
# of the scoped models below sees that entity's rows only. A tenant without entities sees everything.
CURRENT_ENTITY: contextvars.ContextVar[ZEntity | None] = contextvars.ContextVar("zuora_entity", default=None)


class EntityScoped(models.Manager):
    """Rows of the request's entity (all rows outside a request, or in a tenant without entities)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def get_queryset(self):
        entity = CURRENT_ENTITY.get()
        rows = super().get_queryset()
        return rows if entity is None else rows.filter(**{self.path: entity})


class InEntity(models.Model):
    """A row created during a request belongs to the request's entity."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self._state.adding and getattr(self, "entity_id", None) is None and CURRENT_ENTITY.get() is not None:
            self.entity = CURRENT_ENTITY.get()
        super().save(*args, **kwargs)


class ZEntity(models.Model):
    """A legal entity of a multi-entity tenant: its own OAuth client, currencies and concurrency limit."""

    entity_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=100)
    client_id = models.CharField(max_length=100, unique=True)
    client_secret = models.CharField(max_length=100)
    currencies = models.JSONField(default=list)  # empty: any
    concurrency_limit = models.PositiveIntegerField(default=40)

    class Meta:
        ordering = ["id"]


class ZToken(models.Model):
    token = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()
    entities = models.ManyToManyField(ZEntity, blank=True)  # what the token covers (its client's entities)


class ZIdempotency(models.Model):
    key = models.CharField(max_length=255, unique=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    done = models.BooleanField(default=False)
    status = models.PositiveSmallIntegerField(default=0)
    body = models.JSONField(null=True)
    created = models.DateTimeField(auto_now_add=True)


class ZProduct(InEntity):
    entity = models.ForeignKey(ZEntity, null=True, blank=True, on_delete=models.CASCADE)
    zid = models.CharField(max_length=32, unique=True)
    sku = models.CharField(max_length=100)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True)
    effective_start = models.DateField()
    effective_end = models.DateField()
    objects = EntityScoped("entity")

    class Meta:
        ordering = ["id"]


class ZRatePlan(models.Model):
    zid = models.CharField(max_length=32, unique=True)
    product = models.ForeignKey(ZProduct, on_delete=models.CASCADE, related_name="rate_plans")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    effective_start = models.DateField()
    effective_end = models.DateField()
    # Charges as Zuora's catalog answers them: [{id, name, type, model, uom, billingPeriod,
    # defaultQuantity, pricing: [{currency, price, tiers: [...]}]}]
    charges = models.JSONField(default=list)
    objects = EntityScoped("product__entity")

    class Meta:
        ordering = ["id"]


class ZUnitOfMeasure(InEntity):
    """Settings › Units of measure: how many decimal places quantities and tier bounds of the unit take."""

    entity = models.ForeignKey(ZEntity, null=True, blank=True, on_delete=models.CASCADE)
    name = models.CharField(max_length=50)
    decimal_places = models.PositiveSmallIntegerField(default=0)
    rounding_mode = models.CharField(max_length=10, default="Up")
    active = models.BooleanField(default=True)
    objects = EntityScoped("entity")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["entity", "name"], name="zuom_name_per_entity")]


class ZAccount(InEntity):
    entity = models.ForeignKey(ZEntity, null=True, blank=True, on_delete=models.CASCADE)
    account_number = models.CharField(max_length=30, unique=True, null=True)
    name = models.CharField(max_length=255)
    currency = models.CharField(max_length=3)
    crm_id = models.CharField(max_length=100, blank=True, db_index=True)
    bill_cycle_day = models.PositiveSmallIntegerField(default=0)
    payment_term = models.CharField(max_length=100, default="Due Upon Receipt")
    custom_fields = models.JSONField(default=dict)
    bill_to = models.JSONField(default=dict)
    sold_to = models.JSONField(default=dict)
    status = models.CharField(max_length=20, default="Active")
    # Which notifications the account's contacts get (Zuora's communicationProfileId).
    communication_profile_id = models.CharField(max_length=40, default="CP-STANDARD")
    created = models.DateTimeField(auto_now_add=True)
    objects = EntityScoped("entity")


class ZSubscription(models.Model):
    """One *version* of a subscription, as Zuora keeps them: every order on a subscription makes a new
    record (new id, same number, version + 1) and leaves the previous one behind with status Expired."""

    subscription_number = models.CharField(max_length=30, null=True)
    version = models.PositiveIntegerField(default=1)
    account = models.ForeignKey(ZAccount, on_delete=models.CASCADE, related_name="subscriptions")
    status = models.CharField(max_length=20, default="Active")
    # The status this version had before a newer one expired it (restored when that order is deleted).
    prior_status = models.CharField(max_length=20, blank=True)
    # Cancelled subscriptions: the date the cancellation takes effect (Zuora's subscriptionEndDate).
    subscription_end_date = models.DateField(null=True, blank=True)
    # Through when the charges have been invoiced (Zuora keeps it per charge; one date per version here).
    charged_through_date = models.DateField(null=True, blank=True)
    term_type = models.CharField(max_length=10, default="TERMED")
    initial_term = models.PositiveIntegerField(default=12)
    initial_term_period_type = models.CharField(max_length=10, default="Month")
    renewal_term = models.PositiveIntegerField(default=12)
    auto_renew = models.BooleanField(default=True)
    contract_effective_date = models.DateField()
    term_start_date = models.DateField()
    term_end_date = models.DateField(null=True)
    custom_fields = models.JSONField(default=dict)
    # [{productRatePlanId, ratePlanName, productName, charges: [{id, quantity, price}]}]
    rate_plans = models.JSONField(default=list)
    order_number = models.CharField(max_length=30)  # the order that made this version
    created = models.DateTimeField(auto_now_add=True)
    objects = EntityScoped("account__entity")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription_number", "version"], name="zsub_version")]

    @property
    def billed_plans(self) -> list[dict]:
        """The rate plans this version bills: a plan an amendment removed stays on it, marked RemoveProduct."""
        return [p for p in self.rate_plans if p.get("amendmentType") != "RemoveProduct"]


class ZOrder(InEntity):
    entity = models.ForeignKey(ZEntity, null=True, blank=True, on_delete=models.CASCADE)
    order_number = models.CharField(max_length=30, unique=True, null=True)
    account_number = models.CharField(max_length=30)
    order_date = models.DateField()
    request = models.JSONField()
    line_items = models.JSONField(default=list)
    # What the order did to existing subscriptions: [{subscription, type, effective, from, to}]
    actions = models.JSONField(default=list)
    # Set by a bill run after the order: Zuora then refuses to delete it.
    invoiced = models.BooleanField(default=False)
    # A credit memo the order caused (charges removed before their charged-through date), and whether a
    # charge starts or stops mid billing period (a prorated partial period).
    credit = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    prorated = models.BooleanField(default=False)
    # The account's communication profile when the order ran: notifications went out unless it was silent.
    communication_profile_id = models.CharField(max_length=40, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    objects = EntityScoped("entity")


class ZUsageImport(InEntity):
    entity = models.ForeignKey(ZEntity, null=True, blank=True, on_delete=models.CASCADE)
    file_name = models.CharField(max_length=50)
    size = models.PositiveIntegerField()
    status = models.CharField(max_length=20, default="Pending")
    content = models.TextField(blank=True, help_text="The file as uploaded (UTF-8 CSV); read when it is imported")
    error = models.TextField(blank=True)
    polls = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    objects = EntityScoped("entity")


class ZInvoice(models.Model):
    """A posted invoice of a bill run, and what is still owed on it (payments reduce its balance)."""

    account = models.ForeignKey(ZAccount, on_delete=models.CASCADE, related_name="invoices")
    invoice_number = models.CharField(max_length=30, unique=True)
    invoice_date = models.DateField()
    due_date = models.DateField()
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    balance = models.DecimalField(max_digits=18, decimal_places=2)
    status = models.CharField(max_length=20, default="Posted")

    class Meta:
        ordering = ["invoice_date", "id"]


class ZUsage(models.Model):
    unique_key = models.CharField(max_length=100, blank=True, db_index=True)  # each import looks its keys up
    account_number = models.CharField(max_length=30)
    subscription_number = models.CharField(max_length=30, blank=True)
    uom = models.CharField(max_length=50)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    start_date = models.DateField()
    end_date = models.DateField(null=True)
    usage_import = models.ForeignKey(ZUsageImport, null=True, on_delete=models.SET_NULL)


# --- Kommo -----------------------------------------------------------------------------------------
class KToken(models.Model):
    """OAuth tokens. Refresh tokens are single-use: `used` is set the moment one is redeemed."""

    access_token = models.CharField(max_length=100, unique=True)
    refresh_token = models.CharField(max_length=100, unique=True)
    access_expires_at = models.DateTimeField()
    refresh_used = models.BooleanField(default=False)
    revoked = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)


class KAuthCode(models.Model):
    """An authorization code, as Kommo issues one (an integration's Keys tab, or its consent page): valid 20
    minutes, single use, for the redirect URI it was issued to (empty: whichever the exchange names)."""

    code = models.CharField(max_length=100, unique=True)
    used = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    redirect_uri = models.CharField(max_length=500, blank=True)


class KCompany(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255)
    custom_fields_values = models.JSONField(null=True, blank=True)
    updated_at = models.BigIntegerField(default=0)


class KContact(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    custom_fields_values = models.JSONField(null=True, blank=True)
    tags = models.JSONField(default=list)
    company = models.ForeignKey(KCompany, null=True, blank=True, on_delete=models.SET_NULL)
    updated_at = models.BigIntegerField(default=0)


class KField(models.Model):
    """A custom field definition of the Kommo account (leads, contacts, companies): a select field's options are its
    `enums` [{id, value, sort}]; an entity carrying an option holds its value and enum_id."""

    id = models.BigIntegerField(primary_key=True)
    entity_type = models.CharField(max_length=20, default="leads")
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=30)
    code = models.CharField(max_length=100, blank=True)
    sort = models.IntegerField(default=500)
    enums = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["sort", "id"]


class KCatalogElement(models.Model):
    id = models.BigIntegerField(primary_key=True)
    catalog_id = models.BigIntegerField()
    name = models.CharField(max_length=255)
    custom_fields_values = models.JSONField(null=True, blank=True)


class KLead(models.Model):
    id = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=255)
    price = models.BigIntegerField(default=0)
    status_id = models.BigIntegerField()
    pipeline_id = models.BigIntegerField()
    responsible_user_id = models.BigIntegerField(default=7720001)
    created_at = models.BigIntegerField()
    updated_at = models.BigIntegerField()
    closed_at = models.BigIntegerField(null=True, blank=True)
    is_deleted = models.BooleanField(default=False)
    custom_fields_values = models.JSONField(null=True, blank=True)
    company = models.ForeignKey(KCompany, null=True, blank=True, on_delete=models.SET_NULL)
    # [{"id": contact id, "is_main": bool}]
    contacts = models.JSONField(default=list)
    # [{"id": element id, "metadata": {"quantity": n, "catalog_id": id}}]
    catalog_elements = models.JSONField(default=list)

    class Meta:
        ordering = ["id"]


class KNote(models.Model):
    entity_type = models.CharField(max_length=20)
    entity_id = models.BigIntegerField(db_index=True)
    note_type = models.CharField(max_length=30)
    params = models.JSONField(default=dict)
    created_at = models.BigIntegerField()


class KTask(models.Model):
    entity_type = models.CharField(max_length=20)
    entity_id = models.BigIntegerField(db_index=True)
    text = models.TextField()
    complete_till = models.BigIntegerField()
    task_type_id = models.PositiveIntegerField(default=1)
    responsible_user_id = models.BigIntegerField(null=True)
    is_completed = models.BooleanField(default=False)
    result = models.TextField(blank=True)  # what the person who completed it wrote (result.text)
    created_at = models.BigIntegerField()
    updated_at = models.BigIntegerField(default=0)


class KWebhook(models.Model):
    destination = models.URLField(max_length=500, unique=True)
    settings = models.JSONField(default=list)
    disabled = models.BooleanField(default=False)
    failures = models.PositiveIntegerField(default=0)
    created_at = models.BigIntegerField()


class KWebhookDelivery(models.Model):
    webhook = models.ForeignKey(KWebhook, on_delete=models.CASCADE, related_name="deliveries")
    body = models.TextField()
    status = models.PositiveSmallIntegerField(null=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, help_text="how long the receiver took to answer")
    at = models.DateTimeField(auto_now_add=True)
