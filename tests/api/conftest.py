"""Fixtures: the real API app on a local port, against the real Kafka broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import Served, serve


@pytest.fixture
def served(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Served]:
    """The API with this test's own topics and history file."""
    with serve(kafka_bootstrap, topic_prefix, tmp_path / "history") as found:
        yield found
