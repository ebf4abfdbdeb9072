"""Failure groups: failures sharing a fingerprint, from the execution history; never-retry lists.

A group is every ``task.failed`` execution whose task has one fingerprint
(:mod:`flowguard.engine.fingerprint`): how many failures, when first and last seen, on which
clusters, and which workflows acted on them and how. Records written before fingerprints
existed get theirs computed here from the task they carry, the same function the engine uses.

Only failures some workflow matched are on the execution log, so only they are counted.

``PUT``/``DELETE /api/groups/{fingerprint}/never-retry/{workflow_id}`` add the fingerprint to
(or take it off) that workflow's retry action's ``never_retry`` list as a new workflow version,
as an edit in the editor would: the engine then skips such a retry with the reason recorded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, Field

from flowguard.api.auth import Principal
from flowguard.api.deps import Editor, Svc, Viewer, api_router, query_time
from flowguard.api.errors import not_found
from flowguard.api.services import Services
from flowguard.engine.documents import parse_workflow
from flowguard.engine.fingerprint import FINGERPRINT_PATTERN, fingerprint_of, normalize_message
from flowguard.engine.workflow import RetryAction, Workflow
from flowguard.errors import ApiProblem, FlowguardError
from topics.execution import ExecutionRecord
from topics.record import iso
from topics.workflows import WorkflowVersion

router = api_router("/api", "groups", 401, 403, 404, 409, 422, 503)
FingerprintPath = Annotated[str, Path(pattern=FINGERPRINT_PATTERN)]
#: Executions read per request at most (newest first); ``complete`` says when there were more.
MAX_SCANNED = 20_000
_PAGE = 1000
WEEK_SECONDS = 7 * 24 * 3600
NEVER_RETRY_COMMENT = "never retry failures with fingerprint {fp} (Failure groups)"


class GroupWorkflow(BaseModel):
    id: str
    name: str
    executions: int = Field(description="Executions of this workflow on the group's failures.")
    retries: int = Field(description="Retries it planned, scheduled or sent for them.")
    never_retried: int = Field(description="Retries it skipped: the fingerprint is listed.")
    can_retry: bool = Field(description="Its current version has a retry action.")
    never_retry: bool = Field(description="Its current version lists this fingerprint.")


class Group(BaseModel):
    fingerprint: str
    task_name: str | None
    exception_type: str | None
    message: str = Field(description="The message as grouped: numbers, ids, quotes replaced.")
    example: str = Field(description="The latest failure's own message.")
    failures: int = Field(description="Distinct failures (trigger events), not executions.")
    first_seen: str
    last_seen: str
    clusters: list[str]
    workflows: list[GroupWorkflow]


class Groups(BaseModel):
    since: str
    until: str
    scanned: int = Field(description="Executions read.")
    complete: bool = Field(description="False when more executions were in range than read.")
    groups: list[Group]


class NeverRetryResult(BaseModel):
    workflow_id: str
    workflow_version: int
    never_retry: list[str]
    changed: bool


@dataclass
class _Acc:
    first: ExecutionRecord
    last: ExecutionRecord
    triggers: set[str] = field(default_factory=set)
    clusters: set[str] = field(default_factory=set)
    workflows: dict[str, list[ExecutionRecord]] = field(default_factory=dict)


def record_fingerprint(record: ExecutionRecord) -> str | None:
    """The record's fingerprint: written on it, or computed for records older than the field."""
    if record.task is None:
        return None
    return record.task.fingerprint or fingerprint_of(record.task)


def group_records(
    records: Iterable[ExecutionRecord], current: Mapping[str, Workflow]
) -> list[Group]:
    """Failure groups from execution records (latest ``seq`` each), most failures first."""
    found: dict[str, _Acc] = {}
    for record in records:
        fp = record_fingerprint(record)
        if fp is None or record.task is None:
            continue
        acc = found.setdefault(fp, _Acc(first=record, last=record))
        if record.trigger.at < acc.first.trigger.at:
            acc.first = record
        if record.trigger.at > acc.last.trigger.at:
            acc.last = record
        acc.triggers.add(record.trigger.id)
        acc.clusters.add(record.task.cluster)
        acc.workflows.setdefault(record.workflow.id, []).append(record)
    groups = [_group(fp, acc, current) for fp, acc in found.items()]
    return sorted(groups, key=lambda g: (-g.failures, g.last_seen, g.fingerprint))


def _group(fp: str, acc: _Acc, current: Mapping[str, Workflow]) -> Group:
    task = acc.last.task
    assert task is not None
    acted = {wid: _acted(wid, fp, rs, current.get(wid)) for wid, rs in acc.workflows.items()}
    for wid, workflow in current.items():
        if wid not in acted and fp in _never_list(workflow):
            acted[wid] = _acted(wid, fp, [], workflow)
    return Group(
        fingerprint=fp,
        task_name=task.name,
        exception_type=task.exception_type,
        message=normalize_message(task.error_message or ""),
        example=task.error_message or "",
        failures=len(acc.triggers),
        first_seen=acc.first.trigger.at,
        last_seen=acc.last.trigger.at,
        clusters=sorted(acc.clusters),
        workflows=sorted(acted.values(), key=lambda w: (-w.executions, w.id)),
    )


def _acted(
    wid: str, fp: str, records: list[ExecutionRecord], workflow: Workflow | None
) -> GroupWorkflow:
    retries = [a for r in records for a in r.actions if a.type == "retry"]
    return GroupWorkflow(
        id=wid,
        name=workflow.name if workflow else (records[-1].workflow.name if records else wid),
        executions=len(records),
        retries=sum(1 for a in retries if a.status != "skipped" and a.status != "failed"),
        never_retried=sum(1 for a in retries if a.detail.startswith("never_retry:")),
        can_retry=workflow is not None and _retry_of(workflow) is not None,
        never_retry=workflow is not None and fp in _never_list(workflow),
    )


