"""Commands through the bridge: a real retry on a real worker, carried out once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from flowguard.demo.celery_app import recorded_calls
from tests.helpers import wait_until
from tests.processes import (
    TEST_COMMAND_KEY,
    Process,
    TopicReader,
    bridge_process,
    celery_worker,
    free_port,
    private_redis,
    produce,
    start_worker,
)
from topics.commands import RetryCommand, RevokeCommand
from topics.record import iso
from topics.signing import CommandKey, sign

CLUSTER = "cmd-cluster"


def retry_command(command_id: str, task_id: str, **fields: Any) -> RetryCommand:
    """A retry of task ``task_id`` (the root of its chain), due now; ``fields`` give the
    cluster, the task's name, args and kwargs, and whatever else differs."""
    values: dict[str, Any] = {
        "command_id": command_id,
        "execution_id": f"exec-{command_id}",
        "workflow_id": "auto-retry",
        "issued_at": iso(time.time()),
        "task_id": f"{task_id}-retry-{command_id}",
        "original_task_id": task_id,
        "root_id": task_id,
        "parent_id": task_id,
        "attempt": 1,
    }
    return RetryCommand(**{**values, **fields})


def retry_of(task_id: str, command_id: str, **fields: Any) -> RetryCommand:
    """A retry of the demo app's flaky_network (fails once, then succeeds) on ``email``."""
    flaky = {"cluster": CLUSTER, "name": "demo.tasks.flaky_network", "args": "(7,)",
             "kwargs": repr({"fail_times": 1, "key": task_id}), "queue": "email"}  # fmt: skip
    return retry_command(command_id, task_id, **{**flaky, **fields})


def send(kafka: str, topics: str, *commands: RetryCommand | RevokeCommand) -> None:
    """Signed as the flowguard worker signs them (with the key the test bridges have)."""
    key = CommandKey.parse(TEST_COMMAND_KEY)
    produce(
        kafka,
        f"{topics}.commands",
        [(c.cluster.encode(), sign(c, key).model_dump_json().encode()) for c in commands],
    )


def results_for(reader: TopicReader, command_id: str, count: int) -> list[dict[str, Any]]:
    def enough(values: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        mine = [v for v in values if v["command_id"] == command_id]
        return mine if len(mine) >= count else None

    found: list[dict[str, Any]] = reader.wait_for(
        enough, timeout=60, what=f"{count} result(s) for command {command_id}"
    )
    return found


def results_of(
    bridge: Process, kafka: str, topics: str, *commands: RetryCommand
) -> list[dict[str, Any]]:
    """Send ``commands`` to a running bridge: its result for each, in order, once it is still
    alive after them. The bridge is stopped after, whatever happened."""
    results = TopicReader(kafka, f"{topics}.command-results")
    try:
        send(kafka, topics, *commands)
        found = [results_for(results, c.command_id, 1)[0] for c in commands]
        assert bridge.alive()
    finally:
        bridge.stop()
    return found


def start_bridge(tmp: Path, broker: str, kafka: str, topics: str, **settings: str) -> Process:
    bridge = bridge_process(
        tmp, cluster=CLUSTER, broker=broker, kafka=kafka, prefix=topics, **settings
    ).start()
    bridge.wait_for_log("consuming Celery events")
    return bridge


def test_retry_runs_the_task_again_once_across_duplicates_and_restarts(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics, commit_interval_seconds="0")
    calls_db = redis.Redis.from_url(broker)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    try:
        app = Celery("client", broker=broker)
        app.send_task(
            "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "t1"},
            queue="email", task_id="t1",
        )  # fmt: skip
        wait_until(lambda: "flaky_network[t1] raised" in worker.log(), timeout_seconds=30,
                   what="the first run to fail")  # fmt: skip

        # The same command twice: one run.
        command = retry_of("t1", "c1")
        send(kafka_bootstrap, topics, command, command)
        first, second = results_for(results, "c1", 2)
        assert (first["status"], second["status"]) == ("done", "duplicate")
        assert first["cluster"] == CLUSTER
        # The execution it belongs to, for the flowguard worker to settle the retry's status.
        assert (first["workflow_id"], first["execution_id"]) == (
            command.workflow_id, command.execution_id,
        )  # fmt: skip
        assert "sent demo.tasks.flaky_network[t1-retry-c1] on queue email" in first["detail"]
        runs = wait_until(
            lambda: [c for c in recorded_calls(calls_db) if c["task_id"] == "t1-retry-c1"],
            timeout_seconds=30, what="the retry to run",
        )  # fmt: skip
        # Same name, args, kwargs and queue; linked into the chain; the header names the execution.
        [run] = runs
        assert run["name"] == "demo.tasks.flaky_network"
        assert run["args"] == [7]
        assert run["kwargs"] == {"fail_times": 1, "key": "t1"}
        assert run["queue"] == "email"
        assert (run["root_id"], run["parent_id"]) == ("t1", "t1")
        assert run["flowguard_execution_id"] == "exec-c1"
        wait_until(lambda: "flaky_network[t1-retry-c1] succeeded" in worker.log(),
                   timeout_seconds=30, what="the retry to succeed")  # fmt: skip

        # After a restart, the same command once more: still one run.
        bridge.stop()
        bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
        send(kafka_bootstrap, topics, command)
        assert [r["status"] for r in results_for(results, "c1", 3)] == [
            "done", "duplicate", "duplicate",
        ]  # fmt: skip
    finally:
        bridge.stop()
        worker.stop()
    assert [c["task_id"] for c in recorded_calls(calls_db)] == ["t1", "t1-retry-c1"]


def test_a_bridge_killed_before_committing_does_not_run_the_command_twice(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker))
    # Offsets committed once an hour: a kill after sending always comes before the commit.
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics, commit_interval_seconds="3600")
    calls_db = redis.Redis.from_url(broker)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    try:
        send(kafka_bootstrap, topics, retry_of("t2", "c2", kwargs="{'fail_times': 0}"))
        assert results_for(results, "c2", 1)[0]["status"] == "done"
        bridge.kill()
        bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
        # The restarted bridge reads c2 again (never committed) and knows it was done.
        statuses = [r["status"] for r in results_for(results, "c2", 2)]
        assert statuses == ["done", "duplicate"]
        wait_until(lambda: "flaky_network[t2-retry-c2] succeeded" in worker.log(),
                   timeout_seconds=30, what="the retry to succeed")  # fmt: skip
    finally:
        bridge.stop()
        worker.stop()
    assert [c["task_id"] for c in recorded_calls(calls_db)] == ["t2-retry-c2"]


