"""The admin's history (LogEntry) for what staff ask the admin to do beyond editing a row: queue a catalog sync, a
connection check, a reconciliation, an import. One helper, so each such action names who asked and what."""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models


def log_action(request, target: models.Model | type[models.Model], message: str) -> LogEntry:
    """A LogEntry by the request's user about `target` (a row, or a model when the action has no row yet)."""
    model = target if isinstance(target, type) else type(target)
    instance = None if isinstance(target, type) else target
    return LogEntry.objects.create(
        user_id=int(request.user.pk or 0),
        content_type=ContentType.objects.get_for_model(model),
        object_id=str(instance.pk) if instance is not None else None,
        object_repr=str(instance)[:200] if instance is not None else str(model._meta.verbose_name_plural),
        action_flag=CHANGE,
        change_message=message,
    )
