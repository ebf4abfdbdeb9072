"""The workflow store: versioned workflow definitions on Kafka, read back from their history.

``<prefix>.workflow-history`` (one partition, kept forever) is the store's source of truth:
every save, enable/disable, delete and rollback appends a :class:`WorkflowVersion` there
first, then the same record (or a tombstone, for a delete) goes to the compacted
``<prefix>.workflows`` that the Faust workers read as a global table.

Concurrent writers are settled by the history log itself: when two writers publish the same
version number of a workflow, the record with the lower offset wins, and the loser raises
:class:`VersionConflict` without touching ``<prefix>.workflows``. Readers apply the same
rule, so every process agrees on each workflow's versions.

The store also reads ``<prefix>.workflows`` back, so it knows what the workers were given:
when the second write of a save or delete failed, saving (or deleting) again publishes what
the history holds, and a writer that finds a newer version behind its own publishes that one
after it, so the workers never end on an older version.

With an operator key (``FLOWGUARD_SECRETS_KEY``), every literal secret is sealed before a
version is published (:func:`flowguard.control.masking.seal_definition`), so neither topic holds it
in clear; :meth:`WorkflowStore.reseal` moves every current workflow to the current key.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from flowguard.control.kafka_admin import partitions_of
from flowguard.control.masking import (
    mark_changed,
    mask_definition,
    open_definition,
    refuse_references,
    seal_definition,
    sealed_paths,
    still_masked,
)
from flowguard.control.secrets import Keyring, SecretPolicy
from flowguard.engine.documents import parse_workflow
from flowguard.engine.workflow import Workflow
from flowguard.errors import (
    ConfigError,
    FlowguardError,
    KafkaUnavailable,
    VersionConflict,
    WorkflowInvalid,
    WorkflowNotFound,
)
from flowguard.kafka_security import client_options
from flowguard.settings import get_settings
from topics.registry import WORKFLOW_HISTORY, WORKFLOWS
from topics.workflows import WorkflowVersion

# A fetch the broker holds (no new data) delays later requests on the connection by this much.
_FETCH_WAIT_MS = 20
# Empty fetches (200 ms each) after which a compacted partition counts as read: compaction can
# leave no record between the last one kept and the end offset.
_COMPACTED_TAIL_ROUNDS = 5
# Publishing the latest version, then finding an even newer one, this many times at most.
_LIVE_ROUNDS = 5

log = logging.getLogger(__name__)


def now_iso() -> str:
    """Wall clock, ISO 8601 UTC with ``Z``: when a version was saved."""
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_yaml(definition: Mapping[str, Any]) -> str:
    """A definition as YAML in the author's key order."""
    return yaml.safe_dump(dict(definition), sort_keys=False, allow_unicode=True, width=100)


def _semantics(workflow: Workflow) -> dict[str, Any]:
    """What a workflow means, secrets included: two definitions that mean the same are equal."""
    return workflow.model_dump(mode="json", context={"reveal_secrets": True})


