"""``flowguard doctor``: one line per check of the configuration and the Kafka cluster.

Each line starts with ``ok``, ``warn`` or ``FAIL``. A warning (a topic not created yet) leaves
the exit code at 0; any failure makes it 1. Kafka being down is an answer, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from flowguard.control.kafka_admin import ClusterInfo, cluster_info
from flowguard.errors import KafkaUnavailable
from flowguard.kafka_security import client_options
from flowguard.settings import Settings, get_settings
from flowguard.settings_base import setting_problem
from topics.registry import ALL_TOPICS, topic_names

# Kafka's rule for topic names; the prefix must keep every flowguard topic name legal.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]+")
# host, [IPv6] or host:port; aiokafka defaults the port to 9092.
_SERVER = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^\s:,\[\]]+)(:\d{1,5})?")


class _Failed(Exception):
    """A check failed; its line is already printed."""


def _line(status: str, check: str, message: str) -> None:
    click.echo(f"{status:<4} {check}: {message}")


def _check_configuration() -> Settings:
    """Settings load and describe something reachable in principle (no network yet)."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        _line("FAIL", "configuration", setting_problem(exc))
        raise _Failed from None
    problem = _configuration_problem(settings)
    if problem:
        _line("FAIL", "configuration", problem)
        raise _Failed
    security = settings.kafka_security_summary()
    security = "" if security == "PLAINTEXT" else f" ({security})"
    _line(
        "ok",
        "configuration",
        f"kafka {settings.kafka_bootstrap_servers}{security}, "
        f"topic prefix {settings.topic_prefix!r}",
    )
    return settings


def _configuration_problem(settings: Settings) -> str | None:
    servers = [s.strip() for s in settings.kafka_bootstrap_servers.split(",")]
    bad = [s for s in servers if not _SERVER.fullmatch(s)]
    if bad:
        return f"FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS: {bad[0]!r} is not host or host:port"
    if not _TOPIC_NAME.fullmatch(settings.topic_prefix):
        return (
            f"FLOWGUARD_TOPIC_PREFIX: {settings.topic_prefix!r} may only contain "
            "ASCII letters, digits, '.', '_' and '-'"
        )
    return None


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """aiokafka logs every refused connection; doctor's one line already says it."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _check_kafka(settings: Settings) -> ClusterInfo:
    try:
        with _quiet("aiokafka"):
            info = asyncio.run(
                cluster_info(settings.kafka_bootstrap_servers, settings.kafka_timeout_seconds)
            )
    except KafkaUnavailable as exc:
        _line("FAIL", "kafka", str(exc))
        raise _Failed from None
    if info.broker_count == 0:
        _line("FAIL", "kafka", "answered, but no broker is registered")
        raise _Failed
    _line(
        "ok",
        "kafka",
        f"{info.broker_count} broker(s) answer at {settings.kafka_bootstrap_servers} "
        f"(cluster {info.cluster_id}, controller {info.controller_id})",
    )
    return info


def _check_topics(settings: Settings, info: ClusterInfo) -> None:
    """Missing topics warn: ``flowguard topics create`` makes them, doctor only reports."""
    expected = [spec.name(settings.topic_prefix) for spec in ALL_TOPICS]
    present = [name for name in expected if name in info.topics]
    missing = [name for name in expected if name not in info.topics]
    if missing:
        _line(
            "warn",
            "topics",
            f"{len(present)} of {len(expected)} exist; missing: {', '.join(missing)} "
            "(run `flowguard topics create`)",
        )
    else:
        _line("ok", "topics", f"all {len(expected)} exist: {', '.join(present)}")


#: How far back ``_check_sent_events`` reads: at most this many records per partition, and
#: none older than ``RECENT_SECONDS``.
RECENT_RECORDS = 5000
RECENT_SECONDS = 3600.0
#: ``hostname`` prefix of the task.sent events a bridge publishes for its own retries
#: (``bridge.routing.BRIDGE_SENDER``): they say nothing of the cluster's own settings.
_BRIDGE_SENDER = "flowguard-bridge@"


@dataclass
class _Seen:
    task_events: int = 0
    celery_sent: int = 0
    celery_app: str | None = None  # from the cluster's latest bridge.status


async def _recent_events(bootstrap: str, topic: str, timeout_seconds: float) -> dict[str, _Seen]:
    """Per cluster, what the recent records of the events topic hold (bounded, see above)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                request_timeout_ms=int(timeout_seconds * 1000),
                                **client_options())  # fmt: skip
    seen: dict[str, _Seen] = defaultdict(_Seen)
    async with asyncio.timeout(timeout_seconds):
        try:
            await consumer.start()
            tps = [TopicPartition(topic, p) for p in await _partitions(bootstrap, topic)]
            if not tps:
                return {}
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            since = int((time.time() - RECENT_SECONDS) * 1000)
            by_time = await consumer.offsets_for_times(dict.fromkeys(tps, since))
            for tp in tps:
                hour = by_time[tp].offset if by_time[tp] is not None else ends[tp]
                consumer.seek(tp, max(hour, ends[tp] - RECENT_RECORDS, 0))
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        _count(seen, record.value)
        finally:
            await consumer.stop()
    return dict(seen)


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="flowguard-doctor", **client_options()
    )
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(int(p["partition"]) for p in described.get("partitions") or ())


