"""Test Workflow: a draft or saved workflow over uploaded JSONL or a cluster's last N hours.

Always a dry run through the engine (:mod:`flowguard.api.testrun`); with
``send_samples`` each notification action also sends one message marked as a
test through the real action runner. Nothing is ever retried.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field, model_validator

from flowguard.api.definitions import from_yaml, restore_secrets, stored_for
from flowguard.api.deps import Editor, Svc, Viewer, api_router
from flowguard.api.errors import not_found
from flowguard.api.events import read_cluster_events
from flowguard.api.models import PreviewInput, PreviewResult
from flowguard.api.samples import render, sample_notices, variables
from flowguard.api.services import Services
from flowguard.api.testrun import TestRun, run_test
from flowguard.control.masking import refuse_references, refuse_sealed
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from flowguard.engine.workflow import Workflow
from flowguard.errors import (
    ApiProblem,
    KafkaUnavailable,
    TemplateInvalid,
    WorkflowInvalid,
    WorkflowNotFound,
)
from topics.execution import ActionResult

router = api_router("/api", "test", 401, 403, 404, 422, 503)


class TestInput(BaseModel):
    """Which workflow (a draft, or a saved one) over which events (uploaded, or from Kafka)."""

    __test__ = False

    definition: dict[str, Any] | None = Field(default=None, description="A draft workflow.")
    yaml: str | None = Field(default=None, max_length=1_000_000, description="A draft, as YAML.")
    workflow_id: str | None = Field(
        default=None,
        description="A saved workflow; with a draft, the workflow the draft edits (its masked "
        "secrets stand for this one's).",
    )
    version: int | None = Field(default=None, ge=1, description="Its version; default latest.")
    events_jsonl: str | None = Field(
        default=None, description="JSON lines of raw Celery or flowguard events."
    )
    cluster: str = Field(default="default", min_length=1, max_length=200)
    hours: float | None = Field(
        default=None, gt=0, le=24 * 7, description="Read this cluster's last N hours instead."
    )
    send_samples: bool = Field(
        default=False, description="Also send one test message per notification action."
    )

    model_config = {"extra": "forbid"}

    @model_validator(mode="after")
    def _one_of_each(self) -> TestInput:
        drafts = (self.definition is not None) + (self.yaml is not None)
        if drafts > 1 or (drafts == 0 and self.workflow_id is None):
            raise ValueError("give exactly one of definition, yaml or workflow_id")
        if drafts and self.version is not None:
            raise ValueError("version applies to a saved workflow, not to a draft")
        if (self.events_jsonl is None) == (self.hours is None):
            raise ValueError("give exactly one of events_jsonl or hours")
        return self


class TestResult(TestRun):
    source: str
    truncated: bool = False
    samples: list[ActionResult] = Field(default_factory=list)


async def _workflow(body: TestInput, svc: Services) -> Published:
    """The workflow to test, as if enabled (testing a disabled workflow is the point)."""
    store = await svc.refreshed_store()
    if body.workflow_id is not None and body.definition is None and body.yaml is None:
        try:
            saved = (
                store.version(body.workflow_id, body.version)
                if body.version is not None
                else store.versions(body.workflow_id)[-1]
            )
        except WorkflowNotFound as exc:
            raise not_found(str(exc)) from None
        workflow = parse_workflow(saved.definition, source=body.workflow_id)
        refuse_references(body.workflow_id, saved.definition, svc.settings.secret_policy())
        return Published.of(workflow.model_copy(update={"enabled": True}), saved.workflow_version)
    if body.definition is not None:
        draft = body.definition
    else:
        docs = from_yaml(body.yaml or "", source="yaml", max_bytes=svc.api.max_yaml_bytes)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise WorkflowInvalid("yaml", [("(document)", "give exactly one workflow mapping")])
        draft = docs[0]
    if body.workflow_id is not None and store.current().get(body.workflow_id) is None:
        raise not_found(f"workflow {body.workflow_id!r}: no such workflow")
    refuse_sealed("draft", draft)
    # Masks restored only where the action still sends where it did: see restore_secrets.
    stored = stored_for(store, draft, body.workflow_id)
    definition = restore_secrets(draft, stored)
    workflow = parse_workflow(definition, source="draft")
    refuse_references("draft", definition, svc.settings.secret_policy())
    return Published.of(workflow.model_copy(update={"enabled": True}))


async def _lines(body: TestInput, svc: Services) -> tuple[list[bytes], str, bool]:
    if body.events_jsonl is not None:
        if len(body.events_jsonl) > svc.api.test_max_upload_bytes:
            raise ApiProblem(
                413,
                "too_large",
                "events_jsonl is larger than the upload limit",
                [("events_jsonl", f"at most {svc.api.test_max_upload_bytes} bytes")],
            )
        lines = body.events_jsonl.encode().splitlines()
        if len(lines) > svc.api.test_max_events:
            raise ApiProblem(
                413,
                "too_large",
                "events_jsonl holds more events than a test may read",
                [
                    (
                        "events_jsonl",
                        f"{len(lines)} lines; at most {svc.api.test_max_events} "
                        "(FLOWGUARD_API_TEST_MAX_EVENTS)",
                    )
                ],
            )
        return lines, "upload", False
    hours = body.hours or 1.0
    since_ms = int((time.time() - hours * 3600) * 1000)
    try:
        window = await read_cluster_events(
            svc.settings.kafka_bootstrap_servers,
            svc.settings.topic_prefix,
            cluster=body.cluster,
            since_ms=since_ms,
            max_events=svc.api.test_max_events,
            timeout_seconds=max(30.0, svc.settings.kafka_timeout_seconds),
        )
    except KafkaUnavailable as exc:
        raise ApiProblem(503, "kafka_unavailable", str(exc)) from None
    return window.lines, f"cluster {body.cluster}, last {hours:g} h", window.truncated


@router.post("/test", response_model=TestResult)
async def test_workflow(body: TestInput, who: Editor, svc: Svc) -> TestResult:
    """Dry-run a workflow; the records equal ``flowguard replay``'s for the same input."""
    published = await _workflow(body, svc)
    lines, source, truncated = await _lines(body, svc)
    # Off the event loop: a long run must not stall every other request.
    run = await svc.off_loop(run_test, published, lines, cluster=body.cluster)
    samples = []
    if body.send_samples:
        first = run.records[0] if run.records else None
        for notice in sample_notices(published, first):
            samples.append(await svc.runner.deliver(notice, sample=True))
    return TestResult(**run.model_dump(), source=source, truncated=truncated, samples=samples)


def _preview_workflow(definition: dict[str, Any] | None) -> Workflow:
    """The draft, or (a draft still invalid as it is typed) a stand-in with the draft's name."""
    name = (definition or {}).get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        name = "preview"
    base = {"name": name, "trigger": {"event": "task.failed"}, "action": {"type": "retry"}}
    try:
        return parse_workflow(definition or base, source="definition")
    except WorkflowInvalid:
        return parse_workflow(base, source="definition")


@router.post("/preview", response_model=PreviewResult, tags=["editor"])
async def preview(body: PreviewInput, who: Viewer) -> PreviewResult:
    """A message template rendered with an example failure's variables, or why it cannot be."""
    values = variables(_preview_workflow(body.definition), None)
    try:
        return PreviewResult(text=render(body.template, values), variables=values)
    except TemplateInvalid as exc:
        return PreviewResult(text=None, problem=str(exc), variables=values)
