"""Command ids carried out, kept in Redis, so that each command is carried out once (see
``bridge/commands.py``).

A claim goes through three states:

- ``preparing by <attempt> since <time>``: claimed; the command is being routed and its queue
  checked (an ``inspect`` that may wait seconds for the workers). Nothing was sent yet, so an
  attempt that stops here (a SIGKILL, a lost partition) leaves the command to the next one,
  which takes the claim over.
- ``sending since <time>``: set, from this attempt's own ``preparing`` claim and only from it,
  right before ``send_task``. An attempt that stops here may or may not have sent: the command
  is in doubt, and is not sent again.
- the outcome (``done: ...``, ``failed: ...``).

The two compare-and-set steps are one Redis script each, so two attempts can never both pass
from ``preparing`` to ``sending``: one taken over finds its claim gone and sends nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from redis.asyncio import Redis

from topics.record import iso

#: Set ARGV[2] (with the TTL ARGV[3]) only if the key still holds ARGV[1]; delete it when
#: ARGV[2] is empty.
_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
"""

PREPARING = "preparing"
SENDING = "sending"


@dataclass
class Claim:
    """What this attempt holds (``value`` as stored), or what an earlier claim says."""

    held: bool
    value: str


class DedupStore:
    """Command ids carried out, in Redis: ``preparing``, ``sending``, then the outcome."""

    def __init__(self, redis: Redis, cluster: str, ttl_seconds: int, where: str = "") -> None:
        self.redis = redis
        self.where = where  # for logs: the URL with its password masked
        self.prefix = f"flowguard:bridge:{cluster}:command:"
        self.ttl = ttl_seconds
        self._swap = redis.register_script(_SWAP)

    async def claim(self, command_id: str) -> Claim:
        """Held when claimed now, or taken over from an attempt that stopped before it began
        to send (``preparing``: whoever reads the command again owns its partition now; were
        the other attempt alive, its :meth:`begin` fails and it sends nothing). Else what the
        earlier claim says (``sending ...``: in doubt; an outcome: carried out)."""
        key = self.prefix + command_id
        mine = f"{PREPARING} by {uuid.uuid4().hex[:12]} since {iso(time.time())}"
        while True:
            if await self.redis.set(key, mine, nx=True, ex=self.ttl):
                return Claim(True, mine)
            raw = await self.redis.get(key)
            if raw is None:
                continue  # released or expired meanwhile: claim it afresh
            previous = raw.decode() if isinstance(raw, bytes) else str(raw)
            if not previous.startswith(PREPARING):
                return Claim(False, previous)
            if await self._swap(keys=[key], args=[previous, mine, self.ttl]):
                return Claim(True, mine)

    async def begin(self, command_id: str, claim: Claim) -> bool:
        """Right before acting: ``sending``, if the claim is still this attempt's (False: it
        was taken over, and this attempt must not act)."""
        sending = f"{SENDING} since {iso(time.time())}"
        key = self.prefix + command_id
        if not await self._swap(keys=[key], args=[claim.value, sending, self.ttl]):
            return False
        claim.value = sending
        return True

    async def settle(self, command_id: str, claim: Claim, outcome: str) -> bool:
        """The outcome, in place of this attempt's claim and only of it (False: another attempt
        took the claim over while this one prepared, and the command is that one's now; an
        attempt that refused to send must not write its refusal over the claim of one that
        may still send). After :meth:`begin` nobody can take the claim over: only its TTL
        running out can make this False, and then the outcome is written where nothing is."""
        key = self.prefix + command_id
        if await self._swap(keys=[key], args=[claim.value, outcome, self.ttl]):
            return True
        if claim.value.startswith(SENDING):
            return bool(await self.redis.set(key, outcome, nx=True, ex=self.ttl))
        return False

    async def release(self, command_id: str, claim: Claim) -> None:
        """Give the claim up (nothing was sent), unless another attempt holds it now."""
        await self._swap(keys=[self.prefix + command_id], args=[claim.value, "", self.ttl])
