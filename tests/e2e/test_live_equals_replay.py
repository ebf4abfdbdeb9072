"""Live decides what replay decides: the differential test, kept forever.

Every recorded Celery stream in ``tests/data/streams/`` (each as a cluster of its own) and a
generated mixed stream (many chains, Celery's own retries, manual retries of retries that run
out of budget, a SIGKILLed worker's orphans, a warm shutdown within and past its grace, a
breaker that opens and closes, run-time thresholds) go through real ``flowguard worker``
processes on the real broker, produced as the bridge produces them (its keys, its encoding)
and paced in real time, every timestamp moved to now, and through the engine ``flowguard
replay`` runs, with the same settings. The executions must be the same: the same ids, the
same first record, the same resolutions (a delayed retry sent or skipped, an execution skipped
and why), apart from the fields ``docs/worker.md`` lists as live by nature.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from flowguard.celery_wire.events import parse_line
from flowguard.control.kafka_admin import create_topics
from flowguard.control.store import WorkflowStore
from flowguard.engine.core import Engine, EngineConfig
from flowguard.engine.documents import parse_workflow
from flowguard.engine.fingerprint import fingerprint
from flowguard.engine.matching import Published
from flowguard.errors import KafkaUnavailable
from tests.e2e.conftest import flowguard_worker, stays
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import TopicReader, tail
from topics.events import Event
from topics.keys import RootMemory, record_key

STREAMS = Path(__file__).resolve().parents[1] / "data" / "streams"
GRACE_SECONDS = 3.0
#: Everything (grace, delays, heartbeat expiry) is due within this long after the last event.
SETTLE_SECONDS = 12.0
#: The generated stream's app.fails failures (ConnectionError('0') ... ('9')): one group.
FAILS_GROUP = fingerprint("app.fails", "ConnectionError", "0")


def workflows(hook: str) -> list[dict[str, Any]]:
    """Every trigger and action kind, budgets, a breaker that opens, scoped by cluster."""
    return [
        {
            "name": "Retry failures",
            "trigger": {"event": "task.failed"},
            "actions": [
                {"type": "retry", "delay_seconds": 1, "max_attempts": 2,
                 "exponential_backoff": True},
            ],
        },
        {
            "name": "Tell on failures",
            "trigger": {"event": "task.failed", "conditions": {"cluster": "mixed"}},
            "action": {"type": "webhook", "url": hook, "method": "POST"},
            "circuit_breaker": {"max_executions": 3, "time_window_seconds": 4},
        },
        {
            "name": "Recover orphans",
            "trigger": {"event": "task.orphaned"},
            "actions": [
                {"type": "retry", "delay_seconds": 0, "max_attempts": 1},
                {"type": "webhook", "url": hook},
            ],
        },
        {
            "name": "Worker offline",
            "trigger": {"event": "worker.offline"},
            "action": {"type": "webhook", "url": hook},
        },
        {
            "name": "Too slow",
            "trigger": {"event": "task.execution_time_exceeded", "threshold_seconds": 2},
            "action": {"type": "webhook", "url": hook},
        },
        {
            "name": "Stuck",
            "trigger": {"event": "task.stuck", "threshold_seconds": 1.5},
            "action": {"type": "webhook", "url": hook},
        },
        {
            "name": "Started twice",
            "trigger": {"event": "task.duplicate_start"},
            "action": {"type": "webhook", "url": hook},
        },
        {
            "name": "Never retry one group",
            "trigger": {"event": "task.failed", "conditions": {"fingerprint": FAILS_GROUP}},
            "action": {"type": "retry", "delay_seconds": 0, "never_retry": [FAILS_GROUP]},
        },
    ]  # fmt: skip


def recorded(path: Path) -> list[Event]:
    events = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            event = parse_line(orjson.loads(line), path.stem)
            if event is not None:
                events.append(event)
    return events


def generated(cluster: str = "mixed") -> list[Event]:
    """A mixed stream, in Celery's raw shapes, with its own clock from 0."""
    raw: list[dict[str, Any]] = []

    def task(kind: str, ts: float, uuid: str, host: str, **fields: Any) -> None:
        raw.append({"type": kind, "uuid": uuid, "timestamp": ts, "hostname": host, **fields})

    def beats(host: str, start: float, end: float, offline: bool = False) -> None:
        raw.append({"type": "worker-online", "hostname": host, "timestamp": start, "freq": 1.0})
        t = start + 1.0
        while t < end:
            raw.append({"type": "worker-heartbeat", "hostname": host, "timestamp": t,
                        "freq": 1.0, "active": 1})  # fmt: skip
            t += 1.0
        if offline:
            raw.append({"type": "worker-offline", "hostname": host, "timestamp": end})

    beats("steady@h", 0.0, 16.0)
    beats("killed@h", 0.0, 5.0)  # its heartbeats stop: SIGKILL
    beats("warm@h", 0.0, 6.0, offline=True)  # a warm shutdown at 6.0
    spec = {"args": "(1,)", "kwargs": "{}", "retries": 0}
    # Failures spaced 0.5 s apart on separate chains: the breaker (3 in 4 s) opens and closes.
    for i in range(10):
        t, uid = 0.5 + 0.5 * i, f"f{i}"
        task("task-received", t, uid, "steady@h", name="app.fails", root_id=uid, **spec)
        task("task-started", t + 0.05, uid, "steady@h")
        task("task-failed", t + 0.1, uid, "steady@h", exception=f"ConnectionError('{i}')")
    # One chain failed by hand three times (retries of retries): the budget runs out.
    for n, t in enumerate((1.2, 3.4, 6.6)):
        uid = "m0" if n == 0 else f"m{n}"
        parent = {} if n == 0 else {"parent_id": f"m{n - 1}" if n > 1 else "m0"}
        task("task-received", t, uid, "steady@h", name="app.manual", root_id="m0", **spec,
             **parent)  # fmt: skip
        task("task-started", t + 0.05, uid, "steady@h")
        task("task-failed", t + 0.1, uid, "steady@h", exception="TimeoutError()")
    # Celery's own retries (same id, retries=n), then success: one failure decided, then the
    # chain recovers before its delayed retry is due.
    task("task-received", 2.0, "c0", "steady@h", name="app.celery_retry", root_id="c0", **spec)
    task("task-started", 2.05, "c0", "steady@h")
    task("task-retried", 2.1, "c0", "steady@h", exception="IOError()")
    task("task-received", 2.3, "c0", "steady@h", name="app.celery_retry", root_id="c0",
         args="(1,)", kwargs="{}", retries=1)  # fmt: skip
    task("task-started", 2.35, "c0", "steady@h")
    task("task-failed", 2.4, "c0", "steady@h", exception="IOError('again')")
    task("task-received", 2.6, "c1", "steady@h", name="app.celery_retry", root_id="c0",
         parent_id="c0", **spec)  # fmt: skip
    task("task-started", 2.65, "c1", "steady@h")
    task("task-succeeded", 2.9, "c1", "steady@h", runtime=0.25)
    # A task running on the worker that is SIGKILLed: orphaned once its heartbeats expire.
    task("task-received", 1.0, "k0", "killed@h", name="app.long", root_id="k0", **spec)
    task("task-started", 1.05, "k0", "killed@h")
    # The warm shutdown: one task finishes within the grace, one is still running after it.
    for uid, done in (("w0", 7.0), ("w1", None)):
        task("task-received", 1.5, uid, "warm@h", name="app.long", root_id=uid, **spec)
        task("task-started", 1.55, uid, "warm@h")
        if done is not None:
            task("task-succeeded", done, uid, "warm@h", runtime=done - 1.55)
    # A slow task that passes its 2 s threshold and one that finishes before it.
    task("task-received", 8.0, "s0", "steady@h", name="app.slow", root_id="s0", **spec)
    task("task-started", 8.05, "s0", "steady@h")
    task("task-succeeded", 11.0, "s0", "steady@h", runtime=2.95)
    task("task-received", 8.5, "s1", "steady@h", name="app.slow", root_id="s1", **spec)
    task("task-started", 8.55, "s1", "steady@h")
    task("task-succeeded", 9.5, "s1", "steady@h", runtime=0.95)
    raw.sort(key=lambda r: r["timestamp"])
    events = [parse_line(r, cluster) for r in raw]
    return [e for e in events if e is not None]


