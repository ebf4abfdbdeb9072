"""bridge/intake.py: record keys, the root memory, dead letters and --dump."""

from __future__ import annotations

import asyncio
import io
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bridge.buffer import Entry, EventBuffer
from bridge.intake import Intake, RootMemory, record_key
from flowguard.celery_wire.events import translate
from flowguard.cli import main as flowguard_cli
from flowguard.control.workflow_templates import TEMPLATE_DIR
from tests import celery_events as ev
from topics.dlq import DeadLetter
from topics.events import EVENT_ADAPTER, BridgeStatus, Event, TaskSnapshot

REPO = Path(__file__).resolve().parents[3]
STREAMS = REPO / "tests" / "data" / "streams"
TEMPLATES = TEMPLATE_DIR
T0 = 1_760_000_000.0


def event(raw: dict[str, Any], cluster: str = "prod") -> Event:
    translated = translate(raw, cluster)
    assert translated is not None
    return translated


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def intake(loop: asyncio.AbstractEventLoop, dump: io.StringIO | None = None) -> Intake:
    return Intake("prod", "fg.events", "fg.dlq", EventBuffer(1000, loop), dump)


def drain(buffer: EventBuffer) -> list[Entry]:
    return buffer.take_now(len(buffer))


# --- keys ---------------------------------------------------------------------------------


def test_task_events_are_keyed_by_cluster_and_root() -> None:
    roots = RootMemory()
    child = ev.sent("child", T0, "app.x", root_id="root", parent_id="root")
    assert record_key(event(child), roots) == "prod/root"


def test_later_events_of_a_child_follow_the_root_learnt_from_sent_or_received() -> None:
    roots = RootMemory()
    record_key(event(ev.received("child", T0, "app.x", root_id="root", parent_id="root")), roots)
    for raw in (ev.started("child", T0 + 1), ev.failed("child", T0 + 2)):
        assert record_key(event(raw), roots) == "prod/root"


def test_a_task_never_seen_with_its_root_is_keyed_by_its_own_id() -> None:
    assert record_key(event(ev.started("orphan", T0)), RootMemory()) == "prod/orphan"


def test_worker_events_are_keyed_by_hostname() -> None:
    roots = RootMemory()
    for kind in ("online", "heartbeat", "offline"):
        assert record_key(event(ev.heartbeat(T0, "celery@w7", kind=kind)), roots) == (
            "prod/celery@w7"
        )


def test_bridge_status_is_keyed_by_bridge_id() -> None:
    status = BridgeStatus(
        cluster="prod", bridge_id="b1", timestamp=T0, interval_seconds=5, started_at=T0,
        celery_connected=True, kafka_connected=True, events_received=0, events_published=0,
        events_dropped=0,
    )  # fmt: skip
    assert record_key(status, RootMemory()) == "prod/bridge/b1"


def test_root_memory_forgets_the_least_recently_remembered() -> None:
    roots = RootMemory(size=2)
    roots.remember("a", "ra")
    roots.remember("b", "rb")
    roots.remember("a", "ra")  # refreshed: now b is the oldest
    roots.remember("c", "rc")
    assert (roots.root_of("a"), roots.root_of("b"), roots.root_of("c")) == ("ra", None, "rc")


