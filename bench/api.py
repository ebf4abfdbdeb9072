"""Benchmark: the API's overhead over the engine, measured in the same run.

1. Test Workflow: events per second of ``POST /api/test`` (upload, the auto-retry template)
   against ``flowguard.replay.replay`` called in process on the same lines (the baseline).
2. The workflows list: p50/p95 latency of ``GET /api/workflows`` with N saved workflows
   (each summary reads the store and the history projection).

Needs a Kafka broker (``FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS``, default 127.0.0.1:9092); it uses
its own topic prefix. Traffic goes to 127.0.0.1 only.

    python bench/api.py                 # 200,000 events, 50 workflows
    python bench/api.py --events 20000  # quick
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import uvicorn
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowguard.api.app import create_app  # noqa: E402
from flowguard.api.settings import ApiSettings  # noqa: E402
from flowguard.control.kafka_admin import create_topics  # noqa: E402
from flowguard.control.workflow_templates import template  # noqa: E402
from flowguard.engine.matching import Published  # noqa: E402
from flowguard.replay import replay  # noqa: E402
from flowguard.settings import Settings  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def _lines(count: int) -> list[bytes]:
    streams = sorted((ROOT / "tests" / "data" / "streams").glob("*.jsonl"))
    base = [line for s in streams for line in s.read_bytes().splitlines() if line.strip()]
    return (base * (count // len(base) + 1))[:count]


def _baseline(lines: list[bytes]) -> tuple[float, int]:
    published = Published.of(template("auto-retry-network-errors").workflow)
    started = time.perf_counter()
    records = sum(1 for _ in replay([published], lines, cluster="default"))
    return time.perf_counter() - started, records


def _serve(bootstrap: str, prefix: str, history: Path) -> tuple[uvicorn.Server, str]:
    settings = Settings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    asyncio.run(create_topics(bootstrap, prefix, 30, partitions=1))
    api = ApiSettings(tokens=SecretStr(f"bench:admin:{TOKEN}"), history_dir=history)
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, api), host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("the API did not start in 60 s")
        threading.Event().wait(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    bootstrap = os.environ.get("FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    lines = _lines(args.events)
    body = b"\n".join(lines).decode()
    with tempfile.TemporaryDirectory() as tmp:
        server, url = _serve(bootstrap, f"bench-api-{uuid.uuid4().hex[:8]}", Path(tmp))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
            text = template("auto-retry-network-errors").text()
            base_seconds, base_records = _baseline(lines)
            started = time.perf_counter()
            answer = client.post("/api/test", json={"yaml": text, "events_jsonl": body})
            api_seconds = time.perf_counter() - started
            answer.raise_for_status()
            assert len(answer.json()["records"]) == base_records, "API and replay disagree"
            for n in range(args.workflows):
                doc = f"name: wf {n}\ntrigger: {{event: task.failed}}\naction: {{type: retry}}\n"
                client.post("/api/workflows", json={"yaml": doc}).raise_for_status()
            latencies = []
            for _ in range(args.requests):
                started = time.perf_counter()
                client.get("/api/workflows").raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)
        server.should_exit = True
    q = statistics.quantiles(latencies, n=20)
    print(
        f"Test Workflow over {len(lines):,} events ({len(body) / 1e6:.1f} MB), "
        f"{base_records} records"
    )
    print(
        f"  replay() in process: {len(lines) / base_seconds:,.0f} events/s ({base_seconds:.2f} s)"
    )
    print(f"  POST /api/test:      {len(lines) / api_seconds:,.0f} events/s ({api_seconds:.2f} s)")
    print(f"  ratio API / replay:  {base_seconds / api_seconds:.2f}")
    print(
        f"GET /api/workflows with {args.workflows} workflows, {args.requests} requests: "
        f"p50 {statistics.median(latencies):.1f} ms, p95 {q[18]:.1f} ms"
    )


if __name__ == "__main__":
    main()
