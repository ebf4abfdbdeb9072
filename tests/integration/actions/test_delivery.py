"""Delivering to real local HTTP servers: success, rate limits, retries, bounds, timeouts."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests import celery_events as ev
from tests.httpserver import RecordingServer, Reply
from tests.integration.actions.runner_helpers import deliver, settings
from tests.unit.actions.notices import ROUTING_KEY, engine_notices, failing_chain, notice

T0 = 1_760_000_000.0
ROOT = Path(__file__).resolve().parents[3]


def test_webhook_delivers_the_versioned_payload(http_server: RecordingServer) -> None:
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    [done] = deliver([sent])
    assert (done.result.status, done.result.detail) == ("succeeded", "HTTP 200")
    [request] = http_server.requests("/hook")
    body = request.json()
    assert request.method == "POST"
    assert request.headers["idempotency-key"] == sent.action_id
    assert request.headers["content-type"] == "application/json"
    assert body["schema"] == "flowguard.webhook/1"
    assert body["execution"]["execution_id"] == sent.record.execution_id
    assert body["execution"]["schema"] == "flowguard.execution/1"
    assert body["task"]["name"] == "payments.process_card"
    assert body["sample"] is False
    assert "flowguard-signature" not in request.headers


def test_slack_posts_text_and_block_kit_context(http_server: RecordingServer) -> None:
    sent = notice(
        {
            "type": "slack",
            "webhook_url": http_server.url_for("/slack"),
            "channel": "#payments",
            "blocks": True,
        },
        text="Task payments.process_card failed",
    )
    [done] = deliver([sent], config=settings(ui_url="https://flowguard.example"))
    assert done.result.status == "succeeded"
    body = http_server.requests("/slack")[0].json()
    assert body["text"] == "Task payments.process_card failed"
    assert body["channel"] == "#payments"
    fields = " ".join(f["text"] for f in body["blocks"][1]["fields"])
    assert "payments.process_card" in fields
    assert "celery@pay-1" in fields
    # Task data cannot ping the channel: Slack's control characters are escaped.
    assert "&lt;!channel&gt;" in fields
    assert "<!channel>" not in fields
    button = body["blocks"][2]["elements"][0]
    assert button["url"] == f"https://flowguard.example/executions/{sent.record.execution_id}"


def test_pagerduty_triggers_with_the_chain_dedup_key(http_server: RecordingServer) -> None:
    sent = notice({"type": "pagerduty", "routing_key": ROUTING_KEY, "severity": "critical"})
    http_server.script("/v2/enqueue", Reply(202, body='{"status":"success"}'))
    config = settings(pagerduty_url=http_server.url_for("/v2/enqueue"))
    [done] = deliver([sent], config=config)
    assert (done.result.status, done.result.detail) == ("succeeded", "HTTP 202")
    event = http_server.requests("/v2/enqueue")[0].json()
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "payments-alert/eu/task-1"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["source"] == "celery@pay-1"


def test_429_waits_the_advertised_retry_after(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(429, retry_after=1), Reply(200))
    [done] = deliver([notice({"type": "webhook", "url": http_server.url_for("/hook")})])
    assert (done.result.status, done.result.detail) == ("succeeded", "HTTP 200 on attempt 2 of 4")
    first, second = http_server.requests("/hook")
    assert second.received_at - first.received_at >= 1.0


def test_503_is_retried_then_given_up_within_the_bound(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(503, body="upstream down"))
    action = {"type": "webhook", "url": http_server.url_for("/hook"), "retries": 20}
    [done] = deliver([notice(action)], config=settings(max_total_seconds=2.0))
    assert done.result.status == "failed"
    assert "gave up" in done.result.detail
    assert "2s bound" in done.result.detail
    assert done.seconds < 2.5
    assert len(http_server.requests("/hook")) >= 2


def test_retries_stop_at_the_action_s_count(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(500))
    [done] = deliver(
        [notice({"type": "webhook", "url": http_server.url_for("/hook"), "retries": 2})]
    )
    assert done.result.detail == "HTTP 500: ok (gave up after 3 attempts)"
    assert len(http_server.requests("/hook")) == 3


def test_4xx_is_final_and_recorded_as_a_short_excerpt(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(400, body="bad " + "x" * 5_000_000))
    [done] = deliver([notice({"type": "webhook", "url": http_server.url_for("/hook")})])
    assert done.result.status == "failed"
    assert done.result.detail.startswith("HTTP 400: bad xxx")
    assert len(done.result.detail) < 250
    assert len(http_server.requests("/hook")) == 1


def test_a_huge_response_is_read_only_up_to_the_cap(http_server: RecordingServer) -> None:
    """The runner stops reading at max_response_bytes and hangs up: the rest is never sent."""
    size = 64 * 1024 * 1024
    http_server.script("/hook", Reply(502, stream_bytes=size))
    action = {"type": "webhook", "url": http_server.url_for("/hook"), "retries": 0}
    [done] = deliver([notice(action)], config=settings(max_response_bytes=64 * 1024))
    assert done.result.detail.startswith("HTTP 502: xxxx")
    streamed = http_server.wait_for_streamed("/hook")
    assert not streamed.complete, "the client hung up before the end"
    # What the client read (64 KiB) plus what the sockets' buffers held: a few MB at most.
    assert streamed.written < 16 * 1024 * 1024, streamed


def test_a_hanging_endpoint_times_out(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(hang=True))
    action = {"type": "webhook", "url": http_server.url_for("/hook"), "timeout_seconds": 0.3}
    [done] = deliver([notice({**action, "retries": 1})])
    assert done.result.status == "failed"
    assert done.result.detail == ("timed out (waiting for the response) (gave up after 2 attempts)")
    assert 0.6 <= done.seconds < 1.5


def test_connection_refused_is_retried_then_reported() -> None:
    with RecordingServer() as gone:
        url = gone.url_for("/hook")
    [done] = deliver([notice({"type": "webhook", "url": url, "retries": 1})])
    assert done.result.status == "failed"
    assert "ConnectError" in done.result.detail
    assert "gave up after 2 attempts" in done.result.detail


def documented_verify(doc: str) -> Callable[..., bool]:
    """The ``verify`` of ``doc``'s Python snippet, run as written: the docs cannot drift."""
    text = (ROOT / doc).read_text(encoding="utf-8")
    [code] = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "def verify(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, doc, "exec"), namespace)
    verify: Callable[..., bool] = namespace["verify"]
    return verify


