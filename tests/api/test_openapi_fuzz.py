"""Schemathesis over /openapi.json against the real app: no 500, responses match the schema."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.api.server import TOKENS, Served, serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fuzzed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    prefix = f"fg-fuzz-{uuid.uuid4().hex[:8]}"
    with serve(kafka_bootstrap, prefix, tmp_path_factory.mktemp("history")) as found:
        with found.client("editor") as api:
            template = Path(
                "flowguard/control/workflow_templates/auto-retry-network-errors.yaml"
            ).read_text()
            api.post("/api/workflows", json={"yaml": template}).raise_for_status()
        yield found


def _schema(served: Served) -> OpenApiSchema:
    loaded = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    assert isinstance(loaded, OpenApiSchema)
    return loaded


def test_no_operation_answers_500(fuzzed: Served) -> None:
    schema = _schema(fuzzed)
    failures: list[str] = []
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy()

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKENS['admin']}"}
            response = case.call(base_url=fuzzed.base_url, timeout=60)
            calls.append(case.method)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
            assert response.status_code < 500, response.text

        given(strategy)(check)()
    assert not failures
    operations = len(list(schema.get_all_operations()))
    assert operations >= 20, "every route is in /openapi.json"
    assert len(calls) > operations * 5, "each operation got several generated requests"
