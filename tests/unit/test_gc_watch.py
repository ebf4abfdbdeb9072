"""The garbage collector's pauses are measured (flowguard.metrics) and the worker's startup heap
is moved out of the collector's reach once it is ready (flowguard.live.app.settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

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
