"""Benchmark: events per second of ``flowguard replay`` against a ``json.loads`` baseline.

The stream is Celery-shaped (task-sent, -received, -started, -succeeded or
-failed, and worker heartbeats) with 5% failures over 10,000 task names. The
baseline reads the same file and only ``json.loads`` each line, in the same
run. Workflows: 99% name one task exactly, 1% use a glob, as a platform with
many teams would write them.

    python bench/replay.py                  # 1M events, 10/100/1,000/10,000 workflows
    python bench/replay.py --events 50000   # quick
    python bench/replay.py --events 200000 --workflows 100 --per-event   # cost per event
    python bench/replay.py --real --events 300000   # also real recorded Celery streams

``--real``: the recorded streams of tests/data/streams (real Celery 5 workers: real field
shapes, arg reprs, tracebacks, incident bursts), scaled up. Each round holds every stream once
(its failures and worker churn as recorded) and the recorded successful tasks again with new ids
until about 7% of tasks fail; task ids get the round's suffix and times the round's offset.
Two workflow sets: "failures" (an auto-retry workflow on demo.tasks.* among 99 naming other
tasks: every failure decides a record) and "nothing matches" (100 workflows naming other tasks).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowguard.celery_wire.events import parse_line  # noqa: E402
from flowguard.engine.core import Engine, EngineConfig, Output  # noqa: E402
from flowguard.engine.documents import parse_workflow  # noqa: E402
from flowguard.engine.matching import Published  # noqa: E402
from flowguard.replay import ReplayStats, replay  # noqa: E402

NAMES = 10_000
FAILURE_RATE = 0.05
T0 = 1_760_000_000.0


def task_events(rng: random.Random, index: int, ts: float) -> Iterator[dict[str, Any]]:
    task_id = f"{index:08x}-7b8f-4a9e-9c1d-2b3f4a5c6d7e"
    name = f"app.tasks.t{rng.randrange(NAMES)}"
    args = f"({index}, 'customer-{index % 977}')"
    common = {"uuid": task_id, "utcoffset": 0, "pid": 4242}
    yield {
        **common,
        "type": "task-sent",
        "timestamp": ts,
        "hostname": "gen4242@api",
        "clock": index,
        "name": name,
        "args": args,
        "kwargs": "{}",
        "root_id": task_id,
        "parent_id": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "queue": "celery",
        "exchange": "",
        "routing_key": "celery",
    }
    yield {
        **common,
        "type": "task-received",
        "timestamp": ts + 0.001,
        "hostname": "celery@w1",
        "clock": index,
        "name": name,
        "args": args,
        "kwargs": "{}",
        "root_id": task_id,
        "parent_id": None,
        "retries": 0,
        "eta": None,
        "expires": None,
    }
    yield {
        **common,
        "type": "task-started",
        "timestamp": ts + 0.002,
        "hostname": "celery@w1",
        "clock": index,
    }
    if rng.random() < FAILURE_RATE:
        yield {
            **common,
            "type": "task-failed",
            "timestamp": ts + 0.05,
            "hostname": "celery@w1",
            "clock": index,
            "exception": "ConnectionError('Connection refused')",
            "traceback": "Traceback (most recent call last):\n  ...\nConnectionError: refused\n",
        }
    else:
        yield {
            **common,
            "type": "task-succeeded",
            "timestamp": ts + 0.05,
            "hostname": "celery@w1",
            "clock": index,
            "result": "None",
            "runtime": 0.048,
        }


def write_stream(path: Path, events: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    written = index = 0
    with path.open("w") as out:
        while written < events:
            ts = T0 + index * 0.01
            if index % 100 == 0:
                out.write(
                    json.dumps(
                        {
                            "type": "worker-heartbeat",
                            "hostname": "celery@w1",
                            "timestamp": ts,
                            "freq": 2.0,
                            "active": 1,
                            "processed": index,
                            "clock": index,
                            "sw_ident": "py-celery",
                            "sw_ver": "5.7.0",
                            "sw_sys": "Linux",
                            "utcoffset": 0,
                            "pid": 1,
                            "loadavg": [0.1, 0.1, 0.1],
                        }
                    )
                    + "\n"
                )
                written += 1
            for event in task_events(rng, index, ts):
                out.write(json.dumps(event) + "\n")
                written += 1
            index += 1
    return written


def workflows(count: int, seed: int = 11) -> list[Published]:
    rng = random.Random(seed)
    result = []
    for i in range(count):
        pattern = (
            f"app.tasks.t{rng.randrange(NAMES)}" if i % 100 else f"app.tasks.t{rng.randrange(100)}?"
        )
        doc = {
            "name": f"wf {i}",
            "trigger": {
                "event": "task.failed",
                "conditions": {
                    "task_name_pattern": pattern,
                    "error_pattern": "ConnectionError|Timeout",
                },
            },
            "action": {"type": "retry", "delay_seconds": 10, "max_attempts": 3},
            "circuit_breaker": {"max_executions": 100, "time_window_hours": 1},
        }
        result.append(Published.of(parse_workflow(doc, source="bench"), version=1))
    return result


STREAMS = ROOT / "tests" / "data" / "streams"
REAL_FAILURE_RATE = 0.07
_ID_FIELDS = ("uuid", "root_id", "parent_id")


def write_real_stream(path: Path, events: int) -> tuple[int, int, int]:
    """Recorded streams scaled up to ``events`` lines: (lines, tasks, failed tasks)."""
    rounds: list[list[dict[str, Any]]] = []
    failed_ids: set[str] = set()
    all_ids: set[str] = set()
    ok_groups: dict[str, list[dict[str, Any]]] = {}
    for stream in sorted(STREAMS.glob("*.jsonl")):
        lines = [json.loads(x) for x in stream.read_text().splitlines() if x.strip()]
        rounds.append(lines)
        for event in lines:
            if "uuid" in event:
                all_ids.add(event["uuid"])
                if event["type"] == "task-failed":
                    failed_ids.add(event["uuid"])
        for event in lines:
            if "uuid" in event and event["uuid"] not in failed_ids:
                ok_groups.setdefault(event["uuid"], []).append(event)
    # Successful tasks again (new ids) until failures are REAL_FAILURE_RATE of the tasks.
    extra_tasks = int(len(failed_ids) / REAL_FAILURE_RATE) - len(all_ids)
    groups = list(ok_groups.values())
    filler = [(f"-ok{i}", groups[i % len(groups)]) for i in range(max(0, extra_tasks))]
    span = 3600.0
    written = tasks = failed = 0
    with path.open("w") as out:
        copy = 0
        while written < events:
            shift = copy * span
            for lines in rounds:
                for event in lines:
                    out.write(json.dumps(_moved(event, f"-r{copy}", shift)) + "\n")
                    written += 1
            for suffix, group in filler:
                for event in group:
                    out.write(json.dumps(_moved(event, f"-r{copy}{suffix}", shift)) + "\n")
                    written += 1
            tasks += len(all_ids) + len(filler)
            failed += len(failed_ids)
            copy += 1
    return written, tasks, failed


def _moved(event: dict[str, Any], suffix: str, shift: float) -> dict[str, Any]:
    moved = dict(event)
    for key in _ID_FIELDS:
        if moved.get(key):
            moved[key] = moved[key] + suffix
    for key in ("timestamp", "local_received"):
        if key in moved:
            moved[key] = moved[key] + shift
    return moved


def real_workflows(matching: bool) -> list[Published]:
    result = []
    for i in range(100):
        pattern = "demo.tasks.*" if matching and i == 0 else f"other.tasks.t{i}"
        doc = {
            "name": f"wf {i}",
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": pattern}},
            "action": {"type": "retry", "delay_seconds": 10, "max_attempts": 3},
            "circuit_breaker": {"max_executions": 1_000_000, "time_window_hours": 1},
        }
        result.append(Published.of(parse_workflow(doc, source="bench"), version=1))
    return result


def run_real(events: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "real.jsonl"
        total, tasks, failed = write_real_stream(path, events)
        size_mb = path.stat().st_size / 1e6
        print(
            f"real recorded streams, scaled: {total} lines, {size_mb:.0f} MB, {tasks} tasks, "
            f"{failed} failed ({failed / tasks:.1%})"
        )
        sets = {"failures": real_workflows(True), "nothing matches": real_workflows(False)}
        base_rate = 0.0
        rates = dict.fromkeys(sets, 0.0)
        stats: dict[str, ReplayStats] = {}
        for _ in range(repeat):
            count, seconds = baseline(path)
            base_rate = max(base_rate, count / seconds)
            for name, published in sets.items():
                _, seconds, stats[name] = run_replay(path, published)
                rates[name] = max(rates[name], stats[name].lines / seconds)
        print(f"  baseline json.loads: {base_rate:,.0f} lines/s")
        for name in sets:
            print(
                f"  replay, {name}: {rates[name]:,.0f} lines/s, ratio "
                f"{rates[name] / base_rate:.2f} of baseline; executions "
                f"{dict(stats[name].outcomes)}"
            )


def baseline(path: Path) -> tuple[int, float]:
    start = time.perf_counter()
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            json.loads(line)
            count += 1
    return count, time.perf_counter() - start


def run_replay(path: Path, published: list[Published]) -> tuple[int, float, ReplayStats]:
    stats = ReplayStats()
    start = time.perf_counter()
    with path.open("rb") as lines, open("/dev/null", "w") as sink:
        for record in replay(published, lines, cluster="bench", stats=stats):
            sink.write(record.to_json() + "\n")
    return stats.events, time.perf_counter() - start, stats


def per_event(path: Path, published: list[Published], repeat: int) -> dict[str, float]:
    """Microseconds per event of each part, best of ``repeat``: translation alone, the
    engine alone (events parsed beforehand), and the whole ``replay()``."""
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    parsed = [e for e in (parse_line(orjson.loads(line), "bench") for line in lines) if e]
    best = {"translation": 1e9, "engine": 1e9, "replay": 1e9}
    for _ in range(repeat):
        start = time.perf_counter()
        for line in lines:
            parse_line(orjson.loads(line), "bench")
        best["translation"] = min(best["translation"], time.perf_counter() - start)
        engine, out = Engine(published, EngineConfig(dry_run=True)), Output()
        start = time.perf_counter()
        for event in parsed:
            engine.feed(event, out)
            out.clear()
        best["engine"] = min(best["engine"], time.perf_counter() - start)
        _, seconds, _ = run_replay(path, published)
        best["replay"] = min(best["replay"], seconds)
    return {part: seconds / len(lines) * 1e6 for part, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workflows", type=int, nargs="*", default=[10, 100, 1_000, 10_000])
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs; best is kept")
    parser.add_argument(
        "--per-event", action="store_true",
        help="also the cost per event of translation, the engine alone and replay() "
        "(100 workflows, back to back: steadier than ratios on a loaded machine)",
    )  # fmt: skip
    parser.add_argument("--real", action="store_true", help="real recorded streams too")
    parser.add_argument("--real-only", action="store_true", help="only the recorded streams")
    args = parser.parse_args()
    if args.real or args.real_only:
        run_real(args.events, args.repeat)
    if args.real_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        total = write_stream(path, args.events)
        size_mb = path.stat().st_size / 1e6
        print(f"stream: {total} events, {size_mb:.0f} MB; python {platform.python_version()}")
        published = {n: workflows(n) for n in args.workflows}
        base_rate = 0.0
        rates = dict.fromkeys(args.workflows, 0.0)
        stats: dict[int, ReplayStats] = {}
        # Interleave the baseline and every size in each round, keep each one's best:
        # a noisy neighbour then slows one round, not one measurement series.
        for _ in range(args.repeat):
            count, seconds = baseline(path)
            base_rate = max(base_rate, count / seconds)
            for n in args.workflows:
                events, seconds, stats[n] = run_replay(path, published[n])
                rates[n] = max(rates[n], events / seconds)
        print(f"baseline json.loads: {base_rate:,.0f} events/s")
        for n in args.workflows:
            print(
                f"replay, {n:>6} workflows: {rates[n]:,.0f} events/s, "
                f"ratio {rates[n] / base_rate:.2f} of baseline; {stats[n].triggers} triggers, "
                f"executions {dict(stats[n].outcomes)}"
            )
        if 10 in rates and 10_000 in rates:
            print(f"10,000 vs 10 workflows: {rates[10_000] / rates[10]:.2f}")
        if args.per_event:
            costs = per_event(path, workflows(100), args.repeat)
            print("per event, 100 workflows: " + ", ".join(
                f"{part} {micros:.2f} us" for part, micros in costs.items()
            ))  # fmt: skip


if __name__ == "__main__":
    main()
