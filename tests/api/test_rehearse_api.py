"""``POST /api/rehearse`` (the editor's Compare with live) on the real app and Kafka: the same
comparison as ``flowguard rehearse``, editors only, bounded in range and events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.server import Served, in_thread, serve
from tests.integration.cli import workflows
from tests.integration.cli.conftest import publish_events, publish_log, two_clusters
from tests.integration.cli.test_rehearse import as_live, live_decisions

pytestmark = pytest.mark.integration


def _retry(pattern: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(workflows.RETRY.format(pattern=pattern))
    return found


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _publish(served: Served, tmp_path: Path, start_ms: int) -> list[Any]:
    """The recordings of two clusters on <prefix>.events, and what the live retry workflow
    decided on them on <prefix>.execution-log."""
    events = two_clusters(start_ms)
    live_dir = tmp_path / "live"
    live_dir.mkdir()
    (live_dir / "retry.yaml").write_text(workflows.RETRY.format(pattern=workflows.LIVE["pattern"]))
    decided = live_decisions([e.value for e in events], live_dir)
    in_thread(publish_events(served.bootstrap, served.prefix, events))
    in_thread(publish_log(served.bootstrap, served.prefix, as_live(decided)))
    return decided


@pytest.fixture
def small(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Served]:
    with serve(kafka_bootstrap, topic_prefix, tmp_path / "history", test_max_events=100) as found:
        yield found


def test_compare_with_live_shows_what_a_narrowed_condition_removes(
    served: Served, tmp_path: Path
) -> None:
    start_ms = int(time.time() * 1000) - 3_600_000
    decided = _publish(served, tmp_path, start_ms)
    since = _iso(start_ms / 1000 - 60)
    with served.client("editor") as api:
        same = api.post(
            "/api/rehearse",
            json={"definition": _retry(workflows.LIVE["pattern"]), "since": since},
        )
        narrowed = api.post(
            "/api/rehearse",
            json={"definition": _retry("ConnectionError|Timeout"), "since": since},
        )
        one = api.post(
            "/api/rehearse",
            json={"definition": _retry("ConnectionError|Timeout"), "since": since, "cluster": "a"},
        )
    assert same.status_code == 200, same.text
    report = same.json()
    assert (report["added"], report["removed"], report["changed"]) == (0, 0, 0)
    assert report["unchanged"] == len({r.execution_id for r in decided}) > 100
    assert report["live"] == report["draft"]
    assert report["live"]["retries"] > 0
    assert report["live"]["breaker_openings"] > 0
    assert report["workflow_id"] == "retry-transient-errors"

    diff = narrowed.json()
    key_errors = {
        r.execution_id
        for r in decided
        if r.task is not None and r.task.exception_type == "KeyError"
    }
    assert diff["removed"] == len(key_errors) > 100
    assert diff["added"] == 0
    assert diff["draft"]["retries"] < diff["live"]["retries"]
    assert sum(h["removed"] for h in diff["hours"]) == diff["removed"]
    assert 0 < len(diff["examples"]["removed"]) <= 20, "the response is bounded"
    assert ("skipped:circuit_open", "ran") in {
        (c["live"]["verdict"], c["draft"]["verdict"]) for c in diff["examples"]["changed"]
    }
    assert one.json()["removed"] * 2 == diff["removed"]


def test_only_editors_and_a_bounded_range(served: Served) -> None:
    body = {"definition": _retry("Timeout"), "since": _iso(time.time() - 3600)}
    with served.client("viewer") as viewer:
        assert viewer.post("/api/rehearse", json=body).status_code == 403
    with served.client("editor") as api:
        long = api.post("/api/rehearse", json={**body, "since": _iso(time.time() - 8 * 86400)})
        backwards = api.post("/api/rehearse", json={**body, "until": _iso(time.time() - 7200)})
        naive = api.post("/api/rehearse", json={**body, "since": "2026-01-01T00:00:00"})
        bad = api.post("/api/rehearse", json={**body, "definition": {"name": "x"}})
    assert long.status_code == 422
    assert "longer than 168 hours" in long.text
    assert backwards.status_code == 422
    assert "since must be before until" in backwards.text
    assert naive.status_code == 422
    assert "body.since" in naive.text
    assert bad.status_code == 422
    assert "trigger" in bad.text


def test_more_events_than_the_bound_is_a_413_naming_the_cli(small: Served, tmp_path: Path) -> None:
    start_ms = int(time.time() * 1000) - 3_600_000
    _publish(small, tmp_path, start_ms)
    with small.client("editor") as api:
        answer = api.post(
            "/api/rehearse",
            json={"definition": _retry("Timeout"), "since": _iso(start_ms / 1000 - 60)},
        )
    assert answer.status_code == 413, answer.text
    assert "flowguard rehearse" in answer.text
    assert "body.since" in answer.text
