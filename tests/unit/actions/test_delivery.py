"""The in-process record of delivered action ids."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flowguard.actions.delivery import DeliveredCache


def test_claim_confirm_release() -> None:
    cache = DeliveredCache(max_size=10)
    assert cache.claim("a")
    assert not cache.claim("a"), "in flight"
    cache.release("a")
    assert cache.claim("a"), "a failed delivery may be tried again"
    cache.confirm("a")
    assert not cache.claim("a"), "delivered"


def test_the_least_recently_used_id_goes_first() -> None:
    cache = DeliveredCache(max_size=2)
    for action_id in ("a", "b"):
        cache.claim(action_id)
        cache.confirm(action_id)
    assert not cache.claim("a")  # touching "a" makes "b" the oldest
    cache.claim("c")
    cache.confirm("c")
    assert len(cache) == 2
    assert cache.claim("b")
    assert not cache.claim("a")


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.booleans()), max_size=60),
    st.integers(min_value=1, max_value=4),
)
def test_never_two_claims_at_once_and_bounded(ops: list[tuple[str, bool]], size: int) -> None:
    cache = DeliveredCache(max_size=size)
    for action_id, succeeds in ops:
        if cache.claim(action_id):
            assert not cache.claim(action_id)
            (cache.confirm if succeeds else cache.release)(action_id)
        assert len(cache) <= size
