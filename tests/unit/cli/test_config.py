"""flowguard/cli/config.py: every subcommand refuses a bad setting with its variable and reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from flowguard.cli import main
from flowguard.settings import get_settings

PASSWORD = "hunter2-not-in-any-output"


@pytest.fixture
def sasl_without_username(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("FLOWGUARD_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLOWGUARD_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("FLOWGUARD_KAFKA_SASL_PASSWORD", PASSWORD)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    "args",
    [
        ["api"],
        ["doctor"],
        ["history"],
        ["topics", "create"],
        ["workflows", "list"],
        ["worker"],
    ],
)
@pytest.mark.usefixtures("sasl_without_username")
def test_a_bad_kafka_setting_stops_the_command_naming_the_variable(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert (
        "FLOWGUARD_KAFKA_SASL_USERNAME: Value error, required when "
        "FLOWGUARD_KAFKA_SECURITY_PROTOCOL is SASL_SSL"
    ) in result.output
    assert "Traceback" not in result.output
    assert PASSWORD not in result.output
