"""Bursts: won deals due at the same time share their Kommo reads and writes — the same won flow, batched.

Kommo allows 7 requests a second; one deal on its own costs 5 (lead, contacts, company, fields, note), so a
month-end close of 1,000 deals would take 12 minutes of Kommo calls alone. A worker that claims a won deal
while others are due claims up to BURST - 1 of them too (with_companions, the won deals' batching in
sync.registry) and runs each through deal_won's own steps (order_steps, write_back) with a read cache
(BurstReads) and a batching Kommo writer (BatchWrites):

  reads   their leads by id lists (100 a call, with contacts and products), the contacts and companies by
          id lists, the customers' Zuora accounts by one query per 50 keys (all three together);
  Zuora   each deal's order (deal_won.order_steps), several deals at once up to the shared concurrency cap;
          deals of one customer one after another, so the second reuses the account the first created; one
          preview per distinct sale (same plans, prices, quantities, dates and currency give the same MRR);
  writes  lead fields in PATCH /api/v4/leads and notes in POST /api/v4/leads/notes, 50 a call, sent as soon as
          50 deals' orders are done (the other orders go on meanwhile: Zuora's slots never wait for Kommo's
          writes), each batch's deals concluded once it is written. Kommo writes
          a batch all or nothing: a refusal naming entries is sent again without them, and each named entry
          fails alone with what Kommo said about it; a refusal naming none is sent again entry by entry.

Each deal keeps its own sync record, steps, Idempotency-Key and outcome (sync.tasks.run_flow): a batch is an
optimisation, never a shared fate. Notes stay exactly-once: every note step is marked `attempted` before its
batch leaves, so a deal whose batch answer was lost looks for its note on the retry (write_note_once). A
retry runs its deal alone, or in a later burst, from its last completed step.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import datetime as dt
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from catalog.models import ZuoraEntity
from catalog.planmap import remembered_lookups
from sync.clients.errors import BusinessError, NotFoundError
from sync.clients.kommo import BATCH, KommoClient
from sync.clients.zuora import ZuoraClient
from sync.context import Lease, LeaseLost, current_lease, current_record_id
from sync.flows.customer import customer_key, refs
from sync.flows.deal_won import Reads, Writes, customer_accounts, order_steps, preview, preview_body, write_back
from sync.flows.entities import entities_listed, link_key, route_record
from sync.flows.models import CustomerAccount
from sync.flows.sale import Sale
from sync.models import SyncRecord
from sync.outcomes import NeedsAttention, Waiting
from sync.parallel import Outcome, each, settle, together
from sync.registry import Conclude, batch
from sync.workers import leases

log = logging.getLogger("zkbridge.sync")

BURST = 250  # deals claimed at once (Kommo's page size); their leads are read 100 ids a call
# A burst starts no deal's order after this long (Zuora slow, say): those deals go back to the queue, their
# attempt given back, well before django-q2's task timeout (240 s) could stop the worker mid-burst.
BUDGET_SECONDS = 90.0
# A task takes up the next burst due only this long after it started (the last one's orders then end well within
# django-q2's 240 s); the next burst is claimed and read when this many of the current one's deals are left
# to start (about two seconds of orders at Zuora's cap: as long as a burst's reads take).
CHAIN_SECONDS = 60.0
LOOKAHEAD = 60


@batch(SyncRecord.Kind.DEAL_WON)
def with_companions(record: SyncRecord, conclude: Conclude) -> bool:
    """A claimed won deal runs in a burst when other won deals are due: up to BURST - 1 of them are claimed for
    the worker that holds it (oldest first). False: none were, the deal runs alone (its flow, deal_won)."""
    others = claim_due(record.worker, BURST - 1)
    if not others:
        return False
    log.info("sync_record=%s runs in a burst with %s other won deal(s)", record.id, len(others))
    run([record, *others], conclude)
    return True


def claim_due(worker: str, limit: int, not_run_since: dt.datetime | None = None) -> list[SyncRecord]:
    """Won deals due now, claimed for `worker` (at most `limit`, oldest first) by the one claim."""
    return leases.claim(SyncRecord.objects.deals(), limit, worker=worker, not_run_since=not_run_since)


class BurstReads(Reads):
    """A burst's reads, made once for all its deals; a deal asks here instead of asking Kommo and Zuora."""

    def __init__(self, kommo: KommoClient, zuora: ZuoraClient):
        super().__init__(kommo, zuora)
        self.leads: dict[int, dict] = {}
        self.contacts: dict[int, dict] = {}
        self.companies: dict[int, dict] = {}
        self.looked_up: dict[str, list[dict]] = {}
        self._guard = threading.Lock()
        self._previews: dict[str, tuple[threading.Lock, list]] = {}

    def next(self) -> BurstReads:
        """Reads for the next burst of the same task: the same clients, and the previews already made (the
        same sale signature is the same sale)."""
        reads = BurstReads(self.kommo, self.zuora)
        reads._previews = self._previews
        return reads

    def in_entity_view(self, entity: ZuoraEntity | None, records: list[SyncRecord]) -> BurstReads:
        """The burst's reads for its deals of one Zuora entity (a multi-entity tenant): the same Kommo answers,
        that entity's client, its customers' accounts looked up there, its own previews."""
        view = copy.copy(self)
        view.entity, view.zuora = entity, ZuoraClient.for_entity(entity)
        view._guard, view._previews = threading.Lock(), {}
        unknown = unlinked_customers([self.leads[r.lead_id] for r in records if r.lead_id in self.leads], entity)
        field = settings.ZUORA_ACCOUNT_CRM_FIELD
        view.looked_up = view.zuora.find_accounts_in(field, unknown) if unknown else {}
        return view

    def load(self, records: list[SyncRecord], *, with_accounts: bool = True) -> None:
        """Every lead, then their contacts, companies and (for customers zkbridge has not linked) Zuora
        accounts together: two rounds for the whole burst. `with_accounts=False`: a multi-entity tenant's accounts
        are looked up per entity (in_entity_view)."""
        with_ = "contacts,catalog_elements"
        self.leads = {lead["id"]: lead for lead in self.kommo.leads_by_ids([r.lead_id for r in records], with_)}
        named = [refs(lead) for lead in self.leads.values()]
        contact_ids = sorted({c["id"] for n in named for c in n.contacts})
        company_ids = sorted({n.company["id"] for n in named if n.company})
        unknown = unlinked_customers(list(self.leads.values()), None) if with_accounts else []
        contacts, companies, accounts = together(
            lambda: self.kommo.get_contacts(contact_ids),
            lambda: self.kommo.companies_by_ids(company_ids),
            (lambda: self.zuora.find_accounts_in(settings.ZUORA_ACCOUNT_CRM_FIELD, unknown)) if unknown else None,
        )
        self.contacts = {c["id"]: c for c in contacts}
        self.companies = {c["id"]: c for c in companies}
        self.looked_up = accounts or {}

    def route(self, record: SyncRecord, lead: dict[str, Any]) -> None:
        """Routed once for the whole burst: a multi-entity tenant's deals were split by entity (by_entity), each
        part reading through its entity's view; a tenant without entities has none to route."""

    def lead(self, lead_id: int) -> dict[str, Any]:
        if lead_id not in self.leads:  # Kommo's list leaves out leads that are deleted or not visible
            raise NotFoundError(f"Kommo: lead {lead_id} was not in the list answer", provider="kommo")
        return self.leads[lead_id]

    def people(self, lead: dict[str, Any]) -> tuple[Callable[[], list[dict]], Callable[[], Any]]:
        named = refs(lead)
        contacts = [self.contacts[c["id"]] for c in named.contacts if c["id"] in self.contacts]
        company = self.companies.get(named.company["id"]) if named.company else None
        return (lambda: contacts), (lambda: company)

    def accounts(self, key: str) -> list[dict]:
        """The burst's lookup answers a customer's first deal only: after that deal's order the answer may be
        stale, so a later deal of the customer (normally linked by then) asks Zuora itself."""
        with self._guard:
            found = self.looked_up.pop(key, None)
        return found if found is not None else customer_accounts(self.zuora, key)

    def preview(self, record: SyncRecord, sale: Sale) -> tuple[str | None, str | None]:
        """One preview per distinct sale; deals selling the same wait for the first one's figures."""
        body = preview_body(record, sale)
        if body is None:
            return None, None
        for subscription in body["subscriptions"]:
            subscription.pop("customFields", None)  # the lead id: the only part that differs per deal
        signature = json.dumps(body, sort_keys=True, default=str)
        with self._guard:
            lock, figures = self._previews.setdefault(signature, (threading.Lock(), []))
        with lock:
            if not figures:
                figures.append(preview(self.zuora, record, sale))
            return figures[0]


