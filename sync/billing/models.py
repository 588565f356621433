"""Billing events: what each Zuora event puts on the deal (the rules RevOps edit). (Tables of the sync app:
sync/models.py imports this module so Django registers them.)"""

from __future__ import annotations

from django.db import models


class BillingEventRule(models.Model):
    """What a Zuora billing event puts on the deal: a note, and optionally a task. Edited by RevOps.

    Templates may use {amount} (formatted with its currency), {currency}, {account}, {subscription},
    {date} (today in ZKBRIDGE_TIME_ZONE) and {event}.
    """

    event_type = models.CharField(
        max_length=60, unique=True, help_text="Zuora event: PaymentProcessed, PaymentProcessingError, …"
    )
    active = models.BooleanField(default=True)
    note_template = models.TextField(blank=True, help_text="Empty: no note")
    open_task = models.BooleanField(default=False)
    task_template = models.TextField(blank=True)
    task_due_days = models.PositiveIntegerField(default=0, help_text="0 = due today (end of the business day)")
    task_type_id = models.PositiveIntegerField(default=1, help_text="Kommo task type: 1 follow-up, 2 meeting")
    responsible_user_id = models.BigIntegerField(
        null=True, blank=True, help_text="Kommo user; empty = the deal's responsible user"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["event_type"]

    def __str__(self) -> str:
        return self.event_type
