"""Record keys on ``<prefix>.events`` (and ``<prefix>.scheduled``): part of the contract.

A task event is keyed ``cluster/root_id`` so that a whole retry chain lands in one partition,
where its state lives. Celery sends ``root_id`` only on ``task-sent``/``task-received``;
:class:`RootMemory` remembers each task's root from those (a bounded LRU) and keys the task's
later events (started, failed, ...) by it. A task first seen without a known root is keyed by
its own id. Worker events are keyed ``cluster/hostname``.

The bridge keys what it publishes with :func:`record_key`; ``flowguard replay`` keys the
events it reads with the same function, so both group events into the same chains.
"""

from __future__ import annotations

from topics.events import (
    Event,
    TaskReceived,
    TaskSent,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)

_WORKER_KINDS = frozenset(
    m.model_fields["kind"].default for m in (WorkerOnline, WorkerHeartbeat, WorkerOffline)
)
#: The task events that carry a root id the intake remembers.
_ROOT_NAMING = frozenset(m.model_fields["kind"].default for m in (TaskSent, TaskReceived))


class RootMemory:
    """task id -> root id, for the last ``size`` tasks seen with a root (least recently
    remembered dropped first: a dict keeps insertion order, and a task remembered again is
    moved to the end)."""

    def __init__(self, size: int = 200_000) -> None:
        self._roots: dict[str, str] = {}
        self._size = size

    def remember(self, task_id: str, root_id: str) -> None:
        roots = self._roots
        roots.pop(task_id, None)
        roots[task_id] = root_id
        if len(roots) > self._size:
            del roots[next(iter(roots))]

    def root_of(self, task_id: str) -> str | None:
        return self._roots.get(task_id)


def record_key(event: Event, roots: RootMemory) -> str:
    """The Kafka key of an event; see the module docstring. (By ``kind``, not ``isinstance``:
    replay keys every event it reads.)"""
    kind = event.kind
    if kind in _WORKER_KINDS:
        return f"{event.cluster}/{event.hostname}"  # type: ignore[union-attr]
    if kind == "bridge.status":
        return f"{event.cluster}/bridge/{event.bridge_id}"  # type: ignore[union-attr]
    root_id = event.root_id  # type: ignore[union-attr]
    task_id = event.task_id  # type: ignore[union-attr]
    if root_id:
        if kind in _ROOT_NAMING:
            roots.remember(task_id, root_id)
        return f"{event.cluster}/{root_id}"
    return f"{event.cluster}/{roots.root_of(task_id) or task_id}"
