"""``flowguard worker``: run the live app (Faust); several processes share the work."""

from __future__ import annotations

import asyncio
import sys

import click
from pydantic import ValidationError

from flowguard.control.kafka_admin import create_topics, ensure_compacted
from flowguard.errors import KafkaUnavailable
from flowguard.settings_base import setting_problem


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

    try:
        settings = LiveSettings()
    except ValidationError as exc:
        click.echo(f"error: {setting_problem(exc)}", err=True)
        sys.exit(2)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    live = Live(settings)
    bootstrap, timeout = settings.kafka_bootstrap_servers, settings.kafka_timeout_seconds
    changelogs = {
        table.changelog_topic.get_topic_name(): table.partitions or 1
        for table in live.app.tables.values()
    }
    try:
        asyncio.run(create_topics(bootstrap, settings.topic_prefix, timeout))
        asyncio.run(ensure_compacted(bootstrap, changelogs, timeout * 3))
    except KafkaUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    from flowguard.logs import faust_logging_config

    logging_config = faust_logging_config(log_level, settings.log_format)
    worker = faust.Worker(live.app, loglevel=log_level, quiet=True, logging_config=logging_config)
    worker.execute_from_commandline()
