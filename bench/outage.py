"""A real endpoint outage: one webhook answers 503 for ``--minutes`` while the load goes on.

One ``flowguard worker`` with the action runner's defaults (a webhook is tried again as its
action says, 3 retries with backoff, all within ``max_total_seconds``, 60 s) and the three
workflows of tests/e2e/test_endpoint_outage.py: a webhook to the dead endpoint, a webhook to
a healthy one, and a retry, on their own tasks.
Every ``--every`` seconds one failure of each kind is produced, through the outage and for
a minute after it (the endpoint answers 200 again). It reports:

- for the healthy webhook and the retries: trigger -> delivered / command latency, p50 and
  max, during the outage (what "not held up" means in numbers);
- for the dead endpoint: how each notice settled (``failed`` with the reason during the
  outage, ``succeeded`` after), and how long after its trigger it settled;
- lost (a trigger with no settled record) and repeated deliveries (same Idempotency-Key).

    python bench/outage.py --minutes 5        # the docs' run, about 7 minutes
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402

from tests.e2e.test_endpoint_outage import latest, workflows  # noqa: E402
from tests.e2e.test_notifications_once import Flow, failure  # noqa: E402
from tests.httpserver import RecordingServer, Reply  # noqa: E402
from tests.processes import TopicReader, produce  # noqa: E402


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="outage-"))
    prefix = f"bench-outage-{int(time.time())}"
    sent: dict[str, tuple[float, float]] = {}  # task id -> (wall clock, monotonic)
    with RecordingServer() as hooks, pytest.MonkeyPatch.context() as patch:
        # Breakers wide open: the default (100 executions an hour) would skip the load itself.
        wide = {"max_executions": 100_000, "time_window_hours": 1}
        definitions = [{**d, "circuit_breaker": wide} for d in workflows(hooks)]
        flow = Flow(tmp, args.bootstrap, prefix, hooks, definitions)
        hooks.script("/down", Reply(503))
        flow.worker("fg1", patch)
        commands = TopicReader(args.bootstrap, f"{prefix}.commands")
        try:
            outage_ends = time.monotonic() + args.minutes * 60
            recovered, n = None, 0
            while time.monotonic() < outage_ends + args.after:
                if recovered is None and time.monotonic() >= outage_ends:
                    hooks.script("/down", Reply(200))
                    recovered = time.time()
                now, mono = time.time(), time.monotonic()
                produce(flow.kafka, f"{prefix}.events", failure(f"d-{n}", now, "app.down"))
                produce(flow.kafka, f"{prefix}.events", failure(f"u-{n}", now, "app.up"))
                sent[f"d-{n}"] = sent[f"u-{n}"] = (now, mono)
                n += 1
                time.sleep(args.every)  # pacing the load, not synchronization
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # every notice settled, or count what is not
                down = latest(flow, "tell-the-dead-endpoint").values()
                if sum(status(r) != "planned" for r in down) >= n:
                    break
                time.sleep(1)
            assert recovered is not None
            return report(flow, hooks, commands, sent, recovered, n)
        finally:
            flow.close()


def report(
    flow: Flow, hooks: RecordingServer, commands: TopicReader,
    sent: dict[str, tuple[float, float]], recovered: float, n: int,
) -> dict[str, Any]:  # fmt: skip
    up_seen: dict[str, float] = {}
    for request in hooks.requests("/up"):
        up_seen.setdefault(request.json()["task"]["id"], request.received_at)
    commands.poll()
    retried = {
        value["original_task_id"]: commands.produced_at[partition, offset]
        for _, value, partition, offset in commands.records
    }
    during = [f"u-{i}" for i in range(n) if sent[f"u-{i}"][0] < recovered]
    up_ms = [(up_seen[t] - sent[t][1]) * 1000 for t in during if t in up_seen]
    retry_ms = [(retried[t] - sent[t][0]) * 1000 for t in during if t in retried]
    flow.log.poll()
    settled_at: dict[str, float] = {}
    for _, value, partition, offset in flow.log.records:
        if value["workflow"]["id"] == "tell-the-dead-endpoint" and status(value) != "planned":
            settled_at.setdefault(value["task"]["id"], flow.log.produced_at[partition, offset])
    outcomes: Counter[str] = Counter()
    settle_s = []
    for record in latest(flow, "tell-the-dead-endpoint").values():
        task = record["task"]["id"]
        when = "during" if sent[task][0] < recovered else "after"
        detail = record["actions"][0].get("detail") or "" if record["actions"] else ""
        reason = " (HTTP 503)" if "HTTP 503" in detail else ""
        outcomes[f"{when}: {status(record)}{reason}"] += 1
        if when == "during" and task in settled_at:
            settle_s.append(settled_at[task] - sent[task][0])
    keys = Counter(r.headers.get("idempotency-key") for r in hooks.requests("/down"))
    return {
        "failure pairs": n,
        "healthy webhook during the outage, trigger -> delivered, ms p50 / max": _spread(up_ms),
        "retries during the outage, trigger -> command, ms p50 / max": _spread(retry_ms),
        "healthy notices delivered": f"{len(up_seen)}/{n}",
        "retries sent": f"{len(retried)}/{n}",
        "dead endpoint's notices": dict(outcomes),
        "dead endpoint's notices during the outage, trigger -> settled, s p50 / max": _spread(
            settle_s
        ),
        "dead endpoint's notices lost (no record)": n - len(latest(flow, "tell-the-dead-endpoint")),
        "requests to the dead endpoint (attempts)": sum(keys.values()),
    }


def status(record: dict[str, Any]) -> str:
    """The notice's status; an execution without actions was skipped (its reason says why)."""
    if not record["actions"]:
        return f"skipped: {record.get('reason')}"
    return str(record["actions"][0]["status"])


def _spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the endpoint is down")
    parser.add_argument("--after", type=float, default=60.0, help="seconds of load after it")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between failure pairs")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    for name, value in run(args).items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
