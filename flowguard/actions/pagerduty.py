"""PagerDuty: an Events API v2 ``trigger`` with one ``dedup_key`` per task chain or worker.

The notice's ``dedup_key`` is the workflow and the retry chain (or, for
``worker.offline``, the worker: see :func:`flowguard.engine.decision.incident_key`),
so the seed's "fifth failure -> PagerDuty" escalation opens one incident however
often the chain fails again; PagerDuty folds the later triggers into it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from flowguard.actions.outbound import (
    SAMPLE_BANNER,
    Context,
    Outbound,
    cut,
    parse_url,
    reveal_secret,
)
from flowguard.engine.decision import Notice
from flowguard.engine.workflow import PagerDutyAction
from topics.execution import ExecutionRecord

# Events API v2 limits: summary 1024 characters, dedup_key 255.
_SUMMARY_CHARS = 1024
_DEDUP_CHARS = 255


def prepare(notice: Notice, ctx: Context) -> Outbound:
    """The request for one PagerDuty notice."""
    action = notice.action
    assert isinstance(action, PagerDutyAction)
    routing_key = reveal_secret(action.routing_key, "routing_key", ctx)
    url = parse_url(ctx.settings.pagerduty_url, "FLOWGUARD_ACTIONS_PAGERDUTY_URL")
    return Outbound(
        method="POST",
        url=url,
        body=orjson.dumps(event(notice, routing_key, ctx)),
        headers={"Content-Type": "application/json"},
        timeout_seconds=ctx.settings.request_timeout_seconds,
        retries=0 if ctx.sample else ctx.settings.retries,
        secrets=(routing_key,),
    )


def event(notice: Notice, routing_key: str, ctx: Context) -> dict[str, Any]:
    """The Events API v2 body. A sample is an ``info`` event under its own dedup key."""
    action = notice.action
    assert isinstance(action, PagerDutyAction)
    record = notice.record
    summary = f"{SAMPLE_BANNER} {notice.text}" if ctx.sample else notice.text
    dedup = dedup_key(notice.dedup_key + ("/sample" if ctx.sample else ""))
    details = {
        "summary": cut(summary or record.workflow.name, _SUMMARY_CHARS),
        "source": _source(record),
        "severity": "info" if ctx.sample else action.severity,
        "timestamp": record.trigger.at,
        "component": record.task.name if record.task else None,
        "group": record.task.cluster if record.task else None,
        "class": record.task.exception_type if record.task else record.trigger.event,
        "custom_details": {
            "sample": ctx.sample,
            "workflow": record.workflow.model_dump(mode="json"),
            "execution_id": record.execution_id,
            "action_id": notice.action_id,
            "trigger": record.trigger.model_dump(mode="json"),
            "task": record.task.model_dump(mode="json") if record.task else None,
        },
    }
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "client": "flowguard",
        # PagerDuty wants optional fields absent, not null.
        "payload": {k: v for k, v in details.items() if v is not None},
    }


def dedup_key(key: str) -> str:
    """The chain's key as is, or a stable digest when it is longer than PagerDuty allows."""
    if len(key) <= _DEDUP_CHARS:
        return key
    return "flowguard:" + hashlib.sha256(key.encode()).hexdigest()


def _source(record: ExecutionRecord) -> str:
    if record.task is not None:
        return record.task.worker or record.task.cluster
    return record.worker.hostname if record.worker else "flowguard"
