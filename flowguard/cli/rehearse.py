"""``flowguard rehearse``: what a draft of workflows would have decided on real events, against
what the live workflows decided on the same events.

The draft runs as ``replay --from-kafka`` runs (the same engine over ``<prefix>.events``); the
live decisions are read from ``<prefix>.execution-log``; :func:`flowguard.rehearse.compare`
matches them. Only the draft's workflows are compared (by id), and only executions triggered
in the range. An exit code gates a change in CI: 1 when ``--fail-on-change`` or a
``--max-*`` threshold says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import click

from flowguard.cli.config import settings_or_exit
from flowguard.cli.ranges import ProgressLine, range_options, time_range, workflows_option
from flowguard.control.workflow_files import load_workflows
from flowguard.engine.matching import Published
from flowguard.errors import FlowguardError, WorkflowInvalid
from flowguard.rehearse import (
    TOTAL_FIELDS,
    Comparison,
    Decision,
    compare,
    gate,
    iso_time,
)
from flowguard.rehearse_run import gather
from flowguard.settings import Settings
from flowguard.topic_range import TimeRange, parse_duration
from topics.execution import ExecutionRecord

log = logging.getLogger(__name__)

_LABELS = {
    "executions": "executions",
    "skipped": "skipped",
    "retries": "retries",
    "notifications": "notifications",
    "pages": "pages",
    "breaker_openings": "breaker openings",
}


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@click.command("rehearse")
@workflows_option("The draft: a YAML file or a directory of them.")
@range_options(since_required=True)
@click.option(
    "--warm-up",
    "warm_up_seconds",
    default="1h",
    show_default=True,
    callback=_duration,
    help="Also run the draft over the events this long before --since, comparing nothing "
    "there: its breakers, failure counts and retry budgets start where the live ones were.",
)
@click.option("--cluster", help="Only this cluster's events and executions (default: all).")
@click.option("--json", "as_json", is_flag=True, help="The comparison as one JSON object.")
@click.option("--fail-on-change", is_flag=True, help="Exit 1 if any execution differs.")
@click.option("--max-added", type=click.IntRange(min=0), help="Exit 1 above this many added.")
@click.option("--max-removed", type=click.IntRange(min=0), help="Exit 1 above this many removed.")
@click.option("--max-changed", type=click.IntRange(min=0), help="Exit 1 above this many changed.")
def command(
    workflows_path: Path,
    since: float,
    until: float | None,
    warm_up_seconds: float,
    cluster: str | None,
    as_json: bool,
    fail_on_change: bool,
    max_added: int | None,
    max_removed: int | None,
    max_changed: int | None,
) -> None:
    """Run a draft over the events of a time range; compare with what the live version did.

    Executions added, removed and changed (matched by workflow id and trigger), the retries,
    notifications and pages each side sent and the breakers each opened, per hour. Nothing is
    sent. Exit 0, or 1 when a gate (--fail-on-change, --max-*) fails; 2 for bad input.
    """
    span = time_range(since, until)
    settings = settings_or_exit()
    try:
        loaded = load_workflows(workflows_path)
    except WorkflowInvalid as exc:
        click.echo(f"error: invalid workflow\n{exc}", err=True)
        sys.exit(2)
    published = [Published.of(item.workflow) for item in loaded]
    ids = frozenset(p.workflow.id for p in published)
    try:
        live, draft = asyncio.run(_gather(settings, published, span, warm_up_seconds, cluster))
    except FlowguardError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    comparison = compare(live, draft)
    reasons = gate(
        comparison, fail_on_change=fail_on_change, max_added=max_added,
        max_removed=max_removed, max_changed=max_changed,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(_document(comparison, span, ids, cluster, reasons), indent=2))
    else:
        for line in render(comparison, span, ids):
            click.echo(line)
    for reason in reasons:
        click.echo(f"rehearse: gate failed: {reason}", err=True)
    sys.exit(1 if reasons else 0)


async def _gather(
    settings: Settings,
    published: list[Published],
    span: TimeRange,
    warm_up_seconds: float,
    cluster: str | None,
) -> tuple[list[ExecutionRecord], list[ExecutionRecord]]:
    """(the live records, the draft's records): :func:`flowguard.rehearse_run.gather`, with a
    progress line per topic read and each skipped record said on stderr."""
    lines: list[ProgressLine] = []

    def progress(label: str) -> ProgressLine:
        if lines:
            lines[-1].done()
        lines.append(ProgressLine(label))
        return lines[-1]

    def report(line: str) -> None:
        click.echo(line, err=True)

    found = await gather(
        settings, published, span, warm_up_seconds, cluster, progress=progress, report=report
    )
    if lines:
        lines[-1].done()
    return found


def _document(
    comparison: Comparison,
    span: TimeRange,
    ids: frozenset[str],
    cluster: str | None,
    reasons: list[str],
) -> dict[str, object]:
    return {
        "since": iso_time(span.since),
        "until": iso_time(span.until) if span.until is not None else None,
        "cluster": cluster,
        "workflows": sorted(ids),
        **comparison.as_dict(),
        "gate": {"failed": bool(reasons), "reasons": reasons},
    }


def render(comparison: Comparison, span: TimeRange, ids: frozenset[str]) -> list[str]:
    """The comparison for people: totals, per hour, then examples of each difference."""
    until = iso_time(span.until) if span.until is not None else "now"
    lines = [
        f"rehearse: {len(ids)} workflows ({', '.join(sorted(ids))}), "
        f"triggers from {iso_time(span.since)} to {until}",
        "",
        f"{'':<18}{'LIVE':>8}{'DRAFT':>8}{'DIFF':>8}",
    ]
    live, draft = comparison.live.as_dict(), comparison.draft.as_dict()
    for name in TOTAL_FIELDS:
        diff = draft[name] - live[name]
        lines.append(f"{_LABELS[name]:<18}{live[name]:>8}{draft[name]:>8}{diff:>+8}")
    lines += [
        "",
        f"executions: {comparison.added} added, {comparison.removed} removed, "
        f"{comparison.changed} changed, {comparison.unchanged} unchanged",
    ]
    if comparison.hours:
        lines += ["", _hour_row("HOUR (UTC)", "LIVE", "DRAFT", "ADDED", "REMOVED", "CHANGED",
                                "RETRIES", "NOTIFY", "PAGES", "OPENED")]  # fmt: skip
        for hour in comparison.hours:
            a, b = hour.live, hour.draft
            lines.append(_hour_row(
                iso_time(hour.start)[:16] + "Z", a.executions, b.executions, hour.added,
                hour.removed, hour.changed, f"{a.retries}->{b.retries}",
                f"{a.notifications}->{b.notifications}", f"{a.pages}->{b.pages}",
                f"{a.breaker_openings}->{b.breaker_openings}",
            ))  # fmt: skip
    lines += _examples(comparison)
    return lines


def _hour_row(*cells: object) -> str:
    first, *rest = cells
    return f"{first!s:<18}" + "".join(f"{cell!s:>9}" for cell in rest)


def _examples(comparison: Comparison) -> list[str]:
    lines: list[str] = []
    groups = (("added", "+", comparison.added, comparison.added_examples),
              ("removed", "-", comparison.removed, comparison.removed_examples))  # fmt: skip
    for name, sign, count, examples in groups:
        if examples:
            lines += ["", f"{name} ({len(examples)} of {count}):"]
            lines += [f"  {sign} {_decision(d)}" for d in examples]
    if comparison.changed_examples:
        lines += ["", f"changed ({len(comparison.changed_examples)} of {comparison.changed}):"]
        for change in comparison.changed_examples:
            lines.append(f"  ~ {_decision(change.live)}")
            lines.append(f"    > {_verdict(change.draft)}  ({', '.join(change.fields)})")
    return lines


def _decision(decision: Decision) -> str:
    return (
        f"{iso_time(decision.at)} {decision.workflow_id} {decision.trigger_id} "
        f"[{decision.subject}] {_verdict(decision)}"
    )


def _verdict(decision: Decision) -> str:
    actions = ", ".join(decision.actions) or "no action"
    opened = ", breaker opened" if decision.breaker_opened else ""
    return f"{decision.verdict}: {actions}{opened}"