@pytest.mark.parametrize("doc", ["docs/actions.md", "README.md"])
def test_the_receiver_verifies_the_signature_as_documented(
    http_server: RecordingServer, doc: str
) -> None:
    verify = documented_verify(doc)
    secret = "whsec-0123456789abcdef"
    action = {"type": "webhook", "url": http_server.url_for("/hook"), "secret": secret}
    deliver([notice(action)])
    [request] = http_server.requests("/hook")
    lower, body = dict(request.headers), request.body  # a plain dict of lower-case names
    as_sent = {k.title(): v for k, v in lower.items()}
    assert verify(secret.encode(), lower, body)
    assert verify(secret.encode(), as_sent, body)
    assert not verify(b"another-secret-entirely", lower, body)
    assert not verify(secret.encode(), lower, body + b" ")
    stale = int(lower["flowguard-timestamp"]) - 301
    assert not verify(secret.encode(), {**lower, "flowguard-timestamp": str(stale)}, body)
    for timestamp in ("", "soon", "12.5", "9" * 5000):
        assert not verify(secret.encode(), {**lower, "flowguard-timestamp": timestamp}, body)
    assert not verify(secret.encode(), {"flowguard-signature": lower["flowguard-signature"]}, body)
    assert not verify(secret.encode(), {"flowguard-timestamp": lower["flowguard-timestamp"]}, body)
    assert not verify(secret.encode(), {**lower, "flowguard-signature": "v1=ö"}, body)


