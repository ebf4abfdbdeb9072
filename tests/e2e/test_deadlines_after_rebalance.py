"""A delayed retry held when its worker dies is sent when due by the next owner.

The retry waits in its chain's slot (the ``chains`` table); the deadline that sends it lives
in the owning process's memory. The process is SIGKILLed while the retry waits and two new
workers share its partitions: the new owner rebuilds its deadlines from the tables after
recovery (``Live._rescan``) and sends the retry once, although no event of the chain comes
any more. The fault trials lost delayed retries around a takeover (docs/reliability.md);
this is the case reduced to one retry.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.test_notifications_once import Flow, failure
from tests.helpers import wait_until
from tests.httpserver import RecordingServer
from tests.processes import TopicReader, produce

DELAY_SECONDS = 8


@pytest.mark.integration
def test_a_delayed_retry_held_by_a_killed_worker_is_sent_once_by_the_next_owner(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    retry = {
        "name": "Retry charges later",
        "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "app.charge"}},
        "action": {"type": "retry", "delay_seconds": DELAY_SECONDS, "max_attempts": 1},
    }
    with RecordingServer() as hooks:
        flow = Flow(tmp_path, kafka_bootstrap, topic_prefix, hooks, [retry])
        commands = TopicReader(kafka_bootstrap, f"{topic_prefix}.commands")
        try:
            first = flow.worker("fg1", monkeypatch)
            produce(kafka_bootstrap, f"{topic_prefix}.events", failure("t-late", time.time()))
            wait_until(
                lambda: "scheduled" in flow.statuses(), timeout_seconds=60,
                what="the retry scheduled",
            )  # fmt: skip
            # The retry's slot is written before its partition is committed: wait for both.
            flow.wait_caught_up("scheduled", timeout_seconds=30, what="the retry held")
            first.kill()
            flow.worker("fg2", monkeypatch)
            flow.worker("fg3", monkeypatch)
            sent = commands.wait_for(
                lambda values: [v for v in values if v.get("original_task_id") == "t-late"],
                timeout=90, what="the retry command from the next owner",
            )  # fmt: skip
            assert len(sent) == 1
            assert [v for v in commands.poll() if v.get("original_task_id") == "t-late"] == sent
        finally:
            for proc in flow.workers:
                proc.kill()
