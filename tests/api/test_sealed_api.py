"""The API with FLOWGUARD_SECRETS_KEY set (issue 16, item 1): secrets saved through it are
sealed on Kafka, never returned, kept sealed when an editor saves without retyping them,
opened for Test Workflow's samples, and in clear only in an admin's revealed export."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from flowguard.control.masking import sealed_paths
from tests.api.server import Served, serve
from tests.httpserver import RecordingServer
from tests.integration.control.topics import compacted

pytestmark = pytest.mark.integration
HEADER = "Bearer API-SEALED-HEADER-0123456789"
SIGNING = "API-SEALED-SIGNING-0123456789"


@pytest.fixture
def sealed_api(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Served]:
    monkeypatch.setenv("FLOWGUARD_SECRETS_KEY", f"api-1:{Fernet.generate_key().decode()}")
    monkeypatch.setenv("FLOWGUARD_ACTIONS_ALLOW_HOSTS", "127.0.0.1")  # the hook is local
    with serve(kafka_bootstrap, topic_prefix, tmp_path / "history") as found:
        yield found


def _draft(url: str) -> dict[str, Any]:
    return {
        "name": "Sealed hook",
        "trigger": {"event": "task.failed"},
        "action": {
            "type": "webhook",
            "url": url,
            "headers": {"Authorization": HEADER},
            "secret": SIGNING,
        },
    }


def _live(served: Served) -> dict[str, Any]:
    *_, (_, value) = asyncio.run(compacted(served.bootstrap, served.prefix))
    assert value is not None
    text = value.decode()
    assert "sealed:v1:api-1:" in text
    definition: dict[str, Any] = yaml.safe_load(text)["definition"]
    return definition


def test_saved_sealed_kept_on_edit_and_opened_for_samples(
    sealed_api: Served, http_server: RecordingServer
) -> None:
    url = http_server.url_for("/sealed-api")
    with sealed_api.client("editor") as api:
        created = api.post("/api/workflows", json={"definition": _draft(url)})
        assert created.status_code == 201, created.text
        v1 = _live(sealed_api)
        detail = api.get("/api/workflows/sealed-hook").json()
        for secret in (url, HEADER, SIGNING, "sealed:"):
            assert secret not in created.text
            assert secret not in str(detail)
        # The editor sends the masks back with another description: the sealed values stay.
        edited = dict(detail["definition"])
        edited["actions"] = [edited.pop("action")]
        edited["description"] = "edited"
        saved = api.put("/api/workflows/sealed-hook", json={"definition": edited})
        assert saved.status_code == 200, saved.text
        assert saved.json()["saved"] is True
        v2 = _live(sealed_api)
        assert v2["description"] == "edited"
        assert sorted(sealed_paths(v2).values()) == sorted(sealed_paths(v1).values())
        # Test Workflow on the saved workflow opens them where the sample is sent.
        tested = api.post(
            "/api/test",
            json={"workflow_id": "sealed-hook", "events_jsonl": "", "send_samples": True},
        )
        assert tested.status_code == 200, tested.text
        assert [s["status"] for s in tested.json()["samples"]] == ["succeeded"]
        assert HEADER not in tested.text
    [sent] = http_server.wait_for_requests(1, path="/sealed-api", timeout_seconds=30)
    assert sent.headers["authorization"] == HEADER
    with sealed_api.client("admin") as admin:
        exported = admin.get(
            "/api/workflows/sealed-hook/export", params={"reveal_secrets": True}
        ).text
    assert yaml.safe_load(exported)["actions"][0]["headers"] == {"Authorization": HEADER}


def test_a_sealed_value_copied_into_a_test_draft_is_refused(
    sealed_api: Served, http_server: RecordingServer
) -> None:
    """An editor who can read the topics copies a sealed header into a draft pointing at their
    own server: Test Workflow must not open it for them."""
    with sealed_api.client("editor") as api:
        api.post(
            "/api/workflows", json={"definition": _draft("https://ops.example.com/in")}
        ).raise_for_status()
        stolen = _live(sealed_api)["action"]["headers"]["Authorization"]
        thief = _draft(http_server.url_for("/thief"))
        thief["name"] = "Thief"
        thief["action"]["headers"] = {"Authorization": stolen}
        answer = api.post(
            "/api/test", json={"definition": thief, "events_jsonl": "", "send_samples": True}
        )
        assert answer.status_code == 422, answer.text
        [problem] = answer.json()["error"]["problems"]
        assert problem["field"] == "action.headers.Authorization"
        assert "sealed value" in problem["reason"]
        saved = api.post("/api/workflows", json={"definition": thief})
        assert saved.status_code == 422, saved.text
    assert http_server.requests() == []
