"""Record real Celery event streams: real workers on a real Redis, real tasks that fail.

    .venv/bin/python tests/data/record_streams.py [SCENARIO ...]
    .venv/bin/python tests/data/record_streams.py --timeline [SCENARIO ...]

Each scenario writes tests/data/streams/<name>.jsonl: one raw event dict per
line, exactly as ``app.events.Receiver`` handed it over, in arrival order, key
order kept. What each scenario did is described in tests/data/streams/README.md
(``--timeline`` prints a recorded stream relative to its first event, to write
that description from); the tests assert against that, not against replay output.

Needs ``redis-server`` on PATH. Starts its own Redis on port 6391 and stops it
at the end; workers log to a temporary directory printed at the start.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "streams"
PORT = 6391
BROKER = f"redis://127.0.0.1:{PORT}/0"
os.environ["FLOWGUARD_DEMO_BROKER"] = BROKER
sys.path.insert(0, str(ROOT))

from flowguard.demo import celery_app as demo  # noqa: E402

Event = dict[str, Any]
Probe = Callable[[], bool]
QUEUES = "celery,email,priority-high"
LOGS = Path(tempfile.gettempdir()) / "flowguard-record"


def wait_for(what: str, probe: Probe, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def let_time_pass(seconds: float) -> None:
    """The one deliberate sleep: scenarios where the point is that nothing happens."""
    time.sleep(seconds)


def pattern_subscribers() -> int:
    return int(demo._counter().pubsub_numpat())


class Recorder:
    """Captures every event on the cluster's event exchange, in a thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with demo.app.connection() as conn:
            self._receiver = demo.app.events.Receiver(conn, handlers={"*": self.events.append})
            self._receiver.capture(limit=None, timeout=None, wakeup=True)

    def start(self) -> None:
        wait_for("no receiver left from a previous scenario", lambda: pattern_subscribers() == 0)
        self._thread.start()
        # Events go out by Redis PUBLISH; the receiver hears them once its PSUBSCRIBE is in.
        wait_for("the receiver's subscription", lambda: pattern_subscribers() > 0)

    def stop(self) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the receiver thread did not stop")

    def count(self, kind: str, **fields: Any) -> int:
        return sum(
            1
            for e in list(self.events)
            if e.get("type") == kind and all(e.get(k) == v for k, v in fields.items())
        )

    def has(self, kind: str, **fields: Any) -> bool:
        return self.count(kind, **fields) > 0


def host(worker: str) -> str:
    return f"{worker}@flowguard"


class Cluster:
    """The workers of one scenario: each a process group of its own, logging to LOGS."""

    def __init__(self, rec: Recorder, scenario: str) -> None:
        self.rec = rec
        self.scenario = scenario
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, worker: str, queues: str = QUEUES, env: dict[str, str] | None = None) -> None:
        """Start a worker and wait for its (next) worker-online event."""
        online_before = self.rec.count("worker-online", hostname=host(worker))
        log = LOGS / f"{self.scenario}-{worker}-{online_before}.log"
        self.procs[worker] = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "flowguard.demo.celery_app", "worker"),
                *("-Q", queues, "-c", "2", "--hostname", host(worker)),
                *("-E", "--without-mingle", "--without-gossip", "-l", "info", "-f", str(log)),
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: killpg reaches the pool too
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for(
            f"{worker} online",
            lambda: self.rec.count("worker-online", hostname=host(worker)) > online_before,
        )

    def stop(self, worker: str, *, whole_group: bool = False) -> None:
        """SIGTERM, then wait for the worker-offline event.

        To the main process only, it is Celery's warm shutdown: running tasks
        finish first. To the whole process group (what systemd's default
        ``KillMode=control-group`` does), the pool children die mid-task too.
        """
        offline_before = self.rec.count("worker-offline", hostname=host(worker))
        self._signal(worker, signal.SIGTERM, whole_group=whole_group)
        wait_for(
            f"{worker} offline",
            lambda: self.rec.count("worker-offline", hostname=host(worker)) > offline_before,
        )

    def kill(self, worker: str) -> None:
        """SIGKILL the worker's whole process group: main process and pool children."""
        self._signal(worker, signal.SIGKILL, whole_group=True)

    def stop_all(self) -> None:
        for worker, proc in list(self.procs.items()):
            if proc.poll() is None:
                self.stop(worker)

    def _signal(self, worker: str, sig: int, *, whole_group: bool) -> None:
        proc = self.procs.pop(worker)
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=60)


@contextlib.contextmanager
def recording(name: str) -> Iterator[tuple[Recorder, Cluster]]:
    """Fresh Redis DB, a receiver, the scenario, every worker stopped, then the file."""
    demo._counter().flushdb()
    rec = Recorder()
    rec.start()
    cluster = Cluster(rec, name)
    try:
        yield rec, cluster
        cluster.stop_all()
    finally:
        for worker in list(cluster.procs):
            cluster.kill(worker)
        rec.stop()
    path = OUT / f"{name}.jsonl"
    with path.open("w") as out:
        for event in rec.events:
            out.write(json.dumps(event) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(rec.events)} events, {path.stat().st_size} bytes")


