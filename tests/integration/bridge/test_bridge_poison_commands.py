"""Commands that cannot be carried out end neither the runner nor the bridge: a record with
bad fields goes to the DLQ (capped), an error nobody foresaw fails that command alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.integration.bridge.test_bridge_commands import (
    CLUSTER,
    results_for,
    results_of,
    start_bridge,
)
from tests.integration.bridge.test_bridge_routing import bridge, charge_retry
from tests.processes import TEST_COMMAND_KEY, TopicReader, produce
from topics.record import iso
from topics.signing import CommandKey, signature_of


def test_a_command_with_bad_fields_goes_to_the_dlq_capped_and_the_bridge_goes_on(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    process = start_bridge(tmp_path, broker, kafka_bootstrap, topics,
                           max_record_bytes="80000")  # fmt: skip
    results = TopicReader(kafka_bootstrap, f"{topics}.command-results")
    dlq = TopicReader(kafka_bootstrap, f"{topics}.dlq")
    revoke = {
        "kind": "command.revoke", "command_id": "c-soon", "cluster": CLUSTER,
        "issued_at": "soon", "task_id": "t-x",
    }  # fmt: skip
    huge = {**revoke, "command_id": "c-huge", "task_id": "t" * 200_000}
    ok = {**revoke, "command_id": "c-ok", "issued_at": iso(time.time())}
    ok["signature"] = signature_of(ok, CommandKey.parse(TEST_COMMAND_KEY))
    try:
        produce(kafka_bootstrap, f"{topics}.commands",
                [(b"k", json.dumps(c).encode()) for c in (revoke, huge, ok)])  # fmt: skip
        [result] = results_for(results, "c-ok", 1)  # the command after them is carried out
        letters = dlq.wait_for(lambda v: v if len(v) >= 2 else None, timeout=30,
                               what="2 dead letters")  # fmt: skip
        assert process.alive()
    finally:
        process.stop()
    assert result["status"] == "done"
    soon, cut = letters
    assert soon["reason"] == (
        "command refused: command.revoke.issued_at: Value error, expected an ISO 8601 time "
        "such as 2026-12-04T10:00:00Z"
    )
    assert json.loads(soon["raw"]) == revoke
    size = len(json.dumps(huge))
    assert cut["reason"].endswith(f"; raw cut to its first 10000 of {size} bytes")
    assert len(cut["raw"]) == 10000
    assert "Traceback" not in process.log()


def test_an_unforeseen_error_fails_that_command_and_the_bridge_goes_on(
    tmp_path: Path, broker: str, kafka_bootstrap: str, topics: str
) -> None:
    """The app's own router raises for one task (no worker needed: nothing reaches one)."""
    process = bridge(tmp_path, broker, kafka_bootstrap, topics, with_app=True)
    broken, after = results_of(process, kafka_bootstrap, topics,
                               charge_retry("c-broken", name="routed.broken"),
                               charge_retry("c-after", queue="payments"))  # fmt: skip
    assert broken["status"] == "failed"
    assert broken["detail"] == "unexpected error: RuntimeError: router lookup failed"
    assert after["status"] == "done"
    log = process.log()
    assert "command c-broken (command.retry, task pay-1-retry-c-broken; partition" in log
    assert "RuntimeError: router lookup failed" in log  # with its traceback, for whoever looks
