"""A Celery cluster as most platform teams run one: Celery's defaults (no ``task-sent`` events,
so no event names a task's queue; no late acks), ``task_routes`` sending payments to their own
queue, and workers that consume only the queues they are given (``-Q payments``): nothing
consumes the default queue ``celery``.

Loaded by a real worker (``celery -A tests.e2e.routed_cluster worker -Q payments -E``), by the
bridge (``--app tests.e2e.routed_cluster:app``) and by the test's client; the broker comes
from ``ROUTED_CLUSTER_BROKER``. Every run is recorded in the broker's Redis with the queue
it was delivered from, so a test sees what really ran where.
"""

from __future__ import annotations

import json
import os
from typing import Any

import redis
from celery import Celery, Task
from celery.signals import task_prerun

BROKER = os.environ.get("ROUTED_CLUSTER_BROKER", "redis://127.0.0.1:6379/0")
RUNS_KEY = "routed-cluster:runs"

app = Celery("routed_cluster", broker=BROKER)
app.conf.update(
    task_routes={"payments.*": {"queue": "payments"}},
    broker_connection_retry_on_startup=True,
)


@task_prerun.connect  # type: ignore[untyped-decorator]
def _record_run(task_id: str, task: Task, args: Any, kwargs: Any, **_: Any) -> None:
    request = task.request
    run = {
        "task_id": task_id,
        "name": task.name,
        "args": list(args or ()),
        "kwargs": dict(kwargs or {}),
        "queue": (request.delivery_info or {}).get("routing_key"),
        "root_id": request.root_id,
        "parent_id": request.parent_id,
    }
    redis.Redis.from_url(BROKER).rpush(RUNS_KEY, json.dumps(run))


def runs(client: redis.Redis) -> list[dict[str, Any]]:
    """Every run recorded so far, oldest first."""
    return [json.loads(item) for item in client.lrange(RUNS_KEY, 0, -1)]


@app.task(name="payments.charge_card")  # type: ignore[untyped-decorator]
def charge_card(amount: int, card: str = "") -> None:
    raise ConnectionError(f"card network unreachable for {card}")
