"""The fleet: one row per Celery cluster, for the page that watches them all.

:func:`fleet_view` is pure: it joins what the API already keeps, the events topic's small
projection (:class:`flowguard.api.fleet_feed.FleetFeed`: bridges, workers, failures) and the
execution history (executions per cluster, open circuit breakers), at ``now``. Nothing in it
is a secret: a bridge's status carries counters and flags, never a broker URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flowguard.api.deps import Svc, Viewer, api_router
from flowguard.api.fleet_feed import DAY_HOURS, HOUR_SECONDS, ClusterSeen, WorkerSeen
from flowguard.api.summaries import circuit_state
from flowguard.control.history import HistoryProjection
from flowguard.engine.workers import DEFAULT_EXPIRY_FACTOR, DEFAULT_FREQ_SECONDS
from topics.events import BridgeStatus
from topics.execution import ExecutionRecord
from topics.record import from_iso, iso
from topics.workflows import WorkflowVersion

#: A bridge is silent once this many of its status intervals passed without a status.
SILENT_AFTER_INTERVALS = 3.0
#: The page lists at most this many workers per cluster (the counts cover all of them).
WORKERS_LISTED = 50

router = api_router("/api", "fleet", 401, 403, 503)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class BridgeView(_Out):
    bridge_id: str
    state: Literal["reporting", "silent"]
    last_status_at: str
    status_age_seconds: float
    interval_seconds: float
    started_at: str
    celery_connected: bool
    kafka_connected: bool
    events_received: int
    events_published: int
    events_dropped: int
    events_invalid: int
    buffered: int


class WorkerView(_Out):
    hostname: str
    state: Literal["online", "offline", "lost"] = Field(
        description="offline: it said goodbye; lost: its heartbeats stopped (twice its interval)."
    )
    last_seen: str


class OpenBreaker(_Out):
    workflow_id: str
    workflow_name: str
    last_execution_at: str
    count: int
    max_executions: int
    window_seconds: float
    clusters: list[str] = Field(description="Clusters of its executions within the window.")


class ClusterView(_Out):
    cluster: str
    bridge_state: Literal["reporting", "silent", "unknown"] = Field(
        description="unknown: no bridge.status of this cluster was read."
    )
    bridges: list[BridgeView]
    last_event_at: str | None
    last_event_age_seconds: float | None
    workers_online: int
    workers_offline: int
    workers: list[WorkerView] = Field(description=f"At most {WORKERS_LISTED}, online first.")
    failures_last_hour: int
    failures_per_hour: list[int] = Field(description="task.failed per hour, this hour last.")
    executions_last_hour: int
    open_breakers: list[str] = Field(description="Workflow ids whose open breaker saw it.")


class Fleet(_Out):
    generated_at: str
    counted_since: str | None = Field(
        description="Failure counts are complete from this time on (the API read the events "
        "topic back to here when it started)."
    )
    clusters: list[ClusterView]
    open_breakers: list[OpenBreaker]


@dataclass(frozen=True, slots=True)
class HistoryFacts:
    """What the execution history says, gathered off the event loop."""

    executions_last_hour: Mapping[str, int]
    open_breakers: list[OpenBreaker]


# -- the pure part ----------------------------------------------------------------------------


def fleet_view(
    clusters: Iterable[ClusterSeen], facts: HistoryFacts, *, counted_since: float | None, now: float
) -> Fleet:
    """The fleet at ``now``: every cluster the events or the history know, by name."""
    seen = {c.name: c for c in clusters}
    names = sorted(set(seen) | set(facts.executions_last_hour))
    return Fleet(
        generated_at=_iso(now),
        counted_since=iso(counted_since),
        clusters=[_cluster(seen.get(name) or ClusterSeen(name), facts, now) for name in names],
        open_breakers=facts.open_breakers,
    )


def _cluster(seen: ClusterSeen, facts: HistoryFacts, now: float) -> ClusterView:
    bridges = [_bridge(s, now) for s in _current_bridges(seen.bridges.values())]
    workers = sorted(
        (_worker(w, now) for w in seen.workers.values()),
        key=lambda w: (w.state != "online", w.hostname),
    )
    online = sum(1 for w in workers if w.state == "online")
    per_hour = _per_hour(seen.failures, now)
    return ClusterView(
        cluster=seen.name,
        bridge_state=_bridge_state(bridges),
        bridges=bridges,
        last_event_at=iso(seen.last_event_at),
        last_event_age_seconds=_age(seen.last_event_at, now),
        workers_online=online,
        workers_offline=len(workers) - online,
        workers=workers[:WORKERS_LISTED],
        failures_last_hour=_last_hour(seen.recent, now),
        failures_per_hour=per_hour,
        executions_last_hour=facts.executions_last_hour.get(seen.name, 0),
        open_breakers=[b.workflow_id for b in facts.open_breakers if seen.name in b.clusters],
    )


def _current_bridges(statuses: Iterable[BridgeStatus]) -> list[BridgeStatus]:
    """Leave out a bridge replaced by a restart: another bridge started after its last word."""
    found = list(statuses)
    newest_start = max((s.started_at for s in found), default=0.0)
    return sorted((s for s in found if s.timestamp >= newest_start), key=lambda s: s.bridge_id)


def _bridge(status: BridgeStatus, now: float) -> BridgeView:
    silent = now - status.timestamp > SILENT_AFTER_INTERVALS * status.interval_seconds
    return BridgeView(
        bridge_id=status.bridge_id,
        state="silent" if silent else "reporting",
        last_status_at=_iso(status.timestamp),
        status_age_seconds=round(max(0.0, now - status.timestamp), 3),
        interval_seconds=status.interval_seconds,
        started_at=_iso(status.started_at),
        celery_connected=status.celery_connected,
        kafka_connected=status.kafka_connected,
        events_received=status.events_received,
        events_published=status.events_published,
        events_dropped=status.events_dropped,
        events_invalid=status.events_invalid,
        buffered=status.buffered,
    )


def _bridge_state(bridges: list[BridgeView]) -> Literal["reporting", "silent", "unknown"]:
    if not bridges:
        return "unknown"
    return "reporting" if any(b.state == "reporting" for b in bridges) else "silent"


def _worker(worker: WorkerSeen, now: float) -> WorkerView:
    """Celery's own rule: a worker silent for twice its heartbeat interval is gone."""
    freq = worker.freq or DEFAULT_FREQ_SECONDS
    state: Literal["online", "offline", "lost"]
    if worker.kind == "worker.offline":
        state = "offline"
    elif now > worker.last_seen + DEFAULT_EXPIRY_FACTOR * freq:
        state = "lost"
    else:
        state = "online"
    return WorkerView(hostname=worker.hostname, state=state, last_seen=_iso(worker.last_seen))


