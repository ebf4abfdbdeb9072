"""The demo says the UI is ready only once the API answers, and says why when it does not."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click
import pytest

from flowguard.api.settings import ApiSettings
from flowguard.demo.run import api_url, wait_for_api


class _SlowStart(BaseHTTPRequestHandler):
    """503 for the first requests (an API still starting), then 200."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        ready = self.path == "/api/health" and type(self).calls > 3
        self.send_response(200 if ready else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _SlowStart.calls = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _SlowStart)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_waits_until_the_api_answers(server: str, tmp_path: Path) -> None:
    wait_for_api(server, None, log=tmp_path / "api.log", timeout_seconds=30)
    assert _SlowStart.calls == 4


def test_a_silent_api_is_a_clear_error_at_the_deadline(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(click.ClickException) as caught:
        wait_for_api(url, None, log=tmp_path / "api.log", timeout_seconds=0.5)
    message = caught.value.message
    assert f"the API at {url} did not answer in 0.5 s" in message
    assert str(tmp_path / "api.log") in message


def test_an_api_that_exits_is_reported_at_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(click.ClickException, match=r"the API exited \(status 3\)"):
        wait_for_api(f"http://127.0.0.1:{_closed_port()}", proc, log=tmp_path / "api.log")


def test_the_url_reaches_a_wildcard_listener_on_loopback() -> None:
    assert api_url(ApiSettings(host="0.0.0.0", port=9000)) == "http://127.0.0.1:9000"
    assert api_url(ApiSettings(host="10.0.0.5", port=80)) == "http://10.0.0.5:80"
