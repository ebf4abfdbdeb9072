"""Slack: post the rendered message to an incoming webhook, optionally with Block Kit.

The plain ``text`` is always sent (Slack shows it in notifications and where
blocks cannot render); ``blocks: true`` adds a layout with the task context.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from flowguard.actions.outbound import (
    SAMPLE_BANNER,
    Context,
    Outbound,
    cut,
    parse_url,
    reveal_secret,
    url_secrets,
)
from flowguard.engine.decision import Notice, task_variables
from flowguard.engine.messages import compile_template
from flowguard.engine.workflow import SlackAction
from topics.execution import ExecutionRecord

# Slack's limits: 3000 characters in a section's text, 2000 in a field, 40000 in text.
_SECTION_CHARS = 3000
_FIELD_CHARS = 2000
_TEXT_CHARS = 40_000
_DIGITS = re.compile(r"[0-9]*")


def prepare(notice: Notice, ctx: Context) -> Outbound:
    """The request for one Slack notice."""
    action = notice.action
    assert isinstance(action, SlackAction)
    raw_url = reveal_secret(action.webhook_url, "webhook_url", ctx)
    url = parse_url(raw_url, "webhook_url")
    safe = escaped_text(notice, action)
    text = f"{SAMPLE_BANNER}\n{safe}" if ctx.sample else safe
    payload: dict[str, Any] = {"text": cut(text, _TEXT_CHARS)}
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(action, key)
        if value is not None:
            payload[key] = value
    if action.blocks:
        payload["blocks"] = blocks(text, notice.record, ctx)
    return Outbound(
        method="POST",
        url=url,
        body=orjson.dumps(payload),
        headers={"Content-Type": "application/json"},
        timeout_seconds=ctx.settings.request_timeout_seconds,
        retries=0 if ctx.sample else ctx.settings.retries,
        secrets=url_secrets(raw_url),
    )


def blocks(text: str, record: ExecutionRecord, ctx: Context) -> list[dict[str, Any]]:
    """A Block Kit layout: the message, then the task's context as fields, then a link."""
    layout: list[dict[str, Any]] = [
        # The message as ``text``: the author's own mrkdwn and links kept, task data escaped.
        {"type": "section", "text": _mrkdwn(cut(text, _SECTION_CHARS))},
    ]
    fields = [
        _mrkdwn(f"*{label}*\n{_escape(cut(value, _FIELD_CHARS // 2))}")
        for label, value in _context(record)
        if value
    ]
    if fields:
        # A section holds at most 10 fields.
        layout.append({"type": "section", "fields": fields[:10]})
    if ctx.settings.ui_url:
        link = f"{ctx.settings.ui_url.rstrip('/')}/executions/{record.execution_id}"
        layout.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in flowguard"},
                        "url": link,
                    }
                ],
            }
        )
    layout.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"workflow {_escape(record.workflow.name)} · execution {record.execution_id}"
                )
            ],
        }
    )
    return layout


def _context(record: ExecutionRecord) -> list[tuple[str, str]]:
    task = record.task
    if task is None:
        worker = record.worker
        return [("Worker", worker.hostname if worker else ""), ("Cluster", record.trigger.event)]
    error = ": ".join(p for p in (task.exception_type, task.error_message) if p)
    return [
        ("Task", task.name or task.id),
        ("Worker", task.worker or ""),
        ("Cluster", task.cluster),
        ("Queue", task.queue or ""),
        ("Error", error),
        ("Args", task.args or ""),
        ("Kwargs", task.kwargs or ""),
        ("Failures", str(task.failure_count) if task.failure_count else ""),
    ]


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _escape(text: str) -> str:
    """Slack's three control characters, so task data cannot ping ``<!channel>`` or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escaped_text(notice: Notice, action: SlackAction) -> str:
    """The notice's text with every value that came from a task escaped for mrkdwn.

    The author's template keeps its own mrkdwn and ``<url|links>``; each variable's value
    (error messages, args: anything a failing task can put there) is escaped, so
    ``<!channel>`` or ``<https://evil.example|re-login>`` in an error shows as text. The
    values are split out of the rendered text along the template's own literal parts; a
    text the template did not render (a circuit-breaker notice) is escaped whole.
    """
    template = compile_template(action.message)
    values = _split(template.parts, notice.text, _known_values(notice.record))
    if values is None:
        return _escape(notice.text)
    return "".join(
        literal + (_escape(value) if value is not None else "")
        for (literal, _), value in zip(template.parts, values, strict=True)
    )


def _split(
    parts: tuple[tuple[str, str | None], ...], text: str, known: dict[str, str]
) -> list[str | None] | None:
    """Each variable's value in ``text`` as rendered from ``parts``, or None if it was not."""
    values: list[str | None] = []
    pos = 0
    for literal, name in parts:
        if not text.startswith(literal, pos):
            return None
        pos += len(literal)
        if name is None:
            values.append(None)
            continue
        if name in known:
            value = known[name]
            if not text.startswith(value, pos):
                return None
        else:
            # Only ``attempt`` is not in the record: flowguard's own count, digits or empty.
            match = _DIGITS.match(text, pos)
            value = match.group(0) if match else ""
        values.append(value)
        pos += len(value)
    return values if pos == len(text) else None


def _known_values(record: ExecutionRecord) -> dict[str, str]:
    """The template variables an execution record holds, as the engine rendered them."""
    task = record.task
    worker = record.worker
    values = {
        "workflow_name": record.workflow.name,
        "timestamp": record.trigger.at or "",
        "cluster": task.cluster if task else (worker.cluster if worker else ""),
        "worker": (task.worker if task else (worker.hostname if worker else None)) or "",
        "execution_id": record.execution_id,
    }
    if task is not None:
        values |= task_variables(task)
    return values
