"""A rebalance never leaves a partition unread: workers killed again and again during a stream,
and every partition's committed offset still reaches its end, and every failure is decided.

Two ``flowguard worker`` processes in one group and a webhook workflow; 60 failures produced
over about 20 s as the bridge would; three times, a worker is SIGKILLed at a random moment and
replaced at once. Afterwards the group has committed every record of every input topic
(events, scheduled, triggers, deliveries) and each failure has exactly one execution whose
notice was delivered. (Faust used to skip records it had fetched before a rebalance on
partitions never committed: in about half the crash runs a new owner never read them.)
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowguard.live.app import partition_of
from tests.e2e.test_notifications_once import Flow, failure
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import produce, tail
from topics.registry import EVENTS

FAILURES = 60
SPREAD_SECONDS = 20.0
KILLS = 3
#: A partition stalled this long is read again from its committed offset (default 120 s).
STALL = {"FLOWGUARD_PROGRESS_STALL_SECONDS": "10"}


@pytest.fixture
def flow(tmp_path: Path, kafka_bootstrap: str, topic_prefix: str) -> Iterator[Flow]:
    with (
        RecordingServer() as hooks,
        Flow(tmp_path, kafka_bootstrap, topic_prefix, hooks) as running,
    ):
        yield running


def stream(flow: Flow, done: threading.Event) -> None:
    """The failures, paced: the producer of a simulated cluster."""
    pause = threading.Event()  # never set: its wait() is the pacing
    for n in range(FAILURES):
        produce(flow.kafka, f"{flow.prefix}.events", failure(f"t-{n:03d}", time.time()))
        pause.wait(SPREAD_SECONDS / FAILURES)
    done.set()


@pytest.mark.integration
def test_workers_killed_during_a_stream_leave_no_partition_unread(
    flow: Flow, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(20261204)
    workers = [flow.worker(f"fg{n}", monkeypatch, **STALL) for n in (1, 2)]
    done = threading.Event()
    producer = threading.Thread(target=stream, args=(flow, done), daemon=True)
    producer.start()
    try:
        pause = threading.Event()
        for kill in range(KILLS):
            pause.wait(rng.uniform(2.0, SPREAD_SECONDS / KILLS))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.kill()
            workers.append(flow.worker(f"fg{3 + kill}", monkeypatch, **STALL))
        producer.join(timeout=60)
        assert done.is_set(), "the stream was produced"

        def decided() -> set[str]:
            return {r["task"]["id"] for r in flow.log.poll() if r["seq"] == 0}

        try:
            wait_until(
                lambda: len(decided()) == FAILURES, timeout_seconds=120,
                what=f"all {FAILURES} failures decided",
            )  # fmt: skip
        except AssertionError as exc:
            missing = sorted({f"t-{n:03d}" for n in range(FAILURES)} - decided())
            where = {t: partition_of(f"prod/{t}".encode(), EVENTS.partitions) for t in missing}
            lag = flow.lagging("events", "scheduled", "triggers", "deliveries")
            raise AssertionError(
                f"{exc}: undecided {where} (events partition each); committed/end: {lag}"
            ) from None
        flow.wait_caught_up(
            "events", "scheduled", "triggers", "deliveries", timeout_seconds=60,
            what="every input partition committed to its end",
        )  # fmt: skip
        executions = [r for r in flow.log.poll() if r["seq"] == 0]
        assert len({r["execution_id"] for r in executions}) == FAILURES
        decided_ids = {r["execution_id"] for r in executions}

        def undelivered() -> set[str]:
            done = {
                r["execution_id"]
                for r in flow.log.poll()
                if r["actions"][0]["status"] == "succeeded"
            }
            return decided_ids - done

        # A delivery's outcome reaches the log a moment after its request was committed.
        wait_until(lambda: not undelivered(), timeout_seconds=30, what="every notice delivered")
        keys = {r.headers["idempotency-key"] for r in flow.hooks.requests("/hook")}
        assert len(keys) == FAILURES, "every notice delivered (repeats share their key)"
    except BaseException:
        for proc in flow.workers:
            print(f"--- {proc.name} log (last 40 lines):\n{tail(proc.log_path, 40)}")
        raise
