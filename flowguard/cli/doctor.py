"""``flowguard doctor``: one line per check of the configuration and the Kafka cluster.

Each line starts with ``ok``, ``warn`` or ``FAIL``. A warning (a topic not created yet) leaves
the exit code at 0; any failure makes it 1. Kafka being down is an answer, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import click
from pydantic import ValidationError

from flowguard.errors import KafkaUnavailable
from flowguard.kafka_admin import ClusterInfo, cluster_info
from flowguard.settings import Settings, get_settings, setting_problem
from topics.registry import ALL_TOPICS

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
    _line(
        "ok",
        "configuration",
        f"kafka {settings.kafka_bootstrap_servers}, topic prefix {settings.topic_prefix!r}",
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


@click.command("doctor")
def command() -> None:
    """Check the settings, that Kafka answers, and which topics exist (exit 1 on failure)."""
    try:
        settings = _check_configuration()
        info = _check_kafka(settings)
        _check_topics(settings, info)
    except _Failed:
        raise SystemExit(1) from None
