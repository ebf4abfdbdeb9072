"""A minimal Faust app for the stack test: count per key in a table, emit each new count.

Run as ``python tests/integration/faust_counter.py worker``; configured by
FG_APP_ID, FG_KAFKA, FG_IN and FG_OUT.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

app = faust.App(
    os.environ["FG_APP_ID"],
    broker=f"kafka://{os.environ['FG_KAFKA']}",
    store="memory://",
    web_enabled=False,
    topic_partitions=1,
    topic_replication_factor=1,
    producer_acks=-1,
)
source = app.topic(os.environ["FG_IN"], key_type=bytes, value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ["FG_OUT"], key_type=bytes, value_type=bytes, value_serializer="raw")
counts = app.Table("counts", default=int, partitions=1)


@app.agent(source)
async def count(stream: AsyncIterator[tuple[bytes, bytes]]) -> None:
    async for key, _value in stream.items():  # type: ignore[attr-defined]
        name = key.decode()
        counts[name] += 1
        await sink.send(key=key, value=f"{name}={counts[name]}".encode())


if __name__ == "__main__":
    app.main()
