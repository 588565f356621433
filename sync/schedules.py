"""django-q2 schedules zkbridge needs, created (or corrected) after every migrate."""

from __future__ import annotations

SCHEDULES = [
    # name, function, minutes between runs
    ("zkbridge: dispatch due retries", "sync.tasks.dispatch_due", 1),
    ("zkbridge: poll Kommo for won leads", "sync.poll.poll_kommo", 5),
    ("zkbridge: sync the Zuora catalog", "sync.catalog_sync.scheduled_sync", 24 * 60),
    ("zkbridge: submit usage to Zuora", "sync.usage.batches.create_batches", 15),
    ("zkbridge: reconcile Kommo, zkbridge and Zuora", "sync.reconcile.scheduled", 24 * 60),
    ("zkbridge: refresh the subscription mirror", "sync.lifecycle.subscription.scheduled_refresh", 24 * 60),
    ("zkbridge: billing health on Kommo companies", "sync.health.run.scheduled", 24 * 60),
    ("zkbridge: move subscribers off retired plans (migration rules)", "sync.migration.run.scheduled", 24 * 60),
    ("zkbridge: prune old API call bodies and webhook payloads", "sync.ops.retention.prune", 24 * 60),
    ("zkbridge: keep Kommo's refresh token alive", "sync.clients.kommo.keep_refresh_token_alive", 7 * 24 * 60),
]


def ensure_schedules(**kwargs) -> None:
    from django_q.models import Schedule

    for name, func, minutes in SCHEDULES:
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1}
        )
