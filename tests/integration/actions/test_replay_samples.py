"""``flowguard replay --send-samples`` sends one marked sample per notifying workflow."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from flowguard.cli import main
from tests.httpserver import RecordingServer, Reply

STREAM = Path(__file__).resolve().parents[2] / "data" / "streams" / "basic.jsonl"


def _workflows(tmp_path: Path, server: RecordingServer) -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(
        f"""\
name: "Alert on any failure"
trigger:
  event: task.failed
actions:
  - type: slack
    webhook_url: "{server.url_for("/slack")}"
    message: "Task {{task_name}} failed: {{error_message}}"
  - type: webhook
    url: "${{FLOWGUARD_SECRET_HOOK_URL}}"
"""
    )
    return path


def _replay(path: Path, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main,
        ["replay", "--workflows", str(path), "--events", str(STREAM), *extra],
        env=env,
    )
    return result.exit_code, result.stdout, result.stderr


def test_samples_are_sent_once_per_workflow_and_marked(
    tmp_path: Path, http_server: RecordingServer
) -> None:
    path = _workflows(tmp_path, http_server)
    env = {
        "FLOWGUARD_ACTIONS_ALLOW_HOSTS": "127.0.0.1",
        "FLOWGUARD_SECRET_HOOK_URL": http_server.url_for("/hook"),
    }
    code, stdout, stderr = _replay(path, env, "--send-samples")
    assert code == 0, stderr
    records = [json.loads(line) for line in stdout.splitlines()]
    assert len(records) > 1, "the stream holds several failures"
    assert all(r["dry_run"] for r in records)
    [slack] = http_server.requests("/slack")
    [hook] = http_server.requests("/hook")
    assert slack.json()["text"].startswith("[flowguard test]")
    assert "failed:" in slack.json()["text"]
    assert hook.json()["sample"] is True
    assert hook.headers["flowguard-sample"] == "true"
    assert "sample: alert-on-any-failure slack: succeeded: sample: HTTP 200" in stderr
    # Without the flag nothing is sent and the records are the same bytes.
    code, plain, _ = _replay(path, env)
    assert (code, plain) == (0, stdout)
    assert len(http_server.requests()) == 2


def test_a_failed_sample_fails_the_command(tmp_path: Path, http_server: RecordingServer) -> None:
    http_server.script("/slack", Reply(404, body="no_service"))
    path = _workflows(tmp_path, http_server)
    env = {
        "FLOWGUARD_ACTIONS_ALLOW_HOSTS": "127.0.0.1",
        "FLOWGUARD_SECRET_HOOK_URL": http_server.url_for("/hook"),
    }
    code, _, stderr = _replay(path, env, "--send-samples")
    assert code == 1
    assert "slack: failed: sample: HTTP 404: no_service" in stderr
    assert len(http_server.requests("/slack")) == 1, "a sample is never retried"


def test_samples_respect_outbound_safety(tmp_path: Path, http_server: RecordingServer) -> None:
    path = _workflows(tmp_path, http_server)
    code, _, stderr = _replay(
        path, {"FLOWGUARD_SECRET_HOOK_URL": "https://10.0.0.1/x"}, "--send-samples"
    )
    assert code == 1
    assert "refused http://127.0.0.1: only https is allowed" in stderr
    assert "refused 10.0.0.1: private address" in stderr
    assert http_server.requests() == []


def test_a_bad_allowlist_is_refused_naming_it(tmp_path: Path, http_server: RecordingServer) -> None:
    path = _workflows(tmp_path, http_server)
    env = {"FLOWGUARD_ACTIONS_ALLOW_HOSTS": "not a host"}
    code, _, stderr = _replay(path, env, "--send-samples")
    assert code == 2
    assert "FLOWGUARD_ACTIONS_ALLOW_HOSTS: 'not a host'" in stderr
