"""The garbage collector's pauses are measured (flowguard.metrics) and the worker's startup heap
is moved out of the collector's reach once it is ready (flowguard.live.app.settle_heap)."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from flowguard import metrics
from flowguard.live.app import settle_heap


def _count(generation: int) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "flowguard_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_every_collection_is_timed_by_generation() -> None:
    before = [_count(g) for g in range(3)]
    gc.collect(0)
    gc.collect(2)
    after = [_count(g) for g in range(3)]
    assert after[0] >= before[0] + 1
    assert after[2] >= before[2] + 1
    pause = metrics.REGISTRY.get_sample_value("flowguard_gc_pause_seconds_sum", {"generation": "2"})
    assert pause is not None
    assert pause > 0


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test run collects as usual


@pytest.mark.usefixtures("unfrozen")
def test_settling_collects_then_freezes_what_survived() -> None:
    class Cycle:
        pass

    garbage = Cycle()
    garbage.me = garbage  # type: ignore[attr-defined]
    kept = [Cycle()]
    del garbage
    settle_heap()
    frozen = gc.get_freeze_count()
    assert frozen > 1_000
    assert metrics.REGISTRY.get_sample_value("flowguard_gc_frozen_objects") == frozen
    # What survived is out of reach: a full collection no longer walks it.
    assert not any(obj is kept for obj in gc.get_objects(generation=2))
    # The cycle was collected before the freeze, not frozen for good.
    assert not any(type(obj) is Cycle and obj is not kept[0] for obj in gc.get_objects())


def _metric_locks() -> list[Any]:
    """Every value lock of every metric in the registry (prometheus_client's MutexValue)."""
    locks = []
    for collector in list(metrics.REGISTRY._collector_to_names):
        children = getattr(collector, "_metrics", None)
        for child in list(children.values()) if isinstance(children, dict) else [collector]:
            for name in ("_value", "_sum", "_count"):
                value = getattr(child, name, None)
                if value is not None and hasattr(value, "_lock"):
                    locks.append(value._lock)
            locks += [bucket._lock for bucket in getattr(child, "_buckets", [])]
    return locks


def test_a_collection_while_metric_locks_are_held_does_not_deadlock() -> None:
    """A collection starts at any allocation, also inside a metric's locked update (or a
    scrape): the callback must take none of those locks, or the thread waits on itself."""
    locks = _metric_locks()
    assert locks
    done = threading.Event()

    def collect_while_holding() -> None:
        for lock in locks:
            lock.acquire()
        try:
            gc.collect()
        finally:
            for lock in locks:
                lock.release()
        done.set()

    threading.Thread(target=collect_while_holding, daemon=True).start()
    assert done.wait(10), "the garbage collector's callback waited on a metric's lock"


@pytest.mark.usefixtures("unfrozen")
def test_settling_again_collects_what_the_last_settling_froze_and_is_now_garbage() -> None:
    class Revoked:
        pass

    state = Revoked()
    state.me = state  # type: ignore[attr-defined]  # a cycle: only the collector frees it
    settle_heap()  # frozen with the rest
    del state  # a rebalance revoked it: garbage, but out of the collector's reach
    gc.collect()
    assert _alive(Revoked), "frozen: an ordinary collection cannot free it"
    settle_heap()  # after the next rebalance
    assert not _alive(Revoked)


def _alive(kind: type) -> bool:
    gc.unfreeze()  # to see the frozen ones too (the fixture leaves the heap unfrozen anyway)
    try:
        return any(type(obj) is kind for obj in gc.get_objects())
    finally:
        gc.freeze()
