"""Three clusters' records, as bridges and workers would publish them, for the fleet tests.

- ``eu-payments``: its bridge reports; one worker online, one said goodbye; 5 task failures in
  the last hour and 2 three hours ago; the workflow ``retry-flaky``'s breaker is open on it.
- ``us-search``: its bridge went silent 10 minutes ago, its broker unreachable and 17 events
  dropped before; its worker's heartbeats stopped with it.
- ``ap-batch``: its bridge was restarted (the old one's last status is left out); a worker
  online; no failures; one execution of another workflow in the history.

Records go through the real broker: events to ``<prefix>.events``, execution records to
``<prefix>.execution-log``, keyed as the bridge and the workers key them.
"""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

from topics.events import (
    BridgeStatus,
    Event,
    TaskFailed,
    WorkerHeartbeat,
    WorkerOffline,
    event_key,
)
from topics.execution import ExecutionRecord
from topics.record import iso

WORKFLOW_YAML = "name: Retry flaky\ntrigger: {event: task.failed}\naction: {type: retry}\n"
WORKFLOW_ID = "retry-flaky"
NAMES = {WORKFLOW_ID: "Retry flaky", "nightly-report": "Nightly report"}


def _status(
    cluster: str, bridge_id: str, at: float, started: float, *, broker: bool = True, **counts: int
) -> Event:
    return BridgeStatus(
        cluster=cluster,
        bridge_id=bridge_id,
        timestamp=at,
        interval_seconds=5.0,
        started_at=started,
        celery_connected=broker,
        kafka_connected=True,
        events_received=counts.get("published", 0) + counts.get("dropped", 0),
        events_published=counts.get("published", 0),
        events_dropped=counts.get("dropped", 0),
        buffered=counts.get("buffered", 0),
        celery_app="proj.celery:app",
    )


def _failed(cluster: str, task_id: str, at: float) -> Event:
    return TaskFailed(
        cluster=cluster,
        task_id=task_id,
        root_id=task_id,
        timestamp=at,
        hostname="celery@w",
        exception="ConnectionError('refused')",
    )


def events(now: float) -> list[Event]:
    return [
        _status("eu-payments", "eu-bridge-1", now - 1, now - 7200, published=1200, buffered=3),
        WorkerHeartbeat(cluster="eu-payments", hostname="celery@eu-1", timestamp=now - 1, freq=2),
        WorkerHeartbeat(cluster="eu-payments", hostname="celery@eu-2", timestamp=now - 40, freq=2),
        WorkerOffline(cluster="eu-payments", hostname="celery@eu-2", timestamp=now - 30, freq=2),
        *(_failed("eu-payments", f"eu-t{i}", now - 60 * (i + 1)) for i in range(5)),
        *(_failed("eu-payments", f"eu-old{i}", now - 3 * 3600) for i in range(2)),
        _status(
            "us-search",
            "us-bridge-1",
            now - 600,
            now - 9000,
            broker=False,
            published=800,
            dropped=17,
        ),
        WorkerHeartbeat(cluster="us-search", hostname="celery@us-1", timestamp=now - 600, freq=2),
        _status("ap-batch", "ap-bridge-old", now - 3700, now - 90000, published=50),
        _status("ap-batch", "ap-bridge-new", now - 2, now - 3600, published=40),
        WorkerHeartbeat(cluster="ap-batch", hostname="celery@ap-1", timestamp=now - 1, freq=2),
    ]


def _record(
    execution_id: str, cluster: str, at: float, breaker: str, workflow_id: str = WORKFLOW_ID
) -> ExecutionRecord:
    return ExecutionRecord.model_validate(
        {
            "execution_id": execution_id,
            "workflow": {"id": workflow_id, "name": NAMES[workflow_id], "version": 1},
            "trigger": {"id": f"trig-{execution_id}", "event": "task.failed", "at": iso(at)},
            "task": {"cluster": cluster, "id": execution_id, "root_id": execution_id},
            "circuit_breaker": {
                "state": breaker,
                "count": 3,
                "max_executions": 3,
                "window_seconds": 3600,
            },
            "outcome": "skipped" if breaker == "open" else "success",
        }
    )


def records(now: float) -> list[ExecutionRecord]:
    """``retry-flaky`` twice on ``eu-payments``, the latest finding its breaker open; another
    workflow (not live) once on ``ap-batch``."""
    return [
        _record("x-ap-1", "ap-batch", now - 300, "closed", "nightly-report"),
        _record("x-eu-1", "eu-payments", now - 120, "closed"),
        _record("x-eu-2", "eu-payments", now - 60, "open"),
    ]


async def send_events(bootstrap: str, prefix: str, sent: list[Event]) -> None:
    items = [(f"{prefix}.events", event_key(e), e.model_dump_json()) for e in sent]
    await _send(bootstrap, items)


async def produce(bootstrap: str, prefix: str, now: float) -> None:
    """The scenario's events, then its execution records."""
    await send_events(bootstrap, prefix, events(now))
    log = f"{prefix}.execution-log"
    await _send(bootstrap, [(log, r.workflow.id, r.to_json()) for r in records(now)])


async def _send(bootstrap: str, items: list[tuple[str, str, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, key, value in items:
            await producer.send_and_wait(topic, value.encode(), key=key.encode())
    finally:
        await producer.stop()
