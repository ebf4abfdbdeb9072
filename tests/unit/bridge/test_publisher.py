"""bridge/publisher.py: the partition the publisher picks is the one aiokafka's default would.

The publisher hands aiokafka whole record batches per partition, so it picks partitions
itself; a key must land where every other producer of that key (Faust, a plain ``send``)
puts it. Delivery itself is tested against real Kafka in tests/integration/bridge.
"""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from bridge.publisher import _key_hash


@given(st.binary(min_size=0, max_size=200), st.integers(1, 64))
def test_same_partition_as_aiokafkas_default_partitioner(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partitions[_key_hash(key) % count] == expected


def test_key_hash_is_kafkas_murmur2() -> None:
    """Vectors from Kafka's own UtilsTest (signed murmur2), masked positive as Kafka does."""
    for key, java in ((b"21", -973932308), (b"foobar", -790332482), (b"abc", 479470107)):
        assert _key_hash(key) == java & 0x7FFFFFFF
