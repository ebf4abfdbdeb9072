"""``flowguard workflows``: publish, inspect, version and roll back live workflows.

Every command talks to the workflow store (:mod:`flowguard.control.store`) on the deployment's Kafka
(``FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS``, ``FLOWGUARD_TOPIC_PREFIX``). Workflows are named by id
(``auto-retry-network-errors``) or by name (``"Auto-retry network errors"``).
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from flowguard.cli.config import settings_or_exit
from flowguard.control.masking import mask_definition, open_definition
from flowguard.control.store import WorkflowStore, to_yaml
from flowguard.control.workflow_files import Loaded, load_workflows
from flowguard.control.workflow_templates import template, templates
from flowguard.engine.workflow import slugify
from flowguard.errors import FlowguardError, KafkaUnavailable, WorkflowInvalid, WorkflowNotFound
from topics.workflows import WorkflowVersion

T = TypeVar("T")
_LIST = "{:<36} {:<36} {:>7} {:<8} {}"
_VERSIONS = "{:>7} {:<25} {:<20} {:<9} {}"


def _run(body: Callable[[WorkflowStore], Awaitable[T]]) -> T:
    """Open the store, run ``body``, and turn flowguard's errors into a message and exit code."""
    settings = settings_or_exit()

    async def main() -> T:
        async with WorkflowStore(
            settings.kafka_bootstrap_servers, settings.topic_prefix, settings.kafka_timeout_seconds
        ) as store:
            return await body(store)

    try:
        return asyncio.run(main())
    except WorkflowInvalid as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (KafkaUnavailable, FlowguardError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def resolve_workflow(store: WorkflowStore, name: str) -> str:
    """A workflow id from an id or a name; deleted workflows resolve too (for versions)."""
    known = store.ids()
    for candidate in (name, slugify(name)):
        if candidate in known:
            return candidate
    for wid in known:
        if store.versions(wid)[-1].definition.get("name") == name:
            return wid
    raise WorkflowNotFound(f"workflow {name!r}: no such workflow (see `flowguard workflows list`)")


def _by() -> str:
    return f"cli:{getpass.getuser()}"


by_option = click.option(
    "--by", "saved_by", default=_by, show_default="cli:$USER", help="Who made the change."
)


@click.group("workflows")
def command() -> None:
    """Publish and manage the workflows the live workers run."""


@command.command("apply")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@by_option
@click.option("-m", "--comment", default="", help="Recorded with each new version.")
def apply(path: Path, saved_by: str, comment: str) -> None:
    """Publish the workflows in FILE or DIR; only changed ones get a new version.

    Everything is validated first (the errors of `flowguard lint`, exit 2) and nothing is
    published unless all of it is valid. A workflow disabled in the store stays disabled
    unless the file says `enabled:`.
    """
    try:
        loaded = load_workflows(path)
    except WorkflowInvalid as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)

    async def publish(store: WorkflowStore) -> None:
        for item in loaded:
            document, kept = _document(store, item)
            saved = await store.save(
                document, saved_by=saved_by, comment=comment, source=item.source
            )
            click.echo(_applied(store, item.workflow.id, saved, kept))

    _run(publish)


def _document(store: WorkflowStore, item: Loaded) -> tuple[dict[str, Any], bool]:
    """The definition to store, self-contained (named); True when it keeps a disable."""
    document = dict(item.document)
    document.setdefault("name", item.workflow.name)
    latest = store.latest(item.workflow.id)
    if "enabled" in document or latest is None or latest.deleted:
        return document, False
    if latest.definition.get("enabled") is False:
        document["enabled"] = False
        return document, True
    return document, False


def _applied(store: WorkflowStore, wid: str, saved: WorkflowVersion | None, kept: bool) -> str:
    if saved is None:
        latest = store.latest(wid)
        assert latest is not None  # unchanged means it exists
        return f"unchanged {wid} v{latest.workflow_version}"
    verb = "created" if saved.workflow_version == 1 or _revived(store, wid) else "updated"
    return f"{verb} {wid} v{saved.workflow_version}" + (" (kept disabled)" if kept else "")


def _revived(store: WorkflowStore, wid: str) -> bool:
    versions = store.versions(wid)
    return len(versions) > 1 and versions[-2].deleted


@command.command("list")
def list_() -> None:
    """The live workflows: id, name, version, enabled, trigger."""

    async def show(store: WorkflowStore) -> None:
        click.echo(_LIST.format("ID", "NAME", "VERSION", "ENABLED", "TRIGGER"))
        for wid, latest in store.current().items():
            doc = latest.definition
            trigger = doc.get("trigger", {}).get("event", "?")
            enabled = "yes" if doc.get("enabled", True) else "no"
            click.echo(
                _LIST.format(wid, doc.get("name", ""), latest.workflow_version, enabled, trigger)
            )

    _run(show)


