"""Signed commands: an HMAC-SHA256 over a command's canonical encoding, with a key per cluster.

Whoever can write to ``<prefix>.commands`` could otherwise make a bridge send any task with
any args, or revoke any task. The flowguard worker signs each command with its cluster's key;
the bridge carries out only commands it can verify (see docs/bridge.md).

The canonical encoding (stable across versions: it is computed on the record as it is on the
wire, not on a model, so a field added later is covered without changing the rule):

1. the command's JSON object, as written to Kafka, without its ``signature`` member;
2. encoded as JSON with the members sorted by name, no whitespace (``,`` and ``:`` as
   separators), every non-ASCII character escaped as ``\\uXXXX`` (UTF-16, as JSON does);
3. as UTF-8 bytes. A record with a member name twice is refused before any of this.

``signature`` is ``<key id>:<lowercase hex HMAC-SHA256 of those bytes>``: the key id says which
of the bridge's keys (current or previous) to verify with, so keys can be rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

SIGNATURE_FIELD = "signature"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_SECRET_CHARS = 16
_HEX = re.compile(r"^[0-9a-f]{64}$")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class CommandKey:
    """One signing key: an id (public, on every signature) and a secret (never shown)."""

    key_id: str
    secret: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> CommandKey:
        """``<key id>:<secret>``; a ValueError says what is wrong without echoing the secret."""
        key_id, colon, secret = text.strip().partition(":")
        if not colon:
            raise ValueError("expected '<key id>:<secret>'")
        if not KEY_ID_PATTERN.match(key_id):
            raise ValueError("key id: 1-64 characters of A-Z a-z 0-9 _ . -")
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"secret: at least {MIN_SECRET_CHARS} characters")
        return cls(key_id, secret.encode())


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: every member but ``signature``, as the module says."""
    members = {name: value for name, value in payload.items() if name != SIGNATURE_FIELD}
    text = json.dumps(
        members, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode()


def signature_of(payload: Mapping[str, Any], key: CommandKey) -> str:
    """``<key id>:<hex HMAC-SHA256>`` of the payload's canonical encoding."""
    digest = hmac.new(key.secret, canonical(payload), hashlib.sha256).hexdigest()
    return f"{key.key_id}:{digest}"


def sign(command: M, key: CommandKey) -> M:
    """The command with its ``signature``, over its JSON as it goes on the wire."""
    wire = json.loads(command.model_dump_json(exclude={SIGNATURE_FIELD}))
    return command.model_copy(update={SIGNATURE_FIELD: signature_of(wire, key)})


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        names = [name for name, _ in pairs]
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"member named twice: {', '.join(twice)}")
    return found


def wire_object(raw: bytes) -> dict[str, Any]:
    """A record's JSON object, refusing a member named twice (a parser that kept the other
    one could verify one command and carry out another). ValueError when not an object."""
    value = json.loads(raw, object_pairs_hook=_no_duplicates)
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def verify(payload: Mapping[str, Any], keys: Mapping[str, CommandKey]) -> str | None:
    """Why the payload's signature is refused, or None when one of ``keys`` (by id) made it."""
    signature = payload.get(SIGNATURE_FIELD)
    if signature is None:
        return "unsigned"
    if not isinstance(signature, str):
        return "signature malformed: expected '<key id>:<hex HMAC-SHA256>'"
    key_id, _, digest = signature.partition(":")
    if not KEY_ID_PATTERN.match(key_id) or not _HEX.match(digest):
        return "signature malformed: expected '<key id>:<hex HMAC-SHA256>'"
    key = keys.get(key_id)
    if key is None:
        known = ", ".join(sorted(keys)) or "none"
        return f"unknown key id {key_id!r} (this bridge knows: {known})"
    if not hmac.compare_digest(signature_of(payload, key), signature):
        return f"bad signature (key {key_id!r}): the command was altered or signed with another key"
    return None


#: In a worker's keys, the entry for every cluster that has none of its own.
ANY_CLUSTER = "*"


def parse_cluster_keys(text: str) -> dict[str, CommandKey]:
    """``cluster=<key id>:<secret>`` entries, separated by commas or lines (``#`` starts a
    comment line); ``*`` names every other cluster. A ValueError names the entry by position
    and cluster, never its secret."""
    keys: dict[str, CommandKey] = {}
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    entries = [part.strip() for line in lines for part in line.split(",") if part.strip()]
    for number, entry in enumerate(entries, start=1):
        cluster, equals, key = entry.partition("=")
        cluster = cluster.strip()
        if not equals or not cluster:
            raise ValueError(f"entry {number}: expected 'cluster=<key id>:<secret>'")
        if cluster in keys:
            raise ValueError(f"entry {number}: cluster {cluster!r} given twice")
        try:
            keys[cluster] = CommandKey.parse(key)
        except ValueError as exc:
            raise ValueError(f"entry {number} (cluster {cluster!r}): {exc}") from None
    return keys


def key_for(keys: Mapping[str, CommandKey], cluster: str) -> CommandKey | None:
    """The key that signs commands to ``cluster``: its own, else the ``*`` one, else None."""
    return keys.get(cluster) or keys.get(ANY_CLUSTER)
