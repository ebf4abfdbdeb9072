"""``flowguard history``'s table keeps its columns whatever the length of a workflow id."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from click.testing import CliRunner

from flowguard.cli import main as cli
from tests.integration.control.test_history_log import produce
from tests.unit.control.records import record
from topics.execution import WorkflowRef

SHORT = "auto-retry"
LONG = "retry-payment-provider-timeouts-eu"  # longer than the old 28-character column
HUGE = "escalate-" + "x" * 70  # longer than the widest a column grows: cut with an ellipsis


def test_columns_stay_aligned_with_long_workflow_ids(
    cli_env: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = time.time()
    ids = (SHORT, LONG, HUGE)
    records = [
        record(i, at=now - 60 * i).model_copy(
            update={"workflow": WorkflowRef(id=ids[i], name=ids[i], version=1)}
        )
        for i in range(3)
    ]
    asyncio.run(produce(kafka_bootstrap, cli_env, records))

    result = CliRunner().invoke(cli, ["history", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    starts = {name: header.index(name) for name in ("WORKFLOW", "TRIGGER ", "TASK", "OUTCOME")}
    assert len(rows) == 3
    for i, row in enumerate(rows):
        cells = {
            "WORKFLOW": ids[i][:39],
            "TRIGGER ": records[i].trigger.event.removeprefix("task."),
            "TASK": f"app.tasks.t{i} task-{i}",
            "OUTCOME": records[i].outcome,
        }
        for column, text in cells.items():
            at = starts[column]
            assert row[at:].startswith(text), f"row {i}: {column} not at {at}:\n{header}\n{row}"
            assert row[at - 1] == " ", f"row {i}: the cell before {column} runs into it:\n{row}"
    assert HUGE not in rows[2]
    assert rows[2][starts["WORKFLOW"] :].startswith(HUGE[:39] + "…")
