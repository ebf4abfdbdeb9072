"""Benchmark: failure -> retry command on a realistic feed, through a real bridge (issue 18).

The feed is sent the way Celery clusters send it: Celery's own event dispatcher
(``app.events.Dispatcher``) on a private ``redis-server``, one client host sending task-sent
and ``--hosts`` worker hosts (4) each running overlapping tasks (received, started, then
succeeded or failed after a runtime drawn from an exponential law, mean 50 ms, capped at 2 s),
5% of them failing with ``ConnectionError``, worker heartbeats every 2 s. Every dispatcher
buffers task events as a prefork worker does (``buffer_group`` task, ``buffer_limit`` 24: a
message is sent when 24 events are buffered) and flushes what it holds every ``--flush-ms``
(50 ms), the turn of a busy worker's loop. Between it and the worker: a real
``flowguard-bridge`` (``tests.processes.bridge_process``, INFO logging, commands on) publishing
to the run's topics on the dev Kafka, and ``--workers`` (1) ``flowguard worker`` processes
(bench/live.py's 100 retry workflows, delay 0), caught up: a probe failure got its retry
command before the feed starts. With ``--backlog N`` the worker first works through N events
(bench/live.py's backlog, produced straight to the events topic) and the feed starts once its
group has committed the end of the topic.

Per failure, in ms (p50 / p99 / max): the Celery event's time (set by the dispatcher when the
event is sent into its buffer) -> the bridge's record on Kafka (the record's timestamp, the
bridge producer's clock) -> the trigger matched (the ``trigger.matched`` record's timestamp,
the worker's clock) -> the retry command read by this process from ``<prefix>.commands``; and
end to end. Every failure must get exactly one retry command. The simple feed of bench/live.py
(one host, one task at a time, one event per Kafka record, no bridge) runs beside it with
``--simple``. Every run has its own topic prefix and deletes its topics at the end.

    python bench/latency.py --simple --backlog 0 100000        # about 4 minutes
    python bench/latency.py --seconds 4 --backlog 0            # quick

The first 2 s of the feed are reported apart (``WARMUP``). ``--dump FILE`` writes every
failure's four times; ``--profile DIR`` records the bridge and each worker with py-spy during
the feed (``pip install -e .[bench]``), summarized by ``python bench/stacks.py DIR/*.txt``.

Exit status 1 when a run saw no failure or a failure without exactly one retry command id
(tests/bench/test_latency.py runs a 2 s feed so).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celery import Celery  # noqa: E402

from bench import live  # noqa: E402
from bench._common import committed, end_offsets, members, percentile, read_stamped  # noqa: E402
from bench.bridge import KindReader, redis_server, subscribed  # noqa: E402
from tests.processes import bridge_process  # noqa: E402
from topics.registry import COMMANDS, EVENTS, TRIGGERS  # noqa: E402

TRACEBACK = "Traceback (most recent call last):\nConnectionError: refused\n"
#: The first seconds of the feed are reported apart, as bench/live.py's simple feed leaves out
#: its warm-up: the first records on a run's new topics are slower (docs/benchmarks.md).
WARMUP = 2.0
WARM = f"event -> retry command, first {WARMUP:g} s of the feed"


# --- the publisher (a child process) ----------------------------------------------------------


def publish(
    broker: str, rate: float, seconds: float, run: str, hosts: int, flush_ms: float, hot: float
) -> None:
    """Send ``rate`` task events/s for ``seconds`` (4 per task, tasks overlapping on ``hosts``
    worker hosts); prints how many events and failures were sent."""
    app, rng = Celery("bench-latency", broker=broker), random.Random(11)
    buffered: dict[str, Any] = {"buffer_group": ["task"], "buffer_limit": 24}
    due: list[tuple[float, int, int, str, dict[str, Any]]] = []  # (at, seq, host, type, fields)
    sent = failures = index = seq = messages = 0

    def buffered_send(dispatcher: Any, kind: str, **fields: Any) -> None:
        nonlocal messages
        dispatcher.send(kind, **fields)
        messages += not dispatcher._group_buffer["task"]  # it reached 24 events and was sent

    def flush(dispatcher: Any) -> None:
        nonlocal messages
        messages += bool(dispatcher._group_buffer["task"])
        dispatcher.flush()

    with app.connection_for_write() as conn:
        client = app.events.Dispatcher(conn, hostname="gen1@bench-client", **buffered)
        workers = [
            app.events.Dispatcher(conn, hostname=f"celery@host{h}", **buffered)
            for h in range(hosts)
        ]
        start = flushed = beat = time.time()
        while (now := time.time()) < start + seconds or due:
            while now < start + seconds and index < (now - start) * rate / 4:
                task, host = f"{run}-{index:08d}", rng.randrange(hosts)
                common = {"uuid": task, "name": live.pick_name(rng, hot), "root_id": task,
                          "args": f"({index}, 'customer-{index % 977}')", "kwargs": "{}",
                          "parent_id": None, "retries": 0, "eta": None,
                          "expires": None}  # fmt: skip
                buffered_send(client, "task-sent", queue="celery", exchange="",
                              routing_key="celery", **common)  # fmt: skip
                received = now + rng.uniform(0.001, 0.005)
                started = received + rng.uniform(0.0005, 0.002)
                ended = started + min(2.0, rng.expovariate(20.0))
                end: tuple[str, dict[str, Any]]
                if rng.random() < live.FAILURE_RATE:
                    end = ("task-failed", {"uuid": task, "exception": "ConnectionError('refused')",
                                           "traceback": TRACEBACK})  # fmt: skip
                    failures += 1
                else:
                    end = ("task-succeeded", {"uuid": task, "result": "None", "runtime": 0.05})
                for at, kind, fields in ((received, "task-received", common),
                                         (started, "task-started", {"uuid": task}),
                                         (ended, *end)):  # fmt: skip
                    heapq.heappush(due, (at, seq := seq + 1, host, kind, fields))
                sent += 4
                index += 1
            while due and due[0][0] <= now:
                _, _, host, kind, fields = heapq.heappop(due)
                buffered_send(workers[host], kind, **fields)
            if now - beat >= 2.0:
                beat = now
                for worker in workers:
                    worker.send("worker-heartbeat", freq=2.0, active=4, processed=index)
            if now - flushed >= flush_ms / 1000:
                flushed = now
                for dispatcher in (client, *workers):
                    flush(dispatcher)
            time.sleep(0.002)  # pacing the feed, not waiting for a result
        for dispatcher in (client, *workers):
            flush(dispatcher)
            dispatcher.close()
    print(json.dumps({"sent": sent, "failures": failures, "messages": messages}))


# --- the orchestrator -------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    """p50 / p99 / max of seconds, in ms."""
    if not values:
        return "- / - / -"
    ordered = [v * 1000 for v in values]
    p50, p99 = statistics.median(ordered), percentile(ordered, 0.99)
    return f"{p50:,.0f} / {p99:,.0f} / {max(ordered):,.0f}"


async def hops(bootstrap: str, prefix: str, run: str, arrived: dict[str, float]) -> dict[str, Any]:
    """Per failure of this feed: its times at each hop, and its retry commands counted."""
    failed: dict[str, tuple[float, float]] = {}  # task id -> (Celery time, bridge record)
    for _, _, value, stamp in await read_stamped(bootstrap, EVENTS.name(prefix)):
        event = json.loads(value or b"{}")
        if event.get("kind") == "task.failed" and event["task_id"].startswith(run):
            failed[event["task_id"]] = (event["timestamp"], stamp)
    matched: dict[str, float] = {}
    for _, _, value, stamp in await read_stamped(bootstrap, TRIGGERS.name(prefix)):
        record = json.loads(value or b"{}")
        if record.get("kind") == "trigger.matched" and record["trigger"].get("task"):
            matched.setdefault(record["trigger"]["task"]["id"], stamp)
    # Retry commands by the failure they retry: their distinct ids (a command is sent again
    # after a takeover with the same deterministic id, which the bridge sends once).
    commands: dict[str, set[str]] = defaultdict(set)
    records: Counter[str] = Counter()
    for _, _, value, _ in await read_stamped(bootstrap, COMMANDS.name(prefix)):
        command = json.loads(value or b"{}")
        commands[command.get("original_task_id", "")].add(command.get("task_id", ""))
        records[command.get("original_task_id", "")] += 1
    names = ("event -> bridge record", "bridge record -> matched", "matched -> retry command",
             "event -> retry command", WARM)  # fmt: skip
    rows: dict[str, list[float]] = {name: [] for name in names}
    timeline = []  # per failure: Celery time and its three stamps, for --dump
    start = min((at for at, _ in failed.values()), default=0.0)
    for task_id, (at, bridged) in failed.items():
        timeline.append((at, bridged, matched.get(task_id), arrived[task_id]))
        if at < start + WARMUP:
            rows[WARM].append(arrived[task_id] - at)
            continue
        rows["event -> bridge record"].append(bridged - at)
        if task_id in matched:
            rows["bridge record -> matched"].append(matched[task_id] - bridged)
            rows["matched -> retry command"].append(arrived[task_id] - matched[task_id])
        rows["event -> retry command"].append(arrived[task_id] - at)
    once = sum(1 for task_id in failed if len(commands[task_id]) == 1)
    again = sum(1 for task_id in failed if records[task_id] > 1)
    return {"failures": len(failed), "exactly_once": once, "again": again, "hops": rows,
            "timeline": sorted(timeline, key=lambda stamps: stamps[0])}  # fmt: skip


async def realistic(
    args: argparse.Namespace, broker: str, tmp: Path, backlog: int
) -> dict[str, Any]:
    prefix, run = f"bench-latency-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:6]
    bootstrap, arrived = args.bootstrap, dict[str, float]()
    try:
        await live.setup(bootstrap, prefix)
        bridge = bridge_process(tmp, cluster=live.CLUSTER, broker=broker, kafka=bootstrap,
                                prefix=prefix, name=f"bridge-{run}",
                                flags=("--log-level", "INFO"),
                                status_interval_seconds="5").start()  # the default  # fmt: skip
        try:
            await asyncio.to_thread(bridge.wait_for_log, "snapshot:", 60)
            reader = KindReader(bootstrap, EVENTS.name(prefix))
            seen = lambda: reader.seen("worker.heartbeat")  # noqa: E731
            await asyncio.to_thread(subscribed, broker, seen, "the bridge subscribed")
            workers = [live.Worker(bootstrap, prefix, tmp / f"worker-{run}-{i}.log")
                       for i in range(args.workers)]  # fmt: skip
            async with live.Tail(bootstrap, COMMANDS.name(prefix), COMMANDS.partitions) as tail:
                for worker in workers:
                    await worker.__aenter__()
                feeder = asyncio.create_task(live.read_commands(tail, arrived))
                try:
                    pids = {f"bridge-{backlog}": bridge.pid} | {
                        f"worker-{backlog}-{i}": w.proc.pid for i, w in enumerate(workers) if w.proc
                    }
                    result = await drive(args, broker, prefix, run, workers, arrived, backlog,
                                         pids)  # fmt: skip
                finally:
                    feeder.cancel()
                    await asyncio.gather(feeder, return_exceptions=True)
                    for worker in workers:
                        await worker.__aexit__()
        finally:
            bridge.stop(signal.SIGTERM)
        return result | await hops(bootstrap, prefix, run, arrived)
    finally:
        await live.teardown(bootstrap, prefix)


async def drive(args: argparse.Namespace, broker: str, prefix: str, run: str,
                workers: list[live.Worker], arrived: dict[str, float],
                backlog: int, pids: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """Probe, backlog, then the feed (profiled with ``--profile``); the workers' CPU over it."""
    bootstrap, topic = args.bootstrap, EVENTS.name(prefix)
    producer = live.new_producer(bootstrap)
    await producer.start()
    try:
        probe = live.Stream()
        probe.add(live.task("probe", live.NAMES[0], time.time(), "failed"))
        await live.produce(producer, topic, probe.items)

        async def up() -> bool:
            return "probe" in arrived

        async def joined() -> bool:
            return await members(bootstrap, workers[0].app_id) == len(workers)

        await live.until(joined, 120, f"a stable group of {len(workers)} workers", 0.5)
        await live.until(up, 180, "a retry command for the probe")
        took = backlog_cpu = 0.0
        if backlog:
            started, backlog_cpu = time.monotonic(), sum(w.cpu_seconds() for w in workers)
            await live.produce(producer, topic, live.backlog(backlog, hot=args.hot).items)

            ends = await end_offsets(bootstrap, topic)  # the bridge adds its status records

            async def idle() -> bool:
                done = await committed(bootstrap, workers[0].app_id, topic)
                return all(done.get(p, 0) >= end for p, end in ends.items())

            await live.until(idle, max(180.0, backlog / 200), "the end of the backlog", 0.5)
            took = time.monotonic() - started
            backlog_cpu = sum(w.cpu_seconds() for w in workers) - backlog_cpu
    finally:
        await producer.stop()
    cpu = sum(w.cpu_seconds() for w in workers)
    full_before = [await w.full_gc() for w in workers]
    argv = [sys.executable, __file__, "publish", broker, str(args.rate),
            str(WARMUP + args.seconds), run,
            str(args.hosts), str(args.flush_ms), str(args.hot)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    spies = [await profile(Path(args.profile), name, pid, WARMUP + args.seconds)
             for name, pid in pids.items()] if args.profile else []  # fmt: skip
    out, _ = await proc.communicate()
    for spy in spies:
        await spy.wait()
    if proc.returncode:
        sys.exit(f"the publisher failed ({proc.returncode})")
    fed = json.loads(out.decode().strip().splitlines()[-1])
    wanted = int(fed["failures"])

    async def answered() -> bool:
        return sum(1 for t in arrived if t.startswith(run)) >= wanted

    await live.until(answered, 120, f"retry commands for {wanted} failures")
    cpu = sum(w.cpu_seconds() for w in workers) - cpu
    rss = [w.rss_mb() for w in workers]
    full = [(after[0] - before[0], after[1] - before[1]) for after, before in
            zip([await w.full_gc() for w in workers], full_before, strict=True)]  # fmt: skip
    gc_full = (sum(n for n, _ in full), sum(seconds for _, seconds in full))
    return {"fed": fed, "backlog": backlog, "backlog_seconds": took, "rss": rss,
            "backlog_cpu_us": backlog_cpu / backlog * 1e6 if backlog else 0.0,
            "cpu_us": cpu / fed["sent"] * 1e6, "gc_full": gc_full}  # fmt: skip


async def profile(into: Path, name: str, pid: int, seconds: float) -> asyncio.subprocess.Process:
    """py-spy (``pip install -e .[bench]``) sampling ``pid`` for ``seconds``, every thread,
    idle ones too (a worker that waits is what a latency profile must show): collapsed stacks
    in ``into/name.txt``, summarized by ``python bench/stacks.py``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    into.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (once, before the feed)
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
            "--format", "raw", "--threads", "--idle", "--nonblocking",
            "--output", str(into / f"{name}.txt")]  # fmt: skip
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)  # fmt: skip


def report(args: argparse.Namespace, runs: list[dict[str, Any]], simple: list[dict[str, Any]],
           load: tuple[float, float]) -> None:  # fmt: skip
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, load average "
          f"{load[0]:.1f} at the start, {load[1]:.1f} at the end; {args.workers} worker "
          f"process(es); {args.hot:.0%} of tasks for one workflow; feed {args.rate:,.0f} "
          f"events/s for {WARMUP:g} + {args.seconds:g} s, {args.hosts} "
          f"hosts, flush every {args.flush_ms:g} ms\n")  # fmt: skip
    print("| feed | failures (with exactly one retry command id) | hop | p50 / p99 / max ms |")
    print("|---|---|---|---:|")
    for r in runs:
        fed = r["fed"]
        feed = (f"realistic, {fed['sent'] / (WARMUP + args.seconds):,.0f} events/s "
                f"({fed['sent'] / fed['messages']:.1f} task events per Celery message), "
                + (f"after a {r['backlog']:,}-event backlog ({r['backlog_seconds']:.1f} s: "
                   f"{r['backlog'] / r['backlog_seconds']:,.0f} events/s produced and worked "
                   f"through, {r['backlog_cpu_us']:.0f} µs worker CPU/event)"
                   if r["backlog"] else "fresh worker")
                + f"; worker CPU {r['cpu_us']:.0f} µs/event, RSS "
                + " + ".join(f"{mb:.0f}" for mb in r["rss"]) + " MB; full garbage "
                f"collections during the feed: {r['gc_full'][0]}, "
                f"{r['gc_full'][1] * 1000:.0f} ms")  # fmt: skip
        counted = f"{r['failures']} ({r['exactly_once']}; {r['again']} sent again, same id)"
        for hop, values in r["hops"].items():
            print(f"| {feed} | {counted} | {hop} | {ms(values)} |")
            feed = counted = ""
    for s in simple:
        print(f"| simple (bench/live.py), {s['rate']:,.0f} events/s, fresh worker "
              f"| {s['failures']} | event -> retry command "
              f"| {s['p50']:,.0f} / {s['p99']:,.0f} / {s['max']:,.0f} |")  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    runs, simple = [], []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(args.logs or name)
        with redis_server(tmp) as broker:
            for backlog in args.backlog:
                runs.append(await realistic(args, broker, tmp, backlog))
        if args.simple:
            simple.append(await live.latency(args.bootstrap, int(args.rate), args.seconds, tmp))
    report(args, runs, simple, (load, os.getloadavg()[0]))
    if args.dump:
        Path(args.dump).write_text(json.dumps([r["timeline"] for r in runs]))  # noqa: ASYNC240
    wrong = [r for r in runs if not r["failures"] or r["exactly_once"] != r["failures"]]
    if wrong:
        sys.exit(f"{len(wrong)} run(s) with no failure, or a failure without exactly one retry")


#: Numeric options: name, type, default, help.
OPTIONS: tuple[tuple[str, type, float, str], ...] = (
    ("--rate", float, 2000.0, "events/s of the feed"),
    ("--seconds", float, 20.0, "length of the feed"),
    ("--hosts", int, 4, "worker hosts"),
    ("--flush-ms", float, 50.0, "dispatcher flush period"),
    ("--workers", int, 1, "flowguard worker processes"),
    ("--hot", float, 0.0, "share of tasks named for one workflow (it takes most triggers)"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for option, kind, default, text in OPTIONS:
        parser.add_argument(option, type=kind, default=kind(default), help=text)
    parser.add_argument("--backlog", type=int, nargs="+", default=[0, 100_000],
                        help="one run per value: events worked through first")  # fmt: skip
    parser.add_argument("--simple", action="store_true", help="also bench/live.py's simple feed")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--logs", help="keep the processes' logs in this directory")
    parser.add_argument("--profile", help="record the bridge and the workers with py-spy during "
                        "the feed, into this directory")  # fmt: skip
    parser.add_argument("--dump", help="write each run's failures as JSON: [Celery time, bridge "
                        "record, matched, command read] in seconds since the epoch")  # fmt: skip
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "publish":
        broker, rate, seconds, run, hosts, flush_ms, hot = sys.argv[2:]
        publish(broker, float(rate), float(seconds), run, int(hosts), float(flush_ms), float(hot))
    else:
        main()