@st.composite
def chain_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of a few chains (root + children), interleaved in any order Celery may deliver."""
    raws: list[dict[str, Any]] = []
    for c in range(draw(st.integers(1, 3))):
        root = f"r{c}"
        for t in range(draw(st.integers(1, 3))):
            task = root if t == 0 else f"{root}.{t}"
            parent = None if t == 0 else root
            kinds = draw(st.lists(st.sampled_from(["sent", "received", "started", "failed"]),
                                  min_size=1, max_size=5))  # fmt: skip
            for kind in kinds:
                if kind == "sent":
                    raws.append(ev.sent(task, T0, "app.x", root_id=root, parent_id=parent))
                elif kind == "received":
                    raws.append(ev.received(task, T0, "app.x", root_id=root, parent_id=parent))
                elif kind == "started":
                    raws.append(ev.started(task, T0))
                else:
                    raws.append(ev.failed(task, T0))
    return draw(st.permutations(raws))


@given(chain_streams())
def test_a_chain_lands_on_its_roots_key_once_its_root_is_known(raws: list[dict[str, Any]]) -> None:
    """Model: an event is keyed by its root if it names one or an earlier sent/received did."""
    roots = RootMemory()
    known: dict[str, str] = {}
    for raw in raws:
        task, root = raw["uuid"], raw.get("root_id")
        expected = root or known.get(task) or task
        assert record_key(event(raw), roots) == f"prod/{expected}"
        if root:
            known[task] = root


def test_a_recorded_chain_is_one_key(loop: asyncio.AbstractEventLoop) -> None:
    """tests/data/streams/flaky_chain: a task retried by flowguard as child tasks of its root."""
    taken = intake(loop)
    for line in (STREAMS / "flaky_chain.jsonl").read_text().splitlines():
        taken.on_event(json.loads(line))
    keys = {e.key for e in drain(taken.buffer) if json.loads(e.value)["kind"].startswith("task.")}
    assert keys == {b"prod/chain-1"}


# --- counting, dead letters ------------------------------------------------------------------


def test_events_are_translated_encoded_and_counted(loop: asyncio.AbstractEventLoop) -> None:
    taken = intake(loop)
    taken.on_event(ev.failed("t1", T0))
    taken.on_event({"type": "task-progress", "uuid": "t1", "timestamp": T0})
    (entry,) = drain(taken.buffer)
    assert (entry.topic, entry.key, entry.kind) == ("fg.events", b"prod/t1", "task.failed")
    assert EVENT_ADAPTER.validate_json(entry.value) == event(ev.failed("t1", T0))
    assert (taken.received, taken.ignored, taken.invalid) == (1, 1, 0)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"type": "task-failed", "timestamp": T0}, "task-failed without 'uuid'"),
        ({"type": "task-failed", "uuid": "t", "timestamp": "soon"}, "timestamp"),
        ({"uuid": "t"}, "missing 'type'"),
    ],
)
def test_an_invalid_event_becomes_a_dead_letter_with_reason_and_raw(
    loop: asyncio.AbstractEventLoop, raw: dict[str, Any], reason: str
) -> None:
    taken = intake(loop)
    taken.on_event(raw)
    taken.on_event(ev.started("t2", T0))  # the stream goes on
    letter_entry, next_entry = drain(taken.buffer)
    assert (letter_entry.topic, letter_entry.key, letter_entry.kind) == ("fg.dlq", b"prod", "dlq")
    letter = DeadLetter.model_validate_json(letter_entry.value)
    assert (letter.source, letter.cluster) == ("bridge", "prod")
    assert reason in letter.reason
    assert json.loads(letter.raw) == raw
    assert letter.at.endswith("Z")
    assert next_entry.kind == "task.started"
    assert (taken.invalid, taken.received) == (1, 1)


def test_a_raw_message_that_is_not_json_still_reaches_the_dlq_whole(
    loop: asyncio.AbstractEventLoop,
) -> None:
    taken = intake(loop)
    taken.on_invalid("not a Celery event (ValueError: x)", b"\x00garbage")
    (entry,) = drain(taken.buffer)
    letter = DeadLetter.model_validate_json(entry.value)
    assert json.loads(letter.raw) == repr(b"\x00garbage"), "raw is always JSON text"
    assert letter.reason == "not a Celery event (ValueError: x)"


# --- --dump ----------------------------------------------------------------------------------


def snapshot(task_id: str) -> TaskSnapshot:
    return TaskSnapshot(
        cluster="prod", task_id=task_id, timestamp=T0, hostname="celery@w1",
        name="app.slow", args="(1,)", kwargs="{}", state="active",
    )  # fmt: skip


def replay_cli(workflows: Path, events: Path) -> tuple[str, str]:
    result = CliRunner().invoke(
        flowguard_cli, ["replay", "--workflows", str(workflows), "--events", str(events)]
    )
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


@pytest.mark.parametrize("stream", ["basic", "worker_sigkill", "celery_retry", "flaky_chain"])
def test_dump_replays_exactly_like_the_recording(
    loop: asyncio.AbstractEventLoop, tmp_path: Path, stream: str
) -> None:
    """What --dump writes is what `flowguard replay` reads: same executions as the recording."""
    recording = STREAMS / f"{stream}.jsonl"
    dump = io.StringIO()
    taken = intake(loop, dump)
    lines = recording.read_text().splitlines()
    for line in lines:
        taken.on_event(json.loads(line))
    dumped = tmp_path / "dump.jsonl"
    dumped.write_text(dump.getvalue())
    assert [json.loads(line) for line in dumped.read_text().splitlines()] == [
        json.loads(line) for line in lines
    ]
    expected_out, expected_err = replay_cli(TEMPLATES, recording)
    out, err = replay_cli(TEMPLATES, dumped)
    assert out == expected_out
    assert err == expected_err
    assert "0 malformed" in err


def test_dump_keeps_snapshots_as_normalized_events_replay_reads(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    dump = io.StringIO()
    taken = intake(loop, dump)
    taken.on_event(ev.heartbeat(T0))
    taken.on_snapshot([snapshot("s1"), snapshot("s2")])
    dumped = tmp_path / "dump.jsonl"
    dumped.write_text(dump.getvalue())
    _, err = replay_cli(TEMPLATES, dumped)
    assert "3 lines, 3 events, 0 ignored, 0 malformed" in err
    assert [e.kind for e in drain(taken.buffer)] == [
        "worker.heartbeat", "task.snapshot", "task.snapshot"
    ]  # fmt: skip
    assert taken.received == 3


def test_dump_writes_values_json_cannot_hold_as_their_repr(
    loop: asyncio.AbstractEventLoop,
) -> None:
    dump = io.StringIO()
    intake(loop, dump).on_event({**ev.started("t1", T0), "extra": {1, 2}})
    assert json.loads(dump.getvalue())["extra"] == "{1, 2}"


class OverlapProbe(io.StringIO):
    """A dump file that notices two writers inside ``write`` at once.

    The first write holds on until a second writer arrives (or 0.5 s pass): without a lock the
    snapshot thread's write lands inside it; with one, it waits for it to end.
    """

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.most_inside = 0
        self.first_entered = threading.Event()
        self.second_arrived = threading.Event()
        self._count = threading.Lock()

    def write(self, text: str) -> int:
        with self._count:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            first = not self.first_entered.is_set()
            self.first_entered.set()
            if not first:
                self.second_arrived.set()
        if first:
            self.second_arrived.wait(0.5)
        written = super().write(text)
        with self._count:
            self.inside -= 1
        return written


def test_dump_lines_from_the_receiver_and_the_snapshot_thread_never_interleave(
    loop: asyncio.AbstractEventLoop,
) -> None:
    dump = OverlapProbe()
    taken = intake(loop, dump)  # type: ignore[arg-type]
    receiver = threading.Thread(target=taken.on_event, args=(ev.started("t1", T0),))
    receiver.start()
    assert dump.first_entered.wait(5), "the receiver's line was never written"
    snapshotter = threading.Thread(target=taken.on_snapshot, args=([snapshot("t2")],))
    snapshotter.start()
    receiver.join(5)
    snapshotter.join(5)
    assert dump.most_inside == 1, "two threads wrote the dump at once"
    lines = [json.loads(line) for line in dump.getvalue().splitlines()]
    assert [line.get("uuid") or line.get("task_id") for line in lines] == ["t1", "t2"]


def test_nothing_is_written_to_the_dump_once_closed(loop: asyncio.AbstractEventLoop) -> None:
    """A receiver thread slow to stop at shutdown writes nothing to the closed file."""
    dump = io.StringIO()
    taken = intake(loop, dump)
    taken.close_dump()
    assert dump.closed
    taken.on_event(ev.started("t1", T0))
    taken.on_snapshot([snapshot("t2")])
    assert len(taken.buffer) == 2, "the events themselves still go on"


# --- events larger than Kafka takes ----------------------------------------------------------


def test_an_event_larger_than_kafka_takes_goes_to_the_dlq_cut(
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Kafka refuses it for good: retried, it would hold up every event behind it."""
    taken = Intake("prod", "fg.events", "fg.dlq", EventBuffer(10, loop), max_record_bytes=20_000)
    taken.on_event(ev.received("child", T0, "app.x", root_id="root", parent_id="root"))
    huge = ev.failed("child", T0 + 1, exception="ValueError('" + 'é\x01"' * 30_000 + "')")
    taken.on_event(huge)
    taken.on_event(ev.started("child", T0 + 2))
    received, letter_entry, started = drain(taken.buffer)
    assert (received.kind, letter_entry.kind, started.kind) == (
        "task.received",
        "dlq",
        "task.started",
    )
    assert started.key == b"prod/root"
    assert len(letter_entry.value) <= 20_000, "the dead letter itself fits"
    letter = DeadLetter.model_validate_json(letter_entry.value)
    assert letter.reason.startswith("task.failed of ")
    assert "bytes is larger than Kafka takes (max_record_bytes 20000)" in letter.reason
    assert re.search(r"; raw cut to its first 2500 of \d+ characters$", letter.reason)
    assert letter.raw.startswith('{"version":1,"cluster":"prod","task_id":"child"')
    assert (taken.received, taken.invalid) == (2, 1)


