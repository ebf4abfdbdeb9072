"""Demo Celery app: tasks that succeed, fail, retry themselves, run long, or fail N times.

Used by the README demo, the integration tests and ``tests/data/record_streams.py``.
Configured from the environment so each can point it anywhere:

- ``FLOWGUARD_DEMO_BROKER`` (default ``redis://127.0.0.1:6379/0``);
- ``FLOWGUARD_DEMO_ACKS_LATE`` (``1``: acknowledge after the task ran, so the
  task of a killed worker is delivered again);
- ``FLOWGUARD_DEMO_VISIBILITY_SECONDS`` (Redis redelivery timeout for
  unacknowledged messages, default 3600 as in kombu).

Events are on (``worker_send_task_events``, ``task_send_sent_event``): the
app exists to produce the event stream flowguard watches.
"""

from __future__ import annotations

import functools
import json
import os
import smtplib
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_prerun

BROKER = os.environ.get("FLOWGUARD_DEMO_BROKER", "redis://127.0.0.1:6379/0")
ACKS_LATE = os.environ.get("FLOWGUARD_DEMO_ACKS_LATE") == "1"
VISIBILITY_SECONDS = float(os.environ.get("FLOWGUARD_DEMO_VISIBILITY_SECONDS", "3600"))

#: Recipients whose mail server refuses everything: ``send_email`` fails for them.
BOUNCING_DOMAINS = frozenset({"example.com"})

app = Celery("flowguard_demo", broker=BROKER)
app.conf.update(
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_acks_late=ACKS_LATE,
    # With late acks, a pool child killed mid-task puts the message back too.
    task_reject_on_worker_lost=ACKS_LATE,
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_SECONDS,
        # kombu sweeps for expired unacked messages every 10 s x 10 calls by
        # default; sweep every second so a low visibility timeout means what it says.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    task_routes={
        "myapp.tasks.send_email": {"queue": "email"},
        "payments.*": {"queue": "priority-high"},
        # Only a worker started with ``-Q ...,slowq`` runs these: lets a test
        # pin a task to one worker while others stay up.
        "demo.tasks.slow_exclusive": {"queue": "slowq"},
    },
)


@functools.cache
def _counter() -> redis.Redis:
    """The broker's Redis, used for the per-key call counters of ``flaky_network``."""
    return redis.Redis.from_url(BROKER)


#: Redis list where every task run is recorded (what ran, with which args, sent by whom).
CALLS_KEY = "flowguard-demo:calls"


@task_prerun.connect  # type: ignore[untyped-decorator]
def _record_call(task_id: str, task: Task, args: Any, kwargs: Any, **_: Any) -> None:
    """Record each run, so tests can see what a retry really ran (and the flowguard header)."""
    request = task.request
    call = {
        "task_id": task_id,
        "name": task.name,
        "args": list(args or ()),
        "kwargs": dict(kwargs or {}),
        "queue": (request.delivery_info or {}).get("routing_key"),
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "retries": request.retries,
        "flowguard_execution_id": getattr(request, "flowguard_execution_id", None),
        "hostname": request.hostname,
    }
    _counter().rpush(CALLS_KEY, json.dumps(call, default=repr))


def recorded_calls(client: redis.Redis) -> list[dict[str, Any]]:
    """Every run recorded so far, oldest first."""
    return [json.loads(item) for item in client.lrange(CALLS_KEY, 0, -1)]


@app.task(name="demo.tasks.add")  # type: ignore[untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="demo.tasks.greet")  # type: ignore[untyped-decorator]
def greet(name: str, punctuation: str = "!") -> str:
    return f"Hello {name}{punctuation}"


@app.task(name="demo.tasks.bulk")  # type: ignore[untyped-decorator]
def bulk(items: list[int]) -> int:
    """Always fails; called with long lists so Celery truncates the args it reports."""
    raise ValueError(f"bulk of {len(items)} items refused")


@app.task(name="demo.tasks.always_fails")  # type: ignore[untyped-decorator]
def always_fails(customer_id: str) -> None:
    raise KeyError("customer_id")


@app.task(name="demo.tasks.flaky_network")  # type: ignore[untyped-decorator]
def flaky_network(order_id: int, fail_times: int = 2, key: str = "") -> str:
    """Fails with ConnectionError the first ``fail_times`` calls for ``key``, then succeeds.

    The calls are counted in Redis, so the count holds across workers and processes.
    """
    calls = int(_counter().incr(f"flowguard-demo:flaky:{key or order_id}"))
    if calls <= fail_times:
        raise ConnectionError(f"Connection refused (call {calls} of order {order_id})")
    return f"order {order_id} shipped"


@app.task(name="demo.tasks.self_retry", bind=True)  # type: ignore[untyped-decorator]
def self_retry(self: Task, n: int, with_exc: bool = True) -> None:
    """Celery's own retry: same task id, ``retries`` counting up, final failure after 2 retries.

    Without ``exc``, Celery reports the retries' exception as ``'None'`` and the
    final failure as ``MaxRetriesExceededError``.
    """
    if with_exc:
        raise self.retry(exc=TimeoutError(f"upstream timed out ({n})"), countdown=1, max_retries=2)
    raise self.retry(countdown=1, max_retries=2)


@app.task(name="demo.tasks.retry_then_succeed", bind=True)  # type: ignore[untyped-decorator]
def retry_then_succeed(self: Task, n: int) -> int:
    """Retries itself once with Celery's ``self.retry``, then succeeds."""
    if self.request.retries < 1:
        raise self.retry(exc=ConnectionError("reset by peer"), countdown=1, max_retries=3)
    return n


@app.task(name="demo.tasks.slow")  # type: ignore[untyped-decorator]
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="demo.tasks.hold")  # type: ignore[untyped-decorator]
def hold(gate: str, seconds: float = 120.0) -> bool:
    """Keep a pool process busy until something is pushed to the Redis list ``gate`` (or
    ``seconds`` pass): tests occupy the pool for exactly as long as they need it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        # Short blocking reads: one as long as the hold outlived the client's socket timeout.
        if _counter().blpop([gate], timeout=0.5) is not None:
            return True
    return False


@app.task(name="demo.tasks.slow_exclusive")  # type: ignore[untyped-decorator]
def slow_exclusive(seconds: float) -> float:
    """Like ``slow``, but routed to queue ``slowq``."""
    time.sleep(seconds)
    return seconds


@app.task(name="payments.process_payment")  # type: ignore[untyped-decorator]
def process_payment(amount: int, card: str) -> None:
    raise ConnectionError(f"payment gateway timeout for {card}")


@app.task(name="myapp.tasks.send_email")  # type: ignore[untyped-decorator]
def send_email(to: str, subject: str, **headers: Any) -> str:
    """Fails with an SMTP error for recipients in ``BOUNCING_DOMAINS``, succeeds otherwise."""
    if to.rpartition("@")[2] in BOUNCING_DOMAINS:
        raise smtplib.SMTPException(f"554 rejected: {to}")
    return f"sent {subject!r} to {to}"
