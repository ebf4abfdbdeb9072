"""The fleet view: the pure rules over the events' projection, and ``GET /api/fleet`` served
over records that went through the real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowguard.api import fleet_feed
from flowguard.api.fleet import HistoryFacts, OpenBreaker, fleet_view
from flowguard.api.fleet_feed import FleetFeed
from flowguard.cli import main
from flowguard.control.kafka_admin import create_topics
from tests.api import fleet_scenario
from tests.api.server import Served, in_thread
from tests.helpers import running, until, wait_until
from topics.events import TaskFailed, WorkerHeartbeat

NOW = 1_796_000_000.0  # 2026-11-30T...: any fixed time; the view takes ``now``
NO_HISTORY = HistoryFacts(executions_last_hour={}, open_breakers=[])


def _fed(now: float) -> FleetFeed:
    feed = FleetFeed()
    for event in fleet_scenario.events(now):
        feed.apply(event.model_dump_json().encode())
    return feed


def _by_cluster(feed: FleetFeed, facts: HistoryFacts = NO_HISTORY, now: float = NOW) -> Any:
    view = fleet_view(feed.clusters.values(), facts, counted_since=None, now=now)
    return {c.cluster: c for c in view.clusters}


def test_a_bridge_is_silent_after_three_status_intervals() -> None:
    clusters = _by_cluster(_fed(NOW))
    assert clusters["eu-payments"].bridge_state == "reporting"
    assert clusters["us-search"].bridge_state == "silent"
    (silent,) = clusters["us-search"].bridges
    assert (silent.status_age_seconds, silent.events_dropped) == (600.0, 17)
    # Three intervals of 5 s: reporting at 15 s of silence, silent just after.
    feed = _fed(NOW)
    assert _by_cluster(feed, now=NOW - 1 + 15)["eu-payments"].bridge_state == "reporting"
    assert _by_cluster(feed, now=NOW - 1 + 15.5)["eu-payments"].bridge_state == "silent"


def test_a_restarted_bridge_replaces_the_old_one() -> None:
    (bridge,) = _by_cluster(_fed(NOW))["ap-batch"].bridges
    assert (bridge.bridge_id, bridge.state, bridge.events_published) == (
        "ap-bridge-new", "reporting", 40,
    )  # fmt: skip


def test_workers_online_offline_and_lost() -> None:
    clusters = _by_cluster(_fed(NOW))
    eu = clusters["eu-payments"]
    assert [(w.hostname, w.state) for w in eu.workers] == [
        ("celery@eu-1", "online"), ("celery@eu-2", "offline"),
    ]  # fmt: skip
    assert (eu.workers_online, eu.workers_offline) == (1, 1)
    # Its heartbeats stopped 600 s ago: lost after twice its 2 s interval (Celery's rule).
    assert [(w.hostname, w.state) for w in clusters["us-search"].workers] == [
        ("celery@us-1", "lost")
    ]


def test_a_late_worker_event_does_not_undo_a_newer_one() -> None:
    feed = _fed(NOW)
    late = WorkerHeartbeat(cluster="eu-payments", hostname="celery@eu-2", timestamp=NOW - 35)
    feed.apply(late.model_dump_json().encode())
    states = {w.hostname: w.state for w in _by_cluster(feed)["eu-payments"].workers}
    assert states["celery@eu-2"] == "offline"


def test_failures_in_the_last_hour_and_per_hour() -> None:
    eu = _by_cluster(_fed(NOW))["eu-payments"]
    assert eu.failures_last_hour == 5
    assert len(eu.failures_per_hour) == 24
    assert sum(eu.failures_per_hour) == 7
    assert eu.failures_per_hour[-4] + eu.failures_per_hour[-3] >= 2  # three hours ago
    # An hour later, the five left the last hour but stay in the per-hour counts.
    later = _by_cluster(_fed(NOW), now=NOW + 3600)["eu-payments"]
    assert later.failures_last_hour == 0
    assert sum(later.failures_per_hour) == 7


def test_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_feed, "MAX_WORKERS", 3)
    monkeypatch.setattr(fleet_feed, "MAX_CLUSTERS", 2)
    feed = FleetFeed()
    for i in range(10):
        beat = WorkerHeartbeat(cluster="c0", hostname=f"w{i}", timestamp=NOW + i)
        feed.apply(beat.model_dump_json().encode())
    for k in range(6 * 48):  # every 10 minutes for two days
        failed = TaskFailed(cluster="c0", task_id=f"t{k}", timestamp=NOW + k * 600)
        feed.apply(failed.model_dump_json().encode())
    assert sorted(feed.clusters["c0"].workers) == ["w7", "w8", "w9"]
    assert len(feed.clusters["c0"].failures) <= 25
    assert len(feed.clusters["c0"].recent) <= 61
    for name in ("c1", "c2"):
        beat = WorkerHeartbeat(cluster=name, hostname="w", timestamp=NOW + 10**6)
        feed.apply(beat.model_dump_json().encode())
    assert sorted(feed.clusters) == ["c1", "c2"]


def test_at_most_fifty_workers_listed_all_counted() -> None:
    feed = FleetFeed()
    for i in range(60):
        beat = WorkerHeartbeat(cluster="big", hostname=f"w{i:02}", timestamp=NOW, freq=2)
        feed.apply(beat.model_dump_json().encode())
    big = _by_cluster(feed)["big"]
    assert (len(big.workers), big.workers_online, big.workers_offline) == (50, 60, 0)


def test_a_snapshot_does_not_change_while_records_come_in() -> None:
    feed = _fed(NOW)
    (eu,) = [c for c in feed.snapshot() if c.name == "eu-payments"]
    before = (dict(eu.workers), dict(eu.failures), dict(eu.recent), dict(eu.bridges))
    for event in fleet_scenario.events(NOW + 5):
        feed.apply(event.model_dump_json().encode())
    feed.apply(
        WorkerHeartbeat(cluster="eu-payments", hostname="new", timestamp=NOW)
        .model_dump_json()
        .encode()
    )
    assert (eu.workers, eu.failures, eu.recent, eu.bridges) == before


def test_not_an_event_is_passed_over() -> None:
    feed = FleetFeed()
    for value in (None, b"", b"[1]", b"{not json", b'{"kind": "task.failed"}', b'{"kind": 1}'):
        feed.apply(value)
    feed.apply(b'{"kind": "bridge.status", "cluster": "x", "timestamp": 1}')  # does not validate
    assert [c.bridges for c in feed.clusters.values()] == [{}]


def test_open_breakers_and_history_only_clusters_are_listed() -> None:
    breaker = OpenBreaker(
        workflow_id="wf", workflow_name="Wf", last_execution_at="2026-11-30T00:00:00Z",
        count=3, max_executions=3, window_seconds=60, clusters=["eu-payments"],
    )  # fmt: skip
    facts = HistoryFacts(
        executions_last_hour={"eu-payments": 2, "gone": 1}, open_breakers=[breaker]
    )
    clusters = _by_cluster(_fed(NOW), facts)
    assert clusters["eu-payments"].open_breakers == ["wf"]
    assert clusters["us-search"].open_breakers == []
    assert (clusters["gone"].bridge_state, clusters["gone"].executions_last_hour) == ("unknown", 1)


# -- over the real broker ---------------------------------------------------------------------


async def _follow_twice(bootstrap: str, prefix: str) -> FleetFeed:
    """Follow, stop once all is read, follow again and read one more failure."""
    feed = FleetFeed()
    wanted = len(fleet_scenario.events(NOW))

    async def following() -> None:
        async with running(feed.follow(bootstrap, prefix)):
            await until(lambda: feed.records_read >= wanted, timeout_seconds=30, what="all read")

    await create_topics(bootstrap, prefix, 30, partitions=1)
    await fleet_scenario.produce(bootstrap, prefix, time.time())
    await following()
    wanted += 1
    failed = TaskFailed(cluster="eu-payments", task_id="one-more", timestamp=time.time())
    await fleet_scenario.send_events(bootstrap, prefix, [failed])
    await following()
    return feed


async def _follow_bounded(bootstrap: str, prefix: str, backfill: int) -> FleetFeed:
    feed = FleetFeed(backfill_records=backfill)
    await create_topics(bootstrap, prefix, 30, partitions=1)
    await fleet_scenario.produce(bootstrap, prefix, NOW)
    async with running(feed.follow(bootstrap, prefix)):
        await until(lambda: feed.records_read >= backfill, timeout_seconds=30, what="backfill")
        # One more record after the backfill: read, so nothing more is coming from before.
        failed = TaskFailed(cluster="late", task_id="t", timestamp=time.time())
        await fleet_scenario.send_events(bootstrap, prefix, [failed])
        await until(lambda: "late" in feed.clusters, timeout_seconds=30, what="the late one")
    return feed


def test_start_up_reads_back_at_most_backfill_records_per_partition(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    started = time.time()
    feed = in_thread(_follow_bounded(kafka_bootstrap, topic_prefix, 5))
    assert feed.records_read == 5 + 1
    # The last five of the scenario: ap-batch's three, us-search's worker, us-search's status.
    assert sorted(feed.clusters) == ["ap-batch", "late", "us-search"]
    # Counted from the first record read (produced after ``started``), not 24 hours back.
    assert feed.counted_since is not None
    assert feed.counted_since >= started - 1


def test_following_again_after_a_stop_reads_nothing_twice(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    feed = in_thread(_follow_twice(kafka_bootstrap, topic_prefix))
    assert feed.records_read == len(fleet_scenario.events(NOW)) + 1
    assert sum(feed.clusters["eu-payments"].failures.values()) == 8


# -- served, over the real broker ------------------------------------------------------------


def _fleet_shows_the_scenario(served: Served) -> dict[str, Any]:
    with served.client("viewer") as api:

        def ready() -> dict[str, Any] | None:
            body: dict[str, Any] = api.get("/api/fleet").raise_for_status().json()
            clusters = {c["cluster"]: c for c in body["clusters"]}
            eu = clusters.get("eu-payments")
            done = (
                len(clusters) == 3
                and eu is not None
                and eu["failures_last_hour"] == 5
                and eu["open_breakers"]
                and clusters["ap-batch"]["executions_last_hour"] == 1
            )
            return body if done else None

        return wait_until(ready, timeout_seconds=60, what="the three clusters in /api/fleet")


def test_fleet_endpoint_over_records_through_kafka(served: Served) -> None:
    now = time.time()
    with served.client("editor") as api:
        saved = api.post("/api/workflows", json={"yaml": fleet_scenario.WORKFLOW_YAML})
        assert saved.status_code == 201, saved.text
    in_thread(fleet_scenario.produce(served.bootstrap, served.prefix, now))
    body = _fleet_shows_the_scenario(served)
    clusters = {c["cluster"]: c for c in body["clusters"]}
    assert [c["cluster"] for c in body["clusters"]] == ["ap-batch", "eu-payments", "us-search"]
    eu, us, ap = clusters["eu-payments"], clusters["us-search"], clusters["ap-batch"]
    assert (eu["bridge_state"], us["bridge_state"], ap["bridge_state"]) == (
        "reporting", "silent", "reporting",
    )  # fmt: skip
    assert eu["bridges"][0]["events_published"] == 1200
    assert eu["bridges"][0]["buffered"] == 3
    assert us["bridges"][0]["events_dropped"] == 17
    assert (us["bridges"][0]["celery_connected"], eu["bridges"][0]["celery_connected"]) == (
        False, True,
    )  # fmt: skip
    assert [b["bridge_id"] for b in ap["bridges"]] == ["ap-bridge-new"]
    assert (eu["workers_online"], eu["workers_offline"]) == (1, 1)
    assert [w["state"] for w in us["workers"]] == ["lost"]
    assert sum(eu["failures_per_hour"]) == 7
    assert eu["open_breakers"] == [fleet_scenario.WORKFLOW_ID]
    assert ap["open_breakers"] == []
    (breaker,) = body["open_breakers"]
    assert breaker["workflow_id"] == fleet_scenario.WORKFLOW_ID
    assert breaker["clusters"] == ["eu-payments"]
    assert body["counted_since"] is not None
    assert "proj.celery" not in str(body)  # the app path a bridge names is not shown


def test_fleet_needs_a_token(served: Served) -> None:
    with served.client(None) as api:
        answer = api.get("/api/fleet")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthenticated"


def test_the_api_and_flowguard_history_filter_by_cluster_alike(
    served: Served, tmp_path: Path
) -> None:
    in_thread(fleet_scenario.produce(served.bootstrap, served.prefix, time.time()))
    env = {
        "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": served.bootstrap,
        "FLOWGUARD_TOPIC_PREFIX": served.prefix,
    }
    with served.client("viewer") as api:
        for cluster, expected in [("eu-payments", ["x-eu-2", "x-eu-1"]), ("ap-batch", ["x-ap-1"])]:

            def listed(cluster: str = cluster, expected: list[str] = expected) -> bool:
                page = api.get("/api/executions", params={"cluster": cluster}).json()
                return [r["execution_id"] for r in page["items"]] == expected

            wait_until(listed, timeout_seconds=60, what=f"{cluster}'s executions in the API")
            result = CliRunner().invoke(
                main,
                ["history", "--cluster", cluster, "--format", "jsonl",
                 "--cache-dir", str(tmp_path / "cli")],
                env=env,
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            got = [json.loads(line)["execution_id"] for line in result.stdout.splitlines()]
            assert got == expected
        # The history tab's chart filters by cluster too.
        for params, outcomes in [
            ({"cluster": "eu-payments"}, {"success": 1, "skipped": 1}),
            ({"cluster": "eu-payments", "workflow": "nightly-report"}, {}),
            ({"cluster": "ap-batch"}, {"success": 1}),
            ({}, {"success": 2, "skipped": 1}),
        ]:
            counted: dict[str, int] = {}
            for row in api.get("/api/executions/counts", params=params).json():
                counted[row["outcome"]] = counted.get(row["outcome"], 0) + row["count"]
            assert counted == outcomes, params
