"""``flowguard topics create``: create every flowguard topic with its configuration."""

from __future__ import annotations

import asyncio
import sys

import click

from flowguard.cli.config import settings_or_exit
from flowguard.control.kafka_admin import create_topics, topic_differences
from flowguard.errors import KafkaUnavailable


@click.group("topics")
def command() -> None:
    """Manage flowguard's Kafka topics."""


@command.command("create")
def create() -> None:
    """Create the topics that do not exist yet (idempotent); report those that differ."""
    settings = settings_or_exit()
    where = (
        settings.kafka_bootstrap_servers,
        settings.topic_prefix,
        settings.kafka_timeout_seconds,
    )
    try:
        created = asyncio.run(create_topics(*where))
        differences = asyncio.run(topic_differences(*where))
    except KafkaUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    for name in created:
        click.echo(f"created {name}")
    if not created:
        click.echo("all topics exist")
    for line in differences:
        click.echo(f"warn {line}", err=True)