def unlinked_customers(leads: list[dict], entity: ZuoraEntity | None) -> list[str]:
    """The customers of these leads zkbridge has not linked to a Zuora account in `entity`: their accounts are
    looked up once for the burst. A lead without a customer says so itself when its deal runs."""
    keys = set()
    for lead in leads:
        with contextlib.suppress(NeedsAttention):
            keys.add(customer_key(lead))
    links = {link_key(key, entity): key for key in keys}
    linked = set(CustomerAccount.objects.filter(customer_key__in=links).values_list("customer_key", flat=True))
    return sorted(key for link, key in links.items() if link not in linked)


@contextlib.contextmanager
def acting_for(record: SyncRecord, lease: Lease) -> Iterator[None]:
    """API calls and log lines are this deal's; its lease guards its writes."""
    record_token, lease_token = current_record_id.set(record.id), current_lease.set(lease)
    try:
        yield
    finally:
        current_lease.reset(lease_token)
        current_record_id.reset(record_token)


def run(records: list[SyncRecord], conclude: Conclude) -> None:
    """Run a burst of claimed won deals to their outcomes (conclude: sync.tasks.conclude). While the task is
    young (CHAIN_SECONDS), the next burst due is claimed and read as this one's last LOOKAHEAD orders go, and
    runs next: Zuora's slots do not sit idle while a new burst reads Kommo (two workers' bursts used to end
    together and read together, the slots empty for seconds every 250 deals each)."""
    chain_until = time.monotonic() + CHAIN_SECONDS
    task_started = min((r.started_at for r in records if r.started_at), default=None) or timezone.now()
    kommo, zuora = KommoClient.from_settings(), ZuoraClient.from_settings()
    with contextlib.ExitStack() as held, remembered_lookups():
        first = Claimed(records, BurstReads(kommo, zuora))
        held.enter_context(first.leases)
        # (a copy: each heartbeat goes on reading its own burst's dict while later bursts are added here)
        lease_of = dict(first.lease_of)
        multi = entities_listed()
        first.read(multi)
        burst: Claimed | None = first
        with KommoWriter(kommo, lease_of, conclude) as writer:
            while burst is not None:
                upcoming = None
                if time.monotonic() < chain_until:
                    upcoming = NextBurst(records[0].worker, task_started, burst.reads, multi)
                try:
                    run_claimed(burst, multi, lease_of, writer, conclude, upcoming)
                finally:
                    burst = upcoming.take() if upcoming else None
                    if burst is not None:  # its heartbeat now ends with this run, whatever happens
                        held.enter_context(burst.leases)
                        lease_of.update(burst.lease_of)


