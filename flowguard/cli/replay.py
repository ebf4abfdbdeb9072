"""``flowguard replay``: what workflows would have done over recorded Celery events."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import click
from pydantic import ValidationError

from flowguard.actions import ActionRunner, ActionSettings
from flowguard.api.samples import sample_notices
from flowguard.cli.config import settings_or_exit
from flowguard.cli.ranges import range_options, replay_events, time_range, workflows_option
from flowguard.control.masking import refuse_references
from flowguard.control.workflow_files import load_workflows
from flowguard.engine.core import Explanation
from flowguard.engine.decision import Notice
from flowguard.engine.matching import Published
from flowguard.errors import ConfigError, FlowguardError, WorkflowInvalid
from flowguard.replay import Replayer, ReplayStats, replay
from flowguard.settings import Settings
from topics.execution import ExecutionRecord

_TABLE = "{:<27} {:<28} {:<30} {:<36} {:<8} {}"


@click.command("replay")
@workflows_option("A YAML file or a directory of them.")
@click.option(
    "--events",
    "events_file",
    type=click.File("rb"),
    help="JSON lines of Celery events; - for stdin.",
)
@click.option(
    "--from-kafka",
    is_flag=True,
    help="Read <prefix>.events (what the bridges published) over --since/--until instead.",
)
@range_options(since_required=False)
@click.option(
    "--cluster",
    help="With --events: the cluster name of raw Celery events (default: 'default'). "
    "With --from-kafka: only this cluster's events (default: all).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "table"]), default="jsonl", show_default=True
)
@click.option(
    "--explain", is_flag=True, help="On stderr, why each workflow did not fire per trigger."
)
@click.option(
    "--send-samples",
    is_flag=True,
    help=(
        "Also send one sample notification per notifying workflow (its first execution), "
        "marked as a test and never retried; FLOWGUARD_ACTIONS_* settings apply."
    ),
)
def command(
    workflows_path: Path,
    events_file: IO[bytes] | None,
    from_kafka: bool,
    since: float | None,
    until: float | None,
    cluster: str | None,
    fmt: str,
    explain: bool,
    send_samples: bool,
) -> None:
    """Replay recorded events through workflows as a dry run: nothing is executed.

    The events come from a file (``--events``) or from Kafka (``--from-kafka --since 24h``:
    what the bridges published in that range, all partitions merged in publishing order);
    both print the same records for the same events. With ``--send-samples`` the
    notifications are really sent, once per workflow, clearly marked as tests; the records
    printed stay those of the dry run. Exit 1 if a sample failed.
    """
    if (events_file is None) == (not from_kafka):
        raise click.UsageError("give either --events FILE or --from-kafka")
    if events_file is not None and (since is not None or until is not None):
        raise click.UsageError("--since and --until go with --from-kafka")
    span = time_range(since, until) if from_kafka else None
    settings = settings_or_exit()
    published, action_settings = _load(workflows_path, settings, send_samples)
    stats = ReplayStats()
    out = sys.stdout
    if fmt == "table":
        out.write(
            _TABLE.format("trigger at", "workflow", "trigger", "task", "outcome", "actions") + "\n"
        )
    samples: dict[str, list[Notice]] = {}
    by_id = {p.workflow.id: p for p in published}

    def emit(record: ExecutionRecord) -> None:
        out.write((record.to_json() if fmt == "jsonl" else _row(record)) + "\n")
        if action_settings is not None and record.workflow.id not in samples:
            notices = sample_notices(by_id[record.workflow.id], record)
            if notices:
                samples[record.workflow.id] = notices

    on_explanation = _explain if explain else None
    if span is None:
        assert events_file is not None
        for record in replay(
            published,
            events_file,
            cluster=cluster or "default",
            stats=stats,
            on_malformed=lambda n, why: click.echo(f"line {n}: skipped: {why}", err=True),
            on_explanation=on_explanation,
        ):
            emit(record)
    else:
        replayer = Replayer(published, stats=stats, on_explanation=on_explanation)
        try:
            asyncio.run(replay_events(settings, replayer, span, cluster, emit))
        except FlowguardError as exc:
            out.flush()
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
    out.flush()
    click.echo(stats.summary(), err=True)
    if action_settings is not None:
        if not samples:
            click.echo("sample: none to send (no notifying workflow fired)", err=True)
        failed = asyncio.run(_send_samples(action_settings, samples.values()))
        sys.exit(1 if failed else 0)


def _load(
    workflows_path: Path, settings: Settings, send_samples: bool
) -> tuple[list[Published], ActionSettings | None]:
    """The workflows to replay, and the action settings when samples are sent; exit 2 with
    the reason when either is refused."""
    try:
        loaded = load_workflows(workflows_path)
        # A replay with --send-samples really sends: only allowed ${NAME}s, as a save.
        policy = settings.secret_policy()
        for item in loaded:
            refuse_references(item.source, item.document, policy)
        action_settings = ActionSettings() if send_samples else None
    except WorkflowInvalid as exc:
        click.echo(f"error: invalid workflow\n{exc}", err=True)
        sys.exit(2)
    except (ConfigError, ValidationError) as exc:
        click.echo(f"error: invalid FLOWGUARD_ACTIONS_* setting\n{exc}", err=True)
        sys.exit(2)
    return [Published.of(item.workflow) for item in loaded], action_settings


async def _send_samples(settings: ActionSettings, batches: Iterable[list[Notice]]) -> int:
    """Send every sample, one at a time, saying on stderr how each went; the number that failed."""
    failed = 0
    async with ActionRunner(settings) as runner:
        for notices in batches:
            for notice in notices:
                result = await runner.deliver(notice, sample=True)
                failed += result.status == "failed"
                click.echo(
                    f"sample: {notice.record.workflow.id} {result.type}: {result.status}: "
                    f"{result.detail}",
                    err=True,
                )
    return failed


def _explain(item: Explanation) -> None:
    subject = item.trigger.task.id if item.trigger.task else item.trigger.worker
    click.echo(
        f"explain: {item.trigger.event} {subject}: {item.workflow_id}: {item.reason}", err=True
    )


def _row(record: ExecutionRecord) -> str:
    task = (
        record.task.name or record.task.id
        if record.task
        else (record.worker.hostname if record.worker else "")
    )
    actions = ", ".join(f"{a.type}:{a.status}" for a in record.actions)
    outcome = record.outcome if record.reason is None else f"{record.outcome}:{record.reason}"
    return _TABLE.format(
        record.trigger.at,
        record.workflow.id[:28],
        record.trigger.event,
        (task or "")[:36],
        outcome,
        actions,
    )
