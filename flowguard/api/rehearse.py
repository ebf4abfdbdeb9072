"""Compare with live: ``POST /api/rehearse`` runs a draft over a time range of real events.

The editor's "Compare with live" panel. The same code as ``flowguard rehearse``
(:func:`flowguard.rehearse_run.gather`, then :func:`flowguard.rehearse.compare`): the draft
decides over ``<prefix>.events`` after a warm-up, and its decisions are matched with what the
live version of each workflow (by id) recorded on the execution log. Nothing is sent.

Bounded: a range of at most :data:`MAX_RANGE_HOURS`, at most ``FLOWGUARD_API_TEST_MAX_EVENTS``
events read (Test Workflow's bound; a 413 says to use ``flowguard rehearse``), and a response
of totals, at most one row per hour and :data:`flowguard.rehearse.EXAMPLES` examples of each
difference. Editors only, as Test Workflow; run on a thread, a few at a time
(``FLOWGUARD_API_TEST_CONCURRENCY``), as Test Workflow's runs.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from flowguard.api.deps import Editor, Svc, api_router
from flowguard.api.testing import TestInput
from flowguard.api.testing import _workflow as draft_workflow
from flowguard.engine.matching import Published
from flowguard.errors import ApiProblem, KafkaUnavailable, TooManyEvents
from flowguard.rehearse import compare, iso_time
from flowguard.rehearse_run import gather
from flowguard.topic_range import TimeRange

router = api_router("/api", "editor", 401, 403, 404, 413, 422, 503)
#: The longest range one request may rehearse (the events topic keeps 7 days).
MAX_RANGE_HOURS = 7 * 24
#: The longest warm-up before the range.
MAX_WARM_UP_HOURS = 24


class RehearseInput(BaseModel):
    """A draft (as Test Workflow takes it) over a time range of ``<prefix>.events``."""

    definition: dict[str, Any] = Field(description="The draft workflow.")
    workflow_id: str | None = Field(
        default=None,
        description="The saved workflow the draft edits: compared with its live decisions, and "
        "its masked secrets stand for this one's.",
    )
    since: AwareDatetime = Field(description="Triggers from this time (ISO 8601, with a zone).")
    until: AwareDatetime | None = Field(default=None, description="Up to this time; default now.")
    cluster: str | None = Field(
        default=None, min_length=1, max_length=200, description="One cluster; default all."
    )
    warm_up_hours: float = Field(
        default=1.0,
        ge=0,
        le=MAX_WARM_UP_HOURS,
        description="Also decide over this long before since, comparing nothing there: the "
        "draft's breakers and counts start where the live ones were.",
    )

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _range(self) -> RehearseInput:
        until = self.until.timestamp() if self.until is not None else time.time()
        if until <= self.since.timestamp():
            raise ValueError("since must be before until (or before now)")
        if until - self.since.timestamp() > MAX_RANGE_HOURS * 3600:
            raise ValueError(
                f"the range is longer than {MAX_RANGE_HOURS} hours; "
                "rehearse a longer one with flowguard rehearse"
            )
        return self


class RehearseResult(BaseModel):
    since: str
    until: str
    cluster: str | None
    workflow_id: str
    live: dict[str, int]
    draft: dict[str, int]
    added: int
    removed: int
    changed: int
    unchanged: int
    hours: list[dict[str, Any]] = Field(description="One row per hour with a decision.")
    examples: dict[str, list[dict[str, Any]]] = Field(
        description="Up to 20 of each: added, removed and changed executions."
    )


def _epoch(at: datetime | None) -> float:
    return at.timestamp() if at is not None else time.time()


@router.post("/rehearse", response_model=RehearseResult)
async def rehearse(body: RehearseInput, who: Editor, svc: Svc) -> RehearseResult:
    """Run a draft over a range of real events; compare with what the live version decided."""
    published = await draft_workflow(
        TestInput(definition=body.definition, workflow_id=body.workflow_id, hours=1.0), svc
    )
    if body.workflow_id is not None and published.workflow.id != body.workflow_id:
        # A renamed draft is still the workflow it edits: compare with that one's decisions.
        workflow = published.workflow.model_copy(update={"id": body.workflow_id})
        published = Published.of(workflow, published.version)
    span = TimeRange(body.since.timestamp(), _epoch(body.until))
    limit = svc.api.test_max_events
    try:
        # On a thread with a loop of its own (as Test Workflow's runs): the draft's deciding is
        # CPU work, and the API's loop keeps answering other requests meanwhile.
        live, draft = await svc.off_loop(
            lambda: asyncio.run(
                gather(
                    svc.settings,
                    [published],
                    span,
                    body.warm_up_hours * 3600,
                    body.cluster,
                    max_events=limit,
                )
            )
        )
    except TooManyEvents:
        raise ApiProblem(
            413,
            "too_large",
            "the range holds more events than the API rehearses",
            [
                (
                    "body.since",
                    f"more than {limit} events (FLOWGUARD_API_TEST_MAX_EVENTS) with the "
                    "warm-up; narrow the range or the cluster, or use flowguard rehearse",
                )
            ],
        ) from None
    except KafkaUnavailable as exc:
        raise ApiProblem(503, "kafka_unavailable", str(exc)) from None
    comparison = compare(live, draft).as_dict()
    return RehearseResult(
        since=iso_time(span.since),
        until=iso_time(span.until if span.until is not None else time.time()),
        cluster=body.cluster,
        workflow_id=published.workflow.id,
        **comparison,
    )
