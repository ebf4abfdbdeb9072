"""Records on ``flowguard.scheduled`` (internal), keyed and partitioned like ``flowguard.events``.

The live app's detection stage owns each retry chain's state on the partition of its
``cluster/root_id`` key. Everything that must happen *to a chain* later comes back to that
partition through this topic, so one place changes the chain's state:

- a delayed retry to hold until due, and re-check against the chain then (``retry.scheduled``);
- a retry sent at once, to watch until its task reports (``retry.sent``);
- a cancellation of one (``retry.cancel``, execution rollback);
- a wall-clock tick: something in this key's state may be due (``tick``);
- a worker gone offline, sent to *every* partition, because its tasks' chains are spread over
  all of them (``worker.gone``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from topics.commands import RetryCommand
from topics.record import Record


class _ChainRecord(Record):
    """A record about one retry chain, keyed by it: its kind (each record type narrows it to its
    own), the version and the chain's key."""

    kind: str
    version: Literal[1] = 1
    chain_key: str


class ScheduledRetry(_ChainRecord):
    kind: Literal["retry.scheduled"] = "retry.scheduled"
    due_at: float = Field(description="UTC epoch seconds (event time of the trigger + delay).")
    since: float = Field(description="When the retry was decided: recovery is judged after it.")
    command: RetryCommand


class RetrySent(_ChainRecord):
    """A retry flowguard sent, to watch on its chain: its task's own events settle the retry
    action (``succeeded``/``failed``), or it is ``stranded`` if no worker receives it."""

    kind: Literal["retry.sent"] = "retry.sent"
    sent_at: float = Field(description="UTC epoch seconds: when the command was issued.")
    command: RetryCommand
    stranded: bool = False


class CancelRetry(_ChainRecord):
    kind: Literal["retry.cancel"] = "retry.cancel"
    command_id: str
    execution_id: str
    workflow_id: str


class Tick(Record):
    kind: Literal["tick"] = "tick"
    version: Literal[1] = 1
    key: str = Field(description="The chain or worker key to look at.")


class WorkerGone(Record):
    kind: Literal["worker.gone"] = "worker.gone"
    version: Literal[1] = 1
    cluster: str
    hostname: str
    at: float
    reason: str
    started_before: float | None = Field(
        default=None,
        description="Only tasks it started by then are orphans (when it went offline), not a "
        "restarted worker's own under the same name.",
    )


Scheduled = Annotated[
    ScheduledRetry | RetrySent | CancelRetry | Tick | WorkerGone, Field(discriminator="kind")
]
SCHEDULED_ADAPTER: TypeAdapter[Scheduled] = TypeAdapter(Scheduled)
