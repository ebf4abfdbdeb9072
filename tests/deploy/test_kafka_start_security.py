"""deploy/kafka/start's FLOWGUARD_KAFKA_SECURITY: refusals that need no broker. Both modes start
real brokers elsewhere: plaintext for every test session, sasl_ssl for the secured e2e test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
START = REPO / "deploy" / "kafka" / "start"


def start(home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {**os.environ, "FLOWGUARD_HOME": str(home), "FLOWGUARD_KAFKA_PORT": "19492", **env}
    return subprocess.run(
        [str(START)], capture_output=True, text=True, timeout=60, env=variables, check=False
    )


def test_an_unknown_mode_is_refused_naming_the_variable(tmp_path: Path) -> None:
    result = start(tmp_path, FLOWGUARD_KAFKA_SECURITY="tls")
    assert result.returncode == 1
    assert (
        result.stderr.strip() == "error: FLOWGUARD_KAFKA_SECURITY=tls is not plaintext or sasl_ssl"
    )


def test_a_state_directory_made_for_plaintext_is_refused_for_sasl_ssl(tmp_path: Path) -> None:
    """A SASL_SSL broker needs the SCRAM users that only a format adds: say so, at once."""
    data = tmp_path / "kafka" / "19492" / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("node.id=1\n")
    result = start(tmp_path, FLOWGUARD_KAFKA_SECURITY="sasl_ssl")
    assert result.returncode == 1
    assert "was made for FLOWGUARD_KAFKA_SECURITY=plaintext, not sasl_ssl" in result.stderr
    assert not (tmp_path / "kafka" / "19492" / "tls").exists()
