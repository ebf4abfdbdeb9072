"""Fault trials: effects once under a steady load of real Celery failures, through a SIGKILL.

Each trial runs a whole stack of its own on a Kafka broker of the bench's own (started from
``deploy/kafka/start`` on its own port, so a trial may kill it): a real Celery worker of the
demo app on a private Redis, its bridge, two ``flowguard worker`` processes, a recording
webhook endpoint, and two workflows: retry ``flaky_network`` (fails once, then succeeds) after
1 s, and a webhook for every ``always_fails``. ``--failures`` of each are sent over
``--seconds``; at a random moment one process of the trial's kind is SIGKILLed and started
again at once:

- ``worker``: one of the flowguard workers;
- ``bridge``: the bridge (with ``--bridges 2``, one of a pair);
- ``kafka``: the Kafka broker (the whole trial waits for it to come back);
- ``redis``: the Celery cluster's Redis (its broker, and the bridge's command claims), run as
  production runs it: append-only file, ``appendfsync always``; restarted on the same port and
  data, so Celery's workers, the bridge and the test's client reconnect.

Then it waits (up to ``--settle``) for every effect and counts, per trial: **lost** (a
failure with no execution, a flaky task not run again, a notice never delivered), **twice**
(a retry run more than once, a notice delivered more than once: the repeat carries the same
``Idempotency-Key``), and the **recovery** time (from the kill to the last effect).

    python bench/trials.py --kinds worker bridge kafka --trials 3      # about 10 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402
from celery import Celery  # noqa: E402

from flowguard.control.kafka_admin import create_topics, delete_topics  # noqa: E402
from flowguard.control.store import WorkflowStore  # noqa: E402
from flowguard.demo.celery_app import recorded_calls  # noqa: E402
from flowguard.errors import KafkaUnavailable  # noqa: E402
from tests.e2e.conftest import flowguard_worker  # noqa: E402
from tests.httpserver import RecordingServer  # noqa: E402
from tests.processes import (  # noqa: E402
    Process,
    TopicReader,
    bridge_process,
    celery_worker,
    free_port,
    start_worker,
)

KAFKA_PORT = int(os.environ.get("TRIALS_KAFKA_PORT", 29292))


@dataclass
class Result:
    kind: str
    lost: int
    #: The lost, by what was missing: failures never decided, flaky tasks not run again,
    #: notices never delivered.
    undecided: int
    not_retried: int
    not_notified: int
    twice: int
    repeats_same_key: int
    recovery_seconds: float | None


def kafka(action: str, home: Path) -> str:
    env = {
        **os.environ,
        "FLOWGUARD_HOME": str(home),
        "FLOWGUARD_KAFKA_PORT": str(KAFKA_PORT),
        "FLOWGUARD_KAFKA_CONTROLLER_PORT": str(KAFKA_PORT + 1),
    }
    out = subprocess.run(
        [str(ROOT / "deploy" / "kafka" / action)], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"deploy/kafka/{action} failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def kill_kafka(home: Path, bootstrap: str, prefix: str) -> None:
    """SIGKILL the broker (its pid file), start it again, and wait until it serves every
    partition of the trial's topics: it answers metadata requests well before it has loaded
    every partition's log (a thousand of them on a bench broker; a trial once got
    NotLeaderForPartition more than two minutes after the restart). The trial's settle time
    starts from there, so that it measures flowguard's recovery, not the broker's."""
    pidfile = home / "kafka" / str(KAFKA_PORT) / "kafka.pid"
    if not pidfile.exists():
        pidfile = next(home.rglob("kafka.pid"))
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    started = time.monotonic()
    # The signal is sent, not yet carried out: a start while the old JVM still holds the port
    # fails ("port is taken"), and broke one kafka trial in seven.
    while Path(f"/proc/{pid}").exists() and time.monotonic() < started + 30:
        threading.Event().wait(0.05)
    kafka("start", home)
    asyncio.run(serving(bootstrap, prefix, deadline=started + 600))
    print(f"  the broker serves every partition again {time.monotonic() - started:.1f}s after "
          "the kill", flush=True)  # fmt: skip


async def serving(bootstrap: str, prefix: str, deadline: float) -> None:
    """Until the broker answers the end offsets of every partition of ``prefix``'s topics."""
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await consumer.start()
            topics = [t for t in await consumer.topics() if t.startswith(prefix)]
            tps = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in consumer.partitions_for_topic(topic) or ()
            ]
            await consumer.end_offsets(tps)
            return
        except KafkaError:
            if time.monotonic() > deadline:
                raise
        finally:
            await consumer.stop()
        await asyncio.sleep(1.0)  # pacing between two questions


