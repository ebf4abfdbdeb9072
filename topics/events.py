"""Normalized Celery events: what the bridge publishes on ``flowguard.events``.

One model per Celery event type, tagged by ``kind`` and versioned. Fields keep
Celery's own values: ``args``/``kwargs`` are the repr strings Celery reported
(possibly truncated), ``exception`` is a repr such as ``KeyError('x')``.
``timestamp`` stays Celery's epoch seconds (float) so that event-time
arithmetic is exact; the execution log renders times as ISO 8601.

Celery sends ``name``, ``args``, ``kwargs``, ``root_id`` and ``parent_id`` only
on ``task-sent``/``task-received`` and ``queue`` only on ``task-sent``: the other
task events carry ``None`` there, and the engine's task state fills them in.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from topics.record import Record, absent

EVENT_VERSION = 1


class _TaskEvent(Record):
    version: Literal[1] = 1
    cluster: str = Field(min_length=1)
    task_id: str = Field(min_length=1)
    timestamp: float = Field(description="Celery's event time, UTC epoch seconds.")
    hostname: str | None = Field(default=None, description="Host that sent the event.")
    clock: int | None = Field(default=None, description="The sender's Lamport clock.")
    name: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    queue: str | None = None
    exchange: str | None = Field(
        default=None,
        exclude_if=absent,
        description="The exchange the task was sent with (task.sent only).",
    )
    routing_key: str | None = None
    args: str | None = Field(default=None, description="Celery's repr of the args (may be cut).")
    kwargs: str | None = Field(default=None, description="Celery's repr of the kwargs.")
    retries: int | None = None
    eta: str | None = None
    expires: str | None = None


class TaskSent(_TaskEvent):
    kind: Literal["task.sent"] = "task.sent"


class TaskReceived(_TaskEvent):
    kind: Literal["task.received"] = "task.received"


class TaskStarted(_TaskEvent):
    kind: Literal["task.started"] = "task.started"
    pid: int | None = None


class TaskSucceeded(_TaskEvent):
    kind: Literal["task.succeeded"] = "task.succeeded"
    result: str | None = None
    runtime: float | None = None


class TaskFailed(_TaskEvent):
    kind: Literal["task.failed"] = "task.failed"
    exception: str | None = None
    traceback: str | None = None


class TaskRetried(_TaskEvent):
    kind: Literal["task.retried"] = "task.retried"
    exception: str | None = None
    traceback: str | None = None


class TaskRevoked(_TaskEvent):
    kind: Literal["task.revoked"] = "task.revoked"
    terminated: bool | None = None
    signum: str | None = None
    expired: bool | None = None


class TaskRejected(_TaskEvent):
    kind: Literal["task.rejected"] = "task.rejected"
    requeue: bool | None = None


class TaskSnapshot(_TaskEvent):
    """A task seen by ``inspect()`` (active or reserved) when the bridge (re)connects."""

    kind: Literal["task.snapshot"] = "task.snapshot"
    state: Literal["active", "reserved"]
    time_start: float | None = None


class _WorkerEvent(Record):
    version: Literal[1] = 1
    cluster: str = Field(min_length=1)
    hostname: str = Field(min_length=1)
    timestamp: float
    clock: int | None = None
    freq: float | None = Field(default=None, description="Heartbeat interval in seconds.")
    active: int | None = None
    processed: int | None = None
    sw_ident: str | None = None
    sw_ver: str | None = None


class WorkerOnline(_WorkerEvent):
    kind: Literal["worker.online"] = "worker.online"


class WorkerHeartbeat(_WorkerEvent):
    kind: Literal["worker.heartbeat"] = "worker.heartbeat"


class WorkerOffline(_WorkerEvent):
    kind: Literal["worker.offline"] = "worker.offline"


class BridgeStatus(Record):
    """The bridge's own heartbeat: tells "cluster quiet" from "bridge down", and counts drops."""

    kind: Literal["bridge.status"] = "bridge.status"
    version: Literal[1] = 1
    cluster: str = Field(min_length=1)
    bridge_id: str
    timestamp: float
    interval_seconds: float = Field(gt=0)
    started_at: float = Field(description="When this bridge process started, epoch seconds.")
    celery_connected: bool = Field(description="Connected to the cluster's broker right now.")
    kafka_connected: bool = Field(description="The last produce to Kafka succeeded.")
    events_received: int = Field(ge=0, description="Events translated since start.")
    events_published: int = Field(ge=0, description="Events Kafka acknowledged since start.")
    events_dropped: int = Field(ge=0, description="Events dropped on a full buffer since start.")
    events_dropped_by_kind: dict[str, int] = Field(default_factory=dict)
    events_invalid: int = Field(default=0, ge=0, description="Events sent to the DLQ.")
    buffered: int = Field(default=0, ge=0, description="Events waiting for Kafka right now.")
    celery_app: str | None = Field(
        default=None,
        exclude_if=absent,
        description="The Celery app (--app, --config) the bridge routes retries with; "
        "None: none given, a retry goes to the queue its command names.",
    )


TaskEvent = (
    TaskSent
    | TaskReceived
    | TaskStarted
    | TaskSucceeded
    | TaskFailed
    | TaskRetried
    | TaskRevoked
    | TaskRejected
    | TaskSnapshot
)
WorkerEvent = WorkerOnline | WorkerHeartbeat | WorkerOffline
Event = Annotated[TaskEvent | WorkerEvent | BridgeStatus, Field(discriminator="kind")]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

TASK_EVENT_TYPES: tuple[type[_TaskEvent], ...] = (
    TaskSent,
    TaskReceived,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskRetried,
    TaskRevoked,
    TaskRejected,
    TaskSnapshot,
)
WORKER_EVENT_TYPES: tuple[type[_WorkerEvent], ...] = (WorkerOnline, WorkerHeartbeat, WorkerOffline)


def event_key(event: Event) -> str:
    """The Kafka key: a whole retry chain shares ``cluster/root_id``; workers use hostname."""
    if isinstance(event, _TaskEvent):
        return f"{event.cluster}/{event.root_id or event.task_id}"
    if isinstance(event, _WorkerEvent):
        return f"{event.cluster}/{event.hostname}"
    return f"{event.cluster}/bridge/{event.bridge_id}"
