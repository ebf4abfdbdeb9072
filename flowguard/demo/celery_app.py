"""Demo Celery app: tasks that succeed, fail, retry themselves, run long, or fail N times.

Configured from the environment so tests and the demo can point it anywhere:
``FLOWGUARD_DEMO_BROKER`` (default ``redis://127.0.0.1:6379/0``),
``FLOWGUARD_DEMO_ACKS_LATE`` (``1`` to acknowledge after the task ran, so a
killed worker's task is delivered again) and
``FLOWGUARD_DEMO_VISIBILITY_SECONDS`` (Redis redelivery timeout).
"""

from __future__ import annotations

import os
import smtplib
import time
from typing import Any

import redis
from celery import Celery, Task

BROKER = os.environ.get("FLOWGUARD_DEMO_BROKER", "redis://127.0.0.1:6379/0")

app = Celery("flowguard_demo", broker=BROKER)
app.conf.update(
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_acks_late=os.environ.get("FLOWGUARD_DEMO_ACKS_LATE") == "1",
    task_reject_on_worker_lost=os.environ.get("FLOWGUARD_DEMO_ACKS_LATE") == "1",
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("FLOWGUARD_DEMO_VISIBILITY_SECONDS", "3600"))
    },
    broker_connection_retry_on_startup=True,
    task_routes={
        "myapp.tasks.send_email": {"queue": "email"},
        "payments.*": {"queue": "priority-high"},
        "demo.tasks.slow_exclusive": {"queue": "slowq"},
    },
)


def _counter() -> redis.Redis:
    return redis.Redis.from_url(BROKER)


@app.task(name="demo.tasks.add")  # type: ignore[untyped-decorator]
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="demo.tasks.greet")  # type: ignore[untyped-decorator]
def greet(name: str, punctuation: str = "!") -> str:
    return f"Hello {name}{punctuation}"


@app.task(name="demo.tasks.bulk")  # type: ignore[untyped-decorator]
def bulk(items: list[int]) -> int:
    raise ValueError(f"bulk of {len(items)} items refused")


@app.task(name="demo.tasks.always_fails")  # type: ignore[untyped-decorator]
def always_fails(customer_id: str) -> None:
    raise KeyError("customer_id")


@app.task(name="demo.tasks.flaky_network")  # type: ignore[untyped-decorator]
def flaky_network(order_id: int, fail_times: int = 2, key: str = "") -> str:
    """Fails with ConnectionError the first ``fail_times`` calls for ``key`` (counted in Redis)."""
    calls = _counter().incr(f"flowguard-demo:flaky:{key or order_id}")
    if calls <= fail_times:
        raise ConnectionError(f"Connection refused (call {calls} of order {order_id})")
    return f"order {order_id} shipped"


@app.task(name="demo.tasks.self_retry", bind=True, max_retries=2)  # type: ignore[untyped-decorator]
def self_retry(self: Task, n: int, with_exc: bool = True) -> None:
    """Celery's own retry: same task id, ``retries`` counting up, final failure after 2."""
    if with_exc:
        raise self.retry(exc=TimeoutError(f"upstream timed out ({n})"), countdown=1)
    raise self.retry(countdown=1)


@app.task(name="demo.tasks.retry_then_succeed", bind=True, max_retries=3)  # type: ignore[untyped-decorator]
def retry_then_succeed(self: Task, n: int) -> int:
    if self.request.retries < 1:
        raise self.retry(exc=ConnectionError("reset by peer"), countdown=1)
    return n


@app.task(name="demo.tasks.slow")  # type: ignore[untyped-decorator]
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="demo.tasks.slow_exclusive")  # type: ignore[untyped-decorator]
def slow_exclusive(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="payments.process_payment")  # type: ignore[untyped-decorator]
def process_payment(amount: int, card: str) -> None:
    raise ConnectionError(f"payment gateway timeout for {card}")


@app.task(name="myapp.tasks.send_email")  # type: ignore[untyped-decorator]
def send_email(to: str, subject: str, **headers: Any) -> None:
    raise smtplib.SMTPException(f"554 rejected: {to}")
