"""``/api/remediate``: bulk retry or revoke by filter, with a preview, a named paced run that can
be aborted, and undo. Viewers cannot; editors can, confirming the count the preview showed;
admins set the per-run ceiling.

A run goes on in the API process after the request that started it (one at a time per run
name): ``GET /api/remediate/runs/{run}`` says how far it got, ``POST .../abort`` stops it after
the current task. Each action is on the execution log either way (workflow ``remediate.<run>``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from pydantic import BaseModel, Field, ValidationError

from flowguard.api.deps import Admin, Editor, Svc, Viewer, api_router
from flowguard.api.errors import not_found
from flowguard.api.services import Services
from flowguard.errors import ApiProblem
from flowguard.live.settings import LiveSettings
from flowguard.remediate import (
    DEFAULT_CEILING,
    MAX_RATE,
    RUN_PREFIX,
    Candidate,
    Filter,
    check_ceiling,
    preview,
    run_id,
    select,
)
from flowguard.remediate_run import RunState, Sender, collect, execute, undo
from flowguard.settings_base import setting_problem
from flowguard.topic_range import TimeRange, parse_time
from topics.signing import CommandKey

log = logging.getLogger(__name__)
router = api_router("/api/remediate", "remediate", 401, 403, 404, 409, 422, 503)
#: Events read before ``since``: the task-sent events that name a task failed in the range.
LOOKBACK_SECONDS = 3600.0


class FilterIn(BaseModel):
    action: Literal["retry", "revoke"] = "retry"
    task: str | None = Field(default=None, max_length=500, description="Task name glob.")
    exception: str | None = Field(default=None, max_length=200, description="Type glob.")
    error: str | None = Field(default=None, max_length=500, description="Regex on the message.")
    fingerprint: str | None = Field(default=None, max_length=64)
    clusters: list[str] = Field(default=[], max_length=100)
    queues: list[str] = Field(default=[], max_length=100)
    since: str = Field(default="1h", description="A duration back (24h) or an ISO 8601 time.")
    until: str | None = None


class PreviewIn(FilterIn):
    sample: int = Field(default=10, ge=0, le=200)


class RunIn(FilterIn):
    name: str = Field(min_length=1, max_length=200, description="'incident 4211'")
    rate: float = Field(default=5.0, gt=0, le=MAX_RATE, description="Tasks per second.")
    confirm: int = Field(
        ge=0, description="The count the preview showed: the run starts only if it still is."
    )


class UndoIn(BaseModel):
    workflow_id: str | None = Field(default=None, max_length=200)
    run: str | None = Field(default=None, max_length=200, description="A bulk run's name.")
    confirm: bool = Field(default=False, description="Must be true.")
    disable: bool = True


class CeilingIn(BaseModel):
    ceiling: int = Field(ge=1, le=1_000_000)


@dataclass
class _Runs:
    ceiling: int = DEFAULT_CEILING
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    states: dict[str, RunState] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    keys: dict[str, CommandKey] | None = None


def _runs(request: Request) -> _Runs:
    found: _Runs | None = getattr(request.app.state, "remediation", None)
    if found is None:
        found = request.app.state.remediation = _Runs()
    return found


Runs = Annotated[_Runs, Depends(_runs)]


def _keys(runs: _Runs) -> dict[str, CommandKey]:
    if runs.keys is None:
        try:
            runs.keys = LiveSettings().command_signing_keys
        except ValidationError as exc:
            raise ApiProblem(503, "misconfigured", setting_problem(exc)) from None
    return runs.keys


def _filter(body: FilterIn) -> tuple[Filter, TimeRange]:
    now = time.time()
    problems: list[tuple[str, str]] = []
    since = until = None
    try:
        since = parse_time(body.since, now)
    except ValueError as exc:
        problems.append(("body.since", str(exc)))
    if body.until is not None:
        try:
            until = parse_time(body.until, now)
        except ValueError as exc:
            problems.append(("body.until", str(exc)))
    if not problems:
        try:
            where = Filter(
                task=body.task, exception=body.exception, error=body.error,
                clusters=tuple(body.clusters), queues=tuple(body.queues),
                fingerprint=body.fingerprint, since=since, until=until,
            )  # fmt: skip
            where.refuse_for(body.action)
        except ValueError as exc:
            name, _, reason = str(exc).partition(": ")
            problems.append((f"body.{name}", reason))
    if problems:
        raise ApiProblem(422, "request_invalid", "the filter is invalid", problems)
    assert since is not None
    return where, TimeRange(since - LOOKBACK_SECONDS, until)


async def _select(svc: Services, body: FilterIn) -> list[Candidate]:
    where, span = _filter(body)
    collector = await collect(svc.settings, span)
    return select(collector.candidates(body.action), where)


def _preview(selected: list[Candidate], sample: int, ceiling: int) -> dict[str, Any]:
    p = preview(selected, sample)
    return {
        "count": p.count, "by_cluster": p.by_cluster, "by_name": p.by_name,
        "sample": [c.summary() for c in p.sample], "ceiling": ceiling,
    }  # fmt: skip


@router.get("/ceiling")
async def get_ceiling(who: Viewer, runs: Runs) -> dict[str, int]:
    """The most tasks one run may act on."""
    return {"ceiling": runs.ceiling}


@router.put("/ceiling")
async def set_ceiling(body: CeilingIn, who: Admin, runs: Runs) -> dict[str, int]:
    """Admins only: the per-run ceiling (this API process's, until it restarts)."""
    runs.ceiling = body.ceiling
    log.info("remediation ceiling set to %d by %s", body.ceiling, who.name)
    return {"ceiling": runs.ceiling}


@router.post("/preview")
async def preview_(body: PreviewIn, who: Editor, svc: Svc, runs: Runs) -> dict[str, Any]:
    """What a filter selects over ``<prefix>.events``: the count, per cluster and task name,
    and a sample. Nothing is sent."""
    return _preview(await _select(svc, body), body.sample, runs.ceiling)


@router.post("/runs", status_code=202)
async def start_run(body: RunIn, who: Editor, svc: Svc, runs: Runs) -> dict[str, Any]:
    """Start a named run: 409 when the selection is not the count confirmed, is over the
    ceiling, or a run of that name is going on."""
    try:
        rid = run_id(body.name)
    except ValueError as exc:
        raise ApiProblem(422, "request_invalid", "the run is invalid",
                         [("body.name", str(exc).partition(": ")[2])]) from None  # fmt: skip
    current = runs.states.get(rid)
    if current is not None and current.done < current.total and not current.aborted:
        raise ApiProblem(409, "run_in_progress", f"run {rid!r} is going on")
    keys = _keys(runs)
    selected = await _select(svc, body)
    try:
        check_ceiling(len(selected), runs.ceiling)
    except ValueError as exc:
        raise ApiProblem(409, "over_ceiling", str(exc)) from None
    if body.confirm != len(selected):
        raise ApiProblem(
            409, "not_confirmed",
            f"the filter selects {len(selected)} tasks now, not the {body.confirm} confirmed: "
            "preview again and confirm that count",
        )  # fmt: skip
    state = RunState(total=len(selected))
    runs.states[rid] = state
    info = {"run": rid, "workflow_id": RUN_PREFIX + rid, "name": body.name, "action": body.action,
            "rate": body.rate, "started_by": who.name, "started_at": time.time()}  # fmt: skip
    runs.runs[rid] = info

    async def go() -> None:
        try:
            async with Sender(svc.settings, keys) as sender:
                await execute(
                    sender, run=rid, name=body.name, actor=who.name, kind=body.action,
                    selected=selected, rate=body.rate, ceiling=runs.ceiling, progress=state,
                )  # fmt: skip
        except Exception as exc:  # the run ends here: say why on its status
            info["error"] = f"{type(exc).__name__}: {exc}"
            log.exception("remediation run %s failed", rid)

    if not selected:  # nothing to send: no producer to start
        return {**info, **state.as_dict()}
    task = asyncio.create_task(go(), name=f"remediate {rid}")
    runs.tasks.add(task)
    task.add_done_callback(runs.tasks.discard)
    return {**info, **state.as_dict()}


@router.get("/runs")
async def list_runs(who: Viewer, runs: Runs) -> list[dict[str, Any]]:
    """The runs this API process started, newest first, with their progress."""
    found = [{**info, **runs.states[rid].as_dict()} for rid, info in runs.runs.items()]
    return sorted(found, key=lambda r: -float(r["started_at"]))


@router.get("/runs/{run}")
async def get_run(run: str, who: Viewer, runs: Runs) -> dict[str, Any]:
    if run not in runs.runs:
        raise not_found(f"run {run!r}: not started by this API process")
    return {**runs.runs[run], **runs.states[run].as_dict()}


@router.post("/runs/{run}/abort")
async def abort_run(run: str, who: Editor, runs: Runs) -> dict[str, Any]:
    """Stop the run after the task at hand; what was sent stays sent (undo revokes it)."""
    if run not in runs.runs:
        raise not_found(f"run {run!r}: not started by this API process")
    state = runs.states[run]
    state.abort.set()
    return {**runs.runs[run], **state.as_dict()}


@router.post("/undo")
async def undo_(body: UndoIn, who: Editor, svc: Svc, runs: Runs) -> dict[str, Any]:
    """Revoke every retry a workflow or a run scheduled or sent that has not settled, disable
    the workflow, and record what was cancelled (on the execution log)."""
    if (body.workflow_id is None) == (body.run is None):
        raise ApiProblem(422, "request_invalid", "give a workflow or a run",
                         [("body.workflow_id", "give either workflow_id or run")])  # fmt: skip
    if not body.confirm:
        raise ApiProblem(422, "request_invalid", "confirm the undo",
                         [("body.confirm", "must be true")])  # fmt: skip
    if body.run is not None:
        try:
            target = RUN_PREFIX + run_id(body.run)
        except ValueError as exc:
            raise ApiProblem(422, "request_invalid", "the run is invalid",
                             [("body.run", str(exc).partition(": ")[2])]) from None  # fmt: skip
        state = runs.states.get(target.removeprefix(RUN_PREFIX))
        if state is not None:
            state.abort.set()  # a run still going stops before it is undone
    else:
        assert body.workflow_id is not None
        target = body.workflow_id
    keys = _keys(runs)
    disabled = False
    if body.run is None and body.disable:
        store = await svc.refreshed_store()
        if store.latest(target) is None:
            raise not_found(f"workflow {target!r}")
        await store.set_enabled(target, False, saved_by=who.name)
        disabled = True
    async with Sender(svc.settings, keys) as sender:
        done = await undo(svc.settings, sender, target, who.name)
    return {
        "workflow_id": target, "execution_id": done.execution_id, "disabled": disabled,
        "cancelled": [{"command_id": a.command_id, "task_id": a.retry_task_id,
                       "detail": a.detail} for a in done.actions],
    }  # fmt: skip
