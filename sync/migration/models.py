"""Plan migrations: the rules RevOps keep and the runs that applied them. (Tables of the sync app: sync/models.py
imports this module so Django registers them.)"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from zkbridge.business_time import business_today


class MigrationRule(models.Model):
    """ "Subscribers of rate plan X move to rate plan Y", at each subscriber's term end or charged-through
    date so nothing is prorated; edited by RevOps, run daily (sync/migration/)."""

    class Moment(models.TextChoices):
        TERM_END = "term_end", "term end (termed subscriptions; evergreen ones at their charged-through date)"
        CHARGED_THROUGH = "charged_through", "charged-through date of the legacy charges"

    class ChoiceSource(models.TextChoices):
        NONE = "", "no customer choice"
        ZUORA = "zuora", "a Zuora subscription custom field"
        KOMMO = "kommo", "a Kommo lead field"

    name = models.CharField(max_length=200, blank=True, help_text="e.g. 'Scale → Growth, spring 2027 refresh'")
    source_plan = models.ForeignKey(
        "catalog.ProductRatePlan",
        on_delete=models.PROTECT,
        related_name="migrations_from",
        help_text="X: the legacy plan",
    )
    target_plan = models.ForeignKey(
        "catalog.ProductRatePlan", on_delete=models.PROTECT, related_name="migrations_to", help_text="Y: the new plan"
    )
    alternative_plan = models.ForeignKey(
        "catalog.ProductRatePlan",
        on_delete=models.PROTECT,
        related_name="migrations_alternative",
        null=True,
        blank=True,
        help_text="Where a customer who chose it goes instead (e.g. an upgrade)",
    )
    discount_plan = models.ForeignKey(
        "catalog.ProductRatePlan",
        on_delete=models.PROTECT,
        related_name="migrations_discount",
        null=True,
        blank=True,
        help_text="A discount rate plan added with the alternative",
    )
    choice_source = models.CharField(max_length=10, choices=ChoiceSource.choices, blank=True)
    choice_field = models.CharField(
        max_length=100,
        blank=True,
        help_text="Zuora: the subscription custom field (e.g. UpgradePlan__c); Kommo: the lead field id. A value "
        "naming the alternative (its rate plan id or name, or 'yes') means the customer chose it",
    )
    moment = models.CharField(max_length=20, choices=Moment.choices, default=Moment.TERM_END)
    days_ahead = models.PositiveIntegerField(default=1, help_text="Move subscriptions whose date falls N days ahead")
    starts_on = models.DateField(
        default=business_today, help_text="The rule does nothing before this date (today unless you say)"
    )
    active = models.BooleanField(default=True, help_text="Paused rules move no one")
    quiet = models.BooleanField(
        default=False,
        help_text="Switch the account to the silent communication profile for the change, then restore it",
    )
    usage_grace_days = models.PositiveIntegerField(
        default=0,
        help_text="Legacy plans with usage charges wait for the final period's usage; after this many days past "
        "the move's date they move without it",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-active", "starts_on", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_plan"],
                condition=models.Q(active=True),
                name="one_active_migration_rule_per_plan",
                violation_error_message="another active rule already moves subscribers of this legacy plan: "
                "pause it first",
            )
        ]

    def __str__(self) -> str:
        return self.name or f"{self.source_plan} → {self.target_plan}"


class MigrationRun(models.Model):
    """One pass of the migration rules over Zuora's due subscriptions (or a dry run of it)."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    day = models.DateField()
    dry_run = models.BooleanField(default=False)
    rule = models.ForeignKey(MigrationRule, null=True, blank=True, on_delete=models.SET_NULL)
    requested_by = models.CharField(max_length=150, blank=True, help_text="who asked for it (empty: the schedule)")
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    # {"moved": n, "skipped": n, "failed": n, "zuora_reads": n}
    summary = models.JSONField(default=dict)
    # One row per subscription considered: {subscription, account, lead, rule, current, target, effective,
    # discount, outcome (move|scheduled|skipped|failed), reason}
    rows = models.JSONField(default=list)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{'dry run' if self.dry_run else 'migration run'} for {self.day}"