def rebased(streams: list[list[Event]], start: float) -> list[Event]:
    """All streams from ``start`` on, each keeping its own spacing, merged in time order."""
    merged = []
    for events in streams:
        first = min(e.timestamp for e in events)
        merged += [e.model_copy(update={"timestamp": e.timestamp - first + start}) for e in events]
    merged.sort(key=lambda e: e.timestamp)
    return merged


def clock_tick(at: float) -> Event:
    """An event that moves replay's clock past every deadline (the live app's is the wall's)."""
    [event] = [e for e in generated("clock") if e.kind == "worker.online"][:1]
    # A heartbeat interval of an hour: the clock's own worker never goes silent in the test.
    return event.model_copy(update={"timestamp": at, "hostname": "clock@h", "freq": 3600.0})


async def produce_paced(kafka: str, topic: str, events: list[Event]) -> None:
    """Produce each event as the bridge would (its key, its JSON) when the wall clock reaches
    its timestamp: pacing a simulated cluster, not waiting for anything."""
    roots = RootMemory()
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            ahead = event.timestamp - time.time()
            if ahead > 0:
                await asyncio.sleep(ahead)  # pacing the simulated cluster
            key = record_key(event, roots).encode()
            await producer.send(topic, event.__pydantic_serializer__.to_json(event), key=key)
        await producer.flush()
    finally:
        await producer.stop()


