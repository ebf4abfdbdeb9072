"""Rehearse's reading from Kafka, shared by ``flowguard rehearse`` and ``POST /api/rehearse``.

The draft decides over ``<prefix>.events`` as ``replay --from-kafka`` does (the same
:class:`~flowguard.replay.Replayer`), after a warm-up before the range whose decisions are not
kept; the live decisions are the draft's workflows' records on ``<prefix>.execution-log``,
triggered in the range. :func:`flowguard.rehearse.compare` matches the two. How progress and
skipped records are shown is the caller's (a progress line on stderr, nothing in the API).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from flowguard.engine.matching import Published
from flowguard.errors import EventInvalid, TooManyEvents
from flowguard.rehearse import in_scope
from flowguard.replay import Replayer
from flowguard.settings import Settings
from flowguard.topic_range import Progress, TimeRange, read_range
from topics.execution import ExecutionRecord
from topics.registry import EVENTS, EXECUTION_LOG

#: The live log is read from this long before ``since``: a record is written after its
#: trigger, but the trigger's time is the Celery host's clock, which may run ahead of Kafka's.
LOG_MARGIN_SECONDS = 3600.0


def _none(label: str) -> Progress | None:
    return None


def _quiet(line: str) -> None:
    pass


async def gather(
    settings: Settings,
    published: list[Published],
    span: TimeRange,
    warm_up_seconds: float,
    cluster: str | None,
    *,
    progress: Callable[[str], Progress | None] = _none,
    report: Callable[[str], None] = _quiet,
    max_events: int | None = None,
) -> tuple[list[ExecutionRecord], list[ExecutionRecord]]:
    """(the live records, the draft's records), both in scope. ``progress(label)`` gives the
    progress callback of each read; ``report`` is told of each record skipped; more than
    ``max_events`` events (warm-up included) raises :class:`TooManyEvents`."""
    ids = frozenset(p.workflow.id for p in published)
    draft: list[ExecutionRecord] = []
    replayer = Replayer(published)
    topic = EVENTS.name(settings.topic_prefix)
    prefix = f"{cluster}/".encode() if cluster else None
    events = TimeRange(span.since - warm_up_seconds, span.until)
    read = 0
    on_progress = progress(f"reading {topic}")
    async for batch in read_range(
        settings, topic, events, key_prefix=prefix, on_progress=on_progress
    ):
        read += len(batch)
        if max_events is not None and read > max_events:
            raise TooManyEvents(max_events)
        for message in batch:
            try:
                records = replayer.feed(message.value or b"")
            except EventInvalid as exc:
                report(f"{topic}[{message.partition}]@{message.offset}: skipped: {exc.reason}")
                continue
            draft += [r for r in records if in_scope(r, ids, span.since, span.until, cluster)]
    live = await _live(settings, ids, span, cluster, progress, report)
    return live, draft


async def _live(
    settings: Settings,
    ids: frozenset[str],
    span: TimeRange,
    cluster: str | None,
    progress: Callable[[str], Progress | None],
    report: Callable[[str], None],
) -> list[ExecutionRecord]:
    """The rehearsed workflows' records on the execution log, triggered in the range; read up to
    the log's end as of now (an execution's later records are written after its trigger)."""
    topic = EXECUTION_LOG.name(settings.topic_prefix)
    wanted = {key.encode() for key in ids}
    records: list[ExecutionRecord] = []
    window = TimeRange(span.since - LOG_MARGIN_SECONDS)
    async for batch in read_range(
        settings, topic, window, on_progress=progress(f"reading {topic}")
    ):
        for message in batch:
            if message.key not in wanted:  # keyed by workflow id
                continue
            try:
                record = ExecutionRecord.model_validate_json(message.value or b"")
            except ValidationError as exc:
                report(
                    f"{topic}[{message.partition}]@{message.offset}: "
                    f"not an execution record: {exc.error_count()} errors"
                )
                continue
            if in_scope(record, ids, span.since, span.until, cluster):
                records.append(record)
    return records
