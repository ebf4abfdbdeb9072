"""Ask a Kafka broker for its metadata, with the standard library only.

Used by deploy/kafka/start before any virtualenv exists: sends ApiVersions v0
and Metadata v4 over one connection and prints the number of brokers.
Exit 0 when at least one broker is registered, 1 otherwise.

With ``--tls CAFILE`` (a SASL_SSL listener, see secure.sh) it checks the broker's certificate
against CAFILE and asks ApiVersions only: Metadata would need a SASL login first, and the broker
answers on its client listener only once it has started. Exit 0 when ApiVersions answers.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys


def _request(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> bytes:
    client = b"flowguard-probe"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _read(sock, 4))[0]
    response = _read(sock, size)
    if struct.unpack(">i", response[:4])[0] != corr:
        raise OSError("correlation id mismatch")
    return response[4:]


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def brokers(host: str, port: int, timeout: float) -> int:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        versions = _request(sock, 18, 0, 1, b"")
        if struct.unpack(">h", versions[:2])[0] != 0:
            raise OSError("ApiVersions failed")
        # Metadata v4: all topics (null array), no auto-creation.
        metadata = _request(sock, 3, 4, 2, struct.pack(">ib", -1, 0))
        return int(struct.unpack(">i", metadata[4:8])[0])


def answers_over_tls(host: str, port: int, cafile: str, timeout: float) -> int:
    context = ssl.create_default_context(cafile=cafile)
    with (
        socket.create_connection((host, port), timeout=timeout) as raw,
        context.wrap_socket(raw, server_hostname=host) as sock,
    ):
        sock.settimeout(timeout)
        versions = _request(sock, 18, 0, 1, b"")
        if struct.unpack(">h", versions[:2])[0] != 0:
            raise OSError("ApiVersions failed")
    return 1


def main() -> int:
    args = sys.argv[1:]
    cafile = None
    if args[:1] == ["--tls"]:
        cafile, args = args[1], args[2:]
    host, port = args[0], int(args[1])
    try:
        if cafile is None:
            count = brokers(host, port, timeout=3.0)
        else:
            count = answers_over_tls(host, port, cafile, timeout=3.0)
    except OSError as exc:
        print(f"no answer: {exc}", file=sys.stderr)
        return 1
    print(count)
    return 0 if count >= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
