"""What ``replay --from-kafka`` and ``rehearse`` share: ``--workflows``, ``--since`` and
``--until``, reading ``<prefix>.events`` through a :class:`~flowguard.replay.Replayer`, and
progress on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import click

from flowguard.errors import EventInvalid
from flowguard.replay import Replayer
from flowguard.settings import Settings
from flowguard.topic_range import TimeRange, parse_time, read_range
from topics.execution import ExecutionRecord
from topics.registry import EVENTS

F = TypeVar("F", bound=Callable[..., Any])


def _time(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def workflows_option(help_text: str) -> Callable[[F], F]:
    """``--workflows PATH`` (required, existing): a YAML file or a directory of them."""
    return click.option(
        "--workflows",
        "workflows_path",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help=help_text,
    )


def range_options(since_required: bool) -> Callable[[F], F]:
    """``--since`` and ``--until``, parsed to epoch seconds (a bad value names the option)."""

    def decorate(function: F) -> F:
        function = click.option(
            "--until",
            callback=_time,
            help="End of the range (exclusive), as --since; default: what is there now.",
        )(function)
        return click.option(
            "--since",
            callback=_time,
            required=since_required,
            help="Start of the range: a duration back from now (90s, 15m, 24h, 7d) or an "
            "ISO 8601 time (2026-12-01T08:00:00Z; UTC without an offset).",
        )(function)

    return decorate


def time_range(since: float | None, until: float | None) -> TimeRange:
    """The range, or a usage error naming both options when it is empty."""
    if since is None:
        raise click.UsageError("--since is required with --from-kafka")
    try:
        return TimeRange(since, until)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


class ProgressLine:
    """Records read out of the range's size, on ``stream``: rewritten in place a few times a
    second on a terminal, a plain line every ``interval_seconds`` otherwise (a CI log), and a
    last line when done."""

    def __init__(self, label: str, stream: IO[str] | None = None, interval_seconds: float = 10.0):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = 0.2 if self.tty else interval_seconds
        self.started = self.last = time.monotonic()
        self.read = self.total = 0

    def __call__(self, read: int, total: int) -> None:
        self.read, self.total = read, total
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        text = self._text(now)
        self.stream.write(f"\r{text}\033[K" if self.tty else text + "\n")
        self.stream.flush()

    def _text(self, now: float) -> str:
        share = self.read / self.total * 100 if self.total else 100.0
        rate = self.read / max(now - self.started, 1e-9)
        return (
            f"{self.label}: {share:5.1f}% ({self.read:,} of {self.total:,} records, {rate:,.0f}/s)"
        )

    def done(self) -> None:
        seconds = time.monotonic() - self.started
        text = f"{self.label}: {self.read:,} records in {seconds:.1f} s"
        self.stream.write(f"\r{text}\033[K\n" if self.tty else text + "\n")
        self.stream.flush()


async def replay_events(
    settings: Settings,
    replayer: Replayer,
    span: TimeRange,
    cluster: str | None,
    emit: Callable[[ExecutionRecord], None],
) -> None:
    """Feed ``<prefix>.events`` over ``span`` (one cluster's, or all) to ``replayer`` in merged
    order, handing each record it decides to ``emit``; undecodable records are said on stderr
    with their place and skipped."""
    topic = EVENTS.name(settings.topic_prefix)
    progress = ProgressLine(f"reading {topic}")
    prefix = f"{cluster}/".encode() if cluster else None
    async for batch in read_range(settings, topic, span, key_prefix=prefix, on_progress=progress):
        for message in batch:
            try:
                records = replayer.feed(message.value or b"")
            except EventInvalid as exc:
                click.echo(
                    f"{topic}[{message.partition}]@{message.offset}: skipped: {exc.reason}",
                    err=True,
                )
                continue
            for record in records:
                emit(record)
    progress.done()
