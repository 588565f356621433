"""The quote preview's table: one row per lead previewed, the last thing the salesperson was told. (A table of the
sync app: sync/models.py imports this module so Django registers it.)"""

from __future__ import annotations

from django.db import models


class QuotePreview(models.Model):
    """A lead's latest quote: what was priced (its fingerprint), Zuora's figures, or why the sale cannot be billed
    as it stands, with the Kommo task that says so. Written only by the quote_preview flow (sync.preview.flow);
    the web hook locks a lead's row so that one preview waits per lead."""

    lead_id = models.PositiveBigIntegerField("Kommo lead", unique=True)
    fingerprint = models.CharField(max_length=64, blank=True, help_text="What was priced, hashed: unchanged, no write")
    summary = models.CharField(max_length=300, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    mrr = models.DecimalField("MRR", max_digits=18, decimal_places=2, null=True, blank=True)
    tcv = models.DecimalField("TCV", max_digits=18, decimal_places=2, null=True, blank=True)
    first_invoice = models.DecimalField(max_digits=18, decimal_places=2, null=True, blank=True)
    first_invoice_date = models.DateField(null=True, blank=True)
    term = models.CharField(max_length=100, blank=True)
    problem = models.TextField(blank=True, help_text="Why the sale cannot be billed as it stands (the task says so)")
    refused = models.TextField(blank=True, help_text="Why Zuora refused to preview it (the note says so)")
    task_id = models.PositiveBigIntegerField("open Kommo task", null=True, blank=True)
    previewed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        verbose_name = "quote preview"

    def __str__(self) -> str:
        return f"quote of lead {self.lead_id}"

    @classmethod
    def hand_over_task(cls, lead_id: int | None, reason: str) -> int | None:
        """The lead's open preview task about `reason`, handed to the won deal that meets the same problem (one
        task per reason on a deal): the preview forgets it, the deal completes it when its cause is gone."""
        if lead_id is None:
            return None
        row = cls.objects.filter(lead_id=lead_id, problem=reason, task_id__isnull=False).first()
        if row is None or not cls.objects.filter(pk=row.pk, task_id=row.task_id).update(task_id=None):
            return None
        return row.task_id
