"""Worker liveness: online, heartbeats, and going offline (by event or by silence).

A worker goes offline when it says so (``worker-offline``, a warm shutdown) or
when its heartbeats stop: Celery itself judges a worker dead after twice its
advertised heartbeat interval (``freq``), and so do we by default. A SIGKILLed
worker sends nothing more, so silence is the only sign of it.

Going offline and leaving orphans are not the same moment. A warm shutdown announces
``worker-offline`` first and then finishes the tasks it runs (seen in recorded streams: a
task succeeding 1.5 s after its worker's goodbye; SIGTERM to the whole process group fails
it instead). So after a goodbye its tasks are orphans only if they still run
``grace`` seconds later; after silence, at once (the silence already waited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowguard.engine.triggers import worker_trigger
from topics.events import WorkerEvent
from topics.triggers import Trigger

DEFAULT_FREQ_SECONDS = 2.0
DEFAULT_EXPIRY_FACTOR = 2.0
#: After a warm shutdown's goodbye, how long its running tasks may take to finish.
DEFAULT_OFFLINE_GRACE_SECONDS = 60.0


@dataclass(slots=True)
class WorkerState:
    cluster: str
    hostname: str
    online: bool = False
    last_seen: float = 0.0
    freq: float = DEFAULT_FREQ_SECONDS
    offline_at: float | None = None
    offline_count: int = 0
    #: When the tasks it ran at ``offline_at`` count as orphans, until that has been done.
    orphans_due: float | None = None

    def expires_at(self, factor: float = DEFAULT_EXPIRY_FACTOR) -> float:
        return self.last_seen + self.freq * factor

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerState:
        return cls(**data)


def worker_key(cluster: str, hostname: str) -> str:
    return f"{cluster}/{hostname}"


def apply_worker_event(
    worker: WorkerState, event: WorkerEvent, grace: float = DEFAULT_OFFLINE_GRACE_SECONDS
) -> Trigger | None:
    """Fold one worker event in; ``worker.offline`` on an online -> offline transition."""
    if event.freq:
        worker.freq = event.freq
    if event.kind == "worker.offline":
        if worker.offline_at is not None and not worker.online:
            return None  # already offline: a duplicate, or after heartbeat expiry
        worker.online = True  # it was online to say goodbye, even if we missed its hello
        worker.last_seen = max(worker.last_seen, event.timestamp)
        return _go_offline(
            worker, at=event.timestamp, reason="worker-offline event", orphans_after=grace
        )
    if worker.offline_at is not None and event.timestamp <= worker.offline_at:
        return None  # a heartbeat from before it went offline, arriving late
    worker.last_seen = max(worker.last_seen, event.timestamp)
    worker.online = True
    return None


def expire_worker(worker: WorkerState, *, now: float, factor: float) -> Trigger | None:
    """``worker.offline`` if no heartbeat came within ``factor`` x its interval before ``now``."""
    if not worker.online or now < worker.expires_at(factor):
        return None
    silent = worker.expires_at(factor) - worker.last_seen
    return _go_offline(
        worker,
        at=worker.expires_at(factor),
        reason=f"no heartbeat for {silent:g}s (interval {worker.freq:g}s)",
    )


def orphans_now(worker: WorkerState, now: float) -> float | None:
    """The offline time whose running tasks are orphans now (once; then it is cleared)."""
    if worker.orphans_due is None or now < worker.orphans_due:
        return None
    worker.orphans_due = None
    return worker.offline_at


def _go_offline(
    worker: WorkerState, *, at: float, reason: str, orphans_after: float = 0.0
) -> Trigger | None:
    if not worker.online:
        return None
    worker.online = False
    worker.offline_at = at
    worker.offline_count += 1
    worker.orphans_due = at + orphans_after
    return worker_trigger(
        at=at,
        cluster=worker.cluster,
        hostname=worker.hostname,
        ordinal=worker.offline_count,
        reason=reason,
    )
