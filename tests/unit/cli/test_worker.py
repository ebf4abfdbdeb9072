"""``flowguard worker`` refuses a bad setting with the variable and the reason, no traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flowguard.cli import main as cli


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FLOWGUARD_BATCH_MAX_EVENTS", "0", "greater than or equal to 1"),
        ("FLOWGUARD_SESSION_TIMEOUT_SECONDS", "2", "greater than or equal to 6"),
        ("FLOWGUARD_OFFLINE_GRACE_SECONDS", "soon", "valid number"),
    ],
)
def test_a_bad_setting_stops_the_worker_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(cli, ["worker"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {variable}: ")
    assert says in result.output
    assert "Traceback" not in result.output