def run_claimed(
    burst: Claimed,
    multi: bool,
    lease_of: dict[int, Lease],
    writer: KommoWriter,
    conclude: Conclude,
    upcoming: NextBurst | None,
) -> None:
    """One burst whose reads are done: its orders (the next burst claimed as its last ones go), its Kommo writes
    handed to the writer, every deal an outcome."""
    records = burst.records
    try:
        if burst.error is not None:
            raise burst.error
        parts = by_entity(records, burst.reads, lease_of) if multi else [(burst.reads, records, {})]
    except Exception as exc:  # the shared reads failed: every deal has that outcome (a retry each)
        for record in records:
            with acting_for(record, lease_of[record.id]):
                conclude(record, raiser(exc))
        return  # (nothing is chained after a failed read: the next burst would most likely fail the same way)
    countdown = Countdown(sum(len(part) for _, part, _ in parts), LOOKAHEAD, upcoming.start if upcoming else None)
    errors: dict[int, BaseException] = {}
    for part_reads, part, refused in parts:  # a multi-entity tenant: each entity's deals with its client
        errors.update(refused)
        errors.update(zuora_part(part, part_reads, lease_of, writer.ordered, countdown.tick))
    for record in records:
        if record.id in errors:
            with acting_for(record, lease_of[record.id]):
                conclude(record, raiser(errors[record.id]))


