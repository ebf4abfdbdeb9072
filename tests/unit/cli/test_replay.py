"""``flowguard replay``, ``lint`` and ``schema`` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowguard.cli import main
from flowguard.control.schema import SCHEMA_DIR, render, schemas
from tests import celery_events as ev

T0 = 1_760_000_000.0
RETRY_YAML = """\
name: "Auto-retry network errors"
trigger:
  event: task.failed
  conditions:
    error_pattern: "ConnectionError|Timeout|ConnectionRefusedError"
action:
  type: retry
  delay_seconds: 60
  max_attempts: 3
circuit_breaker:
  max_executions: 100
  time_window_hours: 1
"""


@pytest.fixture
def workflow_file(tmp_path: Path) -> Path:
    path = tmp_path / "retry.yaml"
    path.write_text(RETRY_YAML)
    return path


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    lines = [json.dumps(e) for e in ev.run("t1", T0, "app.charge")]
    lines.insert(2, "{not json")
    lines.insert(3, json.dumps({"type": "task-started", "timestamp": T0}))
    lines.append(json.dumps({"type": "task-progress", "uuid": "t1", "timestamp": T0 + 5}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def lint(path: Path, text: str) -> tuple[int, str, str]:
    """``flowguard lint`` of a workflow file written with ``text``."""
    path.write_text(text)
    return invoke("lint", str(path))


def test_replay_prints_records_skips_bad_lines_and_counts_them(
    workflow_file: Path, events_file: Path
) -> None:
    code, out, err = invoke(
        "replay", "--workflows", str(workflow_file), "--events", str(events_file)
    )
    assert code == 0
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["schema"] == "flowguard.execution/1"
    assert record["dry_run"] is True
    assert record["workflow"]["id"] == "auto-retry-network-errors"
    assert [a["status"] for a in record["actions"]] == ["planned"]
    assert "line 3: skipped: not valid JSON" in err
    assert "line 4: skipped: task-started without 'uuid'" in err
    assert "4 events, 1 ignored, 2 malformed" in err


def test_replay_twice_prints_the_same_bytes(workflow_file: Path, events_file: Path) -> None:
    first = invoke("replay", "--workflows", str(workflow_file), "--events", str(events_file))
    second = invoke("replay", "--workflows", str(workflow_file), "--events", str(events_file))
    assert first[1] == second[1]
    assert first[1]


def test_replay_table_and_explain(workflow_file: Path, tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text(
        "".join(json.dumps(e) + "\n" for e in ev.run("t1", T0, "app.x", exception="KeyError('k')"))
    )
    code, out, err = invoke(
        "replay",
        "--workflows",
        str(workflow_file),
        "--events",
        str(events),
        "--format",
        "table",
        "--explain",
    )
    assert code == 0
    assert out.splitlines()[0].startswith("trigger at")
    assert len(out.splitlines()) == 1
    assert "explain: task.failed t1: auto-retry-network-errors: condition error_pattern=" in err


def test_an_invalid_workflow_stops_before_any_event_with_exit_2(
    tmp_path: Path, events_file: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RETRY_YAML.replace("delay_seconds: 60", "delay_seconds: -5"))
    code, out, err = invoke("replay", "--workflows", str(bad), "--events", str(events_file))
    assert code == 2
    assert out == ""
    assert f"{bad}: workflow 'Auto-retry network errors': action.delay_seconds:" in err
    assert "greater than or equal to 0" in err


def test_lint_warns_on_the_pages_bad_practices(tmp_path: Path) -> None:
    path = tmp_path / "broad.yaml"
    code, out, _ = lint(
        path,
        'name: broad\ntrigger:\n  event: task.failed\n  conditions:\n    task_name_pattern: "*"\n'
        "action:\n  max_attempts: 999\n",
    )
    assert code == 0
    assert "trigger.conditions.task_name_pattern: '*' matches every task" in out
    assert "action.max_attempts: 999 retries per chain is very large" in out
    assert "circuit_breaker: a retry workflow without an explicit circuit breaker" in out
    assert invoke("lint", "--strict", str(path))[0] == 1


@pytest.mark.parametrize(
    ("yaml_text", "field", "reason"),
    [
        (
            "action:\n  type: retry\n  max_attempts: 0\n",
            "action.max_attempts",
            "greater than or equal to 1",
        ),
        ("action:\n  type: sms\n", "action", "unknown type 'sms'"),
        (
            "action:\n  type: slack\n  webhook_url: ftp://x\n",
            "action.webhook_url",
            "must be an http:// or https:// URL",
        ),
        (
            "action:\n  type: slack\n  webhook_url: https://h.example/x\n"
            "  message: '{task.name}'\n",
            "action.message",
            "attribute",
        ),
        (
            "action:\n  type: slack\n  webhook_url: https://h.example/x\n  message: '{nope}'\n",
            "action.message",
            "unknown variable",
        ),
        (
            "action:\n  type: webhook\n  url: https://h.example/x\n  retries: -1\n",
            "action.retries",
            "greater than or equal to 0",
        ),
        ("action:\n  type: retry\ncolour: red\n", "colour", "unknown field"),
    ],
)
def test_lint_refuses_bad_input_naming_the_field(
    tmp_path: Path, yaml_text: str, field: str, reason: str
) -> None:
    header = "name: w\ntrigger:\n  event: task.failed\n"
    code, _, err = lint(tmp_path / "w.yaml", header + yaml_text)
    assert code == 2
    assert f"workflow 'w': {field}: " in err
    assert reason in err


def test_a_secret_never_appears_in_an_error(tmp_path: Path) -> None:
    _, _, err = lint(
        tmp_path / "w.yaml",
        "name: w\ntrigger:\n  event: task.failed\n"
        "action:\n  type: slack\n  webhook_url: hooks.example/T0SECRET\n",
    )
    assert "webhook_url" in err
    assert "T0SECRET" not in err


def test_committed_schemas_match_the_models() -> None:
    for stem, schema in schemas().items():
        committed = SCHEMA_DIR / f"{stem}.schema.json"
        assert committed.exists(), f"run `flowguard schema`: {committed} is missing"
        assert committed.read_text() == render(schema), (
            f"{committed} drifted: run `flowguard schema`"
        )
    execution = json.loads((SCHEMA_DIR / "execution.schema.json").read_text())
    assert execution["$id"] == "flowguard.execution/1"


@pytest.mark.parametrize(
    ("stage", "warned"),
    [
        ("unreceived", "stage unreceived"),
        (None, "without a stage, unreceived"),
        ("unstarted", None),
    ],
)
def test_lint_warns_that_stuck_unreceived_needs_task_sent_events(
    tmp_path: Path, stage: str | None, warned: str | None
) -> None:
    """task-sent events are off in Celery by default: without them a task no worker received
    is never seen, so a task.stuck workflow watching that stage never fires."""
    staged = f"  stage: {stage}\n" if stage else ""
    code, out, _ = lint(
        tmp_path / "stuck.yaml",
        "name: stuck\ntrigger:\n  event: task.stuck\n  threshold_seconds: 60\n"
        f"{staged}action: {{type: slack, webhook_url: https://hooks.example/x}}\n",
    )
    assert code == 0
    if warned is None:
        assert "task_send_sent_event" not in out
    else:
        assert f"trigger.stage: {warned} needs task-sent events" in out
        assert "task_send_sent_event = True" in out
