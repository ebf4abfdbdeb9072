"""Two bridges on one cluster: one is SIGKILLed and restarted mid-stream, nothing is lost,
nothing runs twice.

Celery's events on Redis are pub/sub: what the workers broadcast while a lone bridge
restarts is gone (docs/reliability.md's bridge trials lost exactly those). With a second
bridge every event reaches Kafka at least once, and most twice: the engine must take each
repeat for the same event (tests/unit/engine/test_two_bridges.py checks that on recorded
streams; this checks it on the live path, with real processes). With the second bridge
left out, the failures broadcast during the restart are never retried and this test fails.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flowguard.demo.celery_app import recorded_calls
from tests.e2e.conftest import CLUSTER, Stack, stays
from tests.e2e.test_live_resilience import FLAKY, FailureStream, retry_workflow
from tests.helpers import wait_until
from tests.processes import bridge_process

WORKFLOW = "retry-pair"
FAILURES = 40


def test_a_bridge_of_a_pair_killed_mid_stream_loses_nothing_and_runs_nothing_twice(
    stack: Stack,
) -> None:
    second = bridge_process(
        stack.tmp, cluster=CLUSTER, broker=stack.broker, kafka=stack.kafka,
        prefix=stack.prefix, name="bridge-2", commit_interval_seconds="0",
    ).start()  # fmt: skip
    stack.extra.append(second)
    second.wait_for_log("consuming Celery events")
    stack.apply(retry_workflow(WORKFLOW, delay_seconds=0))
    stack.flowguard.wait_for_log(f"workflow {WORKFLOW} version 1 enabled")

    def flaky(n: int) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
        return f"pair-{n:03d}", FLAKY, (n,), {"fail_times": 1, "key": f"pair-{n}"}

    with FailureStream(stack.client, flaky, interval_seconds=0.1, limit=FAILURES) as stream:
        wait_until(lambda: len(stream.sent) >= 10, timeout_seconds=30, what="10 tasks sent")
        stack.bridge.kill()  # SIGKILL, then a restart: about 2 s without it
        stack.bridge.start()
        stream.finish(30)
    stack.bridge.wait_for_log("consuming Celery events")
    originals = stream.task_ids
    assert len(originals) == FAILURES

    def runs() -> Counter[str]:
        return Counter(c["root_id"] or c["task_id"] for c in recorded_calls(stack.calls))

    def all_retried() -> Counter[str] | None:
        found = runs()
        return found if all(found[t] >= 2 for t in originals) else None

    try:
        wait_until(all_retried, timeout_seconds=60, what="a retry of every task to run")
    except AssertionError as exc:
        missing = [t for t in originals if runs()[t] < 2]
        raise AssertionError(f"{exc}: {len(missing)} never retried: {missing}") from None

    def twice() -> dict[str, int]:
        return {t: n for t, n in runs().items() if n > 2}

    stays(twice, 3, what="a task run more than once again")
    executions: dict[str, set[str]] = {}
    for record in stack.records(WORKFLOW):
        executions.setdefault(record["task"]["id"], set()).add(record["execution_id"])
    assert {t: len(e) for t, e in executions.items() if len(e) > 1} == {}
    assert set(executions) >= set(originals)
    failed = [
        e for e in stack.events.poll()
        if e.get("kind") == "task.failed" and e.get("task_id") in set(originals)
    ]  # fmt: skip
    assert len(failed) > FAILURES, "both bridges published the failures: most came twice"
