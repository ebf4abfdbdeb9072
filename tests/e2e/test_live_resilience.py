"""The live app under crashes, restarts and workflow changes, end to end with real parts only.

- Two ``flowguard worker`` processes share the group; the one holding the workflow's deciding
  stage, retries pending in its chains, a partition it never committed and the Celery worker's
  liveness is SIGKILLed mid-stream: the other takes over, every trigger is executed exactly
  once, and the pause is not mistaken for the Celery worker going offline.
- A worker SIGKILLed and replaced while a 30 s delayed retry waits: the retry still goes
  out once, on time.
- A workflow saved, disabled, enabled and deleted while failures stream in: each change takes
  effect within 1 s of returning.

A SIGKILLed consumer leaves the group only when its session times out: 10 s by default
(``FLOWGUARD_SESSION_TIMEOUT_SECONDS``), and 6 s here, the broker's minimum.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from celery import Celery

from flowguard.control.store import WorkflowStore
from flowguard.demo.celery_app import recorded_calls
from flowguard.live.app import partition_of
from tests.e2e.conftest import CLUSTER, Stack, stays
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import Process, TopicReader
from topics.record import from_iso
from topics.registry import COMMAND_RESULTS, EVENTS, SCHEDULED, TRIGGERS
from topics.workflows import WorkflowVersion

log = logging.getLogger(__name__)

FLAKY = "demo.tasks.flaky_network"
#: Long enough that retries are still pending in the dying worker's chains when it is killed.
RETRY_DELAY_SECONDS = 3
#: The demo Celery worker the stack runs (``-n w1@flowguard``); its events are keyed by it.
CELERY_WORKER = "w1@flowguard"
SESSION_TIMEOUT_SECONDS = 6


def retry_workflow(workflow_id: str, delay_seconds: float, max_attempts: int = 3) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": f"Retry network errors ({workflow_id})",
        "trigger": {
            "event": "task.failed",
            "conditions": {
                "task_name_pattern": "demo.tasks.flaky_*",
                "error_pattern": "Connection*",
            },
        },
        "actions": [
            {"type": "retry", "delay_seconds": delay_seconds, "max_attempts": max_attempts}
        ],
        "circuit_breaker": {"max_executions": 1000, "time_window_seconds": 60},
    }


@pytest.fixture
def group(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Stack:
    """The stack, its flowguard workers leaving the group 6 s after a SIGKILL."""
    monkeypatch.setenv("FLOWGUARD_SESSION_TIMEOUT_SECONDS", str(SESSION_TIMEOUT_SECONDS))
    stack: Stack = request.getfixturevalue("stack")
    return stack


# -- reading what the processes did -------------------------------------------------------------

_ASSIGNED = "Setting newly assigned partitions"


def assigned(proc: Process, topic: str) -> set[int] | None:
    """The partitions of ``topic`` in the process's latest assignment (Faust logs it as a table)."""
    text = proc.log()
    start = text.rfind(_ASSIGNED)
    if start < 0:
        return None
    row = re.search(rf"\|\s*{re.escape(topic)}\s*\|\s*\{{([^}}]*)\}}", text[start:])
    if row is None:
        return set()
    partitions: set[int] = set()
    for part in row.group(1).split(","):
        low, _, high = part.strip().partition("-")
        partitions.update(range(int(low), int(high or low) + 1))
    return partitions


def ready(proc: Process) -> bool:
    """Recovered after its latest assignment and processing again."""
    text = proc.log()
    return 0 <= text.rfind(_ASSIGNED) < text.rfind("Worker ready")


def chain_partition(key: str) -> int:
    """The events partition (and so the flowguard worker) of a root task's chain or a worker."""
    return partition_of(f"{CLUSTER}/{key}".encode(), EVENTS.partitions)


