"""``replay --from-kafka`` logs in with the ``FLOWGUARD_KAFKA_*`` settings: against a broker
that accepts only SASL_SSL (SCRAM-SHA-512 over TLS, client certificate)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from flowguard.control.kafka_admin import delete_topics
from flowguard.kafka_security import client_options
from flowguard.settings import Settings, get_settings
from tests.integration.cli import workflows
from tests.integration.cli.conftest import Published, two_clusters
from topics.registry import EVENTS


async def publish(settings: Settings, prefix: str, events: list[Published]) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=30_000,
        **client_options(settings),
    )  # fmt: skip
    await admin.start()
    try:
        await admin.create_topics([NewTopic(EVENTS.name(prefix), EVENTS.partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", **client_options(settings)
    )
    await producer.start()
    try:
        for item in events:
            await producer.send(
                EVENTS.name(prefix), item.value, key=item.key, timestamp_ms=item.timestamp_ms
            )
        await producer.flush()
    finally:
        await producer.stop()


def replay(*args: str) -> Result:
    return CliRunner().invoke(cli, ["replay", *args])


def test_from_kafka_over_sasl_ssl(
    kafka_sasl: dict[str, str], topic_prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in kafka_sasl.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", topic_prefix)
    get_settings.cache_clear()
    settings = get_settings()
    events = two_clusters(int(time.time() * 1000) - 60_000)
    flows = str(workflows.write(tmp_path / "live", **workflows.LIVE))
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(e.value + b"\n" for e in events))
    try:
        asyncio.run(publish(settings, topic_prefix, events))
        secured = replay("--workflows", flows, "--from-kafka", "--since", "1h")
        assert secured.exit_code == 0, secured.output
        expected = replay("--workflows", flows, "--events", str(events_file))
        assert secured.stdout == expected.stdout
        assert len(secured.stdout.splitlines()) > 50

        # The same broker without the settings: no plaintext listener, so no read.
        for name in kafka_sasl:
            if name != "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS":
                monkeypatch.delenv(name)
        monkeypatch.setenv("FLOWGUARD_KAFKA_TIMEOUT_SECONDS", "3")
        get_settings.cache_clear()
        plain = replay("--workflows", flows, "--from-kafka", "--since", "1h")
        assert plain.exit_code == 1
        assert plain.stderr.startswith("error: ")
        assert plain.stdout == ""
    finally:  # the broker is shared by the session: its topics are deleted as its super user
        for name, value in kafka_sasl.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        asyncio.run(delete_topics(settings.kafka_bootstrap_servers, topic_prefix, 30))
        get_settings.cache_clear()


def doctor() -> Result:
    return CliRunner().invoke(cli, ["doctor"])


def test_doctor_over_sasl_ssl(
    kafka_sasl: dict[str, str], topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flowguard doctor``'s admin client and its events consumer log in too; without the
    settings the same broker is a FAIL, exit 1."""
    for name, value in kafka_sasl.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FLOWGUARD_TOPIC_PREFIX", topic_prefix)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        asyncio.run(publish(settings, topic_prefix, two_clusters(int(time.time() * 1000) - 60_000)))
        secured = doctor()
        assert secured.exit_code == 0, secured.output
        lines = secured.output.splitlines()
        assert lines[0].startswith("ok   configuration: "), lines
        assert "SASL_SSL" in lines[0], lines
        assert lines[1].startswith("ok   kafka: 1 broker(s) answer at "), lines
        # The consumer read the events topic (a warn "could not read" if it could not log in).
        sent = [line for line in lines if " task-sent: cluster " in line]
        assert sent, lines
        assert "could not read" not in secured.output, lines
        assert kafka_sasl["FLOWGUARD_KAFKA_SASL_PASSWORD"] not in secured.output

        for name in kafka_sasl:
            if name != "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS":
                monkeypatch.delenv(name)
        monkeypatch.setenv("FLOWGUARD_KAFKA_TIMEOUT_SECONDS", "3")
        get_settings.cache_clear()
        plain = doctor()
        assert plain.exit_code == 1, plain.output
        assert "FAIL kafka: " in plain.output
    finally:
        for name, value in kafka_sasl.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        asyncio.run(delete_topics(settings.kafka_bootstrap_servers, topic_prefix, 30))
        get_settings.cache_clear()
