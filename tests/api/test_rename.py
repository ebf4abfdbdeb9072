"""Renaming a workflow in the editor: the name changes, the id (its identity) stays.

The editor sends the definition it loaded, which holds no ``id`` when the workflow was created
from a name alone; the id then came from the name's slug, and a new name made a new slug, so
the save was refused with 422 (issue 17).
"""

from __future__ import annotations

import pytest

from tests.api.server import Served

pytestmark = pytest.mark.integration

DEFINITION = {
    "name": "Retry network errors",
    "trigger": {"event": "task.failed"},
    "actions": [{"type": "retry", "delay_seconds": 60, "max_attempts": 3}],
}


def test_renaming_keeps_the_id(served: Served) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"definition": DEFINITION}).raise_for_status()
        loaded = api.get("/api/workflows/retry-network-errors").json()
        renamed = {**loaded["definition"], "name": "Retry flaky network calls"}

        checked = api.post(
            "/api/validate", json={"definition": renamed, "workflow_id": "retry-network-errors"}
        )
        assert checked.json()["valid"] is True, checked.text
        assert checked.json()["id"] == "retry-network-errors"

        saved = api.put(
            "/api/workflows/retry-network-errors",
            json={"definition": renamed, "expected_version": loaded["version"]},
        )
        assert saved.status_code == 200, saved.text
        assert saved.json()["workflow"]["id"] == "retry-network-errors"
        assert saved.json()["workflow"]["name"] == "Retry flaky network calls"
        assert saved.json()["workflow"]["version"] == 2

        listed = {w["id"]: w["name"] for w in api.get("/api/workflows").json()}
        assert listed == {"retry-network-errors": "Retry flaky network calls"}


def test_an_explicit_other_id_is_still_refused(served: Served) -> None:
    with served.client("editor") as api:
        api.post("/api/workflows", json={"definition": DEFINITION}).raise_for_status()
        moved = {**DEFINITION, "id": "something-else"}
        refused = api.put("/api/workflows/retry-network-errors", json={"definition": moved})
        assert refused.status_code == 422
        assert "something-else" in refused.text
