"""``flowguard rehearse`` refusing what it cannot run, before and at Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from flowguard.cli import main
from flowguard.settings import get_settings


@pytest.fixture
def no_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bootstrap address nothing listens on, and a short timeout."""
    monkeypatch.setenv("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("FLOWGUARD_KAFKA_TIMEOUT_SECONDS", "1")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def rehearse(*args: str) -> Result:
    return CliRunner().invoke(main, ["rehearse", *args])


def test_an_invalid_draft_is_refused_naming_the_field(no_kafka: None, tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("name: x\ntrigger:\n  event: task.exploded\naction:\n  type: retry\n")
    result = rehearse("--workflows", str(draft), "--since", "1h")
    assert result.exit_code == 2
    assert "error: invalid workflow" in result.stderr
    assert "trigger.event" in result.stderr


def test_bad_options_are_refused_naming_them(no_kafka: None, tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("name: x\ntrigger:\n  event: task.failed\naction:\n  type: retry\n")
    missing = rehearse("--workflows", str(draft))
    assert missing.exit_code == 2
    assert "Missing option '--since'" in missing.output
    bad = rehearse("--workflows", str(draft), "--since", "1h", "--until", "soon")
    assert bad.exit_code == 2
    assert "Invalid value for '--until': 'soon'" in bad.output
    negative = rehearse("--workflows", str(draft), "--since", "1h", "--max-added", "-1")
    assert negative.exit_code == 2
    assert "Invalid value for '--max-added'" in negative.output


def test_kafka_away_is_an_error_not_a_traceback(no_kafka: None, tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text("name: x\ntrigger:\n  event: task.failed\naction:\n  type: retry\n")
    result = rehearse("--workflows", str(draft), "--since", "1h")
    assert result.exit_code == 1
    assert result.stderr == "error: reading flowguard.events from 127.0.0.1:1: cannot connect\n"
