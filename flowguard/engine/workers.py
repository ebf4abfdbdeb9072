"""Worker liveness: online, heartbeats, and going offline (by event or by silence).

A worker goes offline when it says so (``worker-offline``, a warm shutdown) or
when its heartbeats stop: Celery itself judges a worker dead after twice its
advertised heartbeat interval (``freq``), and so do we by default. A SIGKILLed
worker sends nothing more, so silence is the only sign of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowguard.engine.triggers import worker_trigger
from topics.events import WorkerEvent
from topics.triggers import Trigger

DEFAULT_FREQ_SECONDS = 2.0
DEFAULT_EXPIRY_FACTOR = 2.0


@dataclass(slots=True)
class WorkerState:
    cluster: str
    hostname: str
    online: bool = False
    last_seen: float = 0.0
    freq: float = DEFAULT_FREQ_SECONDS
    offline_at: float | None = None
    offline_count: int = 0

    def expires_at(self, factor: float = DEFAULT_EXPIRY_FACTOR) -> float:
        return self.last_seen + self.freq * factor

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerState:
        return cls(**data)


def worker_key(cluster: str, hostname: str) -> str:
    return f"{cluster}/{hostname}"


def apply_worker_event(worker: WorkerState, event: WorkerEvent) -> Trigger | None:
    """Fold one worker event in; ``worker.offline`` on an online -> offline transition."""
    if event.freq:
        worker.freq = event.freq
    if event.kind == "worker.offline":
        if worker.offline_at is not None and not worker.online:
            return None  # already offline: a duplicate, or after heartbeat expiry
        worker.online = True  # it was online to say goodbye, even if we missed its hello
        worker.last_seen = max(worker.last_seen, event.timestamp)
        return _go_offline(worker, at=event.timestamp, reason="worker-offline event")
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


def _go_offline(worker: WorkerState, *, at: float, reason: str) -> Trigger | None:
    if not worker.online:
        return None
    worker.online = False
    worker.offline_at = at
    worker.offline_count += 1
    return worker_trigger(
        at=at,
        cluster=worker.cluster,
        hostname=worker.hostname,
        ordinal=worker.offline_count,
        reason=reason,
    )