class Countdown:
    """Calls `then` once, when only `at` of `total` deals are left to start (at once if there are no more)."""

    def __init__(self, total: int, at: int, then: Callable[[], None] | None):
        self.left, self.at, self.then = total, at, then
        self.guard = threading.Lock()
        self.tick(started=0)

    def tick(self, started: int = 1) -> None:
        with self.guard:
            self.left -= started
            fire, self.then = (self.then, None) if self.left <= self.at else (None, self.then)
        if fire is not None:
            fire()


class Claimed:
    """A burst's claimed deals, their leases kept alive from now on (`leases`: closed by whoever runs the
    burst), and their reads once made (or the error that stopped them)."""

    def __init__(self, records: list[SyncRecord], reads: BurstReads):
        self.records, self.reads = records, reads
        self.error: Exception | None = None
        self.leases = contextlib.ExitStack()
        self.lease_of: dict[int, Lease] = self.leases.enter_context(leases.held_all(records))

    def read(self, multi: bool) -> None:
        """The burst's shared reads; if they fail, every deal has that outcome when the burst runs (a retry each)."""
        try:
            self.reads.load(self.records, with_accounts=not multi)
        except Exception as exc:
            self.error = exc


class NextBurst:
    """The next burst due, claimed and read in a thread of its own while the current one places its last
    orders. Its deals' leases beat from the moment they are claimed."""

    def __init__(self, worker: str, task_started: dt.datetime, current: BurstReads, multi: bool):
        self.worker, self.task_started, self.current, self.multi = worker, task_started, current, multi
        self.context = contextvars.copy_context()  # the task's, not an order thread's (no deal's lease or id)
        self.guard = threading.Lock()
        self.thread: threading.Thread | None = None
        self.claimed: Claimed | None = None

    def start(self) -> None:
        with self.guard:
            if self.thread is None:
                self.thread = threading.Thread(target=self.context.run, args=(self.fetch,), daemon=True)
                self.thread.start()

    def fetch(self) -> None:
        try:
            records = claim_due(self.worker, BURST, not_run_since=self.task_started)
            if not records:
                return
            log.info("a burst of %s more won deal(s) claimed while the last orders go", len(records))
            self.claimed = Claimed(records, self.current.next())
            self.claimed.read(self.multi)
        finally:
            connections.close_all()

    def take(self) -> Claimed | None:
        """The burst claimed ahead (its reads done), or None."""
        with self.guard:
            thread = self.thread
        if thread is None:
            return None
        thread.join()
        return self.claimed


