"""Every Prometheus metric flowguard exports, in one registry per process.

Each process (``flowguard worker``, ``flowguard-bridge``, ``flowguard api``) imports this
module and serves :data:`REGISTRY` at ``/metrics``; a metric only a worker updates stays
absent (labelled) or 0 elsewhere. Names follow Prometheus' conventions: the ``flowguard_``
prefix, the unit in the name, ``_total`` on counters (the client adds it). Labels are
bounded: event type, cluster, workflow id, action type, outcome, topic and partition; never
a task, execution or action id. The hot path (one event) pays one dict lookup and one
``inc()``: :func:`event_seen` caches the labelled child.

The bridge's figures it already keeps (received, published, dropped, buffered) are read at
scrape time by a collector (:class:`BridgeCollector`), so its hot path pays nothing.
"""

from __future__ import annotations

import bisect
import gc
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# worker: detection ---------------------------------------------------------------------
EVENTS = Counter(
    "flowguard_events", "Celery events applied by detection, by event type and cluster.",
    ["type", "cluster"], registry=REGISTRY,
)  # fmt: skip
CONSUMER_LAG = Gauge(
    "flowguard_consumer_lag_records",
    "Records on a partition this worker holds that it has not committed yet (high water mark "
    "minus committed offset).", ["topic", "partition"], registry=REGISTRY,
)  # fmt: skip
TABLE_KEYS = Gauge(
    "flowguard_table_keys",
    "Keys in a Faust table on the partitions this worker holds (chains, workers, executions, "
    "...): grows with the tasks and executions kept, flat under a steady load.", ["table"],
    registry=REGISTRY,
)  # fmt: skip
TRIGGERS = Counter(
    "flowguard_triggers", "Triggers matched to a workflow and sent to deciding.",
    ["workflow"], registry=REGISTRY,
)  # fmt: skip
TRIGGERS_STALE = Counter(
    "flowguard_triggers_stale",
    "Triggers not acted on: older than max_trigger_age_seconds.",
    registry=REGISTRY,
)
# worker: deciding ----------------------------------------------------------------------
EXECUTIONS = Counter(
    "flowguard_executions", "Executions decided (their first record), by workflow and outcome.",
    ["workflow", "outcome"], registry=REGISTRY,
)  # fmt: skip
BREAKER_OPEN = Gauge(
    "flowguard_breaker_open", "1 while the workflow's circuit breaker is open, else 0.",
    ["workflow"], registry=REGISTRY,
)  # fmt: skip
RETRIES_SENT = Counter(
    "flowguard_retries_sent", "Retry commands sent to the bridges, by cluster.",
    ["cluster"], registry=REGISTRY,
)  # fmt: skip
# worker: delivering --------------------------------------------------------------------
DELIVERIES = Counter(
    "flowguard_action_deliveries", "Notices delivered (Slack, webhook, ...), by type and outcome.",
    ["type", "outcome"], registry=REGISTRY,
)  # fmt: skip
DELIVERY_SECONDS = Histogram(
    "flowguard_action_delivery_duration_seconds",
    "Time to deliver a notice (every attempt and pause), by type and outcome.",
    ["type", "outcome"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
# both ----------------------------------------------------------------------------------
DLQ_RECORDS = Counter(
    "flowguard_dlq_records", "Records sent to <prefix>.dlq, by the topic they came from.",
    ["topic"], registry=REGISTRY,
)  # fmt: skip
KAFKA_ERRORS = Counter(
    "flowguard_kafka_errors", "Kafka requests that failed (each failure, not each outage).",
    ["component"], registry=REGISTRY,
)  # fmt: skip
REDIS_ERRORS = Counter(
    "flowguard_redis_errors", "Redis calls that failed (the bridge's command ids).",
    ["component"], registry=REGISTRY,
)  # fmt: skip
READY = Gauge(
    "flowguard_ready", "1 while the process's /readyz answers 200, else 0.", registry=REGISTRY
)

# every process: the garbage collector -------------------------------------------------
GC_FROZEN = Gauge(
    "flowguard_gc_frozen_objects",
    "Objects moved out of the collector's reach (gc.freeze) once the process settled.",
    registry=REGISTRY,
)
GC_FROZEN.set_function(gc.get_freeze_count)
GC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcCollector(Collector):
    """``flowguard_gc_pause_seconds``: every collection timed (``gc.callbacks``), by generation.

    The callback only adds to plain lists, and the histogram is built when Prometheus scrapes.
    It takes no lock: a collection can start at any allocation, in any thread, also while that
    thread holds a metric's lock, and taking that lock again in the callback would deadlock.
    (Collections never overlap: CPython runs one at a time, under the GIL.)
    """

    def __init__(self) -> None:
        self._started = 0.0
        self._counts = [[0] * (len(GC_BUCKETS) + 1) for _ in range(3)]  # the last: over 1 s
        self._sums = [0.0, 0.0, 0.0]

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took, generation = time.perf_counter() - self._started, info["generation"]
        self._sums[generation] += took
        self._counts[generation][bisect.bisect_left(GC_BUCKETS, took)] += 1

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily(
            "flowguard_gc_pause_seconds",
            "Garbage collections by generation, and how long each stood the whole process "
            "still (a full collection, generation 2, walks every object the process holds).",
            labels=["generation"],
        )  # fmt: skip
        bounds = [*(str(b) for b in GC_BUCKETS), "+Inf"]
        for generation in range(3):
            cumulative = itertools.accumulate(self._counts[generation])
            family.add_metric([str(generation)], list(zip(bounds, cumulative, strict=True)),
                              sum_value=self._sums[generation])  # fmt: skip
        yield family


GC_WATCH = GcCollector()
REGISTRY.register(GC_WATCH)
gc.callbacks.append(GC_WATCH)

_event_children: dict[tuple[str, str], Any] = {}


def event_seen(kind: str, cluster: str) -> None:
    """One event applied: the cheap way (the labelled child is cached)."""
    child = _event_children.get((kind, cluster))
    if child is None:
        child = _event_children[kind, cluster] = EVENTS.labels(kind, cluster)
    child.inc()


class BridgeCollector(Collector):
    """The bridge's own counts, read when Prometheus scrapes (nothing on the hot path)."""

    def __init__(self, read: Callable[[], dict[str, Any] | None]) -> None:
        self.read = read

    def describe(self) -> list[Any]:
        return []  # the figures exist only once the bridge runs

    def collect(self) -> Iterator[Any]:
        figures = self.read()
        if figures is None:
            return
        cluster = [figures["cluster"]]
        for name, doc, value in (
            ("flowguard_bridge_events_received", "Celery events received.", "received"),
            ("flowguard_bridge_events_published", "Events Kafka acknowledged.", "published"),
            ("flowguard_bridge_events_invalid", "Celery events that could not be translated "
             "(to the DLQ).", "invalid"),
            ("flowguard_bridge_dlq_records", "Records the bridge sent to the DLQ.", "dlq"),
        ):  # fmt: skip
            counter = CounterMetricFamily(name, doc, labels=["cluster"])
            counter.add_metric(cluster, figures[value])
            yield counter
        dropped = CounterMetricFamily(
            "flowguard_bridge_events_dropped",
            "Events dropped: the buffer was full while Kafka refused.", labels=["cluster", "kind"],
        )  # fmt: skip
        for kind, count in sorted(figures["dropped_by_kind"].items()):
            dropped.add_metric([figures["cluster"], kind], count)
        yield dropped
        commands = CounterMetricFamily(
            "flowguard_bridge_commands", "Commands carried out, by outcome.",
            labels=["cluster", "outcome"],
        )  # fmt: skip
        for outcome, count in sorted(figures["commands"].items()):
            commands.add_metric([figures["cluster"], outcome], count)
        yield commands
        for name, doc, value in (
            ("flowguard_bridge_buffer_events", "Events buffered or in flight to Kafka.",
             "buffered"),
            ("flowguard_bridge_buffer_capacity_events", "The buffer's bound (buffer_size).",
             "capacity"),
            ("flowguard_bridge_celery_connected", "1 while Celery's broker answers.",
             "celery_connected"),
            ("flowguard_bridge_kafka_connected", "1 while Kafka takes events.",
             "kafka_connected"),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(name, doc, labels=["cluster"])
            gauge.add_metric(cluster, float(figures[value]))
            yield gauge
