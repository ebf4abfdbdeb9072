"""Webhook: POST the ``flowguard.webhook/1`` payload, idempotent and optionally signed.

The payload is the execution record plus the task context at the top level.
``Idempotency-Key`` is the action id, so a receiver can drop the rare second
delivery a crash may cause. With ``secret`` set, every attempt carries
``Flowguard-Timestamp`` and ``Flowguard-Signature: v1=<hex HMAC-SHA256 of
"<timestamp>.<body>">``; the timestamp is fresh per attempt so a receiver can
reject old replays (docs/actions.md shows the receiver's side).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from flowguard.actions.outbound import (
    Context,
    Outbound,
    parse_url,
    reveal_secret,
    url_secrets,
)
from flowguard.engine.decision import Notice
from flowguard.engine.workflow import WebhookAction, header_value_problem
from flowguard.errors import ActionFailed
from topics.record import iso

WEBHOOK_SCHEMA = "flowguard.webhook/1"
SIGNATURE_HEADER = "Flowguard-Signature"
TIMESTAMP_HEADER = "Flowguard-Timestamp"
SAMPLE_HEADER = "Flowguard-Sample"
# Header values shorter than this are not scrubbed from excerpts (they would mangle them).
_SCRUB_MIN_CHARS = 6


def prepare(notice: Notice, ctx: Context) -> Outbound:
    """The request for one webhook notice."""
    action = notice.action
    assert isinstance(action, WebhookAction)
    raw_url = reveal_secret(action.url, "url", ctx)
    url = parse_url(raw_url, "url")
    custom = {name: _header(name, value, ctx) for name, value in action.headers.items()}
    body = orjson.dumps(payload(notice, ctx))
    headers = {
        **custom,
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key(notice.action_id, sample=ctx.sample),
    }
    if ctx.sample:
        headers[SAMPLE_HEADER] = "true"
    secret = reveal_secret(action.secret, "secret", ctx) if action.secret is not None else None
    return Outbound(
        method=action.method,
        url=url,
        body=body,
        headers=headers,
        timeout_seconds=action.timeout_seconds,
        retries=0 if ctx.sample else action.retries,
        secrets=(
            *url_secrets(raw_url),
            *(v for v in custom.values() if len(v) >= _SCRUB_MIN_CHARS),
            *((secret,) if secret else ()),
        ),
        sign=_signer(secret.encode()) if secret else None,
    )


def _header(name: str, value: SecretStr, ctx: Context) -> str:
    """A custom header's value, refused (final, by name) when it cannot be sent as is.

    A literal was checked when the workflow loaded; an ``${ENV}`` value is only known now.
    """
    text = reveal_secret(value, f"headers.{name}", ctx)
    problem = header_value_problem(text)
    if problem is not None:
        raise ActionFailed(f"headers.{name}: {problem}")
    return text


def payload(notice: Notice, ctx: Context) -> dict[str, Any]:
    """The ``flowguard.webhook/1`` document. ``execution`` never holds a secret.

    The records are serialized by pydantic straight to JSON and embedded as is
    (``orjson.Fragment``): half the cost of dumping them to dicts first.
    """
    record = notice.record
    return {
        "schema": WEBHOOK_SCHEMA,
        "action_id": notice.action_id,
        "sample": ctx.sample,
        "sent_at": iso(ctx.now),
        "text": notice.text,
        "dedup_key": notice.dedup_key,
        "task": orjson.Fragment(record.task.model_dump_json()) if record.task else None,
        "worker": orjson.Fragment(record.worker.model_dump_json()) if record.worker else None,
        "execution": orjson.Fragment(record.to_json()),
    }


def idempotency_key(action_id: str, *, sample: bool) -> str:
    """The action id; a sample gets its own key so a receiver never drops the real one after it."""
    return f"{action_id}/sample" if sample else action_id


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """``v1=`` and the hex HMAC-SHA256 of ``b"<timestamp>." + body``."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def _signer(secret: bytes) -> Any:
    def sign(body: bytes, timestamp: int) -> Mapping[str, str]:
        return {
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: signature(secret, timestamp, body),
        }

    return sign
