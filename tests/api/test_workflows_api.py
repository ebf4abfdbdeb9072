"""Workflows over the real API and Kafka: create -> version -> diff -> rollback, and the rest."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from flowguard.control.workflow_templates import TEMPLATE_DIR
from tests.api.server import Served

pytestmark = pytest.mark.integration

SLACK = "https://hooks.slack.com/services/T0000/B0000/SECRETSECRETSECRET"


def workflow(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Retry network errors",
        "trigger": {"event": "task.failed", "conditions": {"error_pattern": "ConnectionError"}},
        "actions": [
            {"type": "retry", "delay_seconds": 60, "max_attempts": 3},
            {"type": "slack", "webhook_url": SLACK, "message": "{task_name} failed"},
        ],
        "circuit_breaker": {"max_executions": 10, "time_window_hours": 1},
    }
    return base | changes


def test_create_version_diff_rollback(served: Served) -> None:
    with served.client("editor") as api:
        created = api.post("/api/workflows", json={"definition": workflow(), "comment": "first"})
        assert created.status_code == 201, created.text
        assert created.json()["workflow"]["version"] == 1
        assert created.json()["workflow"]["saved_by"] == "editor-user"

        changed = workflow(circuit_breaker={"max_executions": 5, "time_window_hours": 1})
        detail = api.get("/api/workflows/retry-network-errors").json()
        # The masked secret comes back unchanged: the stored one is kept.
        changed["actions"][1]["webhook_url"] = detail["definition"]["actions"][1]["webhook_url"]
        updated = api.put(
            "/api/workflows/retry-network-errors",
            json={"definition": changed, "expected_version": 1},
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["saved"] is True
        assert updated.json()["workflow"]["version"] == 2

        same = api.put("/api/workflows/retry-network-errors", json={"definition": changed})
        assert same.json() == {"saved": False, "workflow": same.json()["workflow"]}

        versions = api.get("/api/workflows/retry-network-errors/versions").json()
        assert [v["version"] for v in versions] == [1, 2]
        diff = api.get("/api/workflows/retry-network-errors/diff", params={"a": 1, "b": 2})
        assert "-  max_executions: 10" in diff.json()["diff"]
        assert "+  max_executions: 5" in diff.json()["diff"]

        rolled = api.post("/api/workflows/retry-network-errors/rollback", json={"version": 1})
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["workflow"]["version"] == 3
        assert rolled.json()["workflow"]["definition"]["circuit_breaker"]["max_executions"] == 10

    with served.client("admin") as admin:
        exported = admin.get(
            "/api/workflows/retry-network-errors/export", params={"reveal_secrets": True}
        )
    assert SLACK in exported.text, "the secret survived edit and rollback"


def test_stale_expected_version_is_a_conflict(served: Served) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"definition": workflow()}).raise_for_status()
        stale = api.put(
            "/api/workflows/retry-network-errors",
            json={"definition": workflow(description="x"), "expected_version": 0},
        )
        assert stale.status_code == 409
        assert stale.json()["error"]["code"] == "version_conflict"
        again = api.post("/api/workflows", json={"definition": workflow()})
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "exists"


def test_invalid_workflow_names_the_field_like_lint(served: Served) -> None:
    bad = workflow(trigger={"event": "task.failed", "conditions": {"error_pattern": "("}})
    with served.client("editor") as api:
        answer = api.post("/api/workflows", json={"definition": bad})
        assert answer.status_code == 422
        problems = answer.json()["error"]["problems"]
        assert problems[0]["field"] == "trigger.conditions.error_pattern"
        assert "not a valid regular expression" in problems[0]["reason"]
        assert answer.json()["error"]["code"] == "workflow_invalid"
        checked = api.post("/api/validate", json={"definition": bad}).json()
        assert checked["valid"] is False
        assert checked["problems"][0]["field"] == "trigger.conditions.error_pattern"


def test_enable_disable_delete_and_import(served: Served) -> None:
    with served.client("editor") as api:
        text = "name: A\ntrigger: {event: task.failed}\naction: {type: retry}\n---\n"
        text += "name: B\ntrigger: {event: task.orphaned}\naction: {type: retry}\n"
        first = api.post("/api/import", json={"yaml": text}).json()
        assert [(i["id"], i["status"]) for i in first] == [("a", "created"), ("b", "created")]
        second = api.post("/api/import", json={"yaml": text}).json()
        assert [i["status"] for i in second] == ["unchanged", "unchanged"]
        assert api.post("/api/workflows/a/disable").json()["enabled"] is False
        listed = {w["id"]: w for w in api.get("/api/workflows").json()}
        assert listed["a"]["enabled"] is False
        assert listed["b"]["enabled"] is True
        assert listed["a"]["sparkline"] == [0] * 24
        assert api.delete("/api/workflows/b").status_code == 204
        assert "b" not in {w["id"] for w in api.get("/api/workflows").json()}
        assert api.get("/api/workflows/b").status_code == 404
        assert [v["deleted"] for v in api.get("/api/workflows/b/versions").json()] == [False, True]


def test_templates_are_the_shipped_four(served: Served) -> None:
    with served.client("viewer") as api:
        names = [t["name"] for t in api.get("/api/templates").json()]
    assert "Auto-retry network errors" in names
    assert len(names) == 4


TEMPLATES = TEMPLATE_DIR
HEADER = "Bearer 0123456789abcdef6789"
WEBHOOK_ID = "webhook-on-failure"
WEBHOOK_YAML = f"""name: Webhook on failure
trigger: {{event: task.failed}}
action:
  type: webhook
  url: https://ops.example.com/hooks/flowguard-incoming
  headers: {{Authorization: "{HEADER}"}}
  secret: "{"s" * 24}"