def done(rec: Recorder, *task_ids: str) -> Probe:
    return lambda: all(
        rec.has("task-succeeded", uuid=t) or rec.has("task-failed", uuid=t) for t in task_ids
    )


def basic() -> None:
    with recording("basic") as (rec, cluster):
        cluster.start("w1")
        ids = [
            demo.add.apply_async((2, 3), task_id="basic-add").id,
            demo.always_fails.apply_async(("c-1",), task_id="basic-always-fails").id,
            demo.process_payment.apply_async((100, "card-4242"), task_id="basic-payment").id,
            demo.send_email.apply_async(
                ("a@example.com", "hi"), {"reply_to": "b@example.com"}, task_id="basic-email"
            ).id,
            demo.send_email.apply_async(
                ("ops@example.org", "weekly report"), task_id="basic-email-ok"
            ).id,
            demo.add.apply_async((1, 1), queue="priority-high", task_id="basic-priority").id,
            demo.bulk.apply_async((list(range(400)),), task_id="basic-bulk").id,
            demo.greet.apply_async(
                ("Sean O'Brien",), {"punctuation": "?"}, task_id="basic-quote"
            ).id,
        ]
        wait_for("basic tasks", done(rec, *ids))


def celery_retry() -> None:
    with recording("celery_retry") as (rec, cluster):
        cluster.start("w1")
        ids = [
            demo.self_retry.apply_async((1,), task_id="retry-exhausted").id,
            demo.retry_then_succeed.apply_async((7,), task_id="retry-succeeds").id,
            demo.self_retry.apply_async((2,), {"with_exc": False}, task_id="retry-no-exc").id,
        ]
        wait_for("retries", done(rec, *ids))


def flaky_chain() -> None:
    """What a flowguard retry does: same name and args, a new id, root and parent as the chain."""
    with recording("flaky_chain") as (rec, cluster):
        cluster.start("w1")
        args, kwargs = (1001,), {"fail_times": 2, "key": "chain"}
        demo.flaky_network.apply_async(args, kwargs, task_id="chain-1")
        wait_for("chain-1", done(rec, "chain-1"))
        demo.flaky_network.apply_async(
            args, kwargs, task_id="chain-2", root_id="chain-1", parent_id="chain-1"
        )
        wait_for("chain-2", done(rec, "chain-2"))
        demo.flaky_network.apply_async(
            args, kwargs, task_id="chain-3", root_id="chain-1", parent_id="chain-2"
        )
        wait_for("chain-3", done(rec, "chain-3"))


def long_running() -> None:
    with recording("long_running") as (rec, cluster):
        cluster.start("w1")
        demo.slow.apply_async((6,), task_id="long-6s")
        demo.slow.apply_async((1,), task_id="long-1s")
        wait_for("slow tasks", done(rec, "long-6s", "long-1s"))


def heartbeats(rec: Recorder, worker: str) -> int:
    return rec.count("worker-heartbeat", hostname=host(worker))


def heartbeat_after_start(rec: Recorder, worker: str, task_id: str) -> bool:
    """Whether a heartbeat of ``worker`` arrived after ``task_id``'s task-started."""
    kinds = [(e.get("type"), e.get("uuid"), e.get("hostname")) for e in list(rec.events)]
    started = kinds.index(("task-started", task_id, host(worker)))
    return ("worker-heartbeat", None, host(worker)) in kinds[started:]


def worker_sigkill() -> None:
    with recording("worker_sigkill") as (rec, cluster):
        cluster.start("w1", QUEUES + ",slowq")
        cluster.start("w2")
        demo.slow_exclusive.apply_async((30,), task_id="killed-task")
        wait_for("killed-task started", lambda: rec.has("task-started", uuid="killed-task"))
        wait_for("two heartbeats from w1", lambda: heartbeats(rec, "w1") >= 2)
        cluster.kill("w1")
        let_time_pass(8)  # w1 is silent from here on; w2's heartbeats go on


def worker_sigkill_redelivered() -> None:
    """Late acks and a 5 s visibility timeout: the killed worker's task runs again."""
    late = {"FLOWGUARD_DEMO_ACKS_LATE": "1", "FLOWGUARD_DEMO_VISIBILITY_SECONDS": "5"}
    task = "redelivered-task"
    with recording("worker_sigkill_redelivered") as (rec, cluster):
        cluster.start("w1", QUEUES + ",slowq", env=late)
        cluster.start("w2", env=late)
        demo.slow_exclusive.apply_async((3,), task_id=task)
        wait_for("first run started", lambda: rec.has("task-started", uuid=task))
        # Heartbeats come every 2 s: the task is at most 2 s into its 3 s run.
        wait_for("a w1 heartbeat after the start", lambda: heartbeat_after_start(rec, "w1", task))
        cluster.kill("w1")
        let_time_pass(8)  # w1 silent; the message stays unacknowledged, then expires
        cluster.start("w1", QUEUES + ",slowq", env=late)
        wait_for("the second run", done(rec, task))