class Redis:
    """A Celery broker Redis that survives a SIGKILL as a durable production one does."""

    def __init__(self, tmp: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed (deploy/setup-system)")
        self.port, self.data = free_port(), tmp / "redis-data"
        self.data.mkdir()
        self.argv = [server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "yes", "--appendfsync", "always",
                     "--dir", str(self.data)]  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = tmp / "redis.log"
        self.proc = self.start()

    def start(self) -> Process:
        proc = Process("redis", self.argv, self.log, dict(os.environ)).start()
        proc.wait_for_log("Ready to accept connections", timeout=20)
        self.proc = proc
        return proc

    def kill_and_restart(self) -> None:
        self.proc.kill()
        self.log.write_text("")  # wait for the new server's line, not the old one's
        self.start()


def workflows(url: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "Retry flaky calls",
            "trigger": {
                "event": "task.failed",
                "conditions": {"task_name_pattern": "demo.tasks.flaky_network"},
            },
            "action": {"type": "retry", "delay_seconds": 1, "max_attempts": 1},
        },
        {
            "name": "Tell on hard failures",
            "trigger": {
                "event": "task.failed",
                "conditions": {"task_name_pattern": "demo.tasks.always_fails"},
            },
            "action": {"type": "webhook", "url": url},
        },
    ]


def save_workflows(bootstrap: str, prefix: str, hook: str) -> None:
    async def save() -> None:
        async with WorkflowStore(bootstrap, prefix) as store:
            for definition in workflows(hook):
                await store.save(definition, saved_by="trials")

    for _ in range(60):  # a topic just created may not be in every answer yet
        try:
            asyncio.run(save())
            return
        except KafkaUnavailable:
            threading.Event().wait(0.5)
    raise KafkaUnavailable(f"the workflows of {prefix} could not be saved")


