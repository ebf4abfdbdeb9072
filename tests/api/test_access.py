"""Auth, secrets and errors over the real API: no token no access, viewers only read,
secrets never in any response unless an admin asks on export, CORS closed by default."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.server import Served
from tests.api.test_workflows_api import SLACK, workflow

pytestmark = pytest.mark.integration
STREAM = Path(__file__).resolve().parents[2] / "tests" / "data" / "streams" / "basic.jsonl"

HEADER = "Bearer hdr-secret-0123456789abcdef"
ROUTING = "R0UT1NGKEY0123456789abcdefABCDEF"
SECRETS = (SLACK, HEADER, ROUTING, "sign-secret-0123456789")


def secret_workflow() -> dict[str, object]:
    return workflow(
        actions=[
            {"type": "slack", "webhook_url": SLACK},
            {
                "type": "webhook",
                "url": SLACK + "/hook",
                "headers": {"Authorization": HEADER},
                "secret": "sign-secret-0123456789",
            },
            {"type": "pagerduty", "routing_key": ROUTING},
        ]
    )


def test_no_token_no_access(served: Served) -> None:
    with served.client(None) as anonymous:
        for path in ("/api/workflows", "/api/templates", "/api/executions", "/api/me"):
            answer = anonymous.get(path)
            assert answer.status_code == 401, path
            assert answer.json()["error"]["code"] == "unauthenticated"
        wrong = anonymous.get("/api/workflows", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert anonymous.get("/api/health").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


def test_viewer_reads_but_cannot_write(served: Served) -> None:
    with served.client("editor") as editor:
        editor.post("/api/workflows", json={"definition": workflow()}).raise_for_status()
    with served.client("viewer") as viewer:
        assert viewer.get("/api/workflows").status_code == 200
        writes = [
            viewer.post("/api/workflows", json={"definition": workflow(name="other")}),
            viewer.put("/api/workflows/retry-network-errors", json={"definition": workflow()}),
            viewer.post("/api/workflows/retry-network-errors/disable"),
            viewer.delete("/api/workflows/retry-network-errors"),
            viewer.post("/api/workflows/retry-network-errors/rollback", json={"version": 1}),
            viewer.post("/api/import", json={"yaml": "name: x"}),
            viewer.post("/api/executions/x/cancel", json={}),
            viewer.post("/api/test", json={"workflow_id": "x", "events_jsonl": ""}),
        ]
        assert [w.status_code for w in writes] == [403] * len(writes)
        assert {w.json()["error"]["code"] for w in writes} == {"forbidden"}
        versions = viewer.get("/api/workflows/retry-network-errors/versions").json()
        assert len(versions) == 1, "nothing a viewer sent was saved"


def test_secrets_never_in_responses_unless_an_admin_asks(served: Served) -> None:
    with served.client("editor") as editor:
        bodies = [editor.post("/api/workflows", json={"definition": secret_workflow()}).text]
        wid = "retry-network-errors"
        changed = secret_workflow()
        changed["description"] = "v2"
        bodies += [
            editor.put(f"/api/workflows/{wid}", json={"definition": changed}).text,
            editor.get("/api/workflows").text,
            editor.get(f"/api/workflows/{wid}").text,
            editor.get(f"/api/workflows/{wid}/versions/1").text,
            editor.get(f"/api/workflows/{wid}/diff", params={"a": 1, "b": 2}).text,
            editor.get(f"/api/workflows/{wid}/export").text,
            editor.get(f"/api/workflows/{wid}/export", params={"reveal_secrets": True}).text,
            editor.get("/api/export").text,
            editor.post("/api/validate", json={"definition": secret_workflow()}).text,
            editor.post(
                "/api/test",
                json={
                    "definition": secret_workflow(),
                    "events_jsonl": STREAM.read_text(),
                },
            ).text,
            editor.post("/api/workflows/", json={"definition": {"bad": SLACK}}).text,
            editor.post("/api/workflows", json={"definition": {**secret_workflow(), "x": 1}}).text,
        ]
    for body in bodies:
        for secret in SECRETS:
            assert secret not in body
    assert "reveal_secrets needs the admin role" in bodies[7]
    with served.client("admin") as admin:
        revealed = admin.get(f"/api/workflows/{wid}/export", params={"reveal_secrets": True})
    assert all(secret in revealed.text for secret in SECRETS)


def test_cors_is_closed_by_default(served: Served) -> None:
    with served.client("viewer") as viewer:
        answer = viewer.get("/api/workflows", headers={"Origin": "https://evil.example"})
        preflight = viewer.options(
            "/api/workflows",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-origin" not in preflight.headers


def test_request_errors_name_the_field(served: Served) -> None:
    with served.client("editor") as editor:
        answer = editor.get("/api/executions", params={"limit": 0})
        assert answer.status_code == 422
        assert answer.json()["error"]["problems"][0]["field"] == "query.limit"
        both = editor.post("/api/validate", json={"definition": {}, "yaml": "x"})
        assert both.status_code == 422
        assert "exactly one" in both.json()["error"]["problems"][0]["reason"]