def executions_by_task(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for record in records:
        found[record["task"]["id"]].add(record["execution_id"])
    return found


def sent(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Execution id -> its record whose retry went out."""
    return {
        r["execution_id"]: r
        for r in records
        if r["actions"] and r["actions"][0]["status"] == "sent"
    }


def task_events(reader: TopicReader, kind: str) -> dict[str, dict[str, Any]]:
    """Task id -> its latest event of ``kind`` on ``<prefix>.events``."""
    return {e["task_id"]: e for e in reader.poll() if e.get("kind") == kind}


def last_offset(
    stack: Stack, topic: str, match: Callable[[dict[str, Any]], bool]
) -> tuple[str, int, int]:
    """(topic, partition, offset) of the last record on ``topic`` that ``match`` picks."""
    reader = TopicReader(stack.kafka, topic)
    reader.poll()
    found = [(topic, p, o) for _, value, p, o in reader.records if match(value)]
    assert found, f"nothing on {topic} matched"
    return found[-1]


def committed_past(stack: Stack, offsets: list[tuple[str, int, int]]) -> bool:
    """The flowguard group has committed past each (topic, partition, offset)."""

    async def committed() -> dict[TopicPartition, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka)
        await admin.start()
        try:
            tps = [TopicPartition(t, p) for t, p, _ in offsets]
            found = await admin.list_consumer_group_offsets(f"{stack.prefix}-app", partitions=tps)
        finally:
            await admin.close()
        return {tp: meta.offset for tp, meta in found.items()}

    positions = asyncio.run(committed())
    return all(positions.get(TopicPartition(t, p), -1) > o for t, p, o in offsets)


#: What a stream sends as its n-th task: (task id, task name, args, kwargs).
TaskCall = tuple[str, str, tuple[Any, ...], dict[str, Any]]


class FailureStream:
    """Sends one task every ``interval_seconds`` from a thread, until stopped or ``limit``."""

    def __init__(
        self,
        client: Celery,
        make: Callable[[int], TaskCall],
        *,
        interval_seconds: float,
        limit: int | None = None,
    ) -> None:
        self.client, self.make = client, make
        self.interval_seconds, self.limit = interval_seconds, limit
        self.sent: list[tuple[str, float]] = []  # (task id, wall clock when sent)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failure-stream", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set() and (self.limit is None or n < self.limit):
            task_id, name, args, kwargs = self.make(n)
            self.client.send_task(name, args, kwargs, task_id=task_id)
            self.sent.append((task_id, time.time()))
            n += 1
            self._stop.wait(self.interval_seconds)  # pacing: the stream's rate, not a sync point

    def __enter__(self) -> FailureStream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def finish(self, timeout_seconds: float) -> None:
        """Wait for a stream with a ``limit`` to have sent all of it."""
        self._thread.join(timeout_seconds)
        assert not self._thread.is_alive(), f"the stream did not finish in {timeout_seconds:g}s"

    @property
    def task_ids(self) -> list[str]:
        return [task_id for task_id, _ in self.sent]


def late_effect(
    stack: Stack, workflow_id: str, originals: list[str], runs: int, slack: RecordingServer
) -> str | None:
    """What the failover test must not see once every trigger ran once, or None."""
    found = stack.records(workflow_id)
    per_task = executions_by_task(found)
    if sorted(per_task) != sorted(originals) or any(len(e) != 1 for e in per_task.values()):
        return "a second execution of a trigger"
    if len(sent(found)) != len(originals):
        return "a second retry sent"
    if len(recorded_calls(stack.calls)) != runs:
        return "another run on the Celery worker"
    if stack.records("celery-worker-offline") or slack.requests("/offline"):
        return "an offline alarm"
    return None


# -- 1. failover under load -----------------------------------------------------------------------


def test_a_worker_killed_mid_stream_is_taken_over_and_every_trigger_runs_once(
    group: Stack, slack: RecordingServer
) -> None:
    stack = group
    procs = (stack.flowguard, stack.another_flowguard("flowguard-b"))
    triggers = TRIGGERS.name(stack.prefix)
    everything = set(range(TRIGGERS.partitions))

    def split() -> tuple[set[int], set[int]] | None:
        a, b = (assigned(proc, triggers) for proc in procs)
        if not (a and b and all(ready(proc) for proc in procs)):
            return None
        return (a, b) if not a & b and a | b == everything else None

    shares = wait_until(split, timeout_seconds=60, what="the two workers to split the partitions")
    # Faust gives a worker the same partition numbers of every co-partitioned topic. The one to
    # die holds the Celery worker's liveness (its heartbeats go on while the partition waits for
    # the survivor) and the workflow's deciding stage (breaker, executions).
    doomed = 0 if chain_partition(CELERY_WORKER) in shares[0] else 1
    dying, survivor, mine = procs[doomed], procs[1 - doomed], shares[doomed]
    workflow_id = next(
        f"failover-{i}"
        for i in range(1000)
        if partition_of(f"failover-{i}".encode(), TRIGGERS.partitions) in mine
    )
    offline = {
        "id": "celery-worker-offline",
        "name": "Celery worker offline",
        "trigger": {"event": "worker.offline"},
        "actions": [{"type": "slack", "webhook_url": slack.url_for("/offline")}],
    }
    stack.apply(retry_workflow(workflow_id, delay_seconds=RETRY_DELAY_SECONDS), offline)
    for proc in procs:
        proc.wait_for_log(f"workflow {workflow_id} version 1 enabled", timeout=10)

    # One events partition of the dying worker stays unused until just before the kill, so the
    # survivor takes it over with records on it and no committed offset.
    events_reader = TopicReader(stack.kafka, EVENTS.name(stack.prefix))
    events_reader.poll()
    used = {partition for _, _, partition, _ in events_reader.records}
    unused = mine - used - {chain_partition(CELERY_WORKER)}
    assert unused, f"every events partition of the dying worker has records already: {used}"
    fresh = min(unused)
    ids = [t for t in (f"t-{n:03d}" for n in range(400)) if chain_partition(t) != fresh][:40]
    last = next(t for t in (f"last-{n}" for n in range(400)) if chain_partition(t) == fresh)

    def failing(n: int) -> TaskCall:
        return ids[n], FLAKY, (n,), {"fail_times": 1, "key": ids[n]}

    def held_by_dying() -> list[str]:
        """Tasks whose delayed retry waits in a chain on the worker about to die."""
        records = stack.records(workflow_id)
        gone = {r["task"]["id"] for r in sent(records).values()}
        decided = {r["task"]["id"] for r in records} - gone
        if len(decided) + len(gone) < 5:
            return []
        return sorted(t for t in decided if chain_partition(t) in mine)

    with FailureStream(stack.client, failing, interval_seconds=0.1, limit=40) as stream:
        pending = wait_until(held_by_dying, timeout_seconds=30, what="retries pending on it")
        stack.client.send_task(FLAKY, (999,), {"fail_times": 1, "key": last}, task_id=last)
        dying.kill()
        killed_at, sent_before_kill = time.time(), len(stream.sent)
        stream.finish(30)
    originals = [*stream.task_ids, last]
    assert len(originals) == 41
    assert sent_before_kill < 40, "the worker was killed after the stream had ended"
    events_reader.wait_for(
        lambda _: last in task_events(events_reader, "task.failed"), timeout=10,
        what=f"{last}'s failure on the events topic",
    )  # fmt: skip
    fresh_tp = (EVENTS.name(stack.prefix), fresh, -1)
    assert not committed_past(stack, [fresh_tp]), f"events partition {fresh} was committed"

    def runs_by_task() -> dict[str, list[dict[str, Any]]]:
        runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in recorded_calls(stack.calls):
            runs[call["root_id"] or call["task_id"]].append(call)
        return runs

    def all_retried() -> dict[str, list[dict[str, Any]]] | None:
        runs = runs_by_task()
        return runs if all(len(runs[t]) >= 2 for t in originals) else None

    try:
        runs = wait_until(all_retried, timeout_seconds=30, what="a retry of every task to run")
    except AssertionError as exc:
        runs = runs_by_task()
        missing = [t for t in originals if len(runs[t]) < 2]
        raise AssertionError(
            f"{exc}: {len(missing)} never retried: {missing}; their retries were pending on the "
            f"killed worker: {sorted(set(missing) & set(pending))} (pending then: {pending}); "
            f"on the partition it never committed ({fresh}): "
            f"{[t for t in missing if chain_partition(t) == fresh]}"
        ) from None
    log.info("all retried seconds after kill: %s", round(time.time() - killed_at, 2))
    records = stack.log.wait_for(
        lambda _: (r := stack.records(workflow_id)) and len(sent(r)) >= len(originals) and r,
        timeout=30, what="a sent record for every execution",
    )  # fmt: skip
    by_task = executions_by_task(records)
    assert sorted(by_task) == sorted(originals)
    assert {t: len(ids) for t, ids in by_task.items() if len(ids) != 1} == {}
    assert len(sent(records)) == len(originals)
    # The real Celery worker ran each task twice: the failure, and one retry.
    for task_id in originals:
        assert [c["task_id"] == task_id for c in runs[task_id]] == [True, False], task_id
    retry_ids = {r["actions"][0]["retry_task_id"] for r in sent(records).values()}
    assert retry_ids == {runs[t][1]["task_id"] for t in originals}
    results = TopicReader(stack.kafka, COMMAND_RESULTS.name(stack.prefix)).poll()
    done = Counter(r["command_id"] for r in results if r["status"] == "done")
    assert len(done) == len(originals)
    assert max(done.values()) == 1
    # The survivor took over every partition.
    assert assigned(survivor, triggers) == everything
    # The Celery worker never stopped: the pause of its partition is not its absence.
    false_alarms = [r["trigger"] for r in stack.records("celery-worker-offline")]
    assert false_alarms == []
    assert slack.requests("/offline") == []
    # And nothing comes late: no second execution, no second retry sent or run, no false alarm,
    # for as long as another takeover would take.
    runs_now = len(recorded_calls(stack.calls))
    stays(
        lambda: late_effect(stack, workflow_id, originals, runs_now, slack),
        SESSION_TIMEOUT_SECONDS, what="more than one execution or retry per trigger",
    )  # fmt: skip


# -- 2. restart while a delayed retry waits -------------------------------------------------------


def test_a_delayed_retry_survives_a_restart_and_goes_out_once_on_time(group: Stack) -> None:
    stack = group
    stack.apply(retry_workflow("delayed-30", delay_seconds=30, max_attempts=1))
    stack.client.send_task(FLAKY, (7,), {"fail_times": 1, "key": "restart"}, task_id="t-restart")
    [decided] = stack.log.wait_for(
        lambda _: stack.records("delayed-30"), timeout=30, what="the retry to be scheduled"
    )
    [action] = decided["actions"]
    assert action["status"] == "scheduled"
    due = from_iso(decided["trigger"]["at"]) + 30
    assert from_iso(action["due_at"]) == pytest.approx(due, abs=0.001)

    # Everything that led to the retry is committed: the new worker finds it only in the
    # tables it restores from their changelogs, not by reading the inputs again.
    inputs = [
        (EVENTS, lambda v: v.get("kind") == "task.failed" and v["task_id"] == "t-restart"),
        (SCHEDULED, lambda v: v.get("kind") == "retry.scheduled"),
        (TRIGGERS, lambda v: v.get("kind") == "trigger.matched"),
    ]
    offsets = [last_offset(stack, spec.name(stack.prefix), match) for spec, match in inputs]
    wait_until(
        lambda: committed_past(stack, offsets), timeout_seconds=10,
        what=f"the worker to commit {offsets}",
    )  # fmt: skip
    stack.flowguard.kill()
    assert time.time() < due - 20, "the retry was not pending when the worker died"
    stack.another_flowguard("flowguard-restarted")

    wait_until(
        lambda: len(stack.runs(FLAKY)) >= 2, timeout_seconds=due - time.time() + 15,
        what="the delayed retry to run",
    )  # fmt: skip
    original, retry = stack.runs(FLAKY)
    assert (original["task_id"], retry["root_id"]) == ("t-restart", "t-restart")
    events = TopicReader(stack.kafka, EVENTS.name(stack.prefix))
    started = events.wait_for(
        lambda _: task_events(events, "task.started").get(retry["task_id"]),
        timeout=10, what="the retry's task.started event",
    )  # fmt: skip
    failed = task_events(events, "task.failed")["t-restart"]
    assert failed["timestamp"] == pytest.approx(from_iso(decided["trigger"]["at"]), abs=0.001)
    late = started["timestamp"] - due
    log.info("retry seconds after due: %s", round(late, 3))
    assert -0.2 <= late <= 2.0, f"the retry ran {late:+.2f}s from its due time"

    # Once: one execution, one sent record, one command carried out, one retry run.
    records = stack.log.wait_for(
        lambda _: (r := stack.records("delayed-30")) and sent(r) and r,
        timeout=10, what="the sent record",
    )  # fmt: skip
    assert {r["execution_id"] for r in records} == {decided["execution_id"]}
    assert [r["actions"][0]["retry_task_id"] for r in sent(records).values()] == [retry["task_id"]]
    results = TopicReader(stack.kafka, COMMAND_RESULTS.name(stack.prefix)).wait_for(
        lambda r: r, timeout=10, what="the command result"
    )
    assert [r["status"] for r in results if r["status"] == "done"] == ["done"]
    succeeded = events.wait_for(
        lambda _: task_events(events, "task.succeeded").get(retry["task_id"]),
        timeout=10, what="the retry to succeed",
    )  # fmt: skip
    assert succeeded
    assert len(stack.runs(FLAKY)) == 2


# -- 3. a workflow applied while the stream runs -------------------------------------------------


def always_failing_workflow(workflow_id: str) -> dict[str, Any]:
    """Matches every failure of the stream; its retry is an hour out, so nothing is re-run."""
    return {
        "id": workflow_id,
        "name": workflow_id,
        "trigger": {
            "event": "task.failed",
            "conditions": {"task_name_pattern": "demo.tasks.always_fails"},
        },
        "actions": [{"type": "retry", "delay_seconds": 3600, "max_attempts": 1}],
        "circuit_breaker": {"max_executions": 1000, "time_window_seconds": 60},
    }


#: A change to the workflow store, made through an open store: (workflow version now live or
#: None when the change deleted it).
Change = Callable[[WorkflowStore], Awaitable[WorkflowVersion | None]]


def change_timed(stack: Stack, change: Change) -> tuple[float, float, int | None]:
    """Make ``change``; the wall clock when it was begun and when it returned, and the version
    it made live."""

    async def run() -> tuple[float, float, int | None]:
        async with WorkflowStore(stack.kafka, stack.prefix) as store:
            begun_at = time.time()
            made = await change(store)
            return begun_at, time.time(), None if made is None else made.workflow_version

    return asyncio.run(run())


def stream_past(stream: FailureStream, at: float, *, what: str) -> None:
    wait_until(lambda: stream.sent and stream.sent[-1][1] > at, timeout_seconds=10, what=what)


LIVE = "applied-live"
#: (what, whether the workflow runs after it, the change): the order the test makes them in.
CHANGES: list[tuple[str, bool, Change]] = [
    ("saved", True, lambda store: store.save(always_failing_workflow(LIVE), saved_by="test")),
    ("disabled", False, lambda store: store.set_enabled(LIVE, False, saved_by="test")),
    ("enabled", True, lambda store: store.set_enabled(LIVE, True, saved_by="test")),
    ("deleted", False, lambda store: store.delete(LIVE, saved_by="test")),
]


def test_workflow_changes_while_failures_stream_take_effect_within_a_second(
    stack: Stack,
) -> None:
    """Saved, disabled, enabled and deleted while failures stream in: every failure produced
    to Kafka a second or more after the change returned is handled the new way."""
    stack.apply(always_failing_workflow("already-there"))
    stack.flowguard.wait_for_log("workflow already-there version 1 enabled", timeout=10)

    def failing(n: int) -> TaskCall:
        return f"f-{n:03d}", "demo.tasks.always_fails", (f"c{n}",), {}

    # (what, runs after it, begun at, returned at, version made live)
    phases: list[tuple[str, bool, float, float, int | None]] = []
    with FailureStream(stack.client, failing, interval_seconds=0.1) as stream:
        # The stream runs through the app: the workflow already there executes on it.
        stack.log.wait_for(
            lambda _: len(stack.records("already-there")) >= 5, timeout=30,
            what="the stream to reach the execution log",
        )  # fmt: skip
        for what, runs, change in CHANGES:
            begun_at, returned_at, version = change_timed(stack, change)
            phases.append((what, runs, begun_at, returned_at, version))
            stream_past(stream, returned_at + 3.5, what=f"the stream to go on 3.5 s past {what}")
    # When each failure was produced to Kafka (by the bridge), and that the app has handled
    # them all: the workflow there all along executed every one.
    events = TopicReader(stack.kafka, EVENTS.name(stack.prefix))
    events.wait_for(
        lambda _: task_events(events, "task.failed").keys() >= set(stream.task_ids),
        timeout=20, what="every failure of the stream on the events topic",
    )  # fmt: skip
    produced = {
        value["task_id"]: events.produced_at[partition, offset]
        for _, value, partition, offset in events.records
        if value.get("kind") == "task.failed"
    }
    stack.log.wait_for(
        lambda _: {r["task"]["id"] for r in stack.records("already-there")} >= set(stream.task_ids),
        timeout=30, what="the workflow there all along to execute every failure",
    )  # fmt: skip

    def versions_by_task() -> dict[str, set[int]]:
        found: dict[str, set[int]] = defaultdict(set)
        for record in stack.records(LIVE):
            found[record["task"]["id"]].add(record["workflow"]["version"])
        return found

    # From a second after a change returned to a second before the next one was begun: "within
    # a second" cuts both ways, so a failure produced in the second before the next change may
    # be decided after it is in effect (seen: matched under one version, decided once the next
    # had disabled the workflow).
    ends = [begun - 1.0 for _, _, begun, _, _ in phases[1:]] + [float("inf")]
    windows = [
        (what, runs, version, [t for t in stream.task_ids if at + 1.0 <= produced[t] < end])
        for (what, runs, _, at, version), end in zip(phases, ends, strict=True)
    ]
    assert all(len(tasks) >= 5 for *_, tasks in windows), windows
    quiet = {t for _, runs, _, tasks in windows if not runs for t in tasks}
    # Absence is proved by a bounded wait: the other workflow's records for these failures are
    # on the log already, and any of this one's would be right behind them.
    stays(
        lambda: sorted(quiet & versions_by_task().keys()), 2,
        what="executions of failures produced 1 s or more after a disable or a delete",
    )  # fmt: skip
    executed = versions_by_task()
    for what, runs, version, tasks in windows:
        if runs:
            assert {t: executed.get(t) for t in tasks} == {t: {version} for t in tasks}, what
    for what, runs, _, at, version in phases:
        old = [
            round(produced[t] - at, 3)
            for t in stream.task_ids
            if 0 <= produced[t] - at < 1.0
            and (version not in executed.get(t, set()) if runs else t in executed)
        ]
        log.info("%s: failures produced %s s after it still handled the old way", what, old)