def test_a_huge_invalid_event_is_cut_to_fit_too(loop: asyncio.AbstractEventLoop) -> None:
    taken = Intake("prod", "fg.events", "fg.dlq", EventBuffer(10, loop), max_record_bytes=20_000)
    taken.on_event({"type": "task-failed", "timestamp": T0, "traceback": "\x00" * 100_000})
    (entry,) = drain(taken.buffer)
    assert len(entry.value) <= 20_000
    letter = DeadLetter.model_validate_json(entry.value)
    assert "task-failed without 'uuid'" in letter.reason
    assert "raw cut to its first 2500 of" in letter.reason
    assert len(letter.raw) == 2500


def test_an_event_at_the_limit_is_published(loop: asyncio.AbstractEventLoop) -> None:
    taken = Intake("prod", "fg.events", "fg.dlq", EventBuffer(10, loop), max_record_bytes=20_000)
    small = translate(ev.failed("t", T0, exception="x"), "prod")
    assert small is not None
    padding = 20_000 - len(small.__pydantic_serializer__.to_json(small))
    taken.on_event(ev.failed("t", T0, exception="x" * (1 + padding)))
    taken.on_event(ev.failed("t", T0, exception="x" * (2 + padding)))
    assert [e.kind for e in drain(taken.buffer)] == ["task.failed", "dlq"]
