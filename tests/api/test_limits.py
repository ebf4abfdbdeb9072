"""Bounded input (issue 16, item 3): every limit answers before the API holds the input.

Bodies are sent over raw sockets, so the test controls what the server could have read:
a declared length it refuses without reading, a chunked stream it must stop counting.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.server import TOKENS, Served, serve
from tests.helpers import wait_until

CHUNK = b"x" * 65536


@pytest.fixture
def small(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Iterator[Served]:
    """The API with small limits, so a test sends little to pass them."""
    with serve(
        kafka_bootstrap,
        topic_prefix,
        tmp_path / "history",
        max_body_bytes=256 * 1024,
        max_yaml_bytes=2000,
        test_max_events=3,
    ) as found:
        yield found


def _connect(served: Served) -> socket.socket:
    host, port = served.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _status(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the answer; what arrived before the server closed counts."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no answer at all"
    return int(head.split(b" ")[1]), body


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class _PeakRss:
    """The highest RSS of this process (the API serves from a thread in it) while it runs."""

    def __init__(self) -> None:
        self.base = _rss_kib()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_kib())

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_an_unauthenticated_streamed_20mb_body_is_refused_early(served: Served) -> None:
    sent = 0
    with _PeakRss() as rss, _connect(served) as sock:
        sock.sendall(
            b"POST /api/test HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        started = time.monotonic()
        try:
            while sent < 20 * 1024 * 1024:
                sock.sendall(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
                sent += len(CHUNK)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while sending: what should happen
        status, body = _status(sock)
        seconds = time.monotonic() - started
    assert status == 413, body
    assert b"too_large" in body
    grew_mib = (rss.peak - rss.base) / 1024
    assert grew_mib < 8, f"the API's RSS grew by {grew_mib:.1f} MiB for a refused body"
    assert sent < 20 * 1024 * 1024, "the whole body was taken before the refusal"
    print(f"refused after {sent / 1024:.0f} KiB sent, {seconds:.3f} s, RSS +{grew_mib:.1f} MiB")


def test_a_declared_length_over_the_limit_is_refused_before_the_body(small: Served) -> None:
    with _connect(small) as sock:
        # Authenticated, 200 MB declared, not one byte of body sent.
        sock.sendall(
            b"POST /api/test HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKENS["editor"].encode() + b"\r\n"
            b"Content-Length: 209715200\r\n\r\n"
        )
        status, body = _status(sock)
    assert status == 413, body
    assert b"262144 bytes" in body


def test_an_authenticated_body_over_the_limit_is_refused(small: Served) -> None:
    with small.client("editor") as client:
        answer = client.post("/api/test", content=b"[" + b" " * 300_000 + b"]")
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_large"


def test_oversized_headers_are_refused(small: Served) -> None:
    with small.client("viewer") as client:
        answer = client.get("/api/me", headers={"X-Filler": "a" * 20_000})
    assert answer.status_code == 431
    assert answer.json()["error"]["code"] == "headers_too_large"


def test_yaml_over_the_limit_is_refused_naming_the_field(small: Served) -> None:
    text = "name: big\n" + "# filler\n" * 400
    with small.client("editor") as client:
        for path, body in (
            ("/api/validate", {"yaml": text}),
            ("/api/import", {"yaml": text}),
            ("/api/test", {"yaml": text, "events_jsonl": ""}),
        ):
            answer = client.post(path, json=body)
            assert answer.status_code == 413, (path, answer.text)
            assert answer.json()["error"]["problems"][0]["field"] == "yaml", path


def test_too_many_events_in_a_test_are_refused_naming_the_field(small: Served) -> None:
    draft = {"name": "t", "trigger": {"event": "task.failed"}, "action": {"type": "retry"}}
    lines = "\n".join('{"type": "worker-heartbeat"}' for _ in range(4))
    with small.client("editor") as client:
        answer = client.post("/api/test", json={"definition": draft, "events_jsonl": lines})
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"]["problems"][0]["field"] == "events_jsonl"


def test_rss_helper_sees_memory() -> None:
    """The RSS watch would see a 20 MiB read: it is not blind."""
    with _PeakRss() as rss:
        held = b"\x01" * (20 * 1024 * 1024)
        wait_until(lambda: rss.peak - rss.base > 15 * 1024, timeout_seconds=5, what="the watch")
    assert len(held) == 20 * 1024 * 1024
