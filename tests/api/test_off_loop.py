"""Test Workflow and imports run off the event loop (issue 16, item 2): the API answers
meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from flowguard.api import testing, workflows
from tests.api.server import Served
from tests.helpers import wait_until


def answered_while_held(
    served: Served, monkeypatch: pytest.MonkeyPatch, module: Any, name: str,
    heavy: Callable[[httpx.Client], int], what: str,
) -> None:  # fmt: skip
    """``module.name`` runs for real, then is held until the end; meanwhile the editor's
    ``heavy`` request waits on it and ``/api/health`` must be answered."""
    started = threading.Event()
    release = threading.Event()
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        # The real work, then held: as long as the test needs, deterministically.
        result = real(*args, **kwargs)
        started.set()
        release.wait(30)
        return result

    monkeypatch.setattr(module, name, held)
    answers: list[int] = []

    def request() -> None:
        with served.client("editor") as client:
            answers.append(heavy(client))

    thread = threading.Thread(target=request)
    thread.start()
    try:
        wait_until(started.is_set, timeout_seconds=30, what=f"the {what} to start")
        with httpx.Client(base_url=served.base_url, timeout=3) as client:
            assert client.get("/api/health").status_code == 200
        assert thread.is_alive(), f"the health check was answered only after the {what}"
    finally:
        release.set()
        thread.join(timeout=30)
    assert answers == [200]


def test_another_request_is_answered_while_a_test_runs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft = {"name": "t", "trigger": {"event": "task.failed"}, "action": {"type": "retry"}}
    body = {"definition": draft, "events_jsonl": ""}
    answered_while_held(
        served, monkeypatch, testing, "run_test",
        lambda client: client.post("/api/test", json=body).status_code, "test run",
    )  # fmt: skip


def test_another_request_is_answered_while_an_import_is_parsed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "name: off loop import\ntrigger: {event: task.failed}\naction: {type: retry}\n"
    answered_while_held(
        served, monkeypatch, workflows, "_parse_all",
        lambda client: client.post("/api/import", json={"yaml": text}).status_code,
        "import's parse",
    )  # fmt: skip
