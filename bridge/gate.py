"""Which commands this bridge carries out: signed by flowguard, fresh, for a task it allows.

Anyone who can write to ``<prefix>.commands`` could otherwise make the bridge send any task
with any args, or revoke any task. A command must carry a signature (see
:mod:`topics.signing`) made with this bridge's current or previous key; it must not be older
than ``command_max_age_seconds`` (a signed command cannot be replayed later: within the
bound its id is deduplicated); and a retry must name a task in ``FLOWGUARD_BRIDGE_ALLOWED_TASKS``
when that is set. Unsigned commands pass only when the operator says so explicitly
(``FLOWGUARD_BRIDGE_ALLOW_UNSIGNED=true``), with a warning at start.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import NoDecode

from topics.commands import RetryCommand, RevokeCommand
from topics.record import from_iso
from topics.signing import CommandKey, verify

log = logging.getLogger("flowguard.bridge")


class CommandAuthSettings(BaseModel):
    """The ``FLOWGUARD_BRIDGE_*`` settings of command signing, mixed into the bridge's."""

    bridge_command_key: SecretStr | None = Field(
        default=None,
        description="'<key id>:<secret>' that commands to this cluster are signed with (the "
        "worker's FLOWGUARD_COMMAND_KEYS entry for this cluster).",
    )
    bridge_command_previous_key: SecretStr | None = Field(
        default=None,
        description="The key before it, still accepted while the workers move to the new one.",
    )
    bridge_allow_unsigned: bool = Field(
        default=False,
        description="Carry out unsigned commands too (anyone who can write to the commands "
        "topic can then run any task here). A signature present is always checked.",
    )
    bridge_allowed_tasks: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Task names a retry may send, as globs, comma separated (empty: any).",
    )

    @field_validator("bridge_command_key", "bridge_command_previous_key")
    @classmethod
    def _key_parses(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return value
        key = CommandKey.parse(value.get_secret_value())
        current = info.data.get("bridge_command_key")
        previous = info.field_name == "bridge_command_previous_key"
        if previous and current is not None and _key_id(current) == key.key_id:
            raise ValueError("key id: must differ from the current key's")
        return value

    @field_validator("bridge_allowed_tasks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value


def _key_id(key: SecretStr) -> str:
    return CommandKey.parse(key.get_secret_value()).key_id


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command is not carried out. ``trusted``: the command is flowguard's (signed, or
    unsigned where allowed), so its result may name its execution; an untrusted one's must not
    (whoever forged it could otherwise fail someone else's retry). ``dead_letter``: also a DLQ
    record, for whoever watches for forged or lost commands."""

    reason: str
    trusted: bool
    dead_letter: bool


@dataclass(frozen=True, slots=True)
class CommandGate:
    keys: Mapping[str, CommandKey]
    allow_unsigned: bool
    allowed_tasks: tuple[str, ...]
    max_age_seconds: float

    @classmethod
    def of(cls, settings: CommandAuthSettings, max_age_seconds: float) -> CommandGate:
        """The gate the settings describe (their keys were checked when they were read)."""
        given = (settings.bridge_command_key, settings.bridge_command_previous_key)
        keys = [CommandKey.parse(k.get_secret_value()) for k in given if k is not None]
        return cls(
            {key.key_id: key for key in keys},
            settings.bridge_allow_unsigned,
            settings.bridge_allowed_tasks,
            max_age_seconds,
        )

    def announce(self, topic: str) -> None:
        """Said once at start: what this bridge accepts, when it is not the safe default."""
        if self.allow_unsigned:
            log.warning(
                "FLOWGUARD_BRIDGE_ALLOW_UNSIGNED=true: unsigned commands are carried out; "
                "anyone who can write to %s can run any task on this cluster", topic,
            )  # fmt: skip
        elif not self.keys:
            log.warning(
                "no command key (FLOWGUARD_BRIDGE_COMMAND_KEY): every command on %s is refused; "
                "set the key the flowguard worker signs with (FLOWGUARD_COMMAND_KEYS)", topic,
            )  # fmt: skip
        if self.allowed_tasks:
            log.info("retries allowed only for tasks: %s", ", ".join(self.allowed_tasks))

    def check(
        self, payload: Mapping[str, Any], command: RetryCommand | RevokeCommand, now: float
    ) -> Refusal | None:
        """None when the command may be carried out; else why not."""
        problem = verify(payload, self.keys)
        if problem == "unsigned" and self.allow_unsigned:
            problem = None
        elif problem == "unsigned" and not self.keys:
            problem = "unsigned (this bridge has no command key: FLOWGUARD_BRIDGE_COMMAND_KEY)"
        if problem is not None:
            return Refusal(f"refused: {problem}", trusted=False, dead_letter=True)
        age = now - from_iso(command.issued_at)
        if age > self.max_age_seconds:
            reason = f"stale: issued {age:.0f} s ago (limit {self.max_age_seconds:.0f} s)"
            return Refusal(reason, trusted=True, dead_letter=True)
        if isinstance(command, RetryCommand) and not self.task_allowed(command.name):
            reason = (
                f"refused: task {command.name!r} is not in this bridge's allowed tasks "
                "(FLOWGUARD_BRIDGE_ALLOWED_TASKS)"
            )
            return Refusal(reason, trusted=True, dead_letter=False)
        return None

    def task_allowed(self, name: str) -> bool:
        """Any task when no allowlist is set; else one matching a glob (case-sensitive)."""
        return not self.allowed_tasks or any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.allowed_tasks
        )
