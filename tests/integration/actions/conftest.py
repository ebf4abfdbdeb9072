"""Fixtures for tests that talk HTTP to real local servers.

Other suites use them with ``from tests.integration.actions.conftest import http_server``
(or ``http_servers``) in their own conftest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.httpserver import RecordingServer


@pytest.fixture
def http_server() -> Iterator[RecordingServer]:
    """A recording HTTP server on 127.0.0.1 (see tests/httpserver.py), stopped after the test."""
    with RecordingServer() as server:
        yield server


@pytest.fixture
def http_servers() -> Iterator[Callable[[], RecordingServer]]:
    """A factory of recording servers, each on its own port; all stopped after the test."""
    started: list[RecordingServer] = []

    def start() -> RecordingServer:
        server = RecordingServer()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()