def trial(kind: str, number: int, args: argparse.Namespace, home: Path, bootstrap: str) -> Result:
    rng = random.Random(f"{kind}-{number}")
    prefix = f"trial-{kind}-{number}-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    print(f"trial {kind} {number}: logs in {tmp}", flush=True)
    asyncio.run(create_topics(bootstrap, prefix, 30))
    redis_server = Redis(tmp)
    broker = redis_server.url
    with RecordingServer() as hooks:
        save_workflows(bootstrap, prefix, hooks.url_for("/hook"))
        celery = start_worker(celery_worker(tmp, broker))
        bridges = [
            bridge_process(
                tmp, cluster="prod", broker=broker, kafka=bootstrap, prefix=prefix,
                name="bridge" if n == 0 else f"bridge-{n + 1}",
            ).start()
            for n in range(args.bridges)
        ]  # fmt: skip
        processes: list[Process] = [celery, *bridges]
        workers = [flowguard_worker(tmp, bootstrap, prefix, f"fg{n}").start() for n in (1, 2)]
        processes += workers
        try:
            for bridge in bridges:
                bridge.wait_for_log("consuming Celery events")
            for worker in workers:
                worker.wait_for_log("workflows loaded from", timeout=120)
            client = Celery("trials", broker=broker)
            kill_at = rng.uniform(1.0, args.seconds - 1.0)

            def killer() -> None:
                threading.Event().wait(kill_at)
                if kind == "worker":
                    victim = workers.pop(rng.randrange(len(workers)))
                    victim.kill()
                    replacement = flowguard_worker(tmp, bootstrap, prefix, f"fg{3 + number}")
                    workers.append(replacement.start())
                    processes.append(replacement)
                elif kind == "bridge":
                    victim = rng.choice(bridges)  # the other of a pair runs on
                    victim.kill()
                    victim.start()
                elif kind == "redis":
                    redis_server.kill_and_restart()
                else:
                    kill_kafka(home, bootstrap, prefix)

            started = time.monotonic()
            thread = threading.Thread(target=killer, daemon=True)
            thread.start()
            pause = threading.Event()
            for n in range(args.failures):
                send(client, "demo.tasks.always_fails", (f"c-{n}",), {}, f"hard-{n}")
                send(client, "demo.tasks.flaky_network", (n,),
                     {"fail_times": 1, "key": f"k-{n}"}, f"flaky-{n}")  # fmt: skip
                pause.wait(args.seconds / args.failures)
            thread.join(timeout=300)
            killed_at = started + kill_at
            result = _count(kind, args, hooks, broker, bootstrap, prefix, killed_at, tmp)
        finally:
            for proc in processes:
                proc.kill()
            redis_server.proc.kill()
            asyncio.run(delete_topics(bootstrap, prefix, 30))
    if result.lost == 0 and result.twice == 0 and result.repeats_same_key == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # a clean trial's logs (and Redis' file) go
    return result


def dump(bootstrap: str, prefix: str, into: Path) -> None:
    """A trial that lost something: keep what Kafka holds (records with partition and offset,
    the worker group's committed offsets) beside the processes' logs, to find where it went."""
    for topic in ("events", "triggers", "execution-log", "deliveries", "commands",
                  "app-chains-changelog"):  # fmt: skip
        name = f"{prefix}-{topic}" if topic.startswith("app-") else f"{prefix}.{topic}"
        reader = TopicReader(bootstrap, name)
        reader.poll()
        with (into / f"dump-{topic}.jsonl").open("w") as out:
            for key, value, partition, offset in reader.records:
                row = {"p": partition, "o": offset, "key": key.decode() if key else None}
                out.write(json.dumps({**row, "value": value}) + "\n")

    async def committed() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(f"{prefix}-app")
            return {f"{tp.topic}[{tp.partition}]": meta.offset for tp, meta in offsets.items()}
        finally:
            await admin.close()

    (into / "dump-committed.json").write_text(json.dumps(asyncio.run(committed()), indent=1))
    print(f"  lost something: Kafka's records dumped into {into}", flush=True)


def send(client: Celery, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
         task_id: str) -> None:  # fmt: skip
    """Send as an application does while its broker restarts: retried until it is taken."""
    client.send_task(name, args, kwargs, task_id=task_id, retry=True,
                     retry_policy={"max_retries": None, "interval_start": 0.2,
                                   "interval_step": 0.2, "interval_max": 1.0})  # fmt: skip


