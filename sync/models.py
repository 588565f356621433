"""Everything that moves data: the webhook inbox, sync records, API call log and shared tokens."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from sync.context import check_lease
from zkbridge.vault import EncryptedTextField


class WebhookEvent(models.Model):
    """The inbox: a webhook or callout exactly as it arrived, stored before anything else happens."""

    SOURCES = [("kommo", "Kommo web hook"), ("zuora", "Zuora callout"), ("usage", "Usage feed (refused bodies)")]
    source = models.CharField(max_length=10, choices=SOURCES)
    # De-duplication: Zuora-Notification-Id, or a hash of the body. Unique per source.
    dedup_key = models.CharField(max_length=200)
    body = models.TextField()
    headers = models.JSONField(default=dict)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Stored before it is judged: a body zkbridge refused is kept (valid=False) with the reason in `error`.
    valid = models.BooleanField(default=True, db_index=True)
    error = models.TextField(blank=True)
    duplicates = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["source", "dedup_key"], name="webhook_event_dedup")]
        ordering = ["-received_at"]

    # A delivery's outcome, from its columns: acted on, refused (why), stopped by an error (the sender's retry
    # acts on it again), or received and not yet acted on.
    OUTCOMES = {
        "processed": ("processed", models.Q(processed_at__isnull=False)),
        "refused": ("refused", models.Q(processed_at__isnull=True, valid=False)),
        "error": ("error", models.Q(processed_at__isnull=True, valid=True) & ~models.Q(error="")),
        "waiting": ("waiting", models.Q(processed_at__isnull=True, valid=True, error="")),
    }

    @property
    def outcome(self) -> str:
        if self.processed_at is not None:
            key = "processed"
        elif not self.valid:
            key = "refused"
        else:
            key = "error" if self.error else "waiting"
        return self.OUTCOMES[key][0]  # the label the admin's filter offers

    def __str__(self) -> str:
        return f"{self.source} #{self.pk} at {self.received_at:%Y-%m-%d %H:%M:%S}"


# A record handed to the workers but not picked up (its task lost with a broker) is handed over again after this;
# a pending record never handed over (its enqueue lost) is handed over this long after its creation.
REDISPATCH = dt.timedelta(minutes=2)


class SyncRecordQuerySet(models.QuerySet):
    def transition(self, name: str, **changes: Any) -> int:
        """Apply a transition of the state machine to every record here that may take it (the state is
        re-checked inside the UPDATE); returns how many moved."""
        move = TRANSITIONS[name]
        return self.filter(status__in=move.sources).update(status=move.target, updated_at=timezone.now(), **changes)

    def movable(self, name: str) -> SyncRecordQuerySet:
        """The records here a transition may move now."""
        return self.filter(status__in=TRANSITIONS[name].sources)

    # What is due: the one place that says it, for the claim (sync.workers.leases.claim) and for the dispatcher
    # that hands records to the workers (sync.workers.dispatcher).
    def due(self, now: dt.datetime) -> SyncRecordQuerySet:
        """Records whose time has come: never put off, or put off (a retry, a source's per-minute budget)
        until a moment now past."""
        return self.filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))

    def to_hand_over(self, now: dt.datetime) -> SyncRecordQuerySet:
        """Due records waiting for a worker with no task known to be on its way: a retry (or a paced record)
        whose due time came and was not handed over since; one handed over more than REDISPATCH ago (its task
        lost with a broker); and a pending record whose enqueue at creation was lost (a broker outage)."""
        not_handed = (
            Q(dispatched_at__isnull=True)
            | Q(dispatched_at__lt=F("next_attempt_at"))
            | Q(dispatched_at__lt=now - REDISPATCH)
        )
        waiting = Q(status__in=(SyncRecord.Status.RETRYING, SyncRecord.Status.PENDING), next_attempt_at__lte=now)
        lost = Q(status=SyncRecord.Status.PENDING, next_attempt_at__isnull=True, created_at__lt=now - REDISPATCH)
        return self.filter((waiting | lost) & not_handed)

    # Which deal billed what: the one place that says it. A deal is a won lead's record; it is billed once
    # Zuora gave it a subscription number (kept if the record later needs attention); "billed" for the
    # life after the sale also means its sync succeeded.
    def deals(self) -> SyncRecordQuerySet:
        return self.filter(kind=SyncRecord.Kind.DEAL_WON)

    def billed(self) -> SyncRecordQuerySet:
        """Deals that have a Zuora subscription."""
        return self.deals().exclude(zuora_subscription_number="")

    def deal_of(self, lead_id: int | None) -> SyncRecord | None:
        """The lead's won record, whatever its state."""
        return None if lead_id is None else self.deals().filter(kommo_lead_id=lead_id).first()

    def billed_deal_of(self, lead_id: int | None) -> SyncRecord | None:
        """The lead's won record once zkbridge billed it for good (succeeded, with its subscription): what a
        plan change, a cancellation or a reopening may change."""
        if lead_id is None:
            return None
        return self.billed().filter(kommo_lead_id=lead_id, status=SyncRecord.Status.SUCCEEDED).first()

    def billing(self, subscription_number: str) -> SyncRecordQuerySet:
        """The deals whose subscription this is."""
        return self.billed().filter(zuora_subscription_number=subscription_number)


class SyncRecord(models.Model):
    """One business operation (a won deal, a billing event, a usage batch), unique on its natural key."""

    class Kind(models.TextChoices):
        DEAL_WON = "deal_won", "Deal won"
        PLAN_CHANGE = "plan_change", "Plan change"
        CANCELLATION = "cancellation", "Cancellation"
        REOPENING = "reopening", "Reopening (cancellation undone)"
        PLAN_MIGRATION = "plan_migration", "Plan migration (off a retired plan)"
        BILLING_EVENT = "billing_event", "Billing event"
        USAGE_BATCH = "usage_batch", "Usage batch"
        QUOTE_PREVIEW = "quote_preview", "Quote preview"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        NEEDS_ATTENTION = "needs_attention", "Needs attention"
        FAILED = "failed", "Failed"
        RESOLVED = "resolved", "Resolved by staff"
        CANCELLED = "cancelled", "Cancelled"
        IGNORED = "ignored", "Ignored (no rule)"

    OPEN = (Status.PENDING, Status.RUNNING, Status.RETRYING)
    RUNNABLE = (Status.PENDING, Status.RETRYING)
    # A deal's records after the sale: each changes the subscription its deal_won record created.
    LIFECYCLE = (Kind.PLAN_CHANGE, Kind.CANCELLATION, Kind.REOPENING, Kind.PLAN_MIGRATION)

    objects = SyncRecordQuerySet.as_manager()

    kind = models.CharField(max_length=20, choices=Kind.choices)
    key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.TextField(blank=True, help_text="Why it needs attention or failed, in plain words")
    kommo_lead_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # The Zuora entity the deal is billed in (routing rules, else the default entity); none without entities.
    entity = models.ForeignKey(
        "catalog.ZuoraEntity", null=True, blank=True, on_delete=models.PROTECT, related_name="sync_records"
    )
    zuora_account_number = models.CharField(max_length=50, blank=True, db_index=True)
    zuora_subscription_number = models.CharField(max_length=50, blank=True, db_index=True)
    summary = models.CharField(max_length=300, blank=True, help_text="What was sold, e.g. 'Growth × 10'")
    # Completed steps: {"order": {"at": iso, ...}, "note": {...}}. A retry resumes after the last one.
    steps = models.JSONField(default=dict, blank=True)
    # Bumped when staff retry after a person fixed something: Zuora writes get a fresh Idempotency-Key
    # (the stored answer for the old key would replay the old failure), transient retries keep theirs.
    generation = models.PositiveIntegerField(default=1)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # When a due retry was last handed to the workers (the dispatcher hands each one over once).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # The worker running it ("host:pid") and until when its lease holds; renewed while the flow runs. A
    # lapsed lease means the worker died: the record resumes from its last completed step elsewhere.
    worker = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    payload = models.JSONField(default=dict, blank=True, help_text="The hint that created it (webhook entity)")
    source_event = models.ForeignKey(WebhookEvent, null=True, blank=True, on_delete=models.SET_NULL)
    # What the deal was billed through: for the plan map's "deals synced" and the legacy-plan report.
    plan_mappings = models.ManyToManyField("catalog.PlanMapping", blank=True, related_name="sync_records")
    rate_plans = models.ManyToManyField("catalog.ProductRatePlan", blank=True, related_name="sync_records")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["kind", "status"])]

    def __str__(self) -> str:
        return self.key

    @property
    def lead_id(self) -> int:
        """The Kommo lead of a deal record (deal_won records always have one)."""
        if self.kommo_lead_id is None:
            raise ValueError(f"{self.key} names no Kommo lead")
        return self.kommo_lead_id

    # --- steps ------------------------------------------------------------------------------------
    def step_done(self, name: str) -> bool:
        return bool(self.steps.get(name, {}).get("done"))

    def step_data(self, name: str) -> dict[str, Any]:
        return self.steps.get(name, {})

    def mark_step(self, step: str, done: bool = True, *, with_fields: tuple[str, ...] = (), **data: Any) -> None:
        """Record a step (or an attempt at one, done=False) and save it at once — with the record's fields
        named in `with_fields`, set by the caller, in the same UPDATE."""
        self.mark_steps({step: {**data, "done": done}}, with_fields=with_fields)

    def mark_steps(self, entries: dict[str, dict[str, Any]], *, with_fields: tuple[str, ...] = ()) -> None:
        """Several steps recorded in one UPDATE (each entry's data merged into its step; done unless it says)."""
        check_lease("step")
        at = timezone.now().isoformat()
        steps = dict(self.steps)
        for step, data in entries.items():
            steps[step] = {**steps.get(step, {}), "done": True, **data, "at": at}
        self.steps = steps
        self.save(update_fields=["steps", "updated_at", *with_fields])

    # --- facts of a won deal other rooms read -------------------------------------------------------
    # The won flow records them in its steps; every other module reads them here, never by step key, so a
    # renamed key breaks these accessors and the test that pins them (tests/test_deal_won.py), not a caller.
    @property
    def deal_name(self) -> str:
        """The lead's name as Kommo had it when zkbridge read it."""
        return str((self.steps or {}).get("lead", {}).get("name") or "")

    @property
    def responsible_user_id(self) -> int | None:
        """The Kommo user the lead was assigned to when zkbridge read it (tasks go to them)."""
        value = (self.steps or {}).get("lead", {}).get("responsible_user_id")
        return int(value) if value else None

    @property
    def sold_plan(self) -> str:
        """The plan field's value the deal was billed on."""
        return str((self.steps or {}).get("lead", {}).get("plan") or "")

    @property
    def customer_key(self) -> str:
        """Who pays, as zkbridge keys the customer ("company:<id>" or "contact:<id>")."""
        return str((self.steps or {}).get("order", {}).get("customer_key") or "")

    @property
    def own_write_at(self) -> int | None:
        """Kommo's updated_at answer to zkbridge's own write of the lead fields (its echo carries it)."""
        value = (self.steps or {}).get("lead_fields", {}).get("updated_at")
        return int(value) if value is not None else None

    @staticmethod
    def deal_key(lead_id: int) -> str:
        """The natural key of a won lead's record."""
        return f"deal_won:{lead_id}"

    def idempotency_key(self, step: str) -> str:
        return f"zkbridge:{self.key}:{step}:g{self.generation}"

    # --- transitions --------------------------------------------------------------------------------
    # Every change of status goes through TRANSITIONS (below the class): the worker's outcomes, staff
    # repairs, reconciliation fixes and the rescue of records whose worker died. Each is one conditional
    # UPDATE that re-checks the state it moves from, so two actors racing for one record both stay safe.
    def _move(self, transition: str, **changes: Any) -> None:
        """Move this record (a worker's outcome): refused unless it is in a state the transition leaves,
        and still this worker's (a record another worker took over is that worker's to finish)."""
        mine = SyncRecord.objects.filter(id=self.id)
        if self.worker:
            mine = mine.filter(worker=self.worker)
        moved = mine.transition(transition, lease_until=None, **changes)
        self.refresh_from_db()
        if not moved:
            raise IllegalTransition(f"{self.key}: cannot {transition} a record that is {self.status}")

    def finish(self, status: str, reason: str = "") -> None:
        """The worker's outcome of a run: succeeded, needs attention, failed or ignored."""
        self._move(OUTCOMES[status], reason=reason, finished_at=timezone.now(), next_attempt_at=None)

    def retry_later(self, reason: str, at: dt.datetime) -> None:
        self._move("retry_later", reason=reason, next_attempt_at=at)

    def wait(self, reason: str, at: dt.datetime) -> None:
        """Not a failure: the record waits its turn (an earlier change to the same subscription is still
        in flight). The attempt it took is given back."""
        self._move("retry_later", reason=reason, next_attempt_at=at, attempts=models.F("attempts") - 1)

    def close_by_staff(self, status: str, user: object) -> bool:
        """Resolve ("fixed by hand") or cancel ("do not sync") at a person's request. Refused while the
        record runs or once it succeeded. True when it moved."""
        now = timezone.now()
        transition = "resolve" if status == self.Status.RESOLVED else "cancel"
        word = "resolved" if transition == "resolve" else "cancelled"
        moved = SyncRecord.objects.filter(id=self.id).transition(
            transition, finished_at=now, next_attempt_at=None, reason=f"{word} by {user} at {now:%Y-%m-%d %H:%M}"
        )
        self.refresh_from_db()
        return bool(moved)


