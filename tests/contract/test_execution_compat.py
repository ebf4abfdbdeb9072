"""The execution log's compatibility promise, checked: a consumer built against
``flowguard.execution/1`` as published (``tests/contract/execution-v1.schema.json``, a frozen
copy of ``topics/schemas/execution.schema.json`` taken when the promise was made; never update
it) reads the records of every later flowguard.

- every record flowguard writes today validates against the frozen schema;
- a later version's record, with fields v1 never had (at the top and nested), still does;
- the current schema keeps every v1 field with its v1 type, and everything v1 required;
- a record that really breaks v1 (a required field gone, a type or enum changed) does not
  validate: these checks can fail.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from flowguard.control.workflow_files import load_workflows
from flowguard.control.workflow_templates import TEMPLATE_DIR
from flowguard.engine.documents import parse_workflow
from flowguard.engine.matching import Published
from flowguard.replay import replay
from tests.unit.control.records import record
from topics.execution import ExecutionRecord
from topics.registry import EXECUTION_LOG

REPO = Path(__file__).resolve().parents[2]
FROZEN = json.loads((Path(__file__).parent / "execution-v1.schema.json").read_text())
CURRENT = json.loads((REPO / "topics" / "schemas" / "execution.schema.json").read_text())
STREAMS = REPO / "tests" / "data" / "streams"
V1 = Draft202012Validator(FROZEN)


def _problems(document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in V1.iter_errors(document)]


WORKER_DOWN = {
    "name": "Worker down",
    "trigger": {"event": "worker.offline"},
    "actions": [{"type": "webhook", "url": "https://hooks.example.com/down"}],
}


def _replayed() -> Iterator[ExecutionRecord]:
    """Records the engine makes today: the shipped templates and a worker.offline workflow
    over every recorded stream."""
    workflows = [i.workflow for i in load_workflows(TEMPLATE_DIR)]
    workflows.append(parse_workflow(WORKER_DOWN, source="test"))
    published = [Published.of(w, version=1) for w in workflows]
    for stream in sorted(STREAMS.glob("*.jsonl")):
        with stream.open("rb") as lines:
            yield from replay(published, lines)


def _today() -> list[dict[str, Any]]:
    made = list(_replayed())
    made += [record(i, seq=i % 3) for i in range(30)]
    return [json.loads(r.to_json()) for r in made]


def test_the_frozen_schema_is_v1() -> None:
    assert FROZEN["$id"] == "flowguard.execution/1"
    assert CURRENT["$id"] == "flowguard.execution/1", "a breaking change is a new schema id"


def test_todays_records_validate_against_v1() -> None:
    documents = _today()
    assert len(documents) > 30
    assert any(d["worker"] for d in documents)
    assert any(d["task"] for d in documents)
    assert {d["outcome"] for d in documents} == {"success", "failure", "skipped"}
    for document in documents:
        assert _problems(document) == [], document["execution_id"]


def _later(document: dict[str, Any]) -> dict[str, Any]:
    """What a later version might write: new optional fields everywhere a reader looks."""
    later = copy.deepcopy(document)
    later["tenant"] = {"id": "t-1", "labels": ["eu"]}
    later["decision_latency_seconds"] = 0.042
    later["workflow"]["owner"] = "payments-team"
    later["trigger"]["source_offset"] = 1234
    later["circuit_breaker"]["half_open"] = False
    if later.get("task"):
        later["task"]["priority"] = 5
    for action in later["actions"]:
        action["latency_seconds"] = 0.1
    for condition in later["conditions"]:
        condition["note"] = "new"
    return later


def test_a_later_versions_new_optional_fields_do_not_break_v1_readers() -> None:
    for document in _today():
        assert _problems(_later(document)) == [], document["execution_id"]


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda d: d.pop("execution_id"), id="required field gone"),
        pytest.param(lambda d: d.update(seq="1"), id="seq as a string"),
        pytest.param(lambda d: d.update(outcome="exploded"), id="new outcome value"),
        pytest.param(lambda d: d["workflow"].update(version=-1), id="version below 0"),
        pytest.param(lambda d: d["circuit_breaker"].pop("state"), id="nested required gone"),
        pytest.param(lambda d: d.update(schema="flowguard.execution/2"), id="another schema"),
    ],
)
def test_a_breaking_change_is_caught(breakage: Any) -> None:
    document = json.loads(record(1).to_json())
    assert _problems(document) == []
    breakage(document)
    assert _problems(document) != []


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _shape(schema: Any, root: dict[str, Any]) -> Any:
    """A schema's meaning for a reader: references resolved, prose and defaults left out.

    An object's properties are left out too: :func:`_fields` compares each one on its own path,
    so a new optional nested field (``task.fingerprint``) is growth, not a changed ``task``.
    """
    if isinstance(schema, dict):
        schema = _resolve(schema, root)
        return {
            k: _shape(v, root)
            for k, v in schema.items()
            if k not in ("description", "title", "default", "examples", "properties")
        }
    if isinstance(schema, list):
        return [_shape(v, root) for v in schema]
    return schema


def _fields(
    schema: dict[str, Any], root: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, Any, bool]]:
    """(path, shape, required) of every property, nested objects included."""
    schema = _resolve(schema, root)
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        where = f"{path}{name}"
        yield where, _shape(sub, root), name in required
        for option in [sub, *sub.get("anyOf", ()), sub.get("items", {})]:
            option = _resolve(option, root)
            if option.get("type") == "object" or "properties" in option:
                yield from _fields(option, root, where + ".")
            elif option.get("type") == "array" and isinstance(option.get("items"), dict):
                yield from _fields(option["items"], root, where + "[].")


def test_the_current_schema_only_grew_compatibly() -> None:
    frozen = {p: (shape, req) for p, shape, req in _fields(FROZEN, FROZEN)}
    current = {p: (shape, req) for p, shape, req in _fields(CURRENT, CURRENT)}
    assert len(frozen) > 50
    for path, (shape, required) in frozen.items():
        assert path in current, f"{path}: a v1 field was removed"
        assert current[path][0] == shape, f"{path}: its type or values changed since v1"
        if required:
            assert current[path][1], f"{path}: v1 readers rely on it, it must stay required"
    for path, (_, required) in current.items():
        parent = path.rpartition(".")[0]
        if path not in frozen and (parent == "" or parent in frozen):
            assert not required, f"{path}: a new field must be optional (v1 records lack it)"


def test_the_topic_is_as_documented() -> None:
    """docs/execution-log.md's table: name, partitions, never compacted, kept forever."""
    assert EXECUTION_LOG.name("flowguard") == "flowguard.execution-log"
    assert EXECUTION_LOG.partitions == 6
    assert EXECUTION_LOG.public
    assert EXECUTION_LOG.config() == {"cleanup.policy": "delete", "retention.ms": "-1"}


def test_replayed_records_say_so() -> None:
    """docs/execution-log.md: replay's records are dry runs with no recorded_at."""
    replayed = list(_replayed())
    assert replayed
    assert all(r.dry_run and r.recorded_at is None for r in replayed)
