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

from collections import OrderedDict

from topics.events import (
    BridgeStatus,
    Event,
    TaskReceived,
    TaskSent,
    WorkerHeartbeat,
    WorkerOffline,
    WorkerOnline,
)

_WORKER_KINDS = (WorkerOnline, WorkerHeartbeat, WorkerOffline)


class RootMemory:
    """task id -> root id, for the last ``size`` tasks seen with a root."""

    def __init__(self, size: int = 200_000) -> None:
        self._roots: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def remember(self, task_id: str, root_id: str) -> None:
        self._roots[task_id] = root_id
        self._roots.move_to_end(task_id)
        if len(self._roots) > self._size:
            self._roots.popitem(last=False)

    def root_of(self, task_id: str) -> str | None:
        return self._roots.get(task_id)


def record_key(event: Event, roots: RootMemory) -> str:
    """The Kafka key of an event; see the module docstring."""
    if isinstance(event, _WORKER_KINDS):
        return f"{event.cluster}/{event.hostname}"
    if isinstance(event, BridgeStatus):
        return f"{event.cluster}/bridge/{event.bridge_id}"
    if event.root_id:
        if isinstance(event, TaskSent | TaskReceived):
            roots.remember(event.task_id, event.root_id)
        return f"{event.cluster}/{event.root_id}"
    return f"{event.cluster}/{roots.root_of(event.task_id) or event.task_id}"