def _same(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Do two definitions (sealed secrets opened) mean the same? One the engine now refuses
    never does."""
    try:
        old_workflow = parse_workflow(stored, source="stored")
        return _semantics(old_workflow) == _semantics(parse_workflow(new, source="new"))
    except FlowguardError:
        return False


def _validate(definition: Mapping[str, Any], source: str, policy: SecretPolicy) -> Workflow:
    """``parse_workflow`` with the author's mapping, so errors read as ``flowguard lint``'s.

    A secret that is a mask (an exported or shown definition sent back as it is) is refused:
    saved, it would be sent as the header or URL itself.
    """
    workflow = parse_workflow(definition, source=source)
    refuse_references(source, definition, policy)
    masked = still_masked(definition)
    if masked:
        reason = "is a masked secret (***...), not the secret: enter it, or ${ENV_VAR}"
        raise WorkflowInvalid(source, [(path, reason) for path in masked])
    return workflow


class WorkflowStore:
    """Read and write workflow versions. Use as ``async with WorkflowStore(...) as store``."""

    def __init__(
        self,
        bootstrap_servers: str,
        prefix: str = "flowguard",
        timeout: float = 10.0,
        policy: SecretPolicy | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        # Seals literal secrets before they are published (when a current key is set).
        self.keyring = keyring if keyring is not None else get_settings().keyring()
        # Which ${NAME} a saved workflow may use (refused on save and apply otherwise).
        self.policy = policy if policy is not None else get_settings().secret_policy()
        self.prefix = prefix
        self.timeout = timeout
        self.history_topic = WORKFLOW_HISTORY.name(prefix)
        self.workflows_topic = WORKFLOWS.name(prefix)
        self._partition = TopicPartition(self.history_topic, 0)
        self._live_partitions: list[TopicPartition] = []
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        # Accepted versions per workflow id, oldest first (see the module docstring for "accepted").
        self._versions: dict[str, list[WorkflowVersion]] = {}
        self._offsets: dict[tuple[str, int], int] = {}
        # What <prefix>.workflows holds last per workflow id: a version number, None (tombstone).
        self._published: dict[str, int | None] = {}
        # The one lock around the one consumer (and the writes that read back through it):
        # two coroutines fetching, pausing and resuming it at once lose or reorder records.
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> WorkflowStore:
        self._live_partitions = await self._check_topics()
        partitions = [self._partition, *self._live_partitions]
        timeout_ms = max(1, int(self.timeout * 1000))
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap_servers,
            client_id="flowguard-workflow-store",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=timeout_ms,
            **client_options(),
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            client_id="flowguard-workflow-store",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=max(timeout_ms, 1000),
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            **client_options(),
        )
        try:
            async with asyncio.timeout(self.timeout):
                await self._producer.start()
                await self._consumer.start()
                self._consumer.assign(partitions)
                self._consumer.pause(*partitions)
                await self._consumer.seek_to_beginning(*partitions)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._stop()
            raise KafkaUnavailable(f"Kafka at {self.bootstrap_servers}: {exc!r}") from exc
        await self.refresh()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                await asyncio.wait_for(client.stop(), self.timeout)
        self._consumer = self._producer = None

    async def _check_topics(self) -> list[TopicPartition]:
        """The workflows topic's partitions; refuses to start rather than let the broker
        auto-create a missing topic with the wrong config."""
        found = await partitions_of(
            self.bootstrap_servers, [self.history_topic, self.workflows_topic], self.timeout
        )
        return [TopicPartition(self.workflows_topic, p) for p in found[self.workflows_topic]]

    def _clients(self) -> tuple[AIOKafkaProducer, AIOKafkaConsumer]:
        if self._producer is None or self._consumer is None:
            raise RuntimeError("WorkflowStore is not started: use `async with WorkflowStore(...)`")
        return self._producer, self._consumer

    # -- reading -------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read workflow-history up to its end offset as of now (every version and delete),
        and ``<prefix>.workflows`` with it (what the workers were given)."""
        async with self._lock:
            await self._refresh()

    async def _refresh(self) -> None:
        """:meth:`refresh`, with the lock held."""
        _, consumer = self._clients()
        partitions = [self._partition, *self._live_partitions]
        try:
            async with asyncio.timeout(self.timeout):
                end = await consumer.end_offsets(partitions)
                behind = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
                if behind:
                    await self._read(consumer, behind, end)
        except (TimeoutError, KafkaError) as exc:
            raise KafkaUnavailable(
                f"reading {self.history_topic} from {self.bootstrap_servers}: {exc!r}"
            ) from exc

    async def _read(
        self,
        consumer: AIOKafkaConsumer,
        behind: list[TopicPartition],
        end: dict[TopicPartition, int],
    ) -> None:
        # Fetch only while behind: an idle fetch waits on the broker and would hold up the
        # next end_offsets request on the same connection.
        consumer.resume(*behind)
        idle = dict.fromkeys(behind, 0)
        try:
            while behind:
                batch = await consumer.getmany(*behind, timeout_ms=200)
                for tp in behind:
                    messages = batch.get(tp, [])
                    for message in messages:
                        if tp == self._partition:
                            self._apply(message.offset, message.value)
                        else:
                            self._apply_live(message.key, message.value)
                    idle[tp] = 0 if messages else idle[tp] + 1
                done = [
                    tp
                    for tp in behind
                    if await consumer.position(tp) >= end[tp]
                    or (tp != self._partition and idle[tp] >= _COMPACTED_TAIL_ROUNDS)
                ]
                consumer.pause(*done)
                behind = [tp for tp in behind if tp not in done]
        finally:
            consumer.pause(*end)

    def _apply_live(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        workflow_id = key.decode(errors="replace")
        if value is None:
            self._published[workflow_id] = None
            return
        try:
            record = WorkflowVersion.model_validate_json(value)
        except ValidationError as exc:
            log.warning("%s: the record of %r is not a WorkflowVersion: %s",
                        self.workflows_topic, workflow_id, exc)  # fmt: skip
            self._published[workflow_id] = 0  # no version: the latest gets published over it
        else:
            self._published[workflow_id] = record.workflow_version

    def _apply(self, offset: int, value: bytes | None) -> None:
        if value is None:
            return
        try:
            record = WorkflowVersion.model_validate_json(value)
        except ValidationError as exc:
            raise FlowguardError(
                f"{self.history_topic} offset {offset} is not a WorkflowVersion: {exc}"
            ) from None
        key = (record.workflow_id, record.workflow_version)
        versions = self._versions.setdefault(record.workflow_id, [])
        if key in self._offsets or (versions and versions[-1].workflow_version >= key[1]):
            return  # a writer that lost the race for this version number
        versions.append(record)
        self._offsets[key] = offset

    def current(self) -> dict[str, WorkflowVersion]:
        """The latest live version of each workflow, by id (deleted workflows left out)."""
        return {
            wid: versions[-1]
            for wid, versions in sorted(self._versions.items())
            if not versions[-1].deleted
        }

    def ids(self) -> list[str]:
        """Every workflow id ever saved, deleted ones included, sorted."""
        return sorted(self._versions)

    def versions(self, workflow_id: str) -> list[WorkflowVersion]:
        """Every version of one workflow, oldest first, deletions included."""
        try:
            return list(self._versions[workflow_id])
        except KeyError:
            raise WorkflowNotFound(f"workflow {workflow_id!r}: no such workflow") from None

    def version(self, workflow_id: str, version: int) -> WorkflowVersion:
        """One version of a workflow."""
        for item in self.versions(workflow_id):
            if item.workflow_version == version:
                return item
        raise WorkflowNotFound(f"workflow {workflow_id!r}: no version {version}")

    def latest(self, workflow_id: str) -> WorkflowVersion | None:
        """The newest version (possibly a deletion), or None for an id never saved."""
        versions = self._versions.get(workflow_id)
        return versions[-1] if versions else None

    def diff(self, workflow_id: str, a: int, b: int) -> str:
        """Unified diff of two versions' YAML, secrets masked; a changed secret is marked."""
        old = self.version(workflow_id, a).definition
        new = self.version(workflow_id, b).definition
        old_text, new_text = to_yaml(mask_definition(old)), to_yaml(mark_changed(old, new))
        return "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"{workflow_id} v{a}",
                tofile=f"{workflow_id} v{b}",
            )
        )

    # -- writing -------------------------------------------------------------------------------

    async def save(
        self,
        definition: Mapping[str, Any],
        *,
        saved_by: str,
        comment: str = "",
        expected_version: int | None = None,
        source: str = "definition",
    ) -> WorkflowVersion | None:
        """Publish ``definition`` as the workflow's next version; None when nothing changed.

        "Changed" means changed meaning: the same workflow written differently (``action:``
        for ``actions:``, a default spelled out) is not a new version. ``expected_version``
        (0 for "must not exist yet") refuses the save with :class:`VersionConflict` when the
        workflow has moved on since the caller read it.
        """
        workflow = _validate(definition, source, self.policy)
        async with self._lock:
            await self._refresh()
            self._refuse_foreign_seals(workflow.id, definition, source)
            latest = self.latest(workflow.id)
            if (
                latest is not None
                and not latest.deleted
                and _same(self._opened(latest.definition), self._opened(definition))
            ):
                await self._make_live(workflow.id)  # repairs a save whose second write failed
                return None
            self._check_expected(workflow.id, latest, expected_version)
            previous = latest.definition if latest is not None else None
            sealed = seal_definition(definition, self.keyring, previous)
            return await self._publish(workflow.id, sealed, saved_by, comment)

    def _opened(self, definition: Mapping[str, Any]) -> dict[str, Any]:
        return open_definition(definition, self.keyring)

    def _refuse_foreign_seals(
        self, workflow_id: str, definition: Mapping[str, Any], source: str
    ) -> None:
        """A sealed value may only be kept from a version of the same workflow: one copied from
        another workflow's record would have the worker send that secret wherever this one
        says."""
        known = {
            value
            for version in self._versions.get(workflow_id, [])
            for value in sealed_paths(version.definition).values()
        }
        foreign = [path for path, value in sealed_paths(definition).items() if value not in known]
        if foreign:
            reason = "is a sealed value this workflow never held: enter the secret, or ${ENV_VAR}"
            raise WorkflowInvalid(source, [(path, reason) for path in foreign])

    async def reseal(self, *, saved_by: str) -> tuple[list[WorkflowVersion], list[str]]:
        """Publish every current workflow again with its secrets sealed with the current key.

        A new version only where something changes (a value sealed with an older key, or a
        literal in clear). Returns the new versions and, per workflow left as it was, why
        (a value no configured key opens); deleted workflows and history are not touched.
        """
        if not self.keyring.sealing:
            raise ConfigError("FLOWGUARD_SECRETS_KEY is not set: nothing to reseal with")
        published: list[WorkflowVersion] = []
        problems: list[str] = []
        async with self._lock:
            await self._refresh()
            for workflow_id, latest in self.current().items():
                try:
                    sealed = seal_definition(latest.definition, self.keyring, reseal=True)
                except ConfigError as exc:
                    problems.append(f"workflow {workflow_id!r}: {exc}")
                    continue
                if sealed != latest.definition:
                    comment = f"resealed with key {self.keyring.current_id}"
                    published.append(await self._publish(workflow_id, sealed, saved_by, comment))
        return published, problems

    async def set_enabled(
        self, workflow_id: str, enabled: bool, *, saved_by: str
    ) -> WorkflowVersion:
        """Enable or disable a workflow as a new version; the same version if already so."""
        latest = await self._live(workflow_id)
        if bool(latest.definition.get("enabled", True)) == enabled:
            async with self._lock:
                await self._make_live(workflow_id)
            return latest
        definition = {**latest.definition, "enabled": enabled}
        saved = await self.save(
            definition,
            saved_by=saved_by,
            comment="enabled" if enabled else "disabled",
            expected_version=latest.workflow_version,
        )
        return saved or latest

    async def delete(self, workflow_id: str, *, saved_by: str) -> None:
        """Record the deletion in the history, then tombstone the workflow for the workers.

        Deleting a deleted workflow whose tombstone never reached ``<prefix>.workflows``
        writes the tombstone; otherwise it is :class:`WorkflowNotFound`.
        """
        async with self._lock:
            await self._refresh()
            latest = self.versions(workflow_id)[-1]
            if latest.deleted and self._published.get(workflow_id) is not None:
                await self._make_live(workflow_id)
                return
            latest = await self._live_locked(workflow_id)
            await self._publish(workflow_id, latest.definition, saved_by, "deleted", deleted=True)

    async def rollback(self, workflow_id: str, version: int, *, saved_by: str) -> WorkflowVersion:
        """Publish an earlier version's definition as a new version (also revives a deletion)."""
        await self.refresh()
        target = self.version(workflow_id, version)
        if target.deleted:
            raise WorkflowNotFound(
                f"workflow {workflow_id!r}: version {version} is a deletion; roll back to the "
                "version before it"
            )
        saved = await self.save(
            target.definition, saved_by=saved_by, comment=f"rollback to version {version}"
        )
        latest = self.latest(workflow_id)
        assert latest is not None  # target exists, so the workflow does
        return saved or latest

    async def _live(self, workflow_id: str) -> WorkflowVersion:
        async with self._lock:
            return await self._live_locked(workflow_id)

    async def _live_locked(self, workflow_id: str) -> WorkflowVersion:
        await self._refresh()
        latest = self.versions(workflow_id)[-1]
        if latest.deleted:
            raise WorkflowNotFound(
                f"workflow {workflow_id!r} was deleted in version {latest.workflow_version}"
            )
        return latest

    def _check_expected(
        self, workflow_id: str, latest: WorkflowVersion | None, expected: int | None
    ) -> None:
        have = latest.workflow_version if latest is not None else 0
        if expected is not None and expected != have:
            by = f" by {latest.saved_by}" if latest is not None else ""
            raise VersionConflict(
                f"workflow {workflow_id!r}: expected_version {expected}, but the latest is "
                f"version {have}{by}; reload and save again"
            )

    async def _publish(
        self,
        workflow_id: str,
        definition: dict[str, Any],
        saved_by: str,
        comment: str,
        *,
        deleted: bool = False,
    ) -> WorkflowVersion:
        """History first, then (if this writer won the version number) the compacted topic."""
        producer, _ = self._clients()
        latest = self.latest(workflow_id)
        record = WorkflowVersion(
            workflow_id=workflow_id,
            workflow_version=(latest.workflow_version if latest else 0) + 1,
            definition=definition,
            saved_at=now_iso(),
            saved_by=saved_by,
            comment=comment,
            deleted=deleted,
        )
        key, value = workflow_id.encode(), record.model_dump_json().encode()
        try:
            async with asyncio.timeout(self.timeout):
                sent = await producer.send_and_wait(self.history_topic, value, key=key)
        except (TimeoutError, KafkaError) as exc:
            raise KafkaUnavailable(f"writing {self.history_topic}: {exc!r}") from exc
        await self._refresh()
        if self._offsets.get((workflow_id, record.workflow_version)) != sent.offset:
            raise VersionConflict(
                f"workflow {workflow_id!r}: another writer saved version "
                f"{record.workflow_version} first; reload and save again"
            )
        await self._make_live(workflow_id)
        return record

    async def _make_live(self, workflow_id: str) -> None:
        """Make ``<prefix>.workflows`` hold the latest version (a tombstone once deleted).

        Nothing is written when it does already. After a write the history is read again: a
        version another writer saved meanwhile is published after this one, so the workers
        never end on an older version whichever write the broker took last.
        """
        producer, _ = self._clients()
        for _ in range(_LIVE_ROUNDS):
            latest = self.latest(workflow_id)
            want = None if latest is None or latest.deleted else latest.workflow_version
            if latest is None or self._published.get(workflow_id) == want:
                return
            value = None if latest.deleted else latest.model_dump_json().encode()
            try:
                async with asyncio.timeout(self.timeout):
                    await producer.send_and_wait(
                        self.workflows_topic, value, key=workflow_id.encode()
                    )
            except (TimeoutError, KafkaError) as exc:
                again = "delete it" if latest.deleted else "save it"
                raise KafkaUnavailable(
                    f"{self.workflows_topic}: version {latest.workflow_version} of "
                    f"{workflow_id!r} is in the history but not live yet ({exc!r}); {again} again"
                ) from exc
            self._published[workflow_id] = want
            await self._refresh()