def _retry_of(workflow: Workflow) -> int | None:
    """The position of the workflow's retry action (at most one), or ``None``."""
    return next((i for i, a in enumerate(workflow.actions) if isinstance(a, RetryAction)), None)


def _never_list(workflow: Workflow) -> tuple[str, ...]:
    index = _retry_of(workflow)
    if index is None:
        return ()
    action = workflow.actions[index]
    assert isinstance(action, RetryAction)
    return action.never_retry


def _parsed(versions: Iterable[WorkflowVersion]) -> dict[str, Workflow]:
    """Current workflows that parse (one that no longer does is left out, not fatal here)."""
    parsed = {}
    for version in versions:
        try:
            parsed[version.workflow_id] = parse_workflow(version.definition, source="store")
        except FlowguardError:
            continue
    return parsed


def _scan(
    svc: Services, since: float, until: float, cluster: str | None
) -> tuple[list[ExecutionRecord], bool]:
    """The newest ``task.failed`` executions of the range, at most ``MAX_SCANNED``; and
    whether that was all of them."""
    records: list[ExecutionRecord] = []
    cursor: str | None = None
    while True:
        page = svc.history.query(
            trigger="task.failed", cluster=cluster, since=since, until=until,
            limit=min(_PAGE, MAX_SCANNED - len(records)), cursor=cursor,
        )  # fmt: skip
        records.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return records, True
        if len(records) >= MAX_SCANNED:
            return records, False


def _time(value: str | None, name: str, default: float) -> float:
    found = query_time(value, name)
    return default if found is None else found


@router.get("/groups", response_model=Groups)
async def list_groups(
    who: Viewer,
    svc: Svc,
    since: Annotated[str | None, Query(description="ISO 8601; default: 7 days ago.")] = None,
    until: Annotated[str | None, Query(description="ISO 8601; default: now.")] = None,
    cluster: Annotated[str | None, Query(min_length=1, max_length=500)] = None,
    fingerprint: Annotated[
        str | None, Query(pattern=FINGERPRINT_PATTERN, description="Only this group.")
    ] = None,
) -> Groups:
    """Failure groups of ``task.failed`` executions in the time range, most failures first."""
    end = _time(until, "until", time.time())
    start = _time(since, "since", end - WEEK_SECONDS)
    records, complete = await svc.off_loop(_scan, svc, start, end, cluster)
    store = await svc.refreshed_store()
    current = _parsed(store.current().values())
    groups = await svc.off_loop(group_records, records, current)
    if fingerprint is not None:
        groups = [g for g in groups if g.fingerprint == fingerprint]
    return Groups(
        since=iso(start) or "",
        until=iso(end) or "",
        scanned=len(records),
        complete=complete,
        groups=groups,
    )


@router.put("/groups/{fingerprint}/never-retry/{workflow_id}", response_model=NeverRetryResult)
async def add_never_retry(
    fingerprint: FingerprintPath, workflow_id: str, who: Editor, svc: Svc
) -> NeverRetryResult:
    """Never retry this group in that workflow: its retry action's ``never_retry`` gains it."""
    return await _edit_never_retry(svc, who, workflow_id, fingerprint, add=True)


@router.delete("/groups/{fingerprint}/never-retry/{workflow_id}", response_model=NeverRetryResult)
async def remove_never_retry(
    fingerprint: FingerprintPath, workflow_id: str, who: Editor, svc: Svc
) -> NeverRetryResult:
    """Retry this group again in that workflow: the fingerprint leaves ``never_retry``."""
    return await _edit_never_retry(svc, who, workflow_id, fingerprint, add=False)


async def _edit_never_retry(
    svc: Services, who: Principal, workflow_id: str, fp: str, *, add: bool
) -> NeverRetryResult:
    store = await svc.refreshed_store()
    live = store.current().get(workflow_id)
    if live is None:
        raise not_found(f"workflow {workflow_id!r}: no such workflow")
    workflow = parse_workflow(live.definition, source="store")
    index = _retry_of(workflow)
    if index is None:
        raise ApiProblem(
            409, "no_retry_action", f"workflow {workflow_id!r} has no retry action to keep from"
        )
    listed = list(_never_list(workflow))
    if (fp in listed) == add:
        return NeverRetryResult(
            workflow_id=workflow_id,
            workflow_version=live.workflow_version,
            never_retry=listed,
            changed=False,
        )
    listed = [*listed, fp] if add else [f for f in listed if f != fp]
    definition = with_never_retry(live.definition, index, listed)
    comment = NEVER_RETRY_COMMENT.format(fp=fp) if add else f"retry fingerprint {fp} again"
    saved = await store.save(
        definition, saved_by=who.name, comment=comment, expected_version=live.workflow_version
    )
    version = saved.workflow_version if saved is not None else live.workflow_version
    return NeverRetryResult(
        workflow_id=workflow_id, workflow_version=version, never_retry=listed, changed=True
    )


def with_never_retry(
    definition: Mapping[str, Any], index: int, listed: list[str]
) -> dict[str, Any]:
    """The stored definition with action ``index``'s ``never_retry`` set; all else as written.

    The definition is the author's (``action:`` or ``actions:``, secrets as stored), so only
    that one key changes; an emptied list is removed.
    """
    edited = dict(definition)
    key = "action" if "action" in edited else "actions"
    actions = [edited[key]] if key == "action" else list(edited[key])
    action = dict(actions[index])
    if listed:
        action["never_retry"] = listed
    else:
        action.pop("never_retry", None)
    actions[index] = action
    edited[key] = action if key == "action" else actions
    return edited
