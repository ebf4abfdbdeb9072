"""Record real Celery event streams: a real worker on a real Redis, real tasks that fail.

    python tests/data/record_streams.py [SCENARIO ...]

Each scenario writes tests/data/streams/<name>.jsonl: one raw event dict per
line, exactly as ``app.events.Receiver`` handed it over, in arrival order.
What each scenario did is described in tests/data/streams/README.md; the
replay acceptance tests assert against that, not against replay output.
Needs redis-server on PATH; uses its own Redis on port 6391.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "streams"
PORT = 6391
BROKER = f"redis://127.0.0.1:{PORT}/0"
os.environ["FLOWGUARD_DEMO_BROKER"] = BROKER
sys.path.insert(0, str(ROOT))

from flowguard.demo import celery_app as demo  # noqa: E402

Event = dict[str, Any]


def wait_for(what: str, probe: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Recorder:
    """Captures every event on the cluster's event exchange in a thread."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with demo.app.connection() as conn:
            self._receiver = demo.app.events.Receiver(conn, handlers={"*": self.events.append})
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self) -> None:
        self._thread.start()
        wait_for("receiver", lambda: self._receiver is not None)
        time.sleep(0.5)  # the receiver's queue binds asynchronously; nothing to poll for it

    def stop(self) -> None:
        self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def has(self, kind: str, **fields: Any) -> bool:
        return any(
            e.get("type") == kind and all(e.get(k) == v for k, v in fields.items())
            for e in list(self.events)
        )


QUEUES = "celery,email,priority-high"


def start_worker(name: str, queues: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "flowguard.demo.celery_app",
            "worker",
            "-Q",
            queues,
            "-c",
            str(concurrency),
            "-n",
            f"{name}@flowguard",
            "-E",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_worker(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait(timeout=30)


@contextlib.contextmanager
def recording(
    name: str, *workers: str, w1_queues: str = QUEUES
) -> Iterator[tuple[Recorder, dict[str, subprocess.Popen[bytes]]]]:
    demo._counter().flushdb()
    rec = Recorder()
    rec.start()
    procs = {w: start_worker(w, w1_queues if w == "w1" else QUEUES) for w in workers}
    for w in workers:
        wait_for(f"{w} online", lambda w=w: rec.has("worker-online", hostname=f"{w}@flowguard"))
    try:
        yield rec, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                stop_worker(proc)
        for w, proc in procs.items():
            if proc.returncode is not None and proc.returncode != -signal.SIGKILL:
                wait_for(
                    f"{w} offline",
                    lambda w=w: rec.has("worker-offline", hostname=f"{w}@flowguard"),
                    timeout=20,
                )
        rec.stop()
        path = OUT / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps(e, sort_keys=True, default=repr) + "\n" for e in rec.events)
        )
        print(f"{path.relative_to(ROOT)}: {len(rec.events)} events")


def done(rec: Recorder, *task_ids: str) -> Callable[[], bool]:
    return lambda: all(
        rec.has("task-succeeded", uuid=t) or rec.has("task-failed", uuid=t) for t in task_ids
    )


def basic() -> None:
    with recording("basic", "w1") as (rec, _):
        ids = [
            demo.add.apply_async((2, 3), task_id="basic-add").id,
            demo.always_fails.apply_async(("c-1",), task_id="basic-always-fails").id,
            demo.process_payment.apply_async((100, "card-4242"), task_id="basic-payment").id,
            demo.send_email.apply_async(
                ("a@example.com", "hi"), {"reply_to": "b@example.com"}, task_id="basic-email"
            ).id,
            demo.add.apply_async((1, 1), queue="priority-high", task_id="basic-priority").id,
            demo.bulk.apply_async((list(range(400)),), task_id="basic-bulk").id,
            demo.greet.apply_async(
                ("Sean O'Brien",), {"punctuation": "?"}, task_id="basic-quote"
            ).id,
        ]
        wait_for("basic tasks", done(rec, *ids))


def celery_retry() -> None:
    with recording("celery_retry", "w1") as (rec, _):
        ids = [
            demo.self_retry.apply_async((1,), task_id="retry-exhausted").id,
            demo.retry_then_succeed.apply_async((7,), task_id="retry-succeeds").id,
            demo.self_retry.apply_async((2,), {"with_exc": False}, task_id="retry-no-exc").id,
        ]
        wait_for("retries", done(rec, *ids), timeout=60)


def flaky_chain() -> None:
    """What a flowguard retry does: same name and args, a new id, root and parent as the chain."""
    with recording("flaky_chain", "w1") as (rec, _):
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
    with recording("long_running", "w1") as (rec, _):
        demo.slow.apply_async((6,), task_id="long-6s")
        demo.slow.apply_async((1,), task_id="long-1s")
        wait_for("slow tasks", done(rec, "long-6s", "long-1s"), timeout=30)


def worker_sigkill() -> None:
    with recording("worker_sigkill", "w1", "w2", w1_queues=QUEUES + ",slowq") as (rec, procs):
        demo.slow_exclusive.apply_async((30,), task_id="killed-task")
        wait_for("started", lambda: rec.has("task-started", uuid="killed-task"))
        wait_for(
            "a heartbeat from w1 after the start",
            lambda: (
                sum(
                    1
                    for e in rec.events
                    if e.get("type") == "worker-heartbeat" and e.get("hostname") == "w1@flowguard"
                )
                >= 2
            ),
        )
        stop_worker(procs["w1"], signal.SIGKILL)
        killed_at = time.time()
        wait_for("8 s of silence from w1", lambda: time.time() - killed_at > 8, timeout=20)


def worker_graceful_stop() -> None:
    with recording("worker_graceful_stop", "w1") as (rec, procs):
        ids = [demo.add.apply_async((i, i), task_id=f"graceful-{i}").id for i in range(3)]
        wait_for("adds", done(rec, *ids))
        stop_worker(procs["w1"], signal.SIGTERM)


def burst_failures() -> None:
    with recording("burst_failures", "w1") as (rec, _):
        ids = [
            demo.always_fails.apply_async((f"c-{i}",), task_id=f"burst-{i:02d}").id
            for i in range(60)
        ]
        wait_for("60 failures", done(rec, *ids), timeout=60)


SCENARIOS = {
    f.__name__: f
    for f in (
        basic,
        celery_retry,
        flaky_chain,
        long_running,
        worker_sigkill,
        worker_graceful_stop,
        burst_failures,
    )
}


def main() -> None:
    redis_server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for("redis", lambda: _ping())
        OUT.mkdir(parents=True, exist_ok=True)
        for name in sys.argv[1:] or list(SCENARIOS):
            SCENARIOS[name]()
    finally:
        redis_server.terminate()
        redis_server.wait(timeout=10)


def _ping() -> bool:
    try:
        return bool(demo._counter().ping())
    except Exception:
        return False


if __name__ == "__main__":
    main()
