"""Test Workflow's sample notification goes through the real action runner, marked as a test,
to a real local HTTP server; the template preview renders with an example failure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import Served, serve
from tests.httpserver import RecordingServer

pytestmark = pytest.mark.integration
STREAM = Path(__file__).resolve().parents[2] / "tests" / "data" / "streams" / "basic.jsonl"


@pytest.fixture
def served_local(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    # The runner refuses loopback addresses unless allowed: the test's Slack is on 127.0.0.1.
    monkeypatch.setenv("FLOWGUARD_ACTIONS_ALLOW_HOSTS", "127.0.0.1")
    with serve(kafka_bootstrap, topic_prefix, tmp_path / "history") as found:
        yield found


def test_send_samples_posts_one_marked_message_per_notification(
    served_local: Served, http_server: RecordingServer
) -> None:
    url = http_server.url_for("/hook")
    draft = {
        "name": "Payments to Slack",
        "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "payments.*"}},
        "action": {
            "type": "slack",
            "webhook_url": url,
            "message": "{task_name} on {worker}: {error_message}",
        },
    }
    with served_local.client("editor") as api:
        answer = api.post(
            "/api/test",
            json={"definition": draft, "events_jsonl": STREAM.read_text(), "send_samples": True},
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["records"], "basic.jsonl has a failing payment"
    assert [s["status"] for s in body["samples"]] == ["succeeded"]
    assert body["samples"][0]["action_id"].startswith("sample/")
    [post] = http_server.wait_for_requests(1, path="/hook", timeout_seconds=30)
    text = post.json()["text"]
    assert "payments.process_payment on w1@flowguard" in text
    assert "test" in text.lower()
    assert url not in answer.text


def test_preview_renders_or_names_the_unknown_variable(served_local: Served) -> None:
    with served_local.client("viewer") as api:
        good = api.post(
            "/api/preview", json={"template": "{task_name} on {cluster} by {worker}"}
        ).json()
        named = api.post(
            "/api/preview",
            json={"template": "{workflow_name}", "definition": {"name": "Half typed"}},
        ).json()
        bad = api.post("/api/preview", json={"template": "{nope}"}).json()
    assert good["text"] == "myapp.tasks.send_email on example-cluster by celery@worker-1"
    assert named["text"] == "Half typed", "an invalid draft still previews with its name"
    assert bad["text"] is None
    assert "unknown variable {nope}" in bad["problem"]


def test_a_draft_with_a_changed_url_gets_no_stored_header(
    served_local: Served, http_server: RecordingServer
) -> None:
    """An editor who points a saved webhook elsewhere must not receive its stored header."""
    header = "Bearer 0123456789abcdef-stored"
    saved = {
        "name": "Ops webhook",
        "trigger": {"event": "task.failed"},
        "action": {
            "type": "webhook",
            "url": http_server.url_for("/ops"),
            "headers": {"Authorization": header},
        },
    }
    with served_local.client("editor") as api:
        api.post("/api/workflows", json={"definition": saved}).raise_for_status()
        draft = api.get("/api/workflows/ops-webhook").json()["definition"]
        draft["actions"] = [draft.pop("action")]  # as the editor sends it back
        draft["actions"][0]["url"] = http_server.url_for("/elsewhere")
        for extra in ({}, {"workflow_id": "ops-webhook"}):
            answer = api.post(
                "/api/test",
                json={
                    "definition": draft,
                    "events_jsonl": STREAM.read_text(),
                    "send_samples": True,
                    **extra,
                },
            )
            assert answer.status_code == 422, answer.text
            [problem] = answer.json()["error"]["problems"]
            assert problem["field"] == "actions.0.headers.Authorization"
            assert "re-enter the secret when you change the URL" in problem["reason"]
        # The same destination keeps the header, and the sample carries it to that URL.
        same = api.get("/api/workflows/ops-webhook").json()["definition"]
        answer = api.post(
            "/api/test",
            json={
                "definition": same,
                "workflow_id": "ops-webhook",
                "events_jsonl": STREAM.read_text(),
                "send_samples": True,
            },
        )
        assert answer.status_code == 200, answer.text
    [post] = http_server.wait_for_requests(1, path="/ops", timeout_seconds=30)
    assert post.headers["authorization"] == header
    assert http_server.requests("/elsewhere") == []


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            {"event": "task.stuck", "threshold_seconds": 120, "stage": "unreceived"},
            "myapp.tasks.send_email in emails on  () ",
        ),
        (
            {"event": "task.stuck", "threshold_seconds": 120},
            "myapp.tasks.send_email in emails on celery@worker-1 () ",
        ),
        (
            {"event": "task.duplicate_start"},
            "myapp.tasks.send_email in emails on celery@worker-1 () ",
        ),
        (
            {"event": "task.failed"},
            "myapp.tasks.send_email in emails on celery@worker-1 "
            "(ConnectionError) Connection refused",
        ),
    ],
)
def test_preview_of_a_stuck_or_duplicate_workflow_shows_a_task_that_did_not_fail(
    served_local: Served, trigger: dict[str, object], expected: str
) -> None:
    """A task waiting in its queue (or started twice) has no exception: the example a preview
    renders is of the workflow's own trigger, and at stage unreceived no worker has it."""
    draft = {"name": "Stuck", "trigger": trigger, "action": {"type": "retry"}}
    template = "{task_name} in {queue} on {worker} ({exception_type}) {error_message}"
    with served_local.client("viewer") as api:
        answer = api.post("/api/preview", json={"template": template, "definition": draft}).json()
    assert answer.get("problem") is None, answer
    assert answer["text"] == expected
