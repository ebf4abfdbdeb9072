"""A real bridge on real Kafka carries out only commands flowguard signed.

Whoever can write to ``<prefix>.commands`` writes forged commands straight to the topic: one
unsigned, one signed with a key the bridge does not have, one signed and then altered, and a
signed retry of a task outside the bridge's allowlist. Each is refused (a ``failed`` result
naming the reason; the forged ones also a DLQ record, and a result that names no execution),
and the real Celery worker never receives them, while the properly signed command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import redis

from flowguard.demo.celery_app import recorded_calls
from tests.helpers import wait_until
from tests.integration.bridge.test_bridge_commands import (
    CLUSTER,
    results_for,
    retry_of,
    start_bridge,
)
from tests.processes import (
    TEST_COMMAND_KEY,
    TopicReader,
    celery_worker,
    produce,
    start_worker,
)
from topics.signing import CommandKey, sign


def test_forged_commands_are_refused_and_never_run_while_a_signed_one_runs(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    worker = start_worker(celery_worker(tmp_path, broker))
    bridge = start_bridge(tmp_path, broker, kafka_bootstrap, topics,
                          bridge_allowed_tasks="demo.tasks.*")  # fmt: skip
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    dlq = TopicReader(kafka_bootstrap, f"{topics}.dlq")
    calls_db = redis.Redis.from_url(broker)
    key = CommandKey.parse(TEST_COMMAND_KEY)
    wrong = CommandKey.parse(f"{key.key_id}:an-attackers-guess-of-the-key")
    unsigned = retry_of("t1", "c-unsigned")
    wrong_key = sign(retry_of("t1", "c-wrong-key"), wrong)
    altered = json.loads(sign(retry_of("t1", "c-altered"), key).model_dump_json())
    altered["args"] = "(666,)"
    not_allowed = sign(retry_of("t1", "c-not-allowed", name="payments.process_payment",
                                args="(1, '4242')", kwargs="{}"), key)  # fmt: skip
    good = sign(retry_of("t1", "c-good", kwargs="{'fail_times': 0}"), key)
    forged_ids = [unsigned.task_id, wrong_key.task_id, altered["task_id"], not_allowed.task_id]
    try:
        values = [
            unsigned.model_dump_json(), wrong_key.model_dump_json(), json.dumps(altered),
            not_allowed.model_dump_json(), good.model_dump_json(),
        ]  # fmt: skip
        # One key, one partition: the bridge reads them in this order.
        produce(kafka_bootstrap, f"{topics}.commands",
                [(CLUSTER.encode(), value.encode()) for value in values])  # fmt: skip
        [good_result] = results_for(results, "c-good", 1)
        refused_ids = ("c-unsigned", "c-wrong-key", "c-altered", "c-not-allowed")
        refused = {cid: results_for(results, cid, 1)[0] for cid in refused_ids}
        letters = dlq.wait_for(lambda v: v if len(v) >= 3 else None, timeout=30,
                               what="3 dead letters")  # fmt: skip
        wait_until(lambda: "flaky_network[t1-retry-c-good] succeeded" in worker.log(),
                   timeout_seconds=30, what="the signed retry to run")  # fmt: skip
        assert bridge.alive()
    finally:
        bridge.stop()
        worker.stop()
    assert good_result["status"] == "done"
    assert good_result["execution_id"] == "exec-c-good"
    assert {cid: r["status"] for cid, r in refused.items()} == dict.fromkeys(refused, "failed")
    assert refused["c-unsigned"]["detail"] == "refused: unsigned"
    assert refused["c-wrong-key"]["detail"].startswith("refused: bad signature (key 'test-1')")
    assert refused["c-altered"]["detail"].startswith("refused: bad signature (key 'test-1')")
    assert refused["c-not-allowed"]["detail"] == (
        "refused: task 'payments.process_payment' is not in this bridge's allowed tasks "
        "(FLOWGUARD_BRIDGE_ALLOWED_TASKS)"
    )
    # A forged result names no execution (its ids are the forger's word); a signed one does.
    for cid in ("c-unsigned", "c-wrong-key", "c-altered"):
        assert (refused[cid]["workflow_id"], refused[cid]["execution_id"]) == (None, None)
    assert refused["c-not-allowed"]["execution_id"] == "exec-c-not-allowed"
    assert [letter["reason"] for letter in letters] == [
        f"command c-unsigned (command.retry) {refused['c-unsigned']['detail']}",
        f"command c-wrong-key (command.retry) {refused['c-wrong-key']['detail']}",
        f"command c-altered (command.retry) {refused['c-altered']['detail']}",
    ]
    assert json.loads(letters[2]["raw"]) == altered
    # The Celery worker never received them; only the signed one ran.
    log = worker.log()
    assert not [task_id for task_id in forged_ids if task_id in log]
    assert [c["task_id"] for c in recorded_calls(calls_db)] == ["t1-retry-c-good"]
