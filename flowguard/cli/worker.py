"""``flowguard worker``: run the live app (Faust); several processes share the work."""

from __future__ import annotations

import asyncio
import sys

import click

from flowguard.errors import KafkaUnavailable
from flowguard.kafka_admin import create_topics


@click.command("worker")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def command(log_level: str) -> None:
    """Run a flowguard worker: detection, workflows, breakers, actions, the execution log.

    Settings come from FLOWGUARD_* variables (see flowguard/live/settings.py). The topics are
    created first if they are missing (the same as `flowguard topics create`).
    """
    import faust

    from flowguard.live.app import Live
    from flowguard.live.settings import LiveSettings

    settings = LiveSettings()
    try:
        asyncio.run(
            create_topics(
                settings.kafka_bootstrap_servers,
                settings.topic_prefix,
                settings.kafka_timeout_seconds,
            )
        )
    except KafkaUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    live = Live(settings)
    worker = faust.Worker(live.app, loglevel=log_level, quiet=True)
    worker.execute_from_commandline()
