"""Commands on ``flowguard.commands``: what a bridge carries out against its own cluster.

A command never carries a secret. ``command_id`` is derived from the execution
and the action's position, so a command decided twice (after a crash or a
rebalance) has the same id and the bridge carries it out once.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter

from topics.record import Record, absent, from_iso


def _iso_time(value: str) -> str:
    try:
        from_iso(value)
    except ValueError:
        raise ValueError("expected an ISO 8601 time such as 2026-12-04T10:00:00Z") from None
    return value


#: A time on the wire: an ISO 8601 string, refused at validation when it is not one (a
#: command the bridge could not date would otherwise fail later, in the middle of acting).
IsoTime = Annotated[str, AfterValidator(_iso_time)]
#: A command's signature, left out of the JSON when absent (older readers see no new field).
Signature = Annotated[
    str | None,
    Field(
        exclude_if=absent,
        max_length=200,
        description="'<key id>:<hex HMAC-SHA256>' of the command's canonical JSON (every field "
        "but this one): see topics/signing.py. A bridge carries out only signed commands.",
    ),
]


class _CommandRecord(Record):
    """What every record on the commands and command-results topics starts with: its kind (each
    record type narrows it to its own), the version, the command and the cluster it is for."""

    kind: str
    version: Literal[1] = 1
    command_id: str
    cluster: str


class RetryCommand(_CommandRecord):
    """Send the task again: same name, args, kwargs and queue, a new id in the same retry chain."""

    kind: Literal["command.retry"] = "command.retry"
    execution_id: str
    workflow_id: str
    issued_at: IsoTime = Field(description="ISO 8601 UTC: when the retry became due.")
    not_before: IsoTime | None = Field(
        default=None, description="ISO 8601 UTC: the task is sent with this ETA when still ahead."
    )
    task_id: str = Field(description="The id the new task is sent with (deterministic).")
    original_task_id: str
    name: str
    args: str = Field(description="Python literal of the args tuple, as Celery reported it.")
    kwargs: str = Field(description="Python literal of the kwargs dict.")
    queue: str | None = None
    exchange: str | None = Field(
        default=None,
        exclude_if=absent,
        description="The exchange the task was sent with, when known.",
    )
    routing_key: str | None = None
    root_id: str
    parent_id: str
    attempt: int = Field(ge=1)
    signature: Signature = None


class RevokeCommand(_CommandRecord):
    """Revoke a task id on the cluster (used to cancel; never sent by workflows themselves)."""

    kind: Literal["command.revoke"] = "command.revoke"
    issued_at: IsoTime
    task_id: str
    terminate: bool = False
    execution_id: str | None = None
    signature: Signature = None


class CommandResult(_CommandRecord):
    """What the bridge did with a command: the retry action's final status in its execution."""

    kind: Literal["command.result"] = "command.result"
    at: str
    status: Literal["done", "duplicate", "failed"]
    detail: str = ""
    workflow_id: str | None = Field(
        default=None, description="The command's workflow (retries); where its outcome goes."
    )
    execution_id: str | None = Field(default=None, description="The command's execution.")
    task_id: str | None = Field(
        default=None, exclude_if=absent, description="The task a retry was sent as."
    )
    queue: str | None = Field(
        default=None,
        exclude_if=absent,
        description="The queue a retry was sent to (or refused for).",
    )
    routing_key: str | None = Field(
        default=None, exclude_if=absent, description="The routing key it was sent with."
    )


Command = Annotated[RetryCommand | RevokeCommand, Field(discriminator="kind")]
COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
