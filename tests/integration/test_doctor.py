"""``flowguard doctor`` against the real broker, and against none."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def doctor(bootstrap: str, prefix: str = "flowguard") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "FLOWGUARD_TOPIC_PREFIX": prefix,
        "FLOWGUARD_KAFKA_TIMEOUT_SECONDS": "5",
    }
    return subprocess.run(
        [sys.executable, "-m", "flowguard", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_doctor_passes_against_the_broker_and_reports_missing_topics(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    result = doctor(kafka_bootstrap, topic_prefix)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok   configuration")
    assert lines[1].startswith("ok   kafka: 1 broker(s)")
    assert lines[2].startswith(f"warn topics: 0 of 8 exist; missing: {topic_prefix}.events")


def test_doctor_with_kafka_down_says_so_in_one_line_and_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]
    result = doctor(f"127.0.0.1:{free_port}")
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith("FAIL kafka: Kafka at 127.0.0.1:")
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == ""
