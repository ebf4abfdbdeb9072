"""The live workflows the Kafka replay and rehearse tests run: retries, a breaker that opens
in the burst, orphans, a notification and a page."""

from __future__ import annotations

from pathlib import Path

RETRY = """\
name: "Retry transient errors"
trigger:
  event: task.failed
  conditions:
    error_pattern: "{pattern}"
action:
  type: retry
  delay_seconds: 30
  max_attempts: 2
circuit_breaker:
  max_executions: 5
  time_window_hours: 1
"""
ORPHANS = """\
name: "Recover orphaned tasks"
trigger:
  event: task.orphaned
action:
  type: retry
  delay_seconds: 300
  max_attempts: 1
"""
NOTIFY = """\
name: "Tell the team"
trigger:
  event: task.failed
  conditions:
    task_name_pattern: "{names}"
action:
  type: webhook
  url: "http://127.0.0.1:9/hooks/team"
circuit_breaker:
  max_executions: 1000
  time_window_hours: 1
"""
PAGE = """\
name: "Page on worker loss"
trigger:
  event: worker.offline
action:
  type: pagerduty
  routing_key: "0123456789abcdef0123456789abcdef"
"""
LIVE = {"pattern": "ConnectionError|Timeout|KeyError", "names": "demo.*"}


def write(directory: Path, pattern: str, names: str) -> Path:
    """The four workflows as files in ``directory``, with the given retry pattern and names."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "retry.yaml": RETRY.format(pattern=pattern),
        "orphans.yaml": ORPHANS,
        "notify.yaml": NOTIFY.format(names=names),
        "page.yaml": PAGE,
    }
    for name, text in texts.items():
        (directory / name).write_text(text)
    return directory