@command.command("export")
@click.argument("name", required=False)
@click.option(
    "--reveal-secrets",
    is_flag=True,
    help="Show literal secrets, sealed ones opened with FLOWGUARD_SECRETS_KEY (masked by default).",
)
def export(name: str | None, reveal_secrets: bool) -> None:
    """YAML of one workflow, or of every live one; `flowguard workflows apply` reads it back.

    Each document starts with its `id`, so a renamed workflow keeps its identity.
    """

    async def dump(store: WorkflowStore) -> str:
        current = store.current()
        if name is not None:
            wid = resolve_workflow(store, name)
            if wid not in current:
                raise WorkflowNotFound(f"workflow {name!r} was deleted (see `versions`)")
            current = {wid: current[wid]}
        docs = [
            {"id": wid, **_shown(store, v.definition, reveal_secrets)} for wid, v in current.items()
        ]
        return "---\n".join(to_yaml(doc) for doc in docs)

    click.echo(_run(dump), nl=False)


def _toggle(name: str, enabled: bool, saved_by: str) -> None:
    async def toggle(store: WorkflowStore) -> None:
        wid = resolve_workflow(store, name)
        before = store.latest(wid)
        saved = await store.set_enabled(wid, enabled, saved_by=saved_by)
        state = "enabled" if enabled else "disabled"
        if before is not None and saved.workflow_version == before.workflow_version:
            click.echo(f"unchanged {wid} v{saved.workflow_version}: already {state}")
        else:
            click.echo(f"{state} {wid} v{saved.workflow_version}")

    _run(toggle)


@command.command("enable")
@click.argument("name")
@by_option
def enable(name: str, saved_by: str) -> None:
    """Enable a workflow (a new version)."""
    _toggle(name, True, saved_by)


@command.command("disable")
@click.argument("name")
@by_option
def disable(name: str, saved_by: str) -> None:
    """Disable a workflow (a new version); the workers stop running it."""
    _toggle(name, False, saved_by)


@command.command("delete")
@click.argument("name")
@by_option
def delete(name: str, saved_by: str) -> None:
    """Delete a workflow; its versions stay in the history and `rollback` revives it."""

    async def remove(store: WorkflowStore) -> None:
        wid = resolve_workflow(store, name)
        await store.delete(wid, saved_by=saved_by)
        click.echo(f"deleted {wid} (v{store.versions(wid)[-1].workflow_version})")

    _run(remove)


@command.command("versions")
@click.argument("name")
def versions(name: str) -> None:
    """Every version of a workflow, oldest first, with who saved it and why."""

    async def show(store: WorkflowStore) -> None:
        wid = resolve_workflow(store, name)
        click.echo(_VERSIONS.format("VERSION", "SAVED AT", "BY", "STATE", "COMMENT"))
        for v in store.versions(wid):
            state = (
                "deleted"
                if v.deleted
                else ("enabled" if v.definition.get("enabled", True) else "disabled")
            )
            click.echo(
                _VERSIONS.format(v.workflow_version, v.saved_at, v.saved_by, state, v.comment)
            )

    _run(show)


@command.command("diff")
@click.argument("name")
@click.argument("a", type=int)
@click.argument("b", type=int)
def diff(name: str, a: int, b: int) -> None:
    """Unified diff of versions A and B (secrets masked)."""

    async def show(store: WorkflowStore) -> str:
        return store.diff(resolve_workflow(store, name), a, b)

    text = _run(show)
    click.echo(text or f"versions {a} and {b} are the same\n", nl=False)


def _shown(store: WorkflowStore, definition: dict[str, Any], reveal: bool) -> dict[str, Any]:
    """Masked; revealed: in clear, sealed values opened (one no key opens stays sealed)."""
    if not reveal:
        return mask_definition(definition)
    return open_definition(definition, store.keyring)


@command.command("reseal")
@by_option
def reseal(saved_by: str) -> None:
    """Seal every live workflow's secrets with the current FLOWGUARD_SECRETS_KEY.

    After a rotation (new key set, the old one in FLOWGUARD_SECRETS_OLD_KEYS), this publishes
    a new version of each workflow with a value sealed with an older key, or a literal in
    clear; the others are left as they are. Exits 1 naming each workflow it could not reseal
    (a value sealed with a key that is not configured). docs/security.md: rotation.
    """

    async def run(store: WorkflowStore) -> list[str]:
        done, problems = await store.reseal(saved_by=saved_by)
        for version in done:
            click.echo(f"resealed {version.workflow_id} as v{version.workflow_version}")
        unchanged = len(store.current()) - len(done) - len(problems)
        click.echo(f"{len(done)} resealed, {unchanged} already sealed with the current key")
        return problems

    problems = _run(run)
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    if problems:
        sys.exit(1)


@command.command("rollback")
@click.argument("name")
@click.argument("version", type=int)
@by_option
def rollback(name: str, version: int, saved_by: str) -> None:
    """Publish VERSION's definition again as the newest version."""

    async def back(store: WorkflowStore) -> None:
        wid = resolve_workflow(store, name)
        before = store.latest(wid)
        saved = await store.rollback(wid, version, saved_by=saved_by)
        if before is not None and saved.workflow_version == before.workflow_version:
            click.echo(f"unchanged {wid} v{saved.workflow_version}: already as version {version}")
        else:
            click.echo(f"rolled back {wid} to version {version} as v{saved.workflow_version}")

    _run(back)


@command.command("templates")
@click.argument("slug", required=False)
def templates_(slug: str | None) -> None:
    """List the product page's templates, or print one as YAML to start from."""
    if slug is not None:
        try:
            click.echo(template(slug).text(), nl=False)
        except FlowguardError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        return
    for item in templates():
        click.echo(f"{item.slug:<40} {item.name}")