def _per_hour(failures: Mapping[int, int], now: float) -> list[int]:
    this_hour = int(now // HOUR_SECONDS)
    return [failures.get(this_hour - back, 0) for back in range(DAY_HOURS - 1, -1, -1)]


def _last_hour(per_minute: Mapping[int, int], now: float) -> int:
    """Failures in the last 60 minutes (whole minutes: this one and the 59 before)."""
    this_minute = int(now // 60)
    return sum(n for minute, n in per_minute.items() if this_minute - 60 < minute <= this_minute)


def _age(at: float | None, now: float) -> float | None:
    return None if at is None else round(max(0.0, now - at), 3)


def _iso(at: float) -> str:
    text = iso(at)
    assert text is not None
    return text


# -- gathering from the history (blocking: run it on a thread) ---------------------------------


def history_facts(
    history: HistoryProjection, versions: list[WorkflowVersion], now: float
) -> HistoryFacts:
    """Executions per cluster in the last hour, and each live workflow's open breaker."""
    breakers = [
        found
        for version in versions
        if (found := _open_breaker(history, version.workflow_id, now)) is not None
    ]
    return HistoryFacts(history.executions_by_cluster(since=now - HOUR_SECONDS), breakers)


def _open_breaker(history: HistoryProjection, workflow_id: str, now: float) -> OpenBreaker | None:
    latest = next(iter(history.query(workflow=workflow_id, limit=1).items), None)
    if latest is None:
        return None
    breaker = latest.circuit_breaker
    scoped = breaker.cluster is not None  # one breaker per cluster (circuit_breaker.scope)
    if not scoped and circuit_state(latest, now) != "open":
        return None
    since = (now if scoped else from_iso(latest.trigger.at)) - breaker.window_seconds
    window = history.query(workflow=workflow_id, since=since, limit=1000).items
    clusters = {c for r in window if (c := _cluster_of(r)) is not None}
    if scoped:  # the clusters whose own breaker is open, by their newest record
        newest: dict[str, ExecutionRecord] = {}
        for record in window:  # newest first
            newest.setdefault(record.circuit_breaker.cluster or "", record)
        clusters = {c for c, r in newest.items() if c and circuit_state(r, now) == "open"}
        if not clusters:
            return None
    return OpenBreaker(
        workflow_id=workflow_id,
        workflow_name=latest.workflow.name,
        last_execution_at=latest.trigger.at,
        count=breaker.count,
        max_executions=breaker.max_executions,
        window_seconds=breaker.window_seconds,
        clusters=sorted(clusters),
    )


def _cluster_of(record: ExecutionRecord) -> str | None:
    if record.task is not None:
        return record.task.cluster
    return record.worker.cluster if record.worker is not None else None


@router.get("/fleet", response_model=Fleet)
async def fleet(who: Viewer, svc: Svc) -> Fleet:
    """Every cluster: its bridges, workers, failures per hour and the breakers open on it."""
    store = await svc.refreshed_store()
    versions = list(store.current().values())
    # The feed changes only on this loop: copy it here, build the view on a thread (a fleet
    # of a thousand clusters takes a few hundred milliseconds, too long to hold the loop).
    clusters, counted_since = svc.fleet.snapshot(), svc.fleet.counted_since
    return await asyncio.to_thread(_view, svc.history, versions, clusters, counted_since)


def _view(
    history: HistoryProjection,
    versions: list[WorkflowVersion],
    clusters: list[ClusterSeen],
    counted_since: float | None,
) -> Fleet:
    now = time.time()
    facts = history_facts(history, versions, now)
    return fleet_view(clusters, facts, counted_since=counted_since, now=now)
