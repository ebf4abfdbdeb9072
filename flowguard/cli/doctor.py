"""``flowguard doctor``: one line per check of the configuration and the Kafka cluster."""

from __future__ import annotations

import asyncio
import logging
import sys

import click
from pydantic import ValidationError

from flowguard.errors import KafkaUnavailable
from flowguard.kafka_admin import cluster_info
from flowguard.settings import Settings
from topics.registry import ALL_TOPICS


@click.command("doctor")
def command() -> None:
    """Check the settings, that Kafka answers, and which topics exist (exit 1 on failure)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        click.echo(f"FAIL configuration: FLOWGUARD_{field.upper()}: {error['msg']}")
        sys.exit(1)
    click.echo(
        f"ok   configuration: kafka {settings.kafka_bootstrap_servers}, "
        f"topic prefix {settings.topic_prefix!r}"
    )
    # aiokafka logs each failed connection; the one line below says it for the user.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        brokers, names = asyncio.run(
            cluster_info(settings.kafka_bootstrap_servers, settings.kafka_timeout_seconds)
        )
    except KafkaUnavailable as exc:
        click.echo(f"FAIL kafka: {exc}")
        sys.exit(1)
    click.echo(f"ok   kafka: {brokers} broker(s) answer at {settings.kafka_bootstrap_servers}")
    expected = [spec.name(settings.topic_prefix) for spec in ALL_TOPICS]
    present = [name for name in expected if name in names]
    missing = [name for name in expected if name not in names]
    if missing:
        click.echo(
            f"warn topics: {len(present)} of {len(expected)} exist; missing: {', '.join(missing)} "
            "(run `flowguard topics create`)"
        )
    else:
        click.echo(f"ok   topics: all {len(expected)} flowguard topics exist")
