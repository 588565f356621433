"""Which flow runs each kind of sync record. Filled once, at start-up (SyncConfig.ready), from the explicit
list below: a flow module registers its function with @flow(kind) when it is imported, and nothing is
registered by the side effect of importing something else."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from sync.models import SyncRecord

FLOW_MODULES = (
    "sync.flows.deal_won",
    "sync.flows.burst",
    "sync.lifecycle.plan_change",
    "sync.lifecycle.cancellation",
    "sync.lifecycle.reopening",
    "sync.migration.flow",
    "sync.billing.flow",
    "sync.usage.flow",
    "sync.preview.flow",
)
# The reconciliation's registries: one check per kind of discrepancy, one fix per automatic action.
RECONCILE_MODULES = ("sync.reconcile.checks", "sync.reconcile.fixes")
# The packages' admin pages, each module registering its own (loaded by sync/admin.py, which Django's admin
# autodiscovery imports); tests/test_registries.py holds every model of the sync app to a page or a reason.
ADMIN_MODULES = (
    "sync.flows.admin",
    "sync.lifecycle.admin",
    "sync.migration.admin",
    "sync.billing.admin",
    "sync.usage.admin",
    "sync.reconcile.admin",
    "sync.preview.admin",
    "sync.offering.admin",
    "sync.health.admin",
)
# Actions that are a person's work in Zuora or Kommo (the report links there); every other action has a fix.
MANUAL_ACTIONS = frozenset({"open_zuora", "open_kommo", "plan_migration"})
FLOWS: dict[str, Callable[[SyncRecord], None]] = {}
# A kind's batching: given a claimed record and how to record an outcome, it may claim other records of its kind
# due now and run them all together through the same flow's steps (True), or leave the record to its flow.
Conclude = Callable[[SyncRecord, Callable[[SyncRecord], None]], None]
BATCHES: dict[str, Callable[[SyncRecord, Conclude], bool]] = {}


def flow(kind: str):
    """Register the decorated function as the flow of `kind` records."""

    def register(function: Callable[[SyncRecord], None]):
        if FLOWS.get(kind, function) is not function:
            raise RuntimeError(f"two flows for {kind}: {FLOWS[kind].__qualname__} and {function.__qualname__}")
        FLOWS[kind] = function
        return function

    return register


def batch(kind: str):
    """Register the decorated function as the batching of `kind` records (one at most per kind)."""

    def register(function: Callable[[SyncRecord, Conclude], bool]):
        if BATCHES.get(kind, function) is not function:
            raise RuntimeError(f"two batchings for {kind}: {BATCHES[kind].__qualname__} and {function.__qualname__}")
        BATCHES[kind] = function
        return function

    return register


def load_admins() -> None:
    for module in ADMIN_MODULES:
        importlib.import_module(module)


def load_flows() -> dict[str, Callable[[SyncRecord], None]]:
    for module in FLOW_MODULES:
        importlib.import_module(module)
    missing = sorted(set(SyncRecord.Kind.values) - set(FLOWS))
    if missing:
        raise RuntimeError(f"no flow for sync record kind(s) {missing}: add the module to FLOW_MODULES")
    for module in RECONCILE_MODULES:
        importlib.import_module(module)
    return FLOWS