def _count(
    kind: str, args: argparse.Namespace, hooks: RecordingServer, broker: str, bootstrap: str,
    prefix: str, killed_at: float, tmp: Path,
) -> Result:  # fmt: skip
    calls = redis.Redis.from_url(broker)
    log = TopicReader(bootstrap, f"{prefix}.execution-log")
    deadline = time.monotonic() + args.settle
    last_change, seen = time.monotonic(), None
    complete: float | None = None
    while time.monotonic() < deadline:
        runs = Counter(
            c["task_id"] for c in recorded_calls(calls) if c["name"].endswith("flaky_network")
        )
        keys = Counter(r.headers.get("idempotency-key") for r in hooks.requests("/hook"))
        decided = {r["task"]["id"] for r in log.poll() if r["seq"] == 0 and r["task"]}
        state = (sum(runs.values()), len(keys), len(decided))
        if state != seen:
            seen, last_change = state, time.monotonic()
        retried = [t for t in runs if not t.startswith("flaky-")]
        if (
            len(retried) >= args.failures
            and len(keys) >= args.failures
            and len(decided) >= 2 * args.failures
        ):
            complete = complete or time.monotonic()
            # Everything is there; a repeat may still come (a takeover re-reads the outbox
            # after the group's session times out), so watch on for a while.
            if time.monotonic() >= max(complete + args.watch, killed_at + args.watch_after_kill):
                break
        threading.Event().wait(0.5)
    flaky_retries = Counter(
        c["root_id"] for c in recorded_calls(calls)
        if c["name"].endswith("flaky_network") and c["task_id"] != c["root_id"]
    )  # fmt: skip
    keys = Counter(r.headers.get("idempotency-key") for r in hooks.requests("/hook"))
    decided = {r["task"]["id"] for r in log.poll() if r["seq"] == 0 and r["task"]}
    undecided = 2 * args.failures - len(decided)
    not_retried = args.failures - len(flaky_retries)
    not_notified = args.failures - len(keys)
    lost = undecided + not_retried + not_notified
    twice = sum(n - 1 for n in flaky_retries.values() if n > 1)
    repeats = sum(n - 1 for n in keys.values() if n > 1)
    recovery = last_change - killed_at if lost == 0 else None
    if lost:
        dump(bootstrap, prefix, tmp)
    return Result(kind, lost, undecided, not_retried, not_notified, twice, repeats, recovery)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kinds", nargs="+", default=["worker", "bridge", "kafka"],
                        choices=["worker", "bridge", "kafka", "redis"])  # fmt: skip
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--bridges", type=int, default=1,
        help="bridges on the cluster (2: a pair, each publishing every event; docs/bridge.md)",
    )  # fmt: skip
    parser.add_argument("--failures", type=int, default=20, help="of each kind, per trial")
    parser.add_argument("--seconds", type=float, default=10.0, help="the load's duration")
    parser.add_argument("--settle", type=float, default=120.0, help="the wait for effects")
    parser.add_argument(
        "--watch", type=float, default=5.0,
        help="once every effect is seen, watch on this long for repeats",
    )  # fmt: skip
    parser.add_argument(
        "--watch-after-kill", type=float, default=30.0,
        help="and at least this long after the kill (a takeover waits for the session timeout)",
    )  # fmt: skip
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trials-kafka-"))
    bootstrap = kafka("start", home)
    results: list[Result] = []
    errors: list[str] = []
    try:
        for kind in args.kinds:
            for number in range(args.trials):
                try:
                    result = trial(kind, number, args, home, bootstrap)
                except Exception as error:  # a trial that broke is reported, the batch goes on
                    print(f"trial {kind} {number} broke: {error!r}", flush=True)
                    errors.append(f"{kind} {number}")
                    bootstrap = kafka("start", home)  # a no-op unless the broker is gone
                    continue
                results.append(result)
                print(result, flush=True)
    finally:
        kafka("stop", home)
    print(
        "| kind | trials | lost | retried twice | notices repeated (one key) | recovery p50 / max |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for kind in args.kinds:
        mine = [r for r in results if r.kind == kind]
        times = [r.recovery_seconds for r in mine if r.recovery_seconds is not None]
        spread = f"{statistics.median(times):.1f} / {max(times):.1f} s" if times else "n/a"
        print(
            f"| {kind} | {len(mine)} | {sum(r.lost for r in mine)} | "
            f"{sum(r.twice for r in mine)} | {sum(r.repeats_same_key for r in mine)} | {spread} |"
        )
    if errors:
        print(f"trials that broke (not counted): {', '.join(errors)}")


if __name__ == "__main__":
    main()
