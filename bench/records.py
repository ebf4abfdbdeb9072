"""Benchmark: one execution record built and serialized, in microseconds.

``decide()`` for a failed task matched by an auto-retry workflow (record, retry command,
breaker), then the record's wire JSON, as the deciding stage does once per execution. Best of
``--repeat`` rounds of ``--count`` decisions; each part also alone.

    python bench/records.py
    python bench/records.py --profile     # cProfile of the loop, top 15 by own time
    python bench/records.py --parts       # the record alone: validated vs built
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flowguard.engine.breaker import BreakerState  # noqa: E402
from flowguard.engine.decision import decide  # noqa: E402
from flowguard.engine.documents import parse_workflow  # noqa: E402
from flowguard.engine.matching import Published  # noqa: E402
from topics.execution import ConditionResult, ExecutionRecord  # noqa: E402
from topics.record import built  # noqa: E402
from topics.triggers import TaskContext, Trigger  # noqa: E402


def fixture() -> tuple[Published, list[Trigger], list[ConditionResult]]:
    doc = {
        "name": "auto retry",
        "trigger": {
            "event": "task.failed",
            "conditions": {"task_name_pattern": "app.tasks.*", "error_pattern": "Connection"},
        },
        "action": {"type": "retry", "delay_seconds": 10, "max_attempts": 3},
        "circuit_breaker": {"max_executions": 1_000_000, "time_window_hours": 1},
    }
    published = Published.of(parse_workflow(doc, source="bench"), version=3)
    triggers = [
        Trigger(
            trigger_id=f"trig-{i}",
            event="task.failed",
            at=1_760_000_000.0 + i,
            cluster="prod",
            task=TaskContext(
                id=f"{i:08x}-7b8f-4a9e-9c1d-2b3f4a5c6d7e",
                root_id=f"{i:08x}-7b8f-4a9e-9c1d-2b3f4a5c6d7e",
                name="app.tasks.charge",
                queue="celery",
                routing_key="celery",
                worker="celery@w1",
                args=f"({i}, 'customer-{i % 977}')",
                kwargs="{}",
                exception="ConnectionError('Connection refused')",
                exception_type="ConnectionError",
                error_message="Connection refused",
                failure_count=1,
            ),
        )
        for i in range(1000)
    ]
    conditions = [
        ConditionResult(name="task_name_pattern", value="app.tasks.*", matched=True),
        ConditionResult(name="error_pattern", value="Connection", matched=True),
    ]
    return published, triggers, conditions


def loop(published: Published, triggers: list[Trigger], conditions: list[ConditionResult]) -> None:
    for trigger in triggers:
        decision = decide(
            published, trigger, conditions, breaker=BreakerState(), retries_made=0, dry_run=False
        )
        decision.record.to_json()


def record_parts(
    published: Published, triggers: list[Trigger], conditions: list[ConditionResult], repeat: int
) -> None:
    """The record alone, from parts that are already models (as ``_finish`` has them)."""
    skip = ("schema_", "kind", "seq", "recorded_at")
    fields = [
        {k: v for k, v in record.__dict__.items() if k not in skip}
        for record in (
            decide(
                published, t, conditions, breaker=BreakerState(), retries_made=0, dry_run=False
            ).record
            for t in triggers
        )
    ]
    best = {"model_validate + to_json": 1e9, "built + to_json": 1e9}
    for _ in range(repeat):
        start = time.perf_counter()
        for f in fields:
            ExecutionRecord.model_validate(f).to_json()
        best["model_validate + to_json"] = min(
            best["model_validate + to_json"], time.perf_counter() - start
        )
        start = time.perf_counter()
        for f in fields:
            built(ExecutionRecord, **f).to_json()
        best["built + to_json"] = min(best["built + to_json"], time.perf_counter() - start)
    print(
        "the record alone: "
        + ", ".join(f"{part} {s / len(fields) * 1e6:.1f} us" for part, s in best.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--parts", action="store_true",
        help="only the record itself: validated from its parts vs built, each serialized",
    )  # fmt: skip
    args = parser.parse_args()
    published, triggers, conditions = fixture()
    if args.parts:
        record_parts(published, triggers, conditions, args.repeat)
        return
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(loop, published, triggers * 5, conditions)
        pstats.Stats(profile).sort_stats("tottime").print_stats(15)
        return
    best = {"decide + to_json": 1e9, "decide": 1e9, "to_json": 1e9}
    for _ in range(args.repeat):
        start = time.perf_counter()
        loop(published, triggers, conditions)
        best["decide + to_json"] = min(best["decide + to_json"], time.perf_counter() - start)
        start = time.perf_counter()
        records = [
            decide(
                published, t, conditions, breaker=BreakerState(), retries_made=0, dry_run=False
            ).record
            for t in triggers
        ]
        best["decide"] = min(best["decide"], time.perf_counter() - start)
        start = time.perf_counter()
        for record in records:
            record.to_json()
        best["to_json"] = min(best["to_json"], time.perf_counter() - start)
    print(
        "one execution record: "
        + ", ".join(f"{part} {s / len(triggers) * 1e6:.1f} us" for part, s in best.items())
    )


if __name__ == "__main__":
    main()
