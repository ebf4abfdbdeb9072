"""Reading a running process's /healthz, /readyz, /metrics and JSON log lines."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def get(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET http://127.0.0.1:<port><path>; (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"


def readiness(port: int) -> tuple[int, list[str]]:
    """/readyz: its status and the reasons it gives (none when ready)."""
    status, body = get(port, "/readyz")
    if status == 0:
        return 0, [body]
    return status, list(json.loads(body)["reasons"])


def unready_for(port: int, needle: str) -> list[str] | None:
    """The reasons, once /readyz answers 503 with a reason that contains ``needle``."""
    status, reasons = readiness(port)
    if status == 503 and any(needle in reason for reason in reasons):
        return reasons
    return None


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of a sample of the Prometheus text ``text`` (labels: those it must carry)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{key}="{want}"' in head for key, want in labels.items()):
            return float(value)
    return None


def json_lines(log: Path) -> list[dict[str, Any]]:
    """The log file's JSON lines (anything else a process printed is left out)."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines
