"""Calls that do not depend on each other, made at the same time.

A flow's critical path is the sum of its round trips; two reads that need nothing from each other (a lead's
contacts and its company; the customer's Zuora account and the lead's Kommo contacts) cost one round trip
when they travel together. Each call runs in a thread of the standard library's ThreadPoolExecutor with a
copy of the caller's context (contextvars: the sync record its API calls are logged under, the worker's
lease), and closes the database connection Django opened for that thread when it ends.

Only HTTP travels in these threads: a flow records its steps afterwards, in its own thread, so no two
threads ever save the same sync record.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import connections


@dataclass
class Outcome:
    value: Any = None
    error: BaseException | None = None

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def _closing(call: Callable[[], Any]) -> Any:
    """Run a call in a pool thread, then close the database connection Django opened for that thread."""
    try:
        return call()
    finally:
        connections.close_all()


def settle(*calls: Callable[[], Any] | None) -> list[Outcome]:
    """Run every call at once and wait for all of them; one Outcome per call, in order (a None call is
    skipped and gives an empty Outcome). The first call runs in the caller's thread, the others in a
    ThreadPoolExecutor's threads, each with a copy of the caller's context."""
    outcomes = [Outcome() for _ in calls]
    live = [(index, call) for index, call in enumerate(calls) if call is not None]
    if not live:
        return outcomes
    others = live[1:]
    with ThreadPoolExecutor(max_workers=max(len(others), 1), thread_name_prefix="zkbridge-call") as pool:
        futures = [(index, pool.submit(contextvars.copy_context().run, _closing, call)) for index, call in others]
        first, call = live[0]
        try:
            outcomes[first].value = call()
        except BaseException as exc:  # handed back to the caller, who decides
            outcomes[first].error = exc
        for index, future in futures:
            try:
                outcomes[index].value = future.result()
            except BaseException as exc:
                outcomes[index].error = exc
    return outcomes


def together(*calls: Callable[[], Any] | None) -> list[Any]:
    """Run every call at once; their values in order, or the first error once all have finished (no call
    is left running behind the caller's back)."""
    outcomes = settle(*calls)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [outcome.value for outcome in outcomes]


def each(items: Sequence[Any], call: Callable[[Any], Any], at_once: int) -> list[Outcome]:
    """call(item) for every item, at most `at_once` at a time, each in a pool thread with a copy of the
    caller's context; one Outcome per item, in order. Each pool thread takes item after item and keeps its
    database connection until it runs out (a new PostgreSQL connection per item would cost a server
    process), then closes it."""
    outcomes = [Outcome() for _ in items]
    queue = iter(enumerate(items))
    guard = threading.Lock()

    def work() -> None:
        while True:
            with guard:
                index, item = next(queue, (None, None))
            if index is None:
                return
            try:
                outcomes[index].value = call(item)
            except BaseException as exc:  # handed back to the caller, who decides
                outcomes[index].error = exc

    threads = min(max(at_once, 1), len(items))
    if threads:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="zkbridge-each") as pool:
            loops = [pool.submit(contextvars.copy_context().run, _closing, work) for _ in range(threads)]
        for loop in loops:
            loop.result()
    return outcomes
