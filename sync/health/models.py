"""The billing health table (a table of the sync app: sync/models.py imports this module so Django registers it)."""

from __future__ import annotations

from django.db import models


class BillingHealth(models.Model):
    """One Zuora account's billing health as last written on its Kommo company — or, for a customer billed as a
    person, its contact (written only by sync.health.run):
    the figures Kommo shows, so a refresh writes only what changed; the last payment's outcome, which only
    Zuora's callouts tell."""

    class Entity(models.TextChoices):
        COMPANY = "companies", "company"
        CONTACT = "contacts", "contact"

    account_number = models.CharField(max_length=50, unique=True)
    entity = models.CharField("written on", max_length=10, choices=Entity.choices, default=Entity.COMPANY)
    kommo_id = models.PositiveBigIntegerField("Kommo company or contact", null=True, blank=True, db_index=True)
    values = models.JSONField(default=dict, blank=True, help_text="The figures as written in Kommo")
    last_payment = models.CharField(max_length=300, blank=True)
    written_at = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["account_number"]
        verbose_name = "billing health"
        verbose_name_plural = "billing health"

    def __str__(self) -> str:
        return f"billing health of {self.account_number}"
