"""``bench/fleet.py --smoke``: the fleet benchmark still drives real ``flowguard worker``
processes end to end (3 simulated clusters for 6 s, one worker, about 20 s): every failure
decided once, the dead worker reported once, the storm's failures all executed.

It guards the benchmark against drift in the contract it produces with (the ``topics.events``
models, ``bridge.intake.encode``, ``topics.keys.record_key``) and in what it reads back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_fleet_smoke_decides_every_failure_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    figures = tmp_path / "fleet.json"
    argv = [sys.executable, str(REPO / "bench" / "fleet.py"), "--smoke", "--bootstrap",
            kafka_bootstrap, "--json", str(figures), "--logs", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    [run] = json.loads(figures.read_text())["runs"]
    clusters = {c["cluster"]: c for c in run["clusters"]}
    assert set(clusters) == {"c00", "c01", "c02"}
    assert all(c["failures"] and not c["undecided"] and not c["seq0_twice"]
               for c in clusters.values()), clusters  # fmt: skip
    # c00's failures match the retry and the webhook workflow; c01 lost a worker; c02 stormed.
    assert clusters["c00"]["executions"] == 2 * clusters["c00"]["failures"]
    assert clusters["c01"]["executions"] == clusters["c01"]["failures"] + 1
    assert clusters["c02"]["failures"] >= run["overall"]["storm_tasks"] > 0
    assert run["overall"]["offline_executions"] == 1
    assert run["overall"]["live_finished"]
    assert run["overall"]["backlog_finished"]
