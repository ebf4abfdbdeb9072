"""Benchmark: ``flowguard rehearse`` over 100k / 300k / 1M events through the real broker.

The stream is bench/replay.py's (Celery-shaped, 5% failures over 10,000 task names, worker
heartbeats), with its event time moved to the last hour, translated as a bridge translates it
and published once to a fresh ``<prefix>.events`` (12 partitions), keyed as the bridge keys
it. The live log is what the live workflows decide on those events (the engine every path
runs), written as a live worker writes it (a final record with live statuses) to
``<prefix>.execution-log``. Live workflows: bench/replay.py's 100 (one task name each, 1% a
glob) and one broad one that retries every ConnectionError under a breaker of 100 an hour.
The draft raises that breaker to 1,000: thousands of executions change.

Each size is a prefix of the same topic, cut with ``--until`` at that event's record time;
``flowguard rehearse --json`` runs as a subprocess (the real CLI: reading both topics, the
replay, the comparison), and so does ``flowguard replay --from-kafka`` over the same range,
and ``flowguard replay --events`` over a file of the same events (the engine without Kafka).

    python bench/rehearse.py --bootstrap 127.0.0.1:9092                # 100k, 300k, 1M
    python bench/rehearse.py --bootstrap 127.0.0.1:9092 --sizes 20000  # quick
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.replay as stream  # noqa: E402
from flowguard.celery_wire.events import translate  # noqa: E402
from flowguard.control.kafka_admin import create_topics, delete_topics  # noqa: E402
from flowguard.control.workflow_files import load_workflows  # noqa: E402
from flowguard.engine.matching import Published  # noqa: E402
from flowguard.replay import replay  # noqa: E402
from tests.processes import send_all  # noqa: E402
from topics.execution import ExecutionRecord  # noqa: E402
from topics.keys import RootMemory, record_key  # noqa: E402
from topics.record import iso  # noqa: E402
from topics.registry import EVENTS, EXECUTION_LOG  # noqa: E402

BROAD = """\
name: "Retry connection errors everywhere"
trigger:
  event: task.failed
  conditions:
    task_name_pattern: "app.tasks.*"
    error_pattern: "ConnectionError"
action:
  type: retry
  delay_seconds: 10
  max_attempts: 3
circuit_breaker:
  max_executions: {max_executions}
  time_window_hours: 1
"""


def write_workflows(directory: Path, max_executions: int) -> Path:
    """bench/replay.py's 100 workflows (the same draws from the same seed) and the broad one."""
    directory.mkdir(parents=True)
    rng = random.Random(11)
    for i in range(100):
        pattern = (
            f"app.tasks.t{rng.randrange(stream.NAMES)}"
            if i % 100
            else f"app.tasks.t{rng.randrange(100)}?"
        )
        document = {
            "name": f"wf {i}",
            "trigger": {"event": "task.failed", "conditions": {
                "task_name_pattern": pattern, "error_pattern": "ConnectionError|Timeout"}},
            "action": {"type": "retry", "delay_seconds": 10, "max_attempts": 3},
            "circuit_breaker": {"max_executions": 100, "time_window_hours": 1},
        }  # fmt: skip
        (directory / f"wf{i:03d}.yaml").write_text(json.dumps(document))  # JSON is YAML
    (directory / "broad.yaml").write_text(BROAD.format(max_executions=max_executions))
    return directory


def normalized(work: Path, count: int, start: float) -> tuple[Path, Path]:
    """``count`` events whose event time starts at ``start``, as the bridge translates and keys
    them: a file of values (one JSON line each) and a file of their keys."""
    stream.T0 = start
    raw, values, keys = work / "raw.jsonl", work / "events.jsonl", work / "keys.txt"
    stream.write_stream(raw, count)
    roots = RootMemory()
    with raw.open("rb") as lines, values.open("wb") as v_out, keys.open("wb") as k_out:
        for line in lines:
            event = translate(orjson.loads(line), "bench")
            if event is not None:
                v_out.write(event.model_dump_json().encode() + b"\n")
                k_out.write(record_key(event, roots).encode() + b"\n")
    raw.unlink()
    return values, keys


async def produce(
    bootstrap: str, topic: str, items: Iterable[tuple[bytes, bytes, int | None]]
) -> None:
    """Batched (linger 20 ms, 512 KiB batches) and not idempotent: a million records fast."""
    await send_all(bootstrap, topic, items, linger_ms=20, max_batch_size=512 * 1024,
                   enable_idempotence=False)  # fmt: skip


def stamped(values: Path, keys: Path) -> Iterator[tuple[bytes, bytes, int | None]]:
    """(key, value, record time): the event time so far (the latest seen, in ms), as a bridge
    publishing each event as it comes would stamp it."""
    latest = 0
    with values.open("rb") as v_in, keys.open("rb") as k_in:
        for value, key in zip(v_in, k_in, strict=True):
            latest = max(latest, int(orjson.loads(value)["timestamp"] * 1000))
            yield key.rstrip(b"\n"), value.rstrip(b"\n"), latest