ACTION_STATUS = {
    "planned": "decided", "scheduled": "decided", "sent": "decided", "stranded": "decided",
    "succeeded": "decided", "failed": "decided", "skipped": "skipped", "cancelled": "cancelled",
}  # fmt: skip


def decision(record: dict[str, Any]) -> dict[str, Any]:
    """A first record without what is live by nature (docs/worker.md)."""
    view = {k: v for k, v in record.items() if k not in ("recorded_at", "dry_run")}
    # Which of two triggers that came within milliseconds on different partitions the breaker
    # counted first is live by nature (docs/worker.md): counts are compared per workflow.
    view["circuit_breaker"] = {**record["circuit_breaker"], "count": "counted"}
    view["actions"] = [
        {**a, "status": ACTION_STATUS[a["status"]] if a["status"] != "failed" else "failed"}
        for a in record["actions"]
    ]
    return view


def resolutions(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """What the core decided after the first record: retries skipped, executions cancelled."""
    found = {
        (a["action_id"], ACTION_STATUS[a["status"]])
        for r in records if r["seq"] > 0 for a in r["actions"]
        if ACTION_STATUS[a["status"]] in ("skipped", "cancelled")
    }  # fmt: skip
    found |= {("execution", f"{r['outcome']}:{r['reason']}") for r in records if r["reason"]}
    return sorted(found)


def by_execution(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        grouped[record["execution_id"]].append(record)
    return {eid: sorted(rs, key=lambda r: r["seq"]) for eid, rs in grouped.items()}


def first_difference(
    live: dict[str, list[dict[str, Any]]], replay: dict[str, list[dict[str, Any]]]
) -> str | None:
    for eid in sorted(set(live) | set(replay), key=lambda e: _order(e, live, replay)):
        if eid not in live:
            return f"replay decided an execution the live app did not:\n{_show(replay[eid][0])}"
        if eid not in replay:
            return f"the live app decided an execution replay did not:\n{_show(live[eid][0])}"
        a, b = decision(live[eid][0]), decision(replay[eid][0])
        if a != b:
            return f"first records differ:\nlive   {_show(a)}\nreplay {_show(b)}"
        if resolutions(live[eid]) != resolutions(replay[eid]):
            return (
                f"execution {eid} resolved differently:\nlive   {resolutions(live[eid])}\n"
                f"replay {resolutions(replay[eid])}"
            )
    return _counts_differ(live, replay)


def _counts_differ(
    live: dict[str, list[dict[str, Any]]], replay: dict[str, list[dict[str, Any]]]
) -> str | None:
    """Each workflow's breaker counted the same executions: the same counts, in any order."""

    def counts(source: dict[str, list[dict[str, Any]]]) -> dict[str, list[int]]:
        found: dict[str, list[int]] = defaultdict(list)
        for records in source.values():
            first = records[0]
            found[first["workflow"]["id"]].append(first["circuit_breaker"]["count"])
        return {wf: sorted(c) for wf, c in found.items()}

    a, b = counts(live), counts(replay)
    for workflow in sorted(a):
        if a[workflow] != b.get(workflow):
            return f"{workflow}: breaker counts live {a[workflow]} != replay {b.get(workflow)}"
    return None


def _order(eid: str, *sources: dict[str, list[dict[str, Any]]]) -> tuple[str, str]:
    record = next(s[eid][0] for s in sources if eid in s)
    return record["trigger"]["at"], eid


def _show(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


@pytest.mark.integration
def test_the_live_app_decides_exactly_what_replay_decides(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka, prefix = kafka_bootstrap, topic_prefix
    monkeypatch.setenv("FLOWGUARD_OFFLINE_GRACE_SECONDS", str(GRACE_SECONDS))
    asyncio.run(create_topics(kafka, prefix, 30))
    with RecordingServer() as hooks:
        definitions = workflows(hooks.url_for("/hook"))

        async def save() -> list[Published]:
            async with WorkflowStore(kafka, prefix) as store:
                saved = [await store.save(d, saved_by="test") for d in definitions]
            return [
                Published.of(parse_workflow(v.definition, source="test"), v.workflow_version)
                for v in saved
                if v is not None
            ]

        # A topic just created may not be in every answer yet: retry until the store sees it.
        published = wait_until(lambda: _try(save), timeout_seconds=30, what="workflows saved")
        workers = [flowguard_worker(tmp_path, kafka, prefix, name=f"fg{i}").start() for i in (1, 2)]
        try:
            for worker in workers:
                worker.wait_for_log("workflows loaded from", timeout=90)
            streams = [recorded(path) for path in sorted(STREAMS.glob("*.jsonl"))]
            events = rebased([*streams, generated()], start=time.time() + 2.0)
            end = max(e.timestamp for e in events) + SETTLE_SECONDS
            events.append(clock_tick(end))

            engine = Engine(published, EngineConfig(offline_grace_seconds=GRACE_SECONDS))
            expected: list[dict[str, Any]] = []
            for event in events:
                out = engine.feed(event)
                expected += [orjson.loads(r.to_json()) for r in out.records]
            replay = by_execution(expected)
            assert len(replay) >= 40, f"the streams decide too little to compare: {len(replay)}"
            # The redelivered and the prefetched task of the recorded streams fire these.
            fired = {records[0]["workflow"]["id"] for records in replay.values()}
            assert {"stuck", "started-twice"} <= fired, fired

            asyncio.run(produce_paced(kafka, f"{prefix}.events", events))
            log = TopicReader(kafka, f"{prefix}.execution-log")
            wait_until(
                lambda: set(replay) <= set(by_execution(log.poll())),
                timeout_seconds=60, what=f"the live app's executions (replay has {len(replay)})",
            )  # fmt: skip
            # Nothing more comes: every deadline has passed on the wall clock too.
            stays(
                lambda: [r for r in log.poll() if r["execution_id"] not in replay], 3.0,
                what="executions replay did not decide",
            )  # fmt: skip
            difference = first_difference(by_execution(log.poll()), replay)
            assert difference is None, difference
        except BaseException:
            for worker in workers:
                print(f"--- {worker.name} log (last 80 lines):\n{tail(worker.log_path, 80)}")
            raise
        finally:
            for worker in workers:
                worker.kill()


def _try(save: Callable[[], Coroutine[Any, Any, list[Published]]]) -> list[Published] | None:
    try:
        return asyncio.run(save())
    except KafkaUnavailable:
        return None


def test_the_streams_exercise_every_rule() -> None:
    """The differential test is only as strong as what its streams make happen."""
    hook = "http://127.0.0.1:9/hook"
    published = [Published.of(parse_workflow(d, source="test"), 1) for d in workflows(hook)]
    streams = [recorded(path) for path in sorted(STREAMS.glob("*.jsonl"))]
    events = rebased([*streams, generated()], start=1_000.0)
    events.append(clock_tick(max(e.timestamp for e in events) + SETTLE_SECONDS))
    engine = Engine(published, EngineConfig(offline_grace_seconds=GRACE_SECONDS))
    records = [r for e in events for r in engine.feed(e).records]
    events_fired = {r.trigger.event for r in records}
    assert events_fired == {
        "task.failed", "task.orphaned", "worker.offline", "task.execution_time_exceeded",
        "task.stuck", "task.duplicate_start",
    }  # fmt: skip
    reasons = {r.reason for r in records}
    assert {"circuit_open", "max_attempts_reached", "recovered"} <= reasons
    transitions = {r.circuit_breaker.transition for r in records}
    assert {"opened", "closed"} <= transitions
    assert any(r.seq == 1 and r.actions[0].status == "planned" for r in records), "a due retry"
    never = [r for r in records if r.workflow.id == "never-retry-one-group"]
    assert len(never) == 10, "the fingerprint condition matched the group"
    assert all(r.actions[0].detail.startswith("never_retry:") for r in never)