class KommoWriter:
    """Deals whose order is done are told to Kommo BATCH at a time while the other deals' orders are still
    being placed (Zuora's slots never wait for Kommo's writes), each batch's deals concluded as soon as it is
    written. One thread writes, batch after batch; leaving the block writes what is left and waits for it."""

    def __init__(self, kommo: KommoClient, lease_of: dict[int, Lease], conclude: Conclude):
        self.kommo, self.lease_of, self.conclude = kommo, lease_of, conclude
        self.waiting: list[SyncRecord] = []
        self.batches: queue.SimpleQueue[list[SyncRecord] | None] = queue.SimpleQueue()
        self.guard = threading.Lock()
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self.write,), daemon=True)

    def __enter__(self) -> KommoWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self.guard:
            last, self.waiting = self.waiting, []
        if last:
            self.batches.put(last)
        self.batches.put(None)
        self.thread.join()

    def ordered(self, record: SyncRecord) -> None:
        """`record`'s order is done (called from the thread that placed it)."""
        with self.guard:
            self.waiting.append(record)
            if len(self.waiting) < BATCH:
                return
            batch, self.waiting = self.waiting, []
        self.batches.put(batch)

    def write(self) -> None:
        try:
            while (batch := self.batches.get()) is not None:
                try:
                    errors = write_back(batch, BatchWrites(self.kommo, self.lease_of))
                except Exception as exc:  # never a deal left without an outcome
                    errors = {record.id: exc for record in batch}
                for record in batch:
                    with acting_for(record, self.lease_of[record.id]):
                        self.conclude(record, raiser(errors.get(record.id)))
        finally:
            connections.close_all()


def by_entity(
    records: list[SyncRecord], reads: BurstReads, lease_of: dict[int, Lease]
) -> list[tuple[BurstReads, list[SyncRecord], dict[int, BaseException]]]:
    """A multi-entity tenant's burst, split by the Zuora entity each deal routes to (sync.flows.entities); a deal
    that cannot be routed stops with why. A deal whose lead Kommo did not list goes with the first part: its
    lead step says it is gone before any Zuora call."""
    groups: dict[int | None, tuple[ZuoraEntity | None, list[SyncRecord]]] = {}
    refused: dict[int, BaseException] = {}
    for record in records:
        if record.lead_id not in reads.leads:
            groups.setdefault(None, (None, []))[1].append(record)
            continue
        with acting_for(record, lease_of[record.id]):
            try:
                entity = route_record(record, reads.leads[record.lead_id])
            except Exception as exc:
                refused[record.id] = exc
                continue
        groups.setdefault(entity.pk if entity else None, (entity, []))[1].append(record)
    parts: list[tuple[BurstReads, list[SyncRecord], dict[int, BaseException]]] = [
        (reads.in_entity_view(entity, group), group, {}) for entity, group in groups.values()
    ]
    if refused:
        parts.append((reads, [], refused))
    return parts


def raiser(error: BaseException | None) -> Callable[[SyncRecord], None]:
    def body(record: SyncRecord) -> None:
        if error is not None:
            raise error

    return body


def zuora_part(
    records: list[SyncRecord],
    reads: BurstReads,
    lease_of: dict[int, Lease],
    ordered: Callable[[SyncRecord], None],
    starting: Callable[[], None] = lambda: None,
) -> dict[int, BaseException]:
    """Each deal's lead step and order, several customers at once (a customer's deals one after another);
    starting() as each deal starts, ordered(record) as its order is done. Returns the deals that stopped, with
    why."""
    groups: dict[str, list[SyncRecord]] = {}
    for record in records:
        try:
            key = customer_key(reads.lead(record.lead_id))
        except (NotFoundError, NeedsAttention):
            key = f"record:{record.id}"
        groups.setdefault(key, []).append(record)

    deadline = time.monotonic() + BUDGET_SECONDS
    handed: set[int] = set()  # deals handed to the Kommo writer: their outcome is its to record

    def run_group(group: list[SyncRecord]) -> dict[int, BaseException]:
        stopped: dict[int, BaseException] = {}
        for record in group:
            starting()
            if time.monotonic() > deadline:
                stopped[record.id] = Waiting("the burst it was in ran out of time; it runs again now", dt.timedelta())
                continue
            with acting_for(record, lease_of[record.id]):
                try:
                    order_steps(record, reads)
                except Exception as exc:
                    stopped[record.id] = exc
                    continue
            handed.add(record.id)
            ordered(record)
        return stopped

    errors: dict[int, BaseException] = {}
    outcomes = each(list(groups.values()), run_group, settings.ZUORA_MAX_CONCURRENT_CALLS)
    for group, outcome in zip(groups.values(), outcomes, strict=True):
        if outcome.error is not None:
            errors.update({record.id: outcome.error for record in group if record.id not in handed})
        else:
            errors.update(outcome.value)
    return errors