"""


def as_the_editor_sends_it(definition: dict[str, Any]) -> dict[str, Any]:
    """editor.js normalize(): a workflow written with ``action`` comes back as ``actions``."""
    copy = dict(definition)
    if "action" in copy:
        copy["actions"] = [copy.pop("action")]
    return copy


@pytest.mark.parametrize(
    "source", [*sorted(p.name for p in TEMPLATES.glob("*.yaml")), "webhook-with-headers"]
)
def test_editing_an_action_workflow_keeps_its_secrets(served: Served, source: str) -> None:
    text = WEBHOOK_YAML if source == "webhook-with-headers" else (TEMPLATES / source).read_text()
    with served.client("editor") as api:
        created = api.post("/api/workflows", json={"yaml": text})
        assert created.status_code == 201, created.text
        detail = created.json()["workflow"]
        edited = as_the_editor_sends_it(detail["definition"]) | {"description": "edited"}
        saved = api.put(
            f"/api/workflows/{detail['id']}",
            json={"definition": edited, "expected_version": 1},
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["saved"] is True
    with served.client("admin") as admin:
        exported = admin.get(
            f"/api/workflows/{detail['id']}/export", params={"reveal_secrets": True}
        ).text
    original = yaml.safe_load(text)["action"]
    assert yaml.safe_load(exported)["actions"] == [original]
    assert "***" not in exported


def test_a_mask_that_cannot_be_restored_is_refused_never_saved(served: Served) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": WEBHOOK_YAML}).raise_for_status()
        edited = as_the_editor_sends_it(
            api.get("/api/workflows/webhook-on-failure").json()["definition"]
        )
        edited["actions"][0]["headers"] = {"X-Other": "***6789"}  # a mask of nothing stored
        answer = api.put("/api/workflows/webhook-on-failure", json={"definition": edited})
        assert answer.status_code == 422, answer.text
        assert [p["field"] for p in answer.json()["error"]["problems"]] == [
            "actions.0.headers.X-Other"
        ]
        pasted = yaml.safe_load(WEBHOOK_YAML) | {"name": "Pasted export"}
        pasted["action"]["headers"] = {"Authorization": "***6789"}
        created = api.post("/api/workflows", json={"definition": pasted})
        assert created.status_code == 422, created.text
        assert created.json()["error"]["problems"][0]["field"] == "action.headers.Authorization"
        assert [
            v["version"] for v in api.get("/api/workflows/webhook-on-failure/versions").json()
        ] == [1]
        assert api.get("/api/workflows/pasted-export").status_code == 404


def test_a_changed_url_does_not_get_the_stored_header(served: Served) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"yaml": WEBHOOK_YAML}).raise_for_status()
        edited = as_the_editor_sends_it(
            api.get("/api/workflows/webhook-on-failure").json()["definition"]
        )
        edited["actions"][0]["url"] = "https://collector.example.net/steal"
        answer = api.put("/api/workflows/webhook-on-failure", json={"definition": edited})
        assert answer.status_code == 422, answer.text
        problems = {p["field"]: p["reason"] for p in answer.json()["error"]["problems"]}
        assert set(problems) == {"actions.0.headers.Authorization", "actions.0.secret"}
        assert "re-enter the secret when you change the URL" in problems["actions.0.secret"]
        checked = api.post(
            "/api/validate", json={"definition": edited, "workflow_id": "webhook-on-failure"}
        ).json()
        assert checked["valid"] is False
        assert {p["field"] for p in checked["problems"]} == set(problems)
    with served.client("admin") as admin:
        exported = admin.get(
            "/api/workflows/webhook-on-failure/export", params={"reveal_secrets": True}
        ).text
    assert "collector.example.net" not in exported
