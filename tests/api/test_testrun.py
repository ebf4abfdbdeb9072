"""Test Workflow prints what `flowguard replay` prints, and says per trigger why (not) fired."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from flowguard.api.testrun import run_test
from flowguard.cli import main
from flowguard.control.workflow_templates import TEMPLATE_DIR
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published

REPO = Path(__file__).resolve().parents[2]
STREAMS = sorted((REPO / "tests" / "data" / "streams").glob("*.jsonl"))
TEMPLATES = sorted((TEMPLATE_DIR).glob("*.yaml"))


def _replay_cli(workflow: Path, stream: Path) -> list[str]:
    """`flowguard replay --workflows W --events S`, in process: its stdout lines."""
    result = CliRunner().invoke(
        main, ["replay", "--workflows", str(workflow), "--events", str(stream)]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.stem)
def test_records_equal_flowguard_replay_on_every_recorded_stream(template: Path) -> None:
    workflow = parse_workflow(
        yaml.safe_load(template.read_text()), source=str(template), default_name=template.stem
    )
    fired = 0
    for stream in STREAMS:
        with stream.open("rb") as lines:
            result = run_test(Published.of(workflow), lines, cluster="default")
        expected = _replay_cli(template, stream)
        assert [r.to_json() for r in result.records] == expected, stream.name
        fired += len(expected)
        executions = {r.execution_id for r in result.records}
        assert executions == {e for v in result.verdicts if v.fired for e in v.execution_ids}
        for verdict in result.verdicts:
            assert verdict.event == workflow.trigger.event
            assert verdict.fired or verdict.reason
    assert fired > 0, "no template fired on any stream: the comparison would prove nothing"


def test_verdicts_say_which_condition_did_not_match() -> None:
    workflow = parse_workflow(
        {
            "name": "only billing",
            "trigger": {"event": "task.failed", "conditions": {"task_name_pattern": "billing.*"}},
            "action": {"type": "retry"},
        },
        source="test",
    )
    with (REPO / "tests/data/streams/basic.jsonl").open("rb") as lines:
        result = run_test(Published.of(workflow), lines, cluster="default")
    assert result.verdicts, "basic.jsonl has failures"
    assert all(not v.fired for v in result.verdicts)
    assert all("task_name_pattern" in v.reason for v in result.verdicts)
    assert result.stats.triggers >= len(result.verdicts)


def test_malformed_lines_are_reported_with_their_number() -> None:
    workflow = parse_workflow(
        {"name": "w", "trigger": {"event": "task.failed"}, "action": {"type": "retry"}},
        source="test",
    )
    result = run_test(Published.of(workflow), [b"{not json\n", b"\n", b"[]\n"], cluster="c")
    assert [m.line for m in result.malformed] == [1, 3]
    assert result.stats.malformed == 2
