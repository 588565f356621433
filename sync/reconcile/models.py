"""Reconciliation: its runs and the discrepancies each found. (Tables of the sync app: sync/models.py imports this
module so Django registers them.)"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ReconciliationRun(models.Model):
    """One comparison of Kommo, zkbridge and Zuora. A failed run keeps the previous report in force."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=150, blank=True, help_text="who asked for it (empty: the schedule)")
    progress = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    # {"won_deals": n, "zuora_subscriptions": n, "zuora_calls": n, "kommo_calls": n, "<kind>": n, …}
    summary = models.JSONField(default=dict)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M}"


class Discrepancy(models.Model):
    """One thing that is not billed as sold, with the action that fixes it."""

    class Kind(models.TextChoices):
        WON_NO_SUBSCRIPTION = "won_no_subscription", "Won, but no Zuora subscription"
        SYNC_FAILED = "sync_failed", "Sync failed or needs attention"
        WRONG_PLAN = "wrong_plan", "Kommo plan differs from the current Zuora version"
        LOST_STILL_ACTIVE = "lost_still_active", "Lost in Kommo, still active in Zuora"
        FIELDS_MISMATCH = "fields_mismatch", "Kommo deal fields differ from Zuora"
        UNRECORDED_SUBSCRIPTION = "unrecorded_subscription", "Zuora bills the deal, zkbridge's record does not say so"
        DUPLICATE_SUBSCRIPTIONS = "duplicate_subscriptions", "Several Zuora subscriptions for one deal"
        DUPLICATE_ACCOUNTS = "duplicate_accounts", "Several Zuora accounts for one Kommo customer"
        ORPHAN_SUBSCRIPTION = "orphan_subscription", "Zuora subscription for a deal that is not won"
        RETIRED_PLAN = "retired_plan", "Still on a retired plan"
        UNPLACED_EVENT = "unplaced_event", "Zuora event zkbridge could not place"

    class Action(models.TextChoices):
        RETRY = "retry", "Retry the sync"
        RESYNC = "resync", "Re-sync the deal"
        RELINK = "relink", "Re-link Kommo to Zuora's numbers"
        OPEN_ZUORA = "open_zuora", "Fix in Zuora"
        OPEN_KOMMO = "open_kommo", "Fix in Kommo"
        PLAN_MIGRATION = "plan_migration", "Plan the move off the retired plan"
        APPLY_PLAN = "apply_plan", "Apply Kommo's plan"
        CANCEL_PER_POLICY = "cancel_per_policy", "Cancel per policy"

    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="discrepancies")
    kind = models.CharField(max_length=30, choices=Kind.choices, db_index=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    kommo_lead_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    zuora_account_number = models.CharField(max_length=50, blank=True)
    zuora_subscription_number = models.CharField(max_length=50, blank=True)
    detail = models.TextField()
    sync_record = models.ForeignKey("sync.SyncRecord", null=True, blank=True, on_delete=models.SET_NULL)
    # A fix that queues work (retry, re-sync) is requested first and fixed only when the record succeeds.
    fix_requested_at = models.DateTimeField(null=True, blank=True)
    fixed_at = models.DateTimeField(null=True, blank=True)
    fix_result = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["kind", "kommo_lead_id"]
        verbose_name_plural = "discrepancies"