class BatchWrites(Writes):
    """The burst's batching Kommo writer for the write-back (deal_won.write_back): the deals' lead fields in
    PATCH /api/v4/leads and their notes in POST /api/v4/leads/notes, BATCH a call, both at once; each deal's
    writes made under its own record id and lease."""

    def __init__(self, kommo: KommoClient, lease_of: dict[int, Lease]):
        super().__init__(kommo)
        self.lease_of = lease_of

    def acting(self, record: SyncRecord) -> contextlib.AbstractContextManager[Any]:
        return acting_for(record, self.lease_of[record.id])

    def send(
        self, records: list[SyncRecord], values: dict[int, dict[int, str]], texts: dict[int, str]
    ) -> tuple[dict[int, Outcome], dict[int, Outcome]]:
        kommo, with_fields = self.kommo, [r for r in records if values[r.id]]

        def write_fields(part: list[SyncRecord]) -> list[int | None]:
            return kommo.update_leads_fields([(r.lead_id, values[r.id]) for r in part])

        def write_notes(part: list[SyncRecord]) -> list[int | None]:
            return kommo.add_notes("leads", [(r.lead_id, texts[r.id]) for r in part])

        fields, notes = together(
            (lambda: in_batches(with_fields, write_fields, self.lease_of)) if with_fields else None,
            lambda: in_batches(records, write_notes, self.lease_of),
        )
        return fields or {}, notes


def in_batches(
    records: list[SyncRecord], send: Callable[[list[SyncRecord]], list[Any]], lease_of: dict[int, Lease]
) -> dict[int, Outcome]:
    """send() the records BATCH at a time; record id → its Outcome. A refusal that names entries fails those
    (with what Kommo said about each) and sends the rest again; one that names none sends each alone. Any
    other error is every sent record's outcome. A record whose lease was lost is not sent."""
    outcomes: dict[int, Outcome] = {}
    for start in range(0, len(records), BATCH):
        pending = []
        for record in records[start : start + BATCH]:
            lease = lease_of[record.id]
            if lease.lost.is_set():
                outcomes[record.id] = Outcome(error=LeaseLost(f"lease on sync record {record.id} lost ({lease.why})"))
            else:
                pending.append(record)
        while pending:
            [sent] = settle(partial(send, pending))
            if sent.error is None:
                outcomes.update({r.id: Outcome(value) for r, value in zip(pending, sent.value, strict=True)})
                break
            exc = sent.error
            named = {i for i in getattr(exc, "entries", {}) if 0 <= i < len(pending)}
            if not isinstance(exc, BusinessError) or len(pending) == 1:
                outcomes.update({r.id: Outcome(error=exc) for r in pending})
                break
            if not named:  # which entry Kommo minds is not said: each alone
                for record in pending:
                    [alone] = settle(partial(send, [record]))
                    outcomes[record.id] = Outcome(alone.value[0] if alone.error is None else None, alone.error)
                break
            for index in named:
                outcomes[pending[index].id] = Outcome(error=entry_refused(exc, index))
            pending = [r for i, r in enumerate(pending) if i not in named]
    return outcomes


def entry_refused(exc: BusinessError, index: int) -> BusinessError:
    """The part of a batch refusal that is about one entry, as that entry's own refusal."""
    return BusinessError(
        f"Kommo refused the request ({exc.status}): {exc.entries[index]}", status=exc.status, provider=exc.provider
    )
