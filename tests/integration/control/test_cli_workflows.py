"""``flowguard workflows`` end to end against real Kafka, in-process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from flowguard.cli import main as cli
from tests.integration.control.topics import compacted

HOOK = "https://hooks.slack.com/services/T123/B456/s3cr3tt0k3nvalue"
PAYMENTS = f"""\
name: Alert on payments
trigger:
  event: task.failed
  conditions:
    task_name_pattern: "payments.*"
action:
  type: slack
  webhook_url: "{HOOK}"
"""
RETRY = """\
name: Retry network errors
trigger:
  event: task.failed
  conditions:
    error_pattern: "ConnectionError"
actions:
  - type: retry
    delay_seconds: 30
  - type: webhook
    url: "${FLOWGUARD_SECRET_OPS_WEBHOOK}"
    headers:
      Authorization: "Bearer abcdefghijklmnopqrstuvwxyz"
circuit_breaker:
  max_executions: 10
  time_window_hours: 1
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["workflows", *args])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "payments.yaml").write_text(PAYMENTS)
    (tmp_path / "workflows" / "retry.yml").write_text(RETRY)
    return tmp_path / "workflows"


def test_apply_list_export_toggle_delete_rollback(
    cli_env: str, kafka_bootstrap: str, folder: Path, tmp_path: Path
) -> None:
    first = run("apply", str(folder), "--by", "ci")
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        "created alert-on-payments v1",
        "created retry-network-errors v1",
    ]
    again = run("apply", str(folder))
    assert again.output.splitlines() == [
        "unchanged alert-on-payments v1",
        "unchanged retry-network-errors v1",
    ]
    assert len(asyncio.run(compacted(kafka_bootstrap, cli_env))) == 2  # nothing republished

    listed = run("list").output.splitlines()
    assert listed[0].split() == ["ID", "NAME", "VERSION", "ENABLED", "TRIGGER"]
    row = ["alert-on-payments", "Alert", "on", "payments", "1", "yes", "task.failed"]
    assert listed[1].split() == row
    assert len(listed) == 3

    masked = run("export").output
    assert HOOK not in masked
    assert "abcdefghijklmnopqrstuvwxyz" not in masked
    docs = list(yaml.safe_load_all(masked))
    assert [d["id"] for d in docs] == ["alert-on-payments", "retry-network-errors"]
    assert docs[0]["action"]["webhook_url"] == "***alue"
    assert (
        docs[1]["actions"][1]["url"] == "${FLOWGUARD_SECRET_OPS_WEBHOOK}"
    )  # a reference is not a secret
    assert docs[1]["actions"][1]["headers"] == {"Authorization": "***wxyz"}
    revealed = run("export", "Alert on payments", "--reveal-secrets").output
    assert yaml.safe_load(revealed)["action"]["webhook_url"] == HOOK
    # The revealed export applies back as "unchanged": the explicit id means the same workflow.
    (tmp_path / "exported.yaml").write_text(revealed)
    assert (
        run("apply", str(tmp_path / "exported.yaml")).output == "unchanged alert-on-payments v1\n"
    )

    assert run("disable", "alert-on-payments").output == "disabled alert-on-payments v2\n"
    assert run("disable", "alert-on-payments").output.startswith("unchanged alert-on-payments v2")
    # Re-applying the file (which does not say `enabled:`) keeps the disable.
    assert "unchanged alert-on-payments v2" in run("apply", str(folder)).output
    assert run("list").output.splitlines()[1].split()[-2] == "no"
    assert run("enable", "Alert on payments").output == "enabled alert-on-payments v3\n"

    assert run("delete", "alert-on-payments").output == "deleted alert-on-payments (v4)\n"
    on_topic = asyncio.run(compacted(kafka_bootstrap, cli_env))
    assert on_topic[-1] == ("alert-on-payments", None)  # the tombstone
    assert "alert-on-payments" not in run("list").output
    history = run("versions", "alert-on-payments").output.splitlines()
    assert [line.split()[0] for line in history] == ["VERSION", "1", "2", "3", "4"]
    assert history[1].split()[2:4] == ["ci", "enabled"]
    assert history[2].split()[3] == "disabled"
    assert history[4].split()[3] == "deleted"
    assert run("export", "alert-on-payments").exit_code == 1

    rolled = run("rollback", "alert-on-payments", "1")
    assert rolled.output == "rolled back alert-on-payments to version 1 as v5\n"
    assert "alert-on-payments" in run("list").output
    diff = run("diff", "alert-on-payments", "1", "2").output
    assert "+enabled: false" in diff
    assert HOOK not in diff
    assert run("diff", "alert-on-payments", "1", "5").output == "versions 1 and 5 are the same\n"


def test_invalid_file_exits_2_naming_the_field_and_publishes_nothing(
    cli_env: str, kafka_bootstrap: str, folder: Path
) -> None:
    (folder / "zz-bad.yaml").write_text(RETRY.replace("delay_seconds: 30", "delay_seconds: -5"))
    result = run("apply", str(folder))
    assert result.exit_code == 2
    assert "zz-bad.yaml: workflow 'Retry network errors': actions.0.delay_seconds: " in (
        result.output
    )
    assert "greater than or equal to 0" in result.output
    assert asyncio.run(compacted(kafka_bootstrap, cli_env)) == []


def test_unknown_workflow_is_named(cli_env: str) -> None:
    result = run("disable", "no-such-flow")
    assert result.exit_code == 1
    assert "workflow 'no-such-flow': no such workflow" in result.output
    assert "Traceback" not in result.output
