"""The won flow's own tables: which Zuora entity bills a deal, and which account bills a customer. (Tables of the
sync app: sync/models.py imports this module so Django registers them.)"""

from __future__ import annotations

from django.db import models


class EntityRoute(models.Model):
    """Which Zuora entity bills a deal: every deal of a Kommo pipeline, or deals whose lead field holds a value.
    A deal no rule claims goes to the default entity; two rules sending one deal to different entities, or
    none and no default, make it need attention — a deal is never billed by an entity by accident."""

    class Kind(models.TextChoices):
        PIPELINE = "pipeline", "Kommo pipeline"
        FIELD = "field", "Lead field value"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PIPELINE)
    pipeline_id = models.PositiveBigIntegerField("Kommo pipeline id", null=True, blank=True)
    field_id = models.PositiveBigIntegerField("lead field id", null=True, blank=True)
    field_value = models.CharField(max_length=255, blank=True, help_text="Matched ignoring case and spaces")
    normalized_value = models.CharField(max_length=255, blank=True, editable=False)
    entity = models.ForeignKey("catalog.ZuoraEntity", on_delete=models.PROTECT, related_name="routes")
    active = models.BooleanField(default=True)

    class Meta:
        ordering = ["kind", "pipeline_id", "field_id", "normalized_value"]
        verbose_name = "entity routing rule"
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline_id"], condition=models.Q(kind="pipeline", active=True), name="one_route_per_pipeline"
            ),
            models.UniqueConstraint(
                fields=["field_id", "normalized_value"],
                condition=models.Q(kind="field", active=True),
                name="one_route_per_field_value",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.PIPELINE:
            return f"pipeline {self.pipeline_id} → {self.entity}"
        return f"field {self.field_id} = {self.field_value!r} → {self.entity}"

    def save(self, *args, **kwargs):
        self.normalized_value = " ".join(self.field_value.split()).casefold()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from catalog.models import CatalogSyncRun

        self.normalized_value = " ".join(self.field_value.split()).casefold()
        if self.kind == self.Kind.PIPELINE:
            if self.pipeline_id is None:
                raise ValidationError({"pipeline_id": "A pipeline rule names the Kommo pipeline's id."})
            self.field_id, self.field_value, self.normalized_value = None, "", ""
            same = EntityRoute.objects.filter(kind=self.kind, pipeline_id=self.pipeline_id, active=True)
        else:
            if self.field_id is None or not self.normalized_value:
                raise ValidationError("A field rule names the lead field's id and the value that routes the deal.")
            self.pipeline_id = None
            same = EntityRoute.objects.filter(
                kind=self.kind, field_id=self.field_id, normalized_value=self.normalized_value, active=True
            )
        clash = same.exclude(pk=self.pk).select_related("entity").first()
        if self.active and clash is not None:
            raise ValidationError(f"Another rule already routes these deals: {clash}. Edit that one instead.")
        entity = self.entity if self.entity_id else None
        if entity is not None and not entity.active:
            raise ValidationError({"entity": f"{entity} is inactive: deals cannot be routed to it."})
        if entity is not None and not CatalogSyncRun.objects.filter(entity=entity, ok=True).exists():
            raise ValidationError(
                {"entity": f"{entity}'s catalog has never been mirrored: sync the catalog first, then route deals."}
            )


class CustomerAccount(models.Model):
    """The Zuora account zkbridge billed a Kommo customer ("company:<id>" / "contact:<id>") on: the next deal of
    that customer is billed on it without asking Zuora again (one read off every repeat deal's path). Written
    after each order Zuora accepted; forgotten when Zuora refuses an order on it, so the retry looks again. An
    empty account number: an order creating the account was sent, its answer not known yet."""

    customer_key = models.CharField(max_length=60, unique=True)
    account_number = models.CharField(max_length=50)
    currency = models.CharField(max_length=3, blank=True)
    linked_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.customer_key} → {self.account_number}"

    @staticmethod
    def link(customer_key: str, account_number: str, currency: str) -> None:
        """Link (or relink) the customer to its account: one INSERT … ON CONFLICT, not a locked read and a write."""
        CustomerAccount.objects.bulk_create(
            [CustomerAccount(customer_key=customer_key, account_number=account_number, currency=currency)],
            update_conflicts=True,
            unique_fields=["customer_key"],
            update_fields=["account_number", "currency", "linked_at"],
        )
