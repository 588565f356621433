"""Usage: the rows a feed sent on their way to Zuora, and the bodies kept as they arrived. (Tables of the sync app:
sync/models.py imports this module so Django registers them.)"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class UsageDelivery(models.Model):
    """A body the usage feed sent, kept as it arrived (gzip) with what zkbridge made of it, so a disputed
    import can be read and replayed (`replay_usage`). The body is dropped after ZKBRIDGE_RETENTION_DAYS;
    the row stays."""

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    feed = models.CharField(max_length=150, blank=True, help_text="the API token's user")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    size = models.BigIntegerField(default=0, help_text="bytes as sent")
    sha256 = models.CharField(max_length=64, blank=True)
    body_gzip = models.BinaryField(null=True, blank=True)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    problem = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "usage deliveries"

    def __str__(self) -> str:
        return f"usage body #{self.pk} ({self.size:,} bytes)"

    def body(self) -> bytes | None:
        import gzip

        return gzip.decompress(bytes(self.body_gzip)) if self.body_gzip is not None else None


class UsageRecord(models.Model):
    """One metered usage line from a customer's feed, on its way to a Zuora usage import."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        # In a usage batch (one CSV import), sent or about to be sent to Zuora: set when the batch takes the row,
        # so a row is rewritten twice on its way (batched, then imported or failed), not three times.
        SUBMITTED = "submitted", "In a batch for Zuora"
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Zuora refused the import"
        UNPLACEABLE = "unplaceable", "No subscription found"

    # Indexed in Meta, not with unique=/db_index=: on PostgreSQL those add a second, LIKE-only index per column
    # (varchar_pattern_ops) that every insert and every status change of millions of rows would also write.
    unique_key = models.CharField(max_length=100)
    subscription_number = models.CharField(max_length=50, blank=True)
    kommo_lead_id = models.BigIntegerField(null=True, blank=True)
    account_number = models.CharField(max_length=50, blank=True)
    uom = models.CharField("unit of measure", max_length=50)
    quantity = models.DecimalField(max_digits=18, decimal_places=6)
    start_date = models.DateField()
    end_date = models.DateField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    batch = models.ForeignKey("sync.SyncRecord", null=True, blank=True, on_delete=models.SET_NULL, related_name="usage")
    # The Zuora entity of the row's deal, set when usage is submitted (multi-entity tenants only): a usage
    # file goes to one entity.
    entity = models.ForeignKey(
        "catalog.ZuoraEntity", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
        # "Pending usage, newest first" over millions of rows: one index walk, whatever the statistics say.
        indexes = [
            models.Index(fields=["status", "-id"], name="usage_status_newest"),
            models.Index(fields=["subscription_number"], name="usage_subscription"),
            models.Index(fields=["account_number"], name="usage_account"),
        ]
        constraints = [models.UniqueConstraint(fields=["unique_key"], name="usage_unique_key")]

    def __str__(self) -> str:
        return self.unique_key