class IllegalTransition(Exception):
    """A status change the state machine does not allow from the record's current state."""


class Transition(NamedTuple):
    sources: frozenset[str]
    target: str


_S = SyncRecord.Status
_ANY_BUT_RUNNING = frozenset(_S.values) - {_S.RUNNING}
TRANSITIONS: dict[str, Transition] = {
    # a worker claims a record that is due
    "start": Transition(frozenset(SyncRecord.RUNNABLE), _S.RUNNING),
    # the run's outcome
    "succeed": Transition(frozenset({_S.RUNNING}), _S.SUCCEEDED),
    "need_attention": Transition(frozenset({_S.RUNNING}), _S.NEEDS_ATTENTION),
    "fail": Transition(frozenset({_S.RUNNING}), _S.FAILED),
    "ignore": Transition(frozenset({_S.RUNNING}), _S.IGNORED),
    "retry_later": Transition(frozenset({_S.RUNNING}), _S.RETRYING),
    # the minute schedule: a run whose worker died resumes from its last completed step
    "rescue": Transition(frozenset({_S.RUNNING}), _S.RETRYING),
    # staff: retry (resume), re-run from scratch, resolve by hand, do not sync
    "requeue": Transition(frozenset({_S.NEEDS_ATTENTION, _S.FAILED, _S.RETRYING, _S.CANCELLED}), _S.PENDING),
    "rerun": Transition(
        frozenset({_S.NEEDS_ATTENTION, _S.FAILED, _S.SUCCEEDED, _S.RESOLVED, _S.CANCELLED, _S.IGNORED}), _S.PENDING
    ),
    "resolve": Transition(_ANY_BUT_RUNNING - {_S.SUCCEEDED, _S.RESOLVED}, _S.RESOLVED),
    "cancel": Transition(_ANY_BUT_RUNNING - {_S.SUCCEEDED, _S.CANCELLED}, _S.CANCELLED),
    # reconciliation: Zuora has the subscription; the record now names it
    "relink": Transition(_ANY_BUT_RUNNING, _S.SUCCEEDED),
}
OUTCOMES: dict[str, str] = {
    _S.SUCCEEDED: "succeed",
    _S.NEEDS_ATTENTION: "need_attention",
    _S.FAILED: "fail",
    _S.IGNORED: "ignore",
}


