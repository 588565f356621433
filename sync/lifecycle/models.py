"""The life after the sale: the mirror of billed deals' Zuora subscriptions. (Tables of the sync app: sync/models.py
imports this module so Django registers them.)"""

from __future__ import annotations

from django.db import models


class Subscription(models.Model):
    """A small mirror of a billed deal's Zuora subscription, current version only: what RevOps need to see
    renewals coming (status, term end, auto-renew, charged-through date). Refreshed after every order
    zkbridge sends, on Zuora's subscription callouts, and by a daily schedule."""

    number = models.CharField("subscription", max_length=50, unique=True)
    account_number = models.CharField(max_length=50, blank=True, db_index=True)
    kommo_lead_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=30, blank=True, db_index=True)
    term_type = models.CharField(max_length=10, blank=True)
    term_start = models.DateField(null=True, blank=True)
    term_end = models.DateField(null=True, blank=True, db_index=True)
    auto_renew = models.BooleanField(null=True)
    charged_through = models.DateField(null=True, blank=True)
    ends_on = models.DateField(null=True, blank=True, help_text="A cancelled subscription's last day in Zuora")
    mrr = models.DecimalField(
        "MRR",
        max_digits=18,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Monthly recurring revenue, as Zuora states it",
    )
    currency = models.CharField(max_length=3, blank=True)
    rate_plans = models.JSONField(default=list, blank=True, help_text="[{id, productRatePlanId, name, mrr}]")
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["term_end", "number"]

    def __str__(self) -> str:
        return self.number