def test_a_redirect_is_not_followed(http_servers: Callable[[], RecordingServer]) -> None:
    origin, elsewhere = http_servers(), http_servers()
    origin.script("/hook", Reply(302, headers={"Location": elsewhere.url_for("/stolen")}))
    [done] = deliver([notice({"type": "webhook", "url": origin.url_for("/hook")})])
    assert done.result.status == "failed"
    assert done.result.detail.startswith("HTTP 302")
    assert elsewhere.requests() == []


def test_a_sample_is_marked_and_tried_once(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(503))
    sent = notice({"type": "webhook", "url": http_server.url_for("/hook")})
    [done] = deliver([sent], sample=True)
    assert done.result.status == "failed"
    assert done.result.detail.startswith("sample: HTTP 503")
    [request] = http_server.requests("/hook")
    assert request.headers["flowguard-sample"] == "true"
    assert request.headers["idempotency-key"] == f"{sent.action_id}/sample"
    assert request.json()["sample"] is True


def test_a_sample_never_uses_up_the_real_delivery(http_server: RecordingServer) -> None:
    sent = notice({"type": "slack", "webhook_url": http_server.url_for("/slack")})
    samples = deliver([sent, sent], sample=True)
    [real] = deliver([sent])
    assert [t.result.status for t in [*samples, real]] == ["succeeded"] * 3
    texts = [r.json()["text"] for r in http_server.requests("/slack")]
    assert [t.startswith("[flowguard test]") for t in texts] == [True, True, False]
    assert texts[2] == "Task failed"


def test_the_total_bound_cuts_a_long_attempt(http_server: RecordingServer) -> None:
    http_server.script("/hook", Reply(hang=True))
    action = {"type": "webhook", "url": http_server.url_for("/hook"), "timeout_seconds": 60}
    [done] = deliver([notice(action)], config=settings(max_total_seconds=0.5))
    assert done.result.detail == "gave up: no answer within the 0.5s bound"
    assert done.seconds < 1.5


def test_a_chain_s_pages_carry_the_engine_s_chain_key_end_to_end(
    http_server: RecordingServer,
) -> None:
    """The seed's escalation: from the fifth failure of a chain on, pages fold into one incident."""
    doc = {
        "name": "escalate",
        "trigger": {"event": "task.failed", "conditions": {"failure_count_threshold": 5}},
        "action": {"type": "pagerduty", "routing_key": ROUTING_KEY},
    }
    decided = engine_notices(doc, failing_chain("t1", 7, T0) + failing_chain("t2", 5, T0 + 500))
    http_server.script("/v2/enqueue", Reply(202, body='{"status":"success"}'))
    done = deliver(decided, config=settings(pagerduty_url=http_server.url_for("/v2/enqueue")))
    assert [t.result.status for t in done] == ["succeeded"] * 4
    keys = [r.json()["dedup_key"] for r in http_server.requests("/v2/enqueue")]
    assert keys == ["escalate/prod/t1"] * 3 + ["escalate/prod/t2"]


def test_two_workers_going_offline_page_twice_end_to_end(http_server: RecordingServer) -> None:
    doc = {
        "name": "worker down",
        "trigger": {"event": "worker.offline"},
        "action": {"type": "pagerduty", "routing_key": ROUTING_KEY},
    }
    decided = engine_notices(
        doc,
        ev.online_then_offline(T0, "celery@w1", "celery@w2"),
    )
    http_server.script("/v2/enqueue", Reply(202))
    deliver(decided, config=settings(pagerduty_url=http_server.url_for("/v2/enqueue")))
    events = [r.json() for r in http_server.requests("/v2/enqueue")]
    assert [e["dedup_key"] for e in events] == [
        "worker-down/prod/celery@w1",
        "worker-down/prod/celery@w2",
    ]
    assert [e["payload"]["source"] for e in events] == ["celery@w1", "celery@w2"]