# What makes a rule safe to save reads the catalog and the subscription mirror: sync/migration/rules.py
# (`validate`), used by the admin's form and by whoever creates rules in code.


class ApiCall(models.Model):
    """Every call to Zuora or Kommo, redacted: no token or secret is ever stored here."""

    provider = models.CharField(max_length=10, db_index=True)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="empty: no answer (timeout, reset)")
    duration_ms = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=100, blank=True, help_text="Zuora-Request-Id")
    idempotency_key = models.CharField(max_length=255, blank=True)
    request_body = models.TextField(blank=True)
    response_body = models.TextField(blank=True)
    error = models.CharField(max_length=500, blank=True)
    sync_record = models.ForeignKey(
        SyncRecord, null=True, blank=True, on_delete=models.SET_NULL, related_name="api_calls"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["provider", "at"])]

    def __str__(self) -> str:
        return f"{self.provider} {self.method} {self.path} → {self.status or 'no answer'}"


class ProviderToken(models.Model):
    """The one shared token per provider, refreshed under a row lock by whichever worker needs it."""

    provider = models.CharField(max_length=40, unique=True)  # "zuora", "kommo", or "zuora:<entity>"
    access_token = EncryptedTextField(blank=True)  # encrypted at rest (zkbridge/vault.py)
    refresh_token = EncryptedTextField(blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)