def _count(seen: dict[str, _Seen], value: bytes | None) -> None:
    try:
        event = json.loads(value or b"")
        kind, cluster = event["kind"], event["cluster"]
    except (ValueError, TypeError, KeyError):
        return  # not an event (the DLQ's business, not doctor's)
    if not isinstance(kind, str) or not isinstance(cluster, str):
        return
    if kind == "bridge.status":
        seen[cluster].celery_app = event.get("celery_app")
    elif kind.startswith("task.") and kind != "task.snapshot":
        seen[cluster].task_events += 1
        if kind == "task.sent" and not str(event.get("hostname") or "").startswith(_BRIDGE_SENDER):
            seen[cluster].celery_sent += 1


def _check_sent_events(settings: Settings, info: ClusterInfo) -> None:
    """Clusters whose task events carry no ``task-sent`` (Celery's default): events never tell
    their tasks' queues, so a retry needs the bridge to know the app's routes (``--app``)."""
    topic = topic_names(settings.topic_prefix)["events"]
    if topic not in info.topics:
        return
    try:
        with _quiet("aiokafka"):
            seen = asyncio.run(
                _recent_events(
                    settings.kafka_bootstrap_servers, topic, settings.kafka_timeout_seconds
                )
            )
    except (TimeoutError, KafkaError) as exc:
        _line("warn", "task-sent", f"could not read {topic}: {type(exc).__name__}: {exc}")
        return
    clusters = {name: s for name, s in sorted(seen.items()) if s.task_events}
    if not clusters:
        _line("ok", "task-sent", f"no task events in {topic} in the last hour")
    for name, counts in clusters.items():
        what = f"cluster {name!r}: {counts.task_events} recent task events"
        if counts.celery_sent:
            _line("ok", "task-sent", f"{what}, {counts.celery_sent} of them task-sent")
        elif counts.celery_app:
            _line("ok", "task-sent", f"{what}, no task-sent; its bridge routes retries with "
                                     f"the app {counts.celery_app}")  # fmt: skip
        else:
            _line(
                "warn", "task-sent",
                f"{what}, none a task-sent from Celery: retries cannot learn a task's queue "
                "and go to the default queue. Set task_send_sent_event = True in the "
                "cluster's Celery app, or start its bridge with --app proj.celery:app",
            )  # fmt: skip


@click.command("doctor")
def command() -> None:
    """Check the settings, that Kafka answers, which topics exist, and whether each cluster's
    events tell the queues of its tasks (exit 1 on failure)."""
    try:
        settings = _check_configuration()
        info = _check_kafka(settings)
        _check_topics(settings, info)
        _check_sent_events(settings, info)
    except _Failed:
        raise SystemExit(1) from None
