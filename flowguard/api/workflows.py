"""Workflows: list, get, save (each save a version), enable/disable, delete, versions, diff,
rollback, YAML import and export; templates and inline validation for the editor.

Every write goes through :class:`flowguard.control.store.WorkflowStore` with the caller's token
name as ``saved_by``. Definitions leave masked; a masked secret sent back unchanged keeps
the stored one.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from flowguard.api.auth import Principal, Role
from flowguard.api.definitions import from_yaml, restore_secrets, stored_for
from flowguard.api.deps import Editor, Svc, Viewer
from flowguard.api.errors import ErrorResponse, not_found
from flowguard.api.models import (
    DefinitionInput,
    DiffResult,
    ImportInput,
    ImportItem,
    LintNote,
    RollbackInput,
    SaveInput,
    SaveResult,
    TemplateInfo,
    ValidateInput,
    ValidateResult,
    VersionInfo,
    WorkflowDetail,
    WorkflowSummary,
)
from flowguard.api.services import Services
from flowguard.api.summaries import summaries
from flowguard.control.masking import mask_definition, open_definition, refuse_references
from flowguard.control.secrets import Keyring
from flowguard.control.store import WorkflowStore, to_yaml
from flowguard.control.workflow_templates import templates
from flowguard.engine.documents import parse_workflow
from flowguard.engine.lint import lint, literal_secret_warnings
from flowguard.engine.workflow import Workflow
from flowguard.errors import ApiProblem, WorkflowInvalid, WorkflowNotFound
from topics.workflows import WorkflowVersion

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422)
}
router = APIRouter(prefix="/api", responses=_ERRORS)

WorkflowId = Annotated[str, Query(min_length=1, max_length=128)]


def _definition_of(body: DefinitionInput, max_yaml_bytes: int) -> dict[str, Any]:
    if body.definition is not None:
        return body.definition
    docs = from_yaml(body.yaml or "", source="yaml", max_bytes=max_yaml_bytes)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise WorkflowInvalid("yaml", [("(document)", "give exactly one workflow mapping")])
    return dict(docs[0])


def _keep_id(definition: dict[str, Any], workflow_id: str | None) -> dict[str, Any]:
    """An edit of ``workflow_id`` that names no ``id`` keeps that id: a rename changes the
    name only (else the id would come from the new name's slug and the save be refused)."""
    if workflow_id is None or "id" in definition:
        return definition
    return {"id": workflow_id, **definition}


def _detail(version: WorkflowVersion) -> WorkflowDetail:
    masked = mask_definition(version.definition)
    try:
        workflow = parse_workflow(version.definition, source=version.workflow_id)
    except WorkflowInvalid:
        warnings: list[LintNote] = []
        name, enabled = str(masked.get("name", version.workflow_id)), False
    else:
        warnings = [LintNote(field=w.field, message=w.message) for w in lint(workflow)]
        name, enabled = workflow.name, workflow.enabled
    return WorkflowDetail(
        id=version.workflow_id,
        name=name,
        version=version.workflow_version,
        enabled=enabled and not version.deleted,
        definition=masked,
        yaml=to_yaml(masked),
        saved_at=version.saved_at,
        saved_by=version.saved_by,
        comment=version.comment,
        warnings=warnings,
    )


def _live(store: WorkflowStore, workflow_id: str) -> WorkflowVersion:
    found = store.current().get(workflow_id)
    if found is None:
        raise not_found(f"workflow {workflow_id!r}: no such workflow")
    return found


async def _save(
    svc: Services,
    who: Principal,
    definition: dict[str, Any],
    body: SaveInput,
    *,
    workflow_id: str | None,
) -> tuple[WorkflowVersion, bool]:
    """Create (``workflow_id`` None) or update; masked secrets sent back keep the stored ones."""
    store = await svc.refreshed_store()
    if workflow_id is None:
        workflow = parse_workflow(definition, source="definition")
        latest = store.latest(workflow.id)
        if latest is not None and not latest.deleted:
            raise ApiProblem(409, "exists", f"workflow {workflow.id!r} already exists; update it")
        expected: int | None = latest.workflow_version if latest is not None else 0
    else:
        live = _live(store, workflow_id)
        definition = restore_secrets(_keep_id(definition, workflow_id), live.definition)
        workflow = parse_workflow(definition, source="definition")
        if workflow.id != workflow_id:
            raise WorkflowInvalid(
                "definition", [("id", f"is {workflow.id!r}, but this is workflow {workflow_id!r}")]
            )
        expected = body.expected_version
    saved = await store.save(
        definition, saved_by=who.name, comment=body.comment, expected_version=expected
    )
    if saved is not None:
        return saved, True
    return _live(store, workflow.id), False


@router.get("/workflows", response_model=list[WorkflowSummary], tags=["workflows"])
async def list_workflows(who: Viewer, svc: Svc) -> list[WorkflowSummary]:
    """Every live workflow with its state and, once history is read, its recent executions."""
    store = await svc.refreshed_store()
    return await asyncio.to_thread(summaries, svc.history, list(store.current().values()))


@router.post("/workflows", status_code=201, response_model=SaveResult, tags=["workflows"])
async def create_workflow(body: SaveInput, who: Editor, svc: Svc) -> SaveResult:
    """Create a workflow (its version 1, or the next one after a deletion)."""
    saved, changed = await _save(
        svc, who, _definition_of(body, svc.api.max_yaml_bytes), body, workflow_id=None
    )
    return SaveResult(saved=changed, workflow=_detail(saved))


@router.get("/workflows/{workflow_id}", response_model=WorkflowDetail, tags=["workflows"])
async def get_workflow(workflow_id: str, who: Viewer, svc: Svc) -> WorkflowDetail:
    return _detail(_live(await svc.refreshed_store(), workflow_id))


@router.put("/workflows/{workflow_id}", response_model=SaveResult, tags=["workflows"])
async def update_workflow(workflow_id: str, body: SaveInput, who: Editor, svc: Svc) -> SaveResult:
    """Save a new version; nothing is published when it means the same as the latest."""
    saved, changed = await _save(
        svc, who, _definition_of(body, svc.api.max_yaml_bytes), body, workflow_id=workflow_id
    )
    return SaveResult(saved=changed, workflow=_detail(saved))


async def _set_enabled(svc: Services, who: Principal, workflow_id: str, on: bool) -> WorkflowDetail:
    try:
        version = await svc.store.set_enabled(workflow_id, on, saved_by=who.name)
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None
    return _detail(version)


@router.post("/workflows/{workflow_id}/enable", response_model=WorkflowDetail, tags=["workflows"])
async def enable_workflow(workflow_id: str, who: Editor, svc: Svc) -> WorkflowDetail:
    return await _set_enabled(svc, who, workflow_id, True)


@router.post("/workflows/{workflow_id}/disable", response_model=WorkflowDetail, tags=["workflows"])
async def disable_workflow(workflow_id: str, who: Editor, svc: Svc) -> WorkflowDetail:
    return await _set_enabled(svc, who, workflow_id, False)


@router.delete("/workflows/{workflow_id}", status_code=204, tags=["workflows"])
async def delete_workflow(workflow_id: str, who: Editor, svc: Svc) -> Response:
    """Delete: recorded as a version in the history, tombstoned for the workers."""
    try:
        await svc.store.delete(workflow_id, saved_by=who.name)
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None
    return Response(status_code=204)


def _versions(store: WorkflowStore, workflow_id: str) -> list[WorkflowVersion]:
    try:
        return store.versions(workflow_id)
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None


@router.get(
    "/workflows/{workflow_id}/versions", response_model=list[VersionInfo], tags=["versions"]
)
async def list_versions(workflow_id: str, who: Viewer, svc: Svc) -> list[VersionInfo]:
    """Every version, oldest first, deletions included."""
    return [
        VersionInfo(
            version=v.workflow_version,
            saved_at=v.saved_at,
            saved_by=v.saved_by,
            comment=v.comment,
            deleted=v.deleted,
            enabled=bool(v.definition.get("enabled", True)) and not v.deleted,
        )
        for v in _versions(await svc.refreshed_store(), workflow_id)
    ]


@router.get(
    "/workflows/{workflow_id}/versions/{version}",
    response_model=WorkflowDetail,
    tags=["versions"],
)
async def get_version(workflow_id: str, version: int, who: Viewer, svc: Svc) -> WorkflowDetail:
    store = await svc.refreshed_store()
    try:
        return _detail(store.version(workflow_id, version))
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None


@router.get("/workflows/{workflow_id}/diff", response_model=DiffResult, tags=["versions"])
async def diff_versions(
    workflow_id: str,
    who: Viewer,
    svc: Svc,
    a: Annotated[int, Query(ge=1)],
    b: Annotated[int, Query(ge=1)],
) -> DiffResult:
    """Unified diff of two versions' YAML, secrets masked (a changed secret is marked)."""
    store = await svc.refreshed_store()
    try:
        return DiffResult(a=a, b=b, diff=store.diff(workflow_id, a, b))
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None


@router.post("/workflows/{workflow_id}/rollback", response_model=SaveResult, tags=["versions"])
async def rollback_workflow(
    workflow_id: str, body: RollbackInput, who: Editor, svc: Svc
) -> SaveResult:
    """Publish an earlier version's definition as the new latest version."""
    store = await svc.refreshed_store()
    before = store.latest(workflow_id)
    try:
        saved = await store.rollback(workflow_id, body.version, saved_by=who.name)
    except WorkflowNotFound as exc:
        raise not_found(str(exc)) from None
    return SaveResult(saved=saved != before, workflow=_detail(saved))


def _export(
    definitions: list[dict[str, Any]], who: Principal, reveal: bool, keyring: Keyring
) -> Response:
    if reveal and who.role < Role.admin:
        raise ApiProblem(403, "forbidden", "reveal_secrets needs the admin role")
    # Revealed: in clear, sealed secrets opened (what `flowguard workflows apply` takes back).
    shown = [open_definition(d, keyring) if reveal else mask_definition(d) for d in definitions]
    text = "---\n".join(to_yaml(d) for d in shown)
    return Response(text, media_type="application/yaml")


_YAML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/yaml": {"schema": {"type": "string"}}}}
}