def test_a_bridge_killed_before_it_began_to_send_leaves_the_command_to_the_next(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """Killed while the command's queue is checked (an inspect waiting for workers that do
    not answer), the bridge sent nothing: the restarted one carries the command out. Before
    the claim said ``preparing`` here, it said ``sending`` from the start: the restarted
    bridge answered ``failed: in doubt`` and the retry never ran (a fault trial lost a retry
    so)."""
    claims = redis.Redis.from_url(broker)
    key = f"flowguard:bridge:{CLUSTER}:command:c-prep"
    # No Celery worker yet: the queue check waits its whole inspect timeout.
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics,
                          inspect_timeout_seconds="30")  # fmt: skip
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    worker = None
    try:
        send(kafka_bootstrap, topics, retry_of("t-prep", "c-prep", kwargs="{'fail_times': 0}"))
        wait_until(lambda: claims.get(key), timeout_seconds=30, what="the bridge's claim")
        bridge.kill()
        worker = start_worker(celery_worker(tmp_path, broker))
        bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
        [result] = results_for(results, "c-prep", 1)
        assert result["status"] == "done", result
        wait_until(lambda: "flaky_network[t-prep-retry-c-prep] succeeded" in worker.log(),
                   timeout_seconds=30, what="the retry to succeed")  # fmt: skip
    finally:
        bridge.stop()
        if worker is not None:
            worker.stop()
    assert [c["task_id"] for c in recorded_calls(claims)] == ["t-prep-retry-c-prep"]


