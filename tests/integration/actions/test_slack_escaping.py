"""Task data cannot ping a channel or plant a link in Slack: issue 16, item 6.

End to end: raw Celery events of a task failing with a Slack control sequence in its error
and args, through the engine, the real Slack runner, to a recording server.
"""

from __future__ import annotations

from tests import celery_events as ev
from tests.httpserver import RecordingServer
from tests.integration.actions.runner_helpers import deliver
from tests.unit.actions.notices import engine_notices

PAYLOAD = "<!channel> <https://evil.example|re-login here>"
ESCAPED = "&lt;!channel&gt; &lt;https://evil.example|re-login here&gt;"


def _failure() -> list[dict[str, object]]:
    raws = ev.run("t-evil", 1_767_225_600.0, "app.charge", args=f"('{PAYLOAD}',)")
    raws[-1]["exception"] = f"ValueError('{PAYLOAD}')"
    return raws


def test_task_data_is_escaped_in_text_and_blocks(http_server: RecordingServer) -> None:
    workflow = {
        "name": "escape",
        "trigger": {"event": "task.failed"},
        "action": {
            "type": "slack",
            "webhook_url": http_server.url_for("/slack"),
            "blocks": True,
            # The author's own link stays a link; the task's data does not become one.
            "message": "<https://runbook.example|Runbook> {error_message} args {task_args}",
        },
    }
    notices = engine_notices(workflow, _failure())
    assert len(notices) == 1
    [timed] = deliver(notices)
    assert timed.result.status == "succeeded", timed.result.detail
    [sent] = http_server.wait_for_requests(1, path="/slack", timeout_seconds=5)
    body = sent.json()
    texts = [body["text"], body["blocks"][0]["text"]["text"]]
    texts += [f["text"] for f in body["blocks"][1]["fields"]]
    texts += [e["text"] for e in body["blocks"][-1]["elements"]]
    for text in texts:
        assert "<!channel>" not in text, text
        assert "<https://evil" not in text, text
    assert body["text"].startswith("<https://runbook.example|Runbook> &lt;!channel&gt;")
    assert body["text"].count(ESCAPED) == 2, body["text"]


def test_a_circuit_notice_and_the_default_message_are_escaped(
    http_server: RecordingServer,
) -> None:
    workflow = {
        "name": "<!here> escape",
        "trigger": {"event": "task.failed"},
        "action": {"type": "slack", "webhook_url": http_server.url_for("/slack")},
        "circuit_breaker": {"max_executions": 1, "time_window_hours": 1},
    }
    raws = _failure() + [
        {**r, "uuid": "t-evil-2"} if r.get("uuid") == "t-evil" else r
        for r in ev.run("t-evil-2", 1_767_225_700.0, "app.charge", args=f"('{PAYLOAD}',)")
    ]
    notices = engine_notices(workflow, raws)
    assert len(notices) >= 2
    results = deliver(notices)
    assert all(t.result.status == "succeeded" for t in results)
    sent = http_server.wait_for_requests(len(notices), path="/slack", timeout_seconds=5)
    for request in sent:
        text = request.json()["text"]
        assert "<!channel>" not in text, text
        assert "<!here>" not in text, text