@router.get("/workflows/{workflow_id}/export", response_class=Response, responses=_YAML)
async def export_workflow(
    workflow_id: str, who: Viewer, svc: Svc, reveal_secrets: bool = False
) -> Response:
    """The workflow as YAML; secrets masked unless an admin asks with ``reveal_secrets``."""
    store = await svc.refreshed_store()
    live = _live(store, workflow_id)
    return _export([live.definition], who, reveal_secrets, store.keyring)


@router.get("/export", response_class=Response, responses=_YAML, tags=["workflows"])
async def export_all(who: Viewer, svc: Svc, reveal_secrets: bool = False) -> Response:
    """Every live workflow as one multi-document YAML file."""
    store = await svc.refreshed_store()
    definitions = [v.definition for v in store.current().values()]
    return _export(definitions, who, reveal_secrets, store.keyring)


def _parse_all(docs: list[dict[str, Any]]) -> list[Workflow]:
    return [parse_workflow(doc, source=f"yaml#{n}") for n, doc in enumerate(docs, start=1)]


@router.post("/import", response_model=list[ImportItem], tags=["workflows"])
async def import_yaml(body: ImportInput, who: Editor, svc: Svc) -> list[ImportItem]:
    """Validate every workflow in the YAML first (masked secrets restored), then save the ones
    that changed. A save refused midway (Kafka, a concurrent writer) leaves the earlier ones
    saved; importing the same file again saves the rest."""
    store = await svc.refreshed_store()
    docs: list[dict[str, Any]] = []
    # Parsing a large import is CPU-heavy: off the event loop (as Test Workflow runs).
    found = await svc.off_loop(
        from_yaml, body.yaml, source="yaml", max_bytes=svc.api.max_yaml_bytes
    )
    for n, doc in enumerate(found, start=1):
        if not isinstance(doc, dict):
            raise WorkflowInvalid(f"yaml#{n}", [("(document)", "a workflow must be a mapping")])
        docs.append(restore_secrets(doc, stored_for(store, doc)))
    parsed = await svc.off_loop(_parse_all, docs)
    if not parsed:
        raise WorkflowInvalid("yaml", [("(document)", "no workflow found")])
    ids = [w.id for w in parsed]
    if len(set(ids)) != len(ids):
        raise WorkflowInvalid("yaml", [("id", "the same workflow id appears twice")])
    results = []
    for doc, workflow in zip(docs, parsed, strict=True):
        latest = store.latest(workflow.id)
        live = latest is not None and not latest.deleted
        saved = await store.save(doc, saved_by=who.name, comment=body.comment)
        status = "unchanged" if saved is None else ("updated" if live else "created")
        version = saved or _live(store, workflow.id)
        results.append(ImportItem(id=workflow.id, status=status, version=version.workflow_version))
    return results


