"""A Faust agent that only counts events: the floor under any Faust app on this machine.

``bench/live.py`` runs it on the same backlog as the worker, so the report can tell what Faust
itself costs per event from what flowguard adds. Its clock starts at the first event (start-up
is not counted) and stops at the last; it writes one JSON object to ``FLOOR_OUT`` (Faust's
worker sends stdout to its logger) and exits.

    FLOOR_TOPIC=t FLOOR_EVENTS=40000 FLOOR_APP=x FLOOR_BOOTSTRAP=127.0.0.1:9092 \\
        FLOOR_OUT=/tmp/floor.json python bench/faust_floor.py worker -l warn
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import faust

env = os.environ
EXPECTED = int(env["FLOOR_EVENTS"])
app = faust.App(
    env["FLOOR_APP"],
    broker=f"kafka://{env['FLOOR_BOOTSTRAP']}",
    store="memory://",
    datadir=tempfile.mkdtemp(prefix="faust-floor-"),
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_buffer_maxsize=4096,  # as flowguard worker sets it (its floor: max(4096, 4 x batch))
)
source = app.topic(
    env["FLOOR_TOPIC"], key_type=bytes, value_type=bytes, key_serializer="raw",
    value_serializer="raw",
)  # fmt: skip


def report(rate: float, cpu_us: float) -> None:
    """One small write as the process ends (nothing else runs on the loop by then)."""
    Path(env["FLOOR_OUT"]).write_text(json.dumps({"rate": rate, "cpu_us": cpu_us}))


@app.agent(source)
async def count(stream: Any) -> None:
    seen, started, cpu = 0, 0.0, 0.0
    async for _ in stream.events():
        if seen == 0:
            started, cpu = time.perf_counter(), time.process_time()
        seen += 1
        if seen >= EXPECTED:
            elapsed = time.perf_counter() - started
            cpu_us = (time.process_time() - cpu) * 1e6 / seen
            report(seen / elapsed, cpu_us)
            os._exit(0)


if __name__ == "__main__":
    app.main()
