"""``flowguard rehearse`` against the real broker: a live execution log, a draft that narrows a
condition, the diff and the CI gate's exit code."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from flowguard.control.workflow_files import load_workflows
from flowguard.engine.matching import Published as Workflow
from flowguard.replay import replay
from tests.integration.cli import workflows
from tests.integration.cli.conftest import iso_ms, publish_events, publish_log, two_clusters
from topics.execution import ExecutionRecord
from topics.record import iso

LIVE_STATUS = {"planned": "succeeded"}


def rehearse(*args: str) -> Result:
    return CliRunner().invoke(cli, ["rehearse", *args])


def as_live(records: list[ExecutionRecord]) -> list[ExecutionRecord]:
    """What the live workers wrote for these decisions: not a dry run, a wall-clock time, each
    action ``scheduled`` at seq 0 and carried out by the final record (a webhook's delivery
    failed: the outcome is ``failure``), and a re-sent seq 0 after it, as after a crash."""
    final: dict[str, ExecutionRecord] = {}
    for record in records:
        if record.execution_id not in final or record.seq > final[record.execution_id].seq:
            final[record.execution_id] = record
    log: list[ExecutionRecord] = []
    now = iso(time.time())
    for record in final.values():
        base = record.model_copy(update={"dry_run": False, "recorded_at": now})
        first = base.model_copy(update={"seq": 0, "actions": tuple(
            a.model_copy(update={"status": "scheduled" if a.status == "planned" else a.status})
            for a in record.actions
        )})  # fmt: skip
        failed = any(a.type == "webhook" for a in record.actions)
        done = base.model_copy(update={
            "seq": record.seq + 1,
            "outcome": "failure" if failed else record.outcome,
            "actions": tuple(
                a.model_copy(update={"status": ("failed" if a.type == "webhook" else "succeeded")
                                     if a.status == "planned" else a.status})
                for a in record.actions
            ),
        })  # fmt: skip
        log += [first, done, first]
    return log


def live_decisions(events: list[bytes], directory: Path) -> list[ExecutionRecord]:
    """What the live workflows decided on these events: the engine every path runs."""
    published = [Workflow.of(item.workflow) for item in load_workflows(directory)]
    return list(replay(published, events))


def test_a_narrowed_condition_shows_as_removed_and_changed_and_gates(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    start_ms = int(time.time() * 1000) - 3_600_000
    events = two_clusters(start_ms)
    live_dir = workflows.write(tmp_path / "live", **workflows.LIVE)
    decided = live_decisions([e.value for e in events], live_dir)
    asyncio.run(publish_events(kafka_bootstrap, cli_env, events))
    asyncio.run(publish_log(kafka_bootstrap, cli_env, as_live(decided)))
    since = "2h"

    same = rehearse("--workflows", str(live_dir), "--since", since, "--json", "--fail-on-change")
    assert same.exit_code == 0, same.output
    report: dict[str, Any] = json.loads(same.stdout)
    assert (report["added"], report["removed"], report["changed"]) == (0, 0, 0)
    assert report["unchanged"] == len({r.execution_id for r in decided}) > 100
    assert report["live"] == report["draft"]
    assert report["live"]["retries"] > 0
    assert report["live"]["pages"] > 0
    assert report["live"]["notifications"] > 0
    assert report["live"]["breaker_openings"] > 0

    # The draft stops retrying KeyError.
    draft_dir = workflows.write(
        tmp_path / "draft", pattern="ConnectionError|Timeout", names=workflows.LIVE["names"]
    )
    result = rehearse("--workflows", str(draft_dir), "--since", since, "--json",
                      "--fail-on-change")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "rehearse: gate failed: the draft decides differently" in result.stderr
    diff = json.loads(result.stdout)
    key_errors = {
        r.execution_id
        for r in decided
        if r.workflow.id == "retry-transient-errors"
        and r.task is not None
        and r.task.exception_type == "KeyError"
    }
    assert diff["removed"] == len(key_errors) > 100
    assert diff["added"] == 0
    examples = diff["examples"]
    assert all("KeyError" not in e["subject"] for e in examples["removed"])  # names, not errors
    assert {e["workflow_id"] for e in examples["removed"]} == {"retry-transient-errors"}
    # With the KeyErrors gone the breaker has room for an execution it had suppressed.
    assert ("skipped:circuit_open", "ran") in {
        (c["live"]["verdict"], c["draft"]["verdict"]) for c in examples["changed"]
    }
    assert diff["draft"]["skipped"] < diff["live"]["skipped"]
    assert sum(h["removed"] for h in diff["hours"]) == diff["removed"]
    assert sum(h["draft"]["executions"] for h in diff["hours"]) == diff["draft"]["executions"]
    assert diff["draft"]["retries"] < diff["live"]["retries"]
    assert diff["draft"]["pages"] == diff["live"]["pages"]

    table = rehearse("--workflows", str(draft_dir), "--since", since,
                     "--max-removed", str(len(key_errors)))  # fmt: skip
    assert table.exit_code == 0, table.output
    assert f"{len(key_errors)} removed" in table.stdout
    assert "HOUR (UTC)" in table.stdout
    rows = [line.split() for line in table.stdout.splitlines() if re.match(r"\d{4}-.*:00Z ", line)]
    assert [row[0] for row in rows] == [hour["hour"][:14] + "00Z" for hour in diff["hours"]]
    for row, hour in zip(rows, diff["hours"], strict=True):
        live, draft = hour["live"], hour["draft"]
        counts = (live["executions"], draft["executions"], hour["added"], hour["removed"])
        assert row[1:6] == [str(n) for n in (*counts, hour["changed"])]
        assert row[6] == f"{live['retries']}->{draft['retries']}"
    over = rehearse("--workflows", str(draft_dir), "--since", since,
                    "--max-removed", str(len(key_errors) - 1))  # fmt: skip
    assert over.exit_code == 1
    assert f"{len(key_errors)} executions removed, more than --max-removed" in over.stderr

    # One cluster: half of everything.
    one = json.loads(rehearse("--workflows", str(draft_dir), "--since", since, "--cluster", "a",
                              "--json").stdout)  # fmt: skip
    assert one["removed"] * 2 == diff["removed"]


def test_the_warm_up_starts_the_draft_where_the_live_workflows_were(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    events = two_clusters(int(time.time() * 1000) - 3_600_000)
    live_dir = workflows.write(tmp_path / "live", **workflows.LIVE)
    decided = live_decisions([e.value for e in events], live_dir)
    asyncio.run(publish_events(kafka_bootstrap, cli_env, events))
    asyncio.run(publish_log(kafka_bootstrap, cli_env, as_live(decided)))
    # The range starts in the middle of the burst, while the live breaker was open.
    since = iso_ms(next(e for e in events if e.key == b"a/burst-30").timestamp_ms)

    cold = rehearse("--workflows", str(live_dir), "--since", since, "--warm-up", "0s", "--json")
    assert cold.exit_code == 0, cold.output
    diff = json.loads(cold.stdout)
    assert diff["changed"] > 0
    assert ("skipped:circuit_open", "ran") in {
        (c["live"]["verdict"], c["draft"]["verdict"]) for c in diff["examples"]["changed"]
    }
    warm = rehearse("--workflows", str(live_dir), "--since", since, "--json", "--fail-on-change")
    assert warm.exit_code == 0, warm.output
    report = json.loads(warm.stdout)
    assert (report["added"], report["removed"], report["changed"]) == (0, 0, 0)
    assert report["unchanged"] > 0

    bad = rehearse("--workflows", str(live_dir), "--since", since, "--warm-up", "an hour")
    assert bad.exit_code == 2
    assert "Invalid value for '--warm-up': 'an hour': expected a duration" in bad.output
