"""``flowguard history``: the execution log, read back through a local projection.

The log is kept forever, so reading it whole for every call grows without bound. The command
keeps a :class:`~flowguard.control.history.HistoryProjection` in a cache directory instead:
each call reads only the records added since the last one, then answers from indexed SQLite
(filters, newest first, the latest ``seq`` of each execution). Deleting the cache loses
nothing; the next call rebuilds it from the log.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import click

from flowguard.cli.config import settings_or_exit
from flowguard.cli.workflows import resolve_workflow
from flowguard.control.history import HistoryProjection
from flowguard.control.store import WorkflowStore
from flowguard.engine.workflow import ID_PATTERN, slugify
from flowguard.errors import FlowguardError, WorkflowNotFound
from flowguard.settings import Settings
from topics.execution import ExecutionRecord

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
HEADER = ("TRIGGERED AT", "WORKFLOW", "TRIGGER", "TASK", "OUTCOME", "ACTIONS")
#: The widest a column grows before its cells are cut with an ellipsis (the last is never cut).
MAX_WIDTHS = (20, 40, 24, 60, 40)
DEFAULT_CACHE = Path.home() / ".cache" / "flowguard"


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``2h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r}: expected a number and s, m, h or d (e.g. 2h)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


async def _workflow_id(settings: Settings, name: str) -> str:
    """The id of the workflow NAME names, resolved by the store as ``flowguard workflows``
    does (an id, a name's slug, or a name whose id differs from its slug). One the store no
    longer knows may still have executions in the log: NAME is taken as its id, or slugified."""
    async with WorkflowStore(
        settings.kafka_bootstrap_servers, settings.topic_prefix, settings.kafka_timeout_seconds
    ) as store:
        try:
            return resolve_workflow(store, name)
        except WorkflowNotFound:
            return name if re.match(ID_PATTERN, name) else slugify(name)


def _row(record: ExecutionRecord) -> tuple[str, ...]:
    task = record.task
    subject = f"{task.name or '?'} {task.id}" if task else (
        record.worker.hostname if record.worker else ""
    )  # fmt: skip
    outcome = record.outcome + (f" ({record.reason})" if record.reason else "")
    actions = ", ".join(f"{a.type}:{a.status}" for a in record.actions)
    event = record.trigger.event.removeprefix("task.")
    at = record.trigger.at[:19] + "Z"
    return (at, record.workflow.id, event, subject, outcome, actions)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(rows: list[tuple[str, ...]]) -> list[str]:
    """The header and ``rows`` as aligned lines: each column as wide as its widest cell (up to
    MAX_WIDTHS, longer cells end in an ellipsis), so a long workflow id never shifts the rest."""
    cut = [
        tuple(_cut(cell, width) for cell, width in zip(row[:-1], MAX_WIDTHS, strict=True))
        + row[-1:]
        for row in [HEADER, *rows]
    ]
    widths = [max(len(row[i]) for row in cut) for i in range(len(MAX_WIDTHS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True))
        + "  "
        + row[-1]
        for row in cut
    ]


@click.command("history")
@click.option("--workflow", help="A workflow id or name.")
@click.option("--task", "task_id", help="A task id: its executions and the one that retried it.")
@click.option("--outcome", type=click.Choice(["success", "failure", "skipped"]))
@click.option("--cluster", help="Only executions of this cluster's tasks and workers.")
@click.option("--since", "since", help="Only executions triggered in the last DURATION (2h, 7d).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--format", "fmt", type=click.Choice(["table", "jsonl"]), default="table", show_default=True
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_CACHE,
    show_default="~/.cache/flowguard",
    help="Where the projection lives; delete it any time.",
)
def command(
    workflow: str | None,
    task_id: str | None,
    outcome: str | None,
    cluster: str | None,
    since: str | None,
    limit: int,
    fmt: str,
    cache_dir: Path,
) -> None:
    """Executions from the execution log, newest first."""
    settings = settings_or_exit()
    since_at = time.time() - parse_duration(since) if since else None
    path = cache_dir / f"history-{settings.topic_prefix}.sqlite"
    try:
        workflow_id = asyncio.run(_workflow_id(settings, workflow)) if workflow else None
        with HistoryProjection(path) as projection:
            asyncio.run(
                projection.catch_up(
                    settings.kafka_bootstrap_servers,
                    settings.topic_prefix,
                    request_timeout_seconds=settings.kafka_timeout_seconds,
                )
            )
            records = _collect(
                projection, limit, workflow=workflow_id, task_id=task_id, outcome=outcome,
                cluster=cluster, since=since_at,
            )  # fmt: skip
    except FlowguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if fmt == "jsonl":
        for record in records:
            click.echo(record.to_json())
        return
    for line in render_table([_row(record) for record in records]):
        click.echo(line.rstrip())


def _collect(
    projection: HistoryProjection, limit: int, **filters: str | float | None
) -> list[ExecutionRecord]:
    """Up to ``limit`` records matching ``filters`` (the projection's query filters)."""
    records: list[ExecutionRecord] = []
    cursor = None
    while len(records) < limit:
        page = projection.query(
            **filters,  # type: ignore[arg-type]
            limit=min(1000, limit - len(records)),
            cursor=cursor,
        )
        records.extend(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return records
