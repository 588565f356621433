"""The billing health table (a table of the sync app: sync/models.py imports this module so Django registers it)."""

from __future__ import annotations

from django.db import models


class BillingHealth(models.Model):
    """One Zuora account's billing health as last written on its Kommo company (written only by sync.health.run):
    the figures Kommo shows, so a refresh writes only what changed; the last payment's outcome, which only
    Zuora's callouts tell."""

    account_number = models.CharField(max_length=50, unique=True)
    company_id = models.PositiveBigIntegerField("Kommo company", null=True, blank=True, db_index=True)
    values = models.JSONField(default=dict, blank=True, help_text="The figures as written on the company")
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