def test_commands_for_other_clusters_stale_ones_and_garbage(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    dlq = TopicReader(kafka_bootstrap, f"{topics}.dlq")
    try:
        produce(
            kafka_bootstrap, f"{topics}.commands", [(b"x", b"{not json"), (b"x", b'{"kind": 1}')]
        )
        other = retry_of("t3", "c-other", cluster="elsewhere")
        stale = retry_of("t3", "c-stale", issued_at=iso(time.time() - 7200))
        bad_args = retry_of(
            "t3",
            "c-args",
            args="('cut off...",
        )
        revoke = RevokeCommand(
            command_id="c-revoke", cluster=CLUSTER, issued_at=iso(time.time()) or "",
            task_id="t-never",
        )  # fmt: skip
        send(kafka_bootstrap, topics, other, stale, bad_args, revoke)
        [stale_result] = results_for(results, "c-stale", 1)
        assert stale_result["status"] == "failed"
        assert stale_result["detail"].startswith("stale: issued 7200 s ago")
        [args_result] = results_for(results, "c-args", 1)
        assert args_result["status"] == "failed"
        assert args_result["detail"].startswith("args not recoverable: args were truncated")
        [revoke_result] = results_for(results, "c-revoke", 1)
        assert revoke_result == revoke_result | {"status": "done", "detail": "revoked t-never"}
        letters = dlq.wait_for(
            lambda v: v if len(v) >= 3 else None, timeout=30, what="3 dead letters"
        )
        # The garbage and the stale command are on different partitions: no order between them.
        garbage = [letter for letter in letters if "c-stale" not in letter["reason"]]
        assert sorted(letter["raw"] for letter in garbage) == sorted(["{not json", '{"kind": 1}'])
        assert all(letter["reason"].startswith("command refused: ") for letter in garbage)
        [stale_letter] = [letter for letter in letters if letter not in garbage]
        assert stale_letter["reason"].startswith("command c-stale (command.retry) stale: issued")
        assert all(letter["source"] == "bridge" for letter in letters)
    finally:
        bridge.stop()
    assert not [v for v in results.poll() if v["command_id"] == "c-other"]


Placed = list[tuple[bytes | None, dict[str, Any], int]]


def task_events(reader: TopicReader, *task_ids: str) -> Placed:
    """(key, event, partition) of the given tasks' events, in Kafka's order per partition."""
    reader.poll()
    return [
        (key, value, partition)
        for key, value, partition, _ in reader.records
        if value.get("kind", "").startswith("task.") and value.get("task_id") in task_ids
    ]


def kinds_of(events: Placed, task_id: str) -> list[str]:
    return [value["kind"] for _, value, _ in events if value["task_id"] == task_id]


def until_kind(reader: TopicReader, kind: str, task_id: str, *others: str) -> Placed:
    """Once ``task_id`` has a ``kind`` event in Kafka: its events and those of ``others``."""

    def probe() -> Placed | None:
        found = task_events(reader, task_id, *others)
        return found if kind in kinds_of(found, task_id) else None

    return wait_until(probe, timeout_seconds=60, what=f"{kind} of {task_id} in Kafka")


def test_a_retry_chain_is_keyed_by_its_root_and_lands_in_one_partition(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """The retry is a child (new task id, root_id/parent_id the original): its events, also
    those that do not carry root_id (started, succeeded), are keyed by the root."""
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    try:
        app = Celery("client", broker=broker)
        app.conf.task_send_sent_event = True
        app.send_task(
            "demo.tasks.flaky_network", (7,), {"fail_times": 1, "key": "t-root"},
            queue="email", task_id="t-root",
        )  # fmt: skip
        until_kind(events, "task.failed", "t-root")
        send(kafka_bootstrap, topics, retry_of("t-root", "c-chain"))
        child = "t-root-retry-c-chain"
        found = until_kind(events, "task.succeeded", child, "t-root")
    finally:
        bridge.stop()
        worker.stop()
    # The worker's events, and the bridge's own task.sent of the retry (in any order with them).
    kinds = kinds_of(found, child)
    assert [k for k in kinds if k != "task.sent"] == [
        "task.received", "task.started", "task.succeeded",
    ]  # fmt: skip
    assert kinds.count("task.sent") == 1
    assert kinds_of(found, "t-root")[-1] == "task.failed"
    received = next(v for _, v, _ in found if v["task_id"] == child)
    assert (received["root_id"], received["parent_id"]) == ("t-root", "t-root")
    assert {key for key, _, _ in found} == {f"{CLUSTER}/t-root".encode()}
    assert len({partition for _, _, partition in found}) == 1


def test_revoke_keeps_a_waiting_task_from_running(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    calls_db = redis.Redis.from_url(broker)
    try:
        app = Celery("client", broker=broker)
        # Held by the worker until its ETA: long enough for the command to get there first.
        app.send_task("demo.tasks.add", (1, 2), task_id="t-waiting", countdown=8)
        until_kind(events, "task.received", "t-waiting")  # the worker holds it
        revoke = RevokeCommand(
            command_id="c-revoke-waiting", cluster=CLUSTER, issued_at=iso(time.time()) or "",
            task_id="t-waiting",
        )  # fmt: skip
        send(kafka_bootstrap, topics, revoke)
        [result] = results_for(results, "c-revoke-waiting", 1)
        assert result["status"] == "done"
        worker.wait_for_log("Tasks flagged as revoked: t-waiting", timeout=30)
        # At its ETA the worker discards it and says so: only then is "never ran" decided.
        until_kind(events, "task.revoked", "t-waiting")
    finally:
        bridge.stop()
        worker.stop()
    assert "Discarding revoked task: demo.tasks.add[t-waiting]" in worker.log()
    assert [c for c in recorded_calls(calls_db) if c["task_id"] == "t-waiting"] == []
    assert "task.started" not in kinds_of(task_events(events, "t-waiting"), "t-waiting")


def test_a_retry_not_before_a_time_runs_no_earlier(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics)
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    try:
        not_before = time.time() + 6
        command = retry_of("t-later", "c-later", kwargs="{'fail_times': 0}",
                           not_before=iso(not_before))  # fmt: skip
        send(kafka_bootstrap, topics, command)
        [result] = results_for(results, "c-later", 1)
        assert result["status"] == "done"
        assert time.time() < not_before, "the command was carried out before its time came"
        child = "t-later-retry-c-later"
        found = until_kind(events, "task.started", child)
    finally:
        bridge.stop()
        worker.stop()
    by_kind = {value["kind"]: value for _, value, _ in found}
    assert by_kind["task.received"]["eta"] is not None
    assert by_kind["task.sent"]["eta"] == iso(not_before)  # the bridge's own event of it
    assert by_kind["task.started"]["timestamp"] >= not_before


def test_commands_wait_for_the_dedup_redis_while_events_go_on(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """The dedup Redis is away at start (nothing on its port), then comes up on that port."""
    dedup_port = free_port()
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics,
                          dedup_url=f"redis://127.0.0.1:{dedup_port}/0")  # fmt: skip
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    try:
        send(kafka_bootstrap, topics, retry_of("t-dedup", "c-dedup", kwargs="{'fail_times': 0}"))
        bridge.wait_for_log("dedup Redis", timeout=30)
        app = Celery("client", broker=broker)
        app.send_task("demo.tasks.add", (1, 2), task_id="t-meanwhile")
        until_kind(events, "task.succeeded", "t-meanwhile")  # events go on meanwhile
        assert bridge.alive()
        assert not [r for r in results.poll() if r["command_id"] == "c-dedup"]
        with private_redis(tmp_path, port=dedup_port):
            [result] = results_for(results, "c-dedup", 1)
            bridge.wait_for_log("is back", timeout=30)
    finally:
        bridge.stop()
        worker.stop()
    assert result["status"] == "done"
    lines = [line for line in bridge.log().splitlines() if "flowguard.bridge: dedup Redis" in line]
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0]
    assert "is back" in lines[1]


def dumped_kinds(dump: Path, task_id: str) -> list[str]:
    """The kinds of ``task_id``'s lines in a bridge's ``--dump``, in the file's order: Celery's
    raw events (``type``, ``uuid``) and the bridge's own ``task.sent`` (``kind``, ``task_id``)."""
    kinds = []
    for line in dump.read_text().splitlines():
        event = json.loads(line)
        if (event.get("task_id") or event.get("uuid")) == task_id:
            kinds.append(str(event.get("kind") or event.get("type")).replace("-", "."))
    return kinds


def test_a_retry_that_fails_at_once_has_its_task_sent_ahead_of_its_events(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """On Celery's defaults no task-sent comes from the cluster: the bridge's own for a retry
    is what tells replay the retry's queue, so it must come before everything the retried
    task causes, on Kafka and in ``--dump``, however fast the task fails. It used to be
    published after ``send_task`` returned, by another producer: a retry that failed within
    milliseconds had its failure ahead of its task.sent, and replay decided that failure
    without its queue while the live worker knew it (CI, test_retries_reach_their_queue)."""
    dump = tmp_path / "dump.jsonl"
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics, dump=str(dump))
    events = TopicReader(kafka_bootstrap, f"{topics}.events")
    roots = [f"t-fast-{n}" for n in range(5)]
    children = [f"{root}-retry-c-{root}" for root in roots]
    try:
        app = Celery("client", broker=broker)  # Celery's defaults: no task-sent events
        for root in roots:
            app.send_task("demo.tasks.always_fails", ("c",), queue="email", task_id=root)
        for root in roots:
            until_kind(events, "task.failed", root)
        always_fails = {"name": "demo.tasks.always_fails", "args": "('c',)", "kwargs": "{}"}
        send(kafka_bootstrap, topics,
             *(retry_of(root, f"c-{root}", **always_fails) for root in roots))  # fmt: skip
        for root, child in zip(roots, children, strict=True):
            until_kind(events, "task.failed", child, root)
    finally:
        bridge.stop()
        worker.stop()
    found = task_events(events, *children)
    for child in children:
        assert kinds_of(found, child) == [
            "task.sent", "task.received", "task.started", "task.failed",
        ], child  # fmt: skip
        assert dumped_kinds(dump, child) == [
            "task.sent", "task.received", "task.started", "task.failed",
        ], child  # fmt: skip