class KommoConnection(models.Model):
    """Kommo connected from the admin (sync/kommo_connect.py): an OAuth authorization code, pasted from the
    integration's settings or brought back by Kommo's consent page to /kommo/oauth/callback, exchanged by a worker.
    One row per attempt, with its outcome; the tokens it bought are ProviderToken "kommo" (encrypted)."""

    class Status(models.TextChoices):
        AWAITING = "awaiting", "Waiting for Kommo's consent page"
        EXCHANGING = "exchanging", "Exchanging the code"
        CONNECTED = "connected", "Connected"
        FAILED = "failed", "Failed"
        REPLACED = "replaced", "Replaced by a later connection"
        DISCONNECTED = "disconnected", "Disconnected"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    requested_by = models.CharField(max_length=150, blank=True)
    via = models.CharField(max_length=10, choices=[("pasted", "code pasted"), ("callback", "Kommo's consent page")])
    status = models.CharField(max_length=12, choices=Status.choices, db_index=True)
    # The consent page's `state`: the callback must bring it back (random; unique while waiting).
    state = models.CharField(max_length=64, null=True, blank=True, unique=True)
    code = EncryptedTextField(blank=True)  # until exchanged, then blanked (encrypted at rest: zkbridge/vault.py)
    message = models.TextField(blank=True)
    account_id = models.BigIntegerField(null=True, blank=True)
    account_name = models.CharField(max_length=200, blank=True)
    account_domain = models.CharField(max_length=200, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"Kommo connection #{self.pk} ({self.get_status_display().lower()})"


class Throttle(models.Model):
    """Recent request times per provider (a sliding window shared by every worker)."""

    name = models.CharField(max_length=20, unique=True)
    recent = models.JSONField(default=list)


class ApiToken(models.Model):
    """A usage feed's API token (`Authorization: Token <key>`). Only the key's SHA-256 digest is stored: a database
    dump or a read replica leaks no working token. The key is random (160 bits), so an unsalted digest is safe to
    look up by, as django-rest-knox does; the first characters are kept to tell tokens apart."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField("starts with", max_length=8, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def digest_of(key: str) -> str:
        import hashlib

        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user) -> tuple[ApiToken, str]:
        """A new token for the user, and its key — shown once, never stored."""
        import secrets

        key = secrets.token_hex(20)
        return cls.objects.create(user=user, digest=cls.digest_of(key), prefix=key[:6]), key


class InstallationSecret(models.Model):
    """Secrets zkbridge generates itself when the environment names none (the Kommo webhook token)."""

    name = models.CharField(max_length=50, unique=True)
    value = EncryptedTextField()  # encrypted at rest (zkbridge/vault.py)


class ConnectionCheck(models.Model):
    """A live check of the Zuora and Kommo credentials, run by a worker (never by the admin request that
    asked for it); the Connections page shows the latest."""

    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    requested_by = models.CharField(max_length=150, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    results = models.JSONField(default=dict)

    class Meta:
        ordering = ["-requested_at"]


class Cursor(models.Model):
    """Where a scheduled job left off (poll_kommo's last run)."""

    name = models.CharField(max_length=50, unique=True)
    value = models.CharField(max_length=100)
    updated_at = models.DateTimeField(auto_now=True)


# Each package's tables live in its own models module; importing them here registers them with the sync app
# (Django imports an app's `models` only). Import a model from the module that owns it.
from sync.billing.models import BillingEventRule  # noqa: E402,F401
from sync.flows.models import CustomerAccount, EntityRoute  # noqa: E402,F401
from sync.health.models import BillingHealth  # noqa: E402,F401
from sync.lifecycle.models import Subscription  # noqa: E402,F401
from sync.migration.models import MigrationRule, MigrationRun  # noqa: E402,F401
from sync.offering.models import PlanFieldRun  # noqa: E402,F401
from sync.preview.models import QuotePreview  # noqa: E402,F401
from sync.reconcile.models import Discrepancy, ReconciliationRun  # noqa: E402,F401
from sync.usage.models import UsageDelivery, UsageRecord  # noqa: E402,F401
