"""``make stop`` (``python -m flowguard.demo.run stop``) returns only once the demo has exited.

The demo's flowguard worker takes about 10 s to shut down after SIGTERM; stop used to return at
once, while it still ran. Here a process that takes a while to shut down, and a child of it in
its process group, stand in for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowguard.demo.run import stop_all

# On SIGTERM: start a child in the same group that lingers too, then exit after a pause.
SLOW_TO_STOP = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import signal, time; \\
signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1.0), exit(0))); time.sleep(120)"])
def term(*_):
    child.terminate()
    time.sleep(1.0)
    child.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print(child.pid, flush=True)
time.sleep(120)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(1, flush=True)
time.sleep(120)
"""


@pytest.fixture
def groups() -> Iterator[list[int]]:
    """Process groups a test started: killed at its end whatever happened (none left behind)."""
    started: list[int] = []
    yield started
    for pgid in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _start(
    home: Path, name: str, code: str, groups: list[int]
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    groups.append(proc.pid)
    assert proc.stdout is not None
    with proc.stdout:
        second = int(proc.stdout.readline())  # the handler is installed: SIGTERM is not lost
    (home / f"{name}.pid").write_text(str(proc.pid))
    # Reap it as soon as it exits, as init reaps the real demo's processes.
    threading.Thread(target=proc.wait, daemon=True).start()
    return proc, second


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_returns_only_when_everything_has_exited(tmp_path: Path, groups: list[int]) -> None:
    proc, child = _start(tmp_path, "worker", SLOW_TO_STOP, groups)
    began = time.monotonic()
    stop_all(tmp_path, stop_seconds=30)
    took = time.monotonic() - began
    assert not _alive(proc.pid), "stop returned while the process still ran"
    assert not _alive(child), "stop returned while a process of its group still ran"
    assert took >= 0.9, f"stop returned after {took:.2f} s, before the process could exit"
    assert list(tmp_path.glob("*.pid")) == []


def test_what_ignores_sigterm_is_killed_at_the_deadline(
    tmp_path: Path, groups: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    proc, _ = _start(tmp_path, "stubborn", STUBBORN, groups)
    stop_all(tmp_path, stop_seconds=0.5)
    assert not _alive(proc.pid)
    assert "stubborn did not stop within 0.5 s: sent SIGKILL" in capsys.readouterr().err


def test_a_stale_pid_file_is_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    gone.wait()
    (tmp_path / "api.pid").write_text(str(gone.pid))
    stop_all(tmp_path)
    assert list(tmp_path.glob("*.pid")) == []
