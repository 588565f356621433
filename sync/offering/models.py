"""The plan field runs' table (a table of the sync app: sync/models.py imports this module so Django registers it)."""

from __future__ import annotations

from django.db import models


class PlanFieldRun(models.Model):
    """One comparison of Kommo's plan field with what Zuora sells (and, unless a dry run, the changes made):
    written only by sync.offering.run."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    requested_by = models.CharField(max_length=150, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(
        blank=True, help_text="Why the run changed nothing (Kommo's refusal, a field without options)"
    )
    field_id = models.PositiveBigIntegerField(null=True, blank=True)
    changes = models.JSONField(default=list, blank=True, help_text="[{action, value, was, enum_id}]")
    rows = models.JSONField(default=list, blank=True, help_text="What Kommo offers next to what Zuora sells")

    class Meta:
        ordering = ["-started_at"]
        verbose_name = "plan field run"

    def __str__(self) -> str:
        kind = "dry run" if self.dry_run else "run"
        return f"plan field {kind} of {self.started_at:%Y-%m-%d %H:%M}"
