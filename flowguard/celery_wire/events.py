"""Pure: one raw Celery event dict (as ``app.events.Receiver`` hands it over) -> a topic model.

No I/O and no guessing: a field Celery did not send stays ``None`` (the
engine's task state joins name, args and queue across a task's events).
An event that cannot be a valid event raises :class:`EventInvalid` with the
reason; an event type flowguard has no use for (custom ``send_event`` types)
gives ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import ValidationError

from flowguard.errors import EventInvalid
from topics.events import (
    EVENT_ADAPTER,
    Event,
    TaskFailed,
    TaskReceived,
    TaskRejected,
    TaskRetried,
    TaskRevoked,
    TaskSent,
    TaskSnapshot,
    TaskStarted,
    TaskSucceeded,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)

# Celery's fields that we keep, per event type; the names are Celery's own, except
# ``uuid`` -> ``task_id``. Everything else Celery sends (utcoffset, pid of worker
# events, loadavg, local_received, ...) is dropped.
_TASK_COMMON = (
    "hostname", "clock", "name", "root_id", "parent_id", "queue", "exchange", "routing_key",
    "args", "kwargs", "retries", "eta", "expires",
)  # fmt: skip
_TASK_TYPES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "task-sent": (TaskSent, _TASK_COMMON),
    "task-received": (TaskReceived, _TASK_COMMON),
    "task-started": (TaskStarted, (*_TASK_COMMON, "pid")),
    "task-succeeded": (TaskSucceeded, (*_TASK_COMMON, "result", "runtime")),
    "task-failed": (TaskFailed, (*_TASK_COMMON, "exception", "traceback")),
    "task-retried": (TaskRetried, (*_TASK_COMMON, "exception", "traceback")),
    "task-revoked": (TaskRevoked, (*_TASK_COMMON, "terminated", "signum", "expired")),
    "task-rejected": (TaskRejected, (*_TASK_COMMON, "requeue")),
}
_WORKER_KEYS = ("hostname", "clock", "freq", "active", "processed", "sw_ident", "sw_ver")
_WORKER_TYPES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "worker-online": (WorkerOnline, _WORKER_KEYS),
    "worker-heartbeat": (WorkerHeartbeat, _WORKER_KEYS),
    "worker-offline": (WorkerOffline, _WORKER_KEYS),
}
_AS_TEXT = frozenset(
    {"args", "kwargs", "result", "exception", "traceback", "eta", "expires", "signum"}
)


def translate(raw: Any, cluster: str) -> Event | None:
    """A raw Celery event -> its model; ``None`` for types flowguard does not use."""
    if not isinstance(raw, dict):
        raise EventInvalid(f"an event must be a JSON object, got {type(raw).__name__}")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise EventInvalid("missing 'type' (a Celery event type such as 'task-failed')")
    spec = _TASK_TYPES.get(kind) or _WORKER_TYPES.get(kind)
    if spec is None:
        return None
    model, keys = spec
    fields = {k: raw[k] for k in keys if k in raw}
    fields["cluster"] = cluster
    fields["timestamp"] = raw.get("timestamp")
    if kind[0] == "t":
        task_id = raw.get("uuid")
        if not isinstance(task_id, str) or not task_id:
            raise EventInvalid(f"{kind} without 'uuid' (the task id)")
        fields["task_id"] = task_id
    try:
        event: Event = model.__pydantic_validator__.validate_python(fields)
    except ValidationError as exc:
        return _retry_as_text(model, fields, exc)
    return event


def _retry_as_text(
    model: Callable[..., Event], fields: dict[str, Any], exc: ValidationError
) -> Event:
    """Celery reports args, kwargs, result and exception as reprs; a recording holding
    another type for them is repr()'d rather than refused, so nothing is lost."""
    converted = {
        k: repr(v) if k in _AS_TEXT and v is not None and not isinstance(v, str) else v
        for k, v in fields.items()
    }
    if converted == fields:
        raise EventInvalid(_first_error(exc)) from None
    return _build(model, converted)


def parse_line(data: Any, cluster: str) -> Event | None:
    """One input line already decoded: a raw Celery event, or a flowguard event (has ``kind``)."""
    if isinstance(data, dict) and "kind" in data and "type" not in data:
        try:
            return EVENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            raise EventInvalid(_first_error(exc)) from None
    return translate(data, cluster)


def _build(model: Callable[..., Event], fields: dict[str, Any]) -> Event:
    try:
        return model(**fields)
    except ValidationError as exc:
        raise EventInvalid(_first_error(exc)) from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"]) or "(event)"
    return f"{where}: {error['msg']}"


def snapshot_events(
    replies: Any, state: Literal["active", "reserved"], cluster: str, now: float
) -> tuple[list[TaskSnapshot], list[str]]:
    """``inspect().active()`` / ``.reserved()`` replies -> snapshot events, and the problems.

    A reply maps a worker's hostname to ``Request.info(safe=True)`` dicts. Celery's
    ``time_start`` there is the worker's monotonic clock, not a time of day, so it is
    not used: the snapshot's time is when it was taken (``now``). A malformed entry
    is reported and skipped; the others are kept.
    """
    events: list[TaskSnapshot] = []
    problems: list[str] = []
    if not replies:
        return events, problems
    if not isinstance(replies, dict):
        return events, [f"inspect {state}: expected a mapping of workers, got {type(replies)}"]
    for hostname, requests in replies.items():
        for info in requests if isinstance(requests, list) else [requests]:
            if not isinstance(info, dict) or not isinstance(info.get("id"), str):
                problems.append(f"inspect {state} from {hostname}: entry without a task id")
                continue
            delivery = info.get("delivery_info") or {}
            fields = {
                "cluster": cluster,
                "task_id": info["id"],
                "timestamp": now,
                "hostname": hostname,
                "name": info.get("name"),
                "args": _as_text(info.get("args")),
                "kwargs": _as_text(info.get("kwargs")),
                "routing_key": delivery.get("routing_key") if isinstance(delivery, dict) else None,
                "state": state,
            }
            try:
                events.append(TaskSnapshot(**fields))
            except ValidationError as exc:
                problems.append(f"inspect {state} from {hostname}: {_first_error(exc)}")
    return events, problems


def _as_text(value: Any) -> str | None:
    return value if value is None or isinstance(value, str) else repr(value)
