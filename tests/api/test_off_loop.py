"""Test Workflow runs off the event loop (issue 16, item 2): the API answers meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from flowguard.api import testing, workflows
from tests.api.server import Served
from tests.helpers import wait_until


def test_another_request_is_answered_while_a_test_runs(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()
    release = threading.Event()
    real = testing.run_test

    def held_run(*args: Any, **kwargs: Any) -> Any:
        # The real run, then held: a run as long as the test needs, deterministically.
        result = real(*args, **kwargs)
        started.set()
        release.wait(30)
        return result

    monkeypatch.setattr(testing, "run_test", held_run)
    draft = {"name": "t", "trigger": {"event": "task.failed"}, "action": {"type": "retry"}}
    answers: list[int] = []

    def heavy() -> None:
        with served.client("editor") as client:
            body = {"definition": draft, "events_jsonl": ""}
            answers.append(client.post("/api/test", json=body).status_code)

    thread = threading.Thread(target=heavy)
    thread.start()
    try:
        wait_until(started.is_set, timeout_seconds=30, what="the test run to start")
        with httpx.Client(base_url=served.base_url, timeout=3) as client:
            assert client.get("/api/health").status_code == 200
        assert thread.is_alive(), "the health check was answered only after the run"
    finally:
        release.set()
        thread.join(timeout=30)
    assert answers == [200]


def test_another_request_is_answered_while_an_import_is_parsed(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = threading.Event()
    release = threading.Event()
    real = workflows._parse_all

    def held_parse(*args: Any, **kwargs: Any) -> Any:
        # The real parse, then held: an import as large as the test needs, deterministically.
        result = real(*args, **kwargs)
        started.set()
        release.wait(30)
        return result

    monkeypatch.setattr(workflows, "_parse_all", held_parse)
    text = "name: off loop import\ntrigger: {event: task.failed}\naction: {type: retry}\n"
    answers: list[int] = []

    def heavy() -> None:
        with served.client("editor") as client:
            answers.append(client.post("/api/import", json={"yaml": text}).status_code)

    thread = threading.Thread(target=heavy)
    thread.start()
    try:
        wait_until(started.is_set, timeout_seconds=30, what="the import's parse to start")
        with httpx.Client(base_url=served.base_url, timeout=3) as client:
            assert client.get("/api/health").status_code == 200
        assert thread.is_alive(), "the health check was answered only after the import"
    finally:
        release.set()
        thread.join(timeout=30)
    assert answers == [200]
