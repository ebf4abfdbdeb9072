"""``bench/latency.py`` on a 2 s feed (about 20 s): the realistic feed still goes end to end,
Celery's own dispatcher -> a real ``flowguard-bridge`` -> a real ``flowguard worker``, and
every failure gets exactly one retry command id (the benchmark exits 1 otherwise).

It guards the benchmark against drift in what it drives (the bridge's and the worker's
settings, the topics it reads back: events, triggers, commands), and checks two waits removed
for issue 18: the worker's write-back no longer fills Faust's producer buffer (which held every
record's hand-over to the agents, with a "producer buffer full" warning, once a second at
2,000 events/s), and the full garbage collections during the feed are counted (from the
worker's /metrics).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_latency_smoke_retries_every_failure_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    argv = [sys.executable, str(REPO / "bench" / "latency.py"), "--seconds", "2", "--rate",
            "2000", "--backlog", "0", "--bootstrap", kafka_bootstrap,
            "--logs", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "| event -> retry command |" in done.stdout, done.stdout
    assert "full garbage collections during the feed: " in done.stdout, done.stdout
    [log] = tmp_path.glob("worker-*.log")
    assert "producer buffer full" not in log.read_text()
