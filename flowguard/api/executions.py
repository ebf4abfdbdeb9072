"""Execution history from the local projection of the log; execution rollback (cancel).

Queries read :class:`flowguard.control.history.HistoryProjection` (SQLite, kept current by a
background task). Cancelling produces :class:`topics.triggers.CancelExecution` to
``<prefix>.triggers`` keyed by workflow id; the live worker holding the pending retry
cancels it and records the cancellation on the execution log.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from aiokafka.errors import KafkaError
from fastapi import Query
from pydantic import BaseModel, Field

from flowguard.api.deps import Editor, Svc, Viewer, api_router, query_time
from flowguard.api.errors import not_found
from flowguard.control.history import DAY_SECONDS, ChainTask, Page
from flowguard.control.store import now_iso
from flowguard.errors import ApiProblem, HistoryError
from topics.execution import ExecutionRecord
from topics.registry import TRIGGERS
from topics.triggers import CancelExecution

router = api_router("/api", "history", 401, 403, 404, 409, 422, 503)
Iso = Annotated[
    str | None,
    Query(
        pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|[+-]\d\d:\d\d)$",
        description="ISO 8601 with Z or an offset.",
    ),
]
Text = Annotated[str | None, Query(min_length=1, max_length=500)]


class HourCount(BaseModel):
    hour: str
    outcome: str
    count: int


class CancelInput(BaseModel):
    comment: str = Field(default="", max_length=1000)
    model_config = {"extra": "forbid"}


class CancelResult(BaseModel):
    execution_id: str
    workflow_id: str
    requested_by: str
    requested_at: str
    pending: list[str] = Field(description="The action ids the worker is asked to cancel.")


@router.get("/executions", response_model=Page)
async def list_executions(
    who: Viewer,
    svc: Svc,
    workflow: Text = None,
    outcome: Literal["success", "failure", "skipped"] | None = None,
    trigger: Text = None,
    cluster: Text = None,
    task_name: Text = None,
    task_id: Text = None,
    since: Iso = None,
    until: Iso = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page:
    """Executions newest first, every filter ANDed; ``next_cursor`` fetches the next page."""
    filters: dict[str, Any] = {
        "workflow": workflow,
        "outcome": outcome,
        "trigger": trigger,
        "cluster": cluster,
        "task_name": task_name,
        "task_id": task_id,
        "since": query_time(since, "since"),
        "until": query_time(until, "until"),
    }
    try:
        return await asyncio.to_thread(svc.history.query, limit=limit, cursor=cursor, **filters)
    except HistoryError as exc:
        field, _, reason = str(exc).partition(": ")
        raise ApiProblem(
            422, "request_invalid", "the request is invalid", [(f"query.{field}", reason)]
        ) from None


@router.get("/executions/counts", response_model=list[HourCount])
async def execution_counts(
    who: Viewer,
    svc: Svc,
    workflow: Text = None,
    cluster: Text = None,
    since: Iso = None,
    until: Iso = None,
) -> list[HourCount]:
    """Executions per hour and outcome, for the charts; the last 24 h by default."""
    end = query_time(until, "until") or time.time()
    start = query_time(since, "since") or end - DAY_SECONDS
    rows = await asyncio.to_thread(
        svc.history.counts_per_hour, workflow, since=start, until=end, cluster=cluster
    )
    return [HourCount(hour=h, outcome=o, count=c) for h, o, c in rows]


@router.get("/executions/{execution_id}", response_model=list[ExecutionRecord])
async def execution_records(execution_id: str, who: Viewer, svc: Svc) -> list[ExecutionRecord]:
    """Every record of one execution (decision, delayed actions resolved, cancellation)."""
    records = await asyncio.to_thread(svc.history.records, execution_id)
    if not records:
        raise not_found(f"execution {execution_id!r}: not in the history (yet)")
    return records


@router.get("/chains/{root_id}", response_model=list[ChainTask])
async def retry_chain(root_id: str, who: Viewer, svc: Svc) -> list[ChainTask]:
    """A task's retry chain: each attempt with its worker, error and the executions on it."""
    chain = await asyncio.to_thread(svc.history.chain, root_id)
    if not chain:
        raise not_found(f"retry chain {root_id!r}: no execution touched it")
    return chain


@router.post("/executions/{execution_id}/cancel", status_code=202, response_model=CancelResult)
async def cancel_execution(
    execution_id: str, body: CancelInput, who: Editor, svc: Svc
) -> CancelResult:
    """Cancel an execution's pending delayed actions; the worker records it on the log."""
    records = await asyncio.to_thread(svc.history.records, execution_id)
    if not records:
        raise not_found(f"execution {execution_id!r}: not in the history (yet)")
    latest = records[-1]
    pending = [a.action_id for a in latest.actions if a.status == "scheduled"]
    if not pending:
        raise ApiProblem(
            409, "nothing_pending", f"execution {execution_id!r} has no scheduled action pending"
        )
    request = CancelExecution(
        workflow_id=latest.workflow.id,
        execution_id=execution_id,
        requested_by=who.name,
        requested_at=now_iso(),
        comment=body.comment,
    )
    try:
        async with asyncio.timeout(svc.settings.kafka_timeout_seconds):
            await svc.producer.send_and_wait(
                TRIGGERS.name(svc.settings.topic_prefix),
                request.model_dump_json().encode(),
                key=latest.workflow.id.encode(),
            )
    except (TimeoutError, KafkaError) as exc:
        raise ApiProblem(503, "kafka_unavailable", f"cancel not sent: {exc!r}") from None
    return CancelResult(
        execution_id=execution_id,
        workflow_id=latest.workflow.id,
        requested_by=who.name,
        requested_at=request.requested_at,
        pending=pending,
    )
