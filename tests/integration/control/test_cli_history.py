"""``flowguard history`` against a real execution log, with its projection in a temp dir."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from tests.integration.control.test_history_log import produce
from tests.unit.control.records import record


def run(cache: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["history", "--cache-dir", str(cache), *args])


def test_filters_formats_and_incremental_cache(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = time.time()
    # Executions 0..59, one a minute, the newest a minute ago.
    records = [record(i, at=now - 60 * (60 - i)) for i in range(60)]
    records.append(record(7, seq=1, outcome="skipped", at=now - 60 * 53))
    asyncio.run(produce(kafka_bootstrap, cli_env, records))

    table = run(tmp_path, "--limit", "5")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["TRIGGERED", "AT", "WORKFLOW"]
    # Executions 59, 58, ... cycle through the three workflows.
    newest_five = ["escalate", "alert-payments", "auto-retry", "escalate", "alert-payments"]
    assert [line.split()[1] for line in lines[1:]] == newest_five
    assert "app.tasks.t4 task-59" in lines[1]

    jsonl = run(tmp_path, "--format", "jsonl", "--limit", "1000").output.splitlines()
    assert len(jsonl) == 60
    assert json.loads(jsonl[0])["schema"] == "flowguard.execution/1"

    by_name = run(tmp_path, "--workflow", "Alert-Payments", "--format", "jsonl", "--limit", "100")
    assert len(by_name.output.splitlines()) == 20
    task = run(tmp_path, "--task", "task-7", "--format", "jsonl")
    (only,) = [json.loads(line) for line in task.output.splitlines()]
    assert (only["seq"], only["outcome"]) == (1, "skipped")
    recent = run(tmp_path, "--since", "10m", "--format", "jsonl", "--limit", "1000")
    assert len(recent.output.splitlines()) == 9  # 1..9 minutes ago (10 min is on the edge)

    asyncio.run(produce(kafka_bootstrap, cli_env, [record(500, at=now)]))
    newest = run(tmp_path, "--limit", "1", "--format", "jsonl").output
    assert json.loads(newest)["execution_id"] == "ex-000500"


def test_bad_duration_names_the_option(cli_env: str, tmp_path: Path) -> None:
    result = run(tmp_path, "--since", "yesterday")
    assert result.exit_code == 2
    assert "'yesterday': expected a number and s, m, h or d" in result.output


def test_a_workflow_is_found_by_its_name_when_its_id_is_not_the_names_slug(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    saved = CliRunner().invoke(cli, ["workflows", "apply", str(_workflow_file(tmp_path))])
    assert saved.exit_code == 0, saved.output
    now = time.time()
    # record(i) names workflow WORKFLOWS[i % 3]: i = 0, 3, 6 are "auto-retry" (its own id is
    # "auto-retry"; the slug of its name, "payments-retry", is nobody's id).
    asyncio.run(produce(kafka_bootstrap, cli_env, [record(i, at=now - i) for i in range(9)]))

    by_name = run(tmp_path / "cache", "--workflow", "Payments retry", "--format", "jsonl")
    assert by_name.exit_code == 0, by_name.output
    found = [json.loads(line) for line in by_name.output.splitlines()]
    assert [r["execution_id"] for r in found] == ["ex-000000", "ex-000003", "ex-000006"]
    by_id = run(tmp_path / "cache", "--workflow", "auto-retry", "--format", "jsonl")
    assert by_id.output == by_name.output
    # A workflow the store does not know is still looked for by its id or its name's slug.
    by_slug = run(tmp_path / "cache", "--workflow", "Alert payments", "--format", "jsonl")
    assert len(by_slug.output.splitlines()) == 3


def _workflow_file(tmp: Path) -> Path:
    path = tmp / "payments-retry.yaml"
    path.write_text(
        "id: auto-retry\n"
        "name: Payments retry\n"
        "trigger:\n  event: task.failed\n"
        "action:\n  type: retry\n  delay_seconds: 5\n"
    )
    return path