@router.post("/validate", response_model=ValidateResult, tags=["editor"])
async def validate(body: ValidateInput, who: Viewer, svc: Svc) -> ValidateResult:
    """Inline validation: field-named problems (as ``flowguard lint``), or lint warnings.

    Masked secrets count as the stored ones they stand for (``workflow_id``'s, else the
    draft id's), as a save would restore them. Nothing of the definition is echoed: the
    editor keeps the author's secrets in the page.
    """
    store = await svc.refreshed_store()
    try:
        draft = _keep_id(_definition_of(body, svc.api.max_yaml_bytes), body.workflow_id)
        definition = restore_secrets(draft, stored_for(store, draft, body.workflow_id))
        workflow = parse_workflow(definition, source="definition")
    except WorkflowInvalid as exc:
        problems = [LintNote(field=f, message=r) for f, r in exc.problems]
        return ValidateResult(valid=False, problems=problems)
    try:
        refuse_references("definition", definition, svc.settings.secret_policy())
    except WorkflowInvalid as exc:
        problems = [LintNote(field=f, message=r) for f, r in exc.problems]
        return ValidateResult(valid=False, problems=problems)
    warnings = lint(workflow)
    if svc.settings.secrets_key is None:
        warnings += literal_secret_warnings(workflow)
    return ValidateResult(
        valid=True,
        id=workflow.id,
        warnings=[LintNote(field=w.field, message=w.message) for w in warnings],
    )


@router.get("/templates", response_model=list[TemplateInfo], tags=["editor"])
async def list_templates(who: Viewer) -> list[TemplateInfo]:
    """The product page's templates, as the editor starts from them."""
    return [
        TemplateInfo(
            slug=t.slug,
            name=t.name,
            description=t.description,
            definition=mask_definition(t.definition),
            yaml=to_yaml(mask_definition(t.definition)),
        )
        for t in templates()
    ]
