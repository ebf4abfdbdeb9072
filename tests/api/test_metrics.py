"""GET /metrics on the API: Prometheus' text format, without a token (docs/operations.md)."""

from __future__ import annotations

import pytest

from tests.api.server import Served


@pytest.mark.integration
def test_the_api_serves_prometheus_metrics_without_a_token(served: Served) -> None:
    with served.client(role=None) as client:
        reply = client.get("/metrics")
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE flowguard_events_total counter" in reply.text
    assert "python_info{" in reply.text
