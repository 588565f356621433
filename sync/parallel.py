"""Calls that do not depend on each other, made at the same time.

A flow's critical path is the sum of its round trips; two reads that need nothing from each other (a lead's
contacts and its company; the customer's Zuora account and the lead's Kommo contacts) cost one round trip
when they travel together. Each call runs in a thread of its own with a copy of the caller's context (the
sync record its API calls are logged under, the worker's lease), and closes the database connection Django
opened for that thread when it ends.

Only HTTP travels in these threads: a flow records its steps afterwards, in its own thread, so no two
threads ever save the same sync record.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Sequence
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


def settle(*calls: Callable[[], Any] | None) -> list[Outcome]:
    """Run every call at once and wait for all of them; one Outcome per call, in order (a None call is
    skipped and gives an empty Outcome). The first call runs in the caller's thread."""
    outcomes = [Outcome() for _ in calls]
    live = [(index, call) for index, call in enumerate(calls) if call is not None]

    def run(index: int, call: Callable[[], Any], own_thread: bool) -> None:
        try:
            outcomes[index].value = call()
        except BaseException as exc:  # handed back to the caller, who decides
            outcomes[index].error = exc
        finally:
            if own_thread:
                connections.close_all()

    threads = []
    for index, call in live[1:]:
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(run, index, call, True), daemon=True)
        thread.start()
        threads.append(thread)
    if live:
        run(live[0][0], live[0][1], False)
    for thread in threads:
        thread.join()
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
    """call(item) for every item, at most `at_once` at a time, each in a thread with a copy of the caller's
    context; one Outcome per item, in order. A thread keeps its database connection from item to item and
    closes it when it runs out of items (a new PostgreSQL connection per item would cost a server process)."""
    outcomes = [Outcome() for _ in items]
    queue = iter(enumerate(items))
    guard = threading.Lock()

    def work() -> None:
        try:
            while True:
                with guard:
                    index, item = next(queue, (None, None))
                if index is None:
                    return
                try:
                    outcomes[index].value = call(item)
                except BaseException as exc:  # handed back to the caller, who decides
                    outcomes[index].error = exc
        finally:
            connections.close_all()

    threads = []
    for _ in range(min(max(at_once, 1), len(items))):
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,), daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return outcomes
