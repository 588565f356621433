"""The cross-process slots that cap concurrent Zuora calls (sync.locks.one_of), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from sync.locks import LockBusy, one_of, release, try_lock
from tests.conftest import run_together

pytestmark = pytest.mark.usefixtures("transactional_db")


def test_many_threads_share_the_slots_never_more_at_once_and_each_gets_one():
    inside, most, served, slots_seen = [0], [0], [0], set()
    guard = threading.Lock()

    def call() -> None:
        with one_of("test-cap", 3, timeout=20) as slot:
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                slots_seen.add(slot)
            time.sleep(0.05)
            with guard:
                inside[0] -= 1
                served[0] += 1

    started = time.monotonic()
    assert run_together(12, call) == []
    assert served[0] == 12 and most[0] == 3 and slots_seen == {0, 1, 2}
    assert time.monotonic() - started < 2  # four rounds of 50 ms, not a poll interval each


class Elsewhere:
    """Locks held on another database connection, as another process would hold them (PostgreSQL's advisory
    locks are re-entrant within one connection)."""

    def __init__(self) -> None:
        self.orders: list[tuple[str, str, threading.Event]] = []
        self.wake = threading.Condition()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        held = {}
        try:
            while True:
                with self.wake:
                    while not self.orders:
                        self.wake.wait()
                    what, name, done = self.orders.pop(0)
                if what == "stop":
                    done.set()
                    return
                if what == "hold":
                    held[name] = try_lock(name)
                    assert held[name] is not None
                else:
                    release(held.pop(name))
                done.set()
        finally:
            for lock in held.values():
                release(lock)
            connections.close_all()

    def order(self, what: str, name: str = "") -> None:
        done = threading.Event()
        with self.wake:
            self.orders.append((what, name, done))
            self.wake.notify()
        assert done.wait(5)


def test_slots_held_by_another_process_are_skipped_and_waited_for():
    elsewhere = Elsewhere()
    elsewhere.order("hold", "test-cap2:0")
    elsewhere.order("hold", "test-cap2:1")
    with one_of("test-cap2", 3, timeout=5) as slot:
        assert slot == 2
    elsewhere.order("hold", "test-cap2:2")
    with pytest.raises(LockBusy, match="all 3 'test-cap2' slots stayed busy"):
        with one_of("test-cap2", 3, timeout=0.3):
            pass
    got: list[int] = []

    def waiter() -> None:
        with one_of("test-cap2", 3, timeout=5) as slot:
            got.append(slot)

    thread = threading.Thread(target=lambda: (waiter(), connections.close_all()))
    thread.start()
    time.sleep(0.2)
    assert got == []  # every slot is still held elsewhere
    elsewhere.order("release", "test-cap2:1")  # the other process gives one back
    thread.join(5)
    assert got == [1]
    elsewhere.order("stop")


def test_a_slot_given_back_is_free_again_for_everyone():
    elsewhere = Elsewhere()
    with one_of("test-cap3", 1, timeout=2) as slot:
        assert slot == 0
    elsewhere.order("hold", "test-cap3:0")  # asserts it was free
    with pytest.raises(LockBusy):
        with one_of("test-cap3", 1, timeout=0.2):
            pass
    elsewhere.order("stop")


def test_threads_waiting_behind_the_one_that_asks_time_out_too():
    elsewhere = Elsewhere()
    elsewhere.order("hold", "test-cap4:0")

    def wait_in_vain() -> None:
        with one_of("test-cap4", 1, timeout=0.3):
            pass

    errors = run_together(3, wait_in_vain)
    assert len(errors) == 3 and all(isinstance(e, LockBusy) for e in errors)
    elsewhere.order("stop")