def worker_graceful_stop() -> None:
    with recording("worker_graceful_stop") as (rec, cluster):
        cluster.start("w1")
        ids = [demo.add.apply_async((i, i), task_id=f"graceful-{i}").id for i in range(3)]
        wait_for("adds", done(rec, *ids))
        cluster.stop("w1")


def worker_warm_shutdown_busy() -> None:
    """Warm shutdown while a task runs: worker-offline comes first, the task still finishes."""
    with recording("worker_warm_shutdown_busy") as (rec, cluster):
        cluster.start("w1")
        demo.slow.apply_async((2,), task_id="busy-slow")
        wait_for("busy-slow started", lambda: rec.has("task-started", uuid="busy-slow"))
        cluster.stop("w1")
        wait_for("busy-slow's outcome", done(rec, "busy-slow"))


def worker_sigterm_group() -> None:
    """SIGTERM to every process of the worker, as systemd stops a service by default."""
    with recording("worker_sigterm_group") as (rec, cluster):
        cluster.start("w1")
        demo.add.apply_async((4, 4), task_id="group-add")
        wait_for("group-add", done(rec, "group-add"))
        demo.slow.apply_async((2,), task_id="group-slow")
        wait_for("group-slow started", lambda: rec.has("task-started", uuid="group-slow"))
        cluster.stop("w1", whole_group=True)
        wait_for("group-slow's outcome", done(rec, "group-slow"))


def burst_failures() -> None:
    with recording("burst_failures") as (rec, cluster):
        cluster.start("w1")
        ids = [
            demo.always_fails.apply_async((f"c-{i}",), task_id=f"burst-{i:02d}").id
            for i in range(60)
        ]
        wait_for("60 failures", done(rec, *ids))


def stuck_prefetched() -> None:
    """A task received but not started: both pool slots busy, the worker prefetched it."""
    with recording("stuck_prefetched") as (rec, cluster):
        cluster.start("w1")
        for i in (1, 2):
            demo.slow.apply_async((4,), task_id=f"busy-{i}")
        wait_for("both slots busy", lambda: rec.has("task-started", uuid="busy-2")
                 and rec.has("task-started", uuid="busy-1"))  # fmt: skip
        demo.add.apply_async((2, 2), task_id="prefetched-add")
        wait_for("prefetched-add's outcome", done(rec, "prefetched-add", "busy-1", "busy-2"))


SCENARIOS = {
    f.__name__: f
    for f in (
        basic,
        celery_retry,
        flaky_chain,
        long_running,
        worker_sigkill,
        worker_sigkill_redelivered,
        worker_graceful_stop,
        worker_warm_shutdown_busy,
        worker_sigterm_group,
        burst_failures,
        stuck_prefetched,
    )
}

SHOWN = ("args", "kwargs", "root_id", "parent_id", "queue", "retries", "eta", "exception")


def timeline(name: str) -> None:
    """Print a stream relative to its first event: seconds, arrival, type, host, fields."""
    events = [json.loads(line) for line in (OUT / f"{name}.jsonl").read_text().splitlines()]
    start = events[0]["timestamp"]
    print(f"== {name}: {len(events)} events")
    for e in events:
        fields = {k: e[k] for k in SHOWN if e.get(k) is not None and e.get(k) != "{}"}
        short = {
            k: v if len(str(v)) < 60 else f"{str(v)[:40]}...({len(v)})" for k, v in fields.items()
        }
        print(
            f"{e['timestamp'] - start:7.3f} {e['type']:16} {e['hostname']:14} "
            f"clock={e['clock']:<3} {e.get('uuid', '')} {short}"
        )


NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


@contextlib.contextmanager
def own_redis() -> Iterator[None]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(PORT), "--bind", "127.0.0.1", *NO_PERSISTENCE],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for("redis", _ping, timeout=10)
        yield
    finally:
        server.terminate()
        server.wait(timeout=10)


def _ping() -> bool:
    try:
        return bool(demo._counter().ping())
    except redis.exceptions.ConnectionError:
        return False


def main(argv: list[str]) -> None:
    if argv[:1] == ["--timeline"]:
        for name in argv[1:] or list(SCENARIOS):
            timeline(name)
        return
    unknown = set(argv) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}; known: {list(SCENARIOS)}")
    LOGS.mkdir(exist_ok=True)
    print(f"worker logs in {LOGS}")
    OUT.mkdir(parents=True, exist_ok=True)
    with own_redis():
        for name in argv or list(SCENARIOS):
            SCENARIOS[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