def record_times(values: Path) -> list[int]:
    latest, out = 0, []
    with values.open("rb") as lines:
        for line in lines:
            latest = max(latest, int(orjson.loads(line)["timestamp"] * 1000))
            out.append(latest)
    return out


def head(values: Path, size: int, path: Path) -> Path:
    with values.open("rb") as source, path.open("wb") as out:
        out.writelines(itertools.islice(source, size))
    return path


def live_log(values: Path, directory: Path) -> list[tuple[bytes, bytes, int | None]]:
    """The live workflows' decisions on the events, as a live worker writes them."""
    published = [Published.of(item.workflow, version=3) for item in load_workflows(directory)]
    final: dict[str, ExecutionRecord] = {}
    with values.open("rb") as lines:
        for record in replay(published, lines):
            final[record.execution_id] = record
    now = iso(time.time())
    out = []
    for record in final.values():
        live = record.model_copy(update={
            "dry_run": False, "recorded_at": now,
            "actions": tuple(a.model_copy(update={"status": "succeeded"})
                             if a.status == "planned" else a for a in record.actions),
        })  # fmt: skip
        out.append((record.workflow.id.encode(), live.to_json().encode(), None))
    return out


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds and CPU seconds (user + system) of a ``flowguard`` subprocess, and its
    stdout. On a shared machine the CPU time is the steadier figure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"{command[1]} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return seconds, cpu, done.stdout.decode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    args = parser.parse_args()
    prefix = f"bench-rehearse-{uuid.uuid4().hex[:8]}"
    flowguard = str(Path(sys.executable).parent / "flowguard")
    env = {**os.environ, "FLOWGUARD_KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
           "FLOWGUARD_TOPIC_PREFIX": prefix, "FLOWGUARD_KAFKA_TIMEOUT_SECONDS": "30"}  # fmt: skip
    total = max(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        live_dir = write_workflows(work / "live", 100)
        draft_dir = write_workflows(work / "draft", 1000)
        start = time.time() - 3600
        values, keys = normalized(work, total, start)
        times = record_times(values)
        count = len(times)
        print(f"{count:,} events; python {platform.python_version()}; prefix {prefix}")
        asyncio.run(create_topics(args.bootstrap, prefix, 30))
        try:
            began = time.perf_counter()
            asyncio.run(produce(args.bootstrap, EVENTS.name(prefix), stamped(values, keys)))
            print(f"published the events in {time.perf_counter() - began:.1f} s")
            log = live_log(values, live_dir)
            asyncio.run(produce(args.bootstrap, EXECUTION_LOG.name(prefix), log))
            print(f"published {len(log):,} live executions")
            since = iso(start - 1) or ""
            for size in sorted(args.sizes):
                # The first record stamped at the size-th one's time ends the range.
                until = iso(times[size] / 1000) if size < count else None
                first = bisect.bisect_left(times, times[size]) if size < count else count
                window = ["--since", since] + (["--until", until] if until else [])
                path = head(values, first, work / f"events-{size}.jsonl")
                measure(flowguard, env, draft_dir, path, window, size)
        finally:
            asyncio.run(delete_topics(args.bootstrap, prefix, 30))


def measure(
    flowguard: str, env: dict[str, str], draft: Path, path: Path, window: list[str], size: int
) -> None:
    """The three commands over one size; one line of figures."""
    file_s, file_cpu, _ = timed(
        [flowguard, "replay", "--workflows", str(draft), "--events", str(path)], env
    )
    kafka_s, kafka_cpu, _ = timed(
        [flowguard, "replay", "--workflows", str(draft), "--from-kafka", *window], env
    )
    rehearse_s, rehearse_cpu, out = timed(
        [flowguard, "rehearse", "--workflows", str(draft), "--json", *window], env
    )
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    diff = json.loads(out)
    print(
        f"{size:>9,} events: rehearse {rehearse_s:6.1f} s wall, {rehearse_cpu:6.1f} s CPU "
        f"({size / rehearse_cpu:,.0f} events per CPU second); replay --from-kafka "
        f"{kafka_s:6.1f} s wall, {kafka_cpu:6.1f} s CPU; replay --events {file_s:6.1f} s wall, "
        f"{file_cpu:6.1f} s CPU; live {diff['live']['executions']:,} / draft "
        f"{diff['draft']['executions']:,} executions: {diff['added']:,} added, "
        f"{diff['removed']:,} removed, {diff['changed']:,} changed; largest child RSS so far "
        f"{rss_mb:,.0f} MB",
        flush=True,
    )


if __name__ == "__main__":
    main()
