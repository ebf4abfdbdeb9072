"""``flowguard remediate``: retry or revoke in bulk by filter, paced, recorded, undoable.

``preview`` counts what a filter selects over ``<prefix>.events`` and shows a sample; ``run``
sends the commands (after a confirmation, or ``--yes``) at ``--rate`` a second, each recorded
on the execution log, and stops at Ctrl-C after the current task; ``undo`` revokes every retry
a workflow or a run scheduled or sent that has not settled, and disables the workflow.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from flowguard.cli.config import settings_or_exit
from flowguard.cli.ranges import ProgressLine, range_options
from flowguard.control.store import WorkflowStore
from flowguard.errors import FlowguardError
from flowguard.live.settings import LiveSettings
from flowguard.remediate import (
    DEFAULT_CEILING,
    RUN_PREFIX,
    Action,
    Candidate,
    Filter,
    Kind,
    check_ceiling,
    check_rate,
    preview,
    run_id,
    select,
)
from flowguard.remediate_run import RunState, Sender, collect, execute, undo
from flowguard.settings import Settings
from flowguard.settings_base import setting_problem
from flowguard.topic_range import TimeRange
from topics.signing import CommandKey

F = TypeVar("F", bound=Callable[..., Any])
#: Events read before ``--since``: a task that failed in the range was sent before it, and
#: only its task-sent/received events name it and its args.
LOOKBACK_SECONDS = 3600.0


def _filter_options(function: F) -> F:
    options = [
        click.option("--action", "kind", type=click.Choice(["retry", "revoke"]), default="retry",
                     show_default=True, help="retry failed tasks, or revoke unfinished ones."),
        click.option("--task", help="Task name glob (billing.*)."),
        click.option("--exception", help="Exception type, a glob (ConnectionError, *Timeout)."),
        click.option("--error", help="A regular expression searched in the error message."),
        click.option("--fingerprint", help="A failure group's fingerprint."),
        click.option("--cluster", "clusters", multiple=True, help="Only this cluster (repeat)."),
        click.option("--queue", "queues", multiple=True, help="Queue glob (repeat)."),
        range_options(since_required=True),
    ]  # fmt: skip
    for option in reversed(options):
        function = option(function)
    return function


def _selected(
    settings: Settings, kind: Kind, filters: dict[str, Any], since: float, until: float | None
) -> list[Candidate]:
    try:
        where = Filter(
            task=filters["task"], exception=filters["exception"], error=filters["error"],
            clusters=tuple(filters["clusters"]), queues=tuple(filters["queues"]),
            fingerprint=filters["fingerprint"], since=since, until=until,
        )  # fmt: skip
        where.refuse_for(kind)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    progress = ProgressLine("reading events")
    try:
        collector = asyncio.run(
            collect(settings, TimeRange(since - LOOKBACK_SECONDS, until), progress)
        )
    except FlowguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    progress.done()
    return select(collector.candidates(kind), where)


def _show_preview(selected: list[Candidate], sample: int, as_json: bool) -> None:
    p = preview(selected, sample)
    if as_json:
        click.echo(json.dumps({
            "count": p.count, "by_cluster": p.by_cluster, "by_name": p.by_name,
            "sample": [c.summary() for c in p.sample],
        }))  # fmt: skip
        return
    click.echo(f"{p.count} tasks selected")
    for cluster, n in sorted(p.by_cluster.items()):
        click.echo(f"  cluster {cluster}: {n}")
    for name, n in sorted(p.by_name.items(), key=lambda kv: -kv[1]):
        click.echo(f"  {name}: {n}")
    for c in p.sample:
        error = f"{c.exception_type or ''}: {c.error_message or ''}" if c.exception_type else ""
        click.echo(f"  {c.cluster} {c.task_id} {c.name} {c.args} {c.queue or '-'} {error}")


@click.group("remediate")
def command() -> None:
    """Retry or revoke tasks in bulk by filter, across clusters; undo a wave."""


@command.command("preview")
@_filter_options
@click.option("--sample", default=10, show_default=True, type=click.IntRange(0, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def preview_(kind: Kind, since: float, until: float | None, sample: int, as_json: bool,
             **filters: Any) -> None:  # fmt: skip
    """Count the tasks a filter selects and show a sample; nothing is sent."""
    settings = settings_or_exit()
    _show_preview(_selected(settings, kind, filters, since, until), sample, as_json)


def _keys() -> dict[str, CommandKey]:
    try:
        return LiveSettings().command_signing_keys
    except ValidationError as exc:
        click.echo(f"error: {setting_problem(exc)}", err=True)
        sys.exit(2)


@command.command("run")
@_filter_options
@click.option("--name", required=True, help="The run's name ('incident 4211'): its id on the log.")
@click.option("--rate", default=5.0, show_default=True, type=float, help="Tasks per second.")
@click.option("--ceiling", default=DEFAULT_CEILING, show_default=True, type=click.IntRange(1),
              help="Refuse the run when the filter selects more tasks than this.")  # fmt: skip
@click.option("--by", "actor", default="cli", show_default=True, help="Who runs it (recorded).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def run(kind: Kind, since: float, until: float | None, name: str, rate: float, ceiling: int,
        actor: str, yes: bool, **filters: Any) -> None:  # fmt: skip
    """Send a retry (the original args) or a revoke for every selected task, paced, each one
    recorded on the execution log; Ctrl-C stops after the current task. Exit 1 when a retry
    was refused (the reasons are on stderr and in the log), 3 when aborted."""
    try:
        run_name = run_id(name)
        check_rate(rate)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    settings = settings_or_exit()
    keys = _keys()
    selected = _selected(settings, kind, filters, since, until)
    try:
        check_ceiling(len(selected), ceiling)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    _show_preview(selected, 5, as_json=False)
    if not selected:
        return
    if not yes:
        click.confirm(f"{kind} {len(selected)} tasks as {name!r}?", abort=True, err=True)
    state = asyncio.run(_run(settings, keys, run_name, name, actor, kind, selected, rate, ceiling))
    click.echo(json.dumps({"run": RUN_PREFIX + run_name, **state.as_dict()}))
    for task_id, reason in state.refusals:
        click.echo(f"refused {task_id}: {reason}", err=True)
    sys.exit(3 if state.aborted else 1 if state.refused else 0)


async def _run(settings: Settings, keys: dict[str, CommandKey], run_name: str, name: str,
               actor: str, kind: Kind, selected: list[Candidate], rate: float,
               ceiling: int) -> RunState:  # fmt: skip
    state = RunState(total=len(selected))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, state.abort.set)
    loop.add_signal_handler(signal.SIGTERM, state.abort.set)
    line = ProgressLine(f"{kind} {name}", interval_seconds=2.0)

    def said(action: Action, status: str) -> None:
        line(state.done, state.total)

    async with Sender(settings, keys) as sender:
        await execute(
            sender, run=run_name, name=name, actor=actor, kind=kind, selected=selected,
            rate=rate, ceiling=ceiling, progress=state, on_action=said,
        )  # fmt: skip
    line.done()
    return state


@command.command("undo")
@click.option("--workflow", "workflow_id", help="A workflow id: its pending retries; disabled.")
@click.option("--run", "run_name", help="A bulk run's name: the retries it sent.")
@click.option("--by", "actor", default="cli", show_default=True, help="Who undoes (recorded).")
@click.option("--keep-enabled", is_flag=True, help="Do not disable the workflow.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def undo_(workflow_id: str | None, run_name: str | None, actor: str, keep_enabled: bool,
          yes: bool) -> None:  # fmt: skip
    """Revoke every retry a workflow or a run scheduled or sent that has not settled (delayed
    ones are cancelled on their chain), disable the workflow, and record what was cancelled."""
    if (workflow_id is None) == (run_name is None):
        raise click.UsageError("give either --workflow ID or --run NAME")
    if run_name is not None:
        try:
            target = RUN_PREFIX + run_id(run_name)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    else:
        assert workflow_id is not None
        target = workflow_id
    if not yes:
        click.confirm(f"revoke every pending retry of {target}?", abort=True, err=True)
    settings = settings_or_exit()
    keys = _keys()
    try:
        done, disabled = asyncio.run(
            _undo(settings, keys, target, actor, disable=run_name is None and not keep_enabled)
        )
    except FlowguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({
        "workflow_id": target, "execution_id": done.execution_id, "disabled": disabled,
        "cancelled": [{"command_id": a.command_id, "task_id": a.retry_task_id,
                       "detail": a.detail} for a in done.actions],
    }))  # fmt: skip


async def _undo(
    settings: Settings, keys: dict[str, CommandKey], target: str, actor: str, *, disable: bool
) -> tuple[Any, bool]:
    disabled = False
    if disable:
        # First: the workflow stops deciding new retries while its pending ones are revoked.
        async with WorkflowStore(
            settings.kafka_bootstrap_servers, settings.topic_prefix, settings.kafka_timeout_seconds
        ) as store:
            if store.latest(target) is not None:
                await store.set_enabled(target, False, saved_by=actor)
                disabled = True
    async with Sender(settings, keys) as sender:
        done = await undo(settings, sender, target, actor, clock=time.time)
    return done, disabled
