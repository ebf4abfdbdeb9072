"""The action runner: deliver a notice once, within bounds, without leaking a secret.

One shared ``httpx.AsyncClient`` serves every action. Each endpoint (a URL
without its query) gets its own lane (``per_endpoint_concurrency`` requests in
flight, ``queue_size`` waiting; see :mod:`flowguard.actions.lanes`), so an
endpoint that hangs fills only its own lane and fails its own actions with
"queue full" while every other endpoint, on its host or another, is served as
before. A delivery is
bounded in total (``max_total_seconds``: waiting, attempts and backoff);
408/429/5xx and network errors are retried with capped, jittered backoff,
``Retry-After`` is honoured, and any other status is final.

The runner starts no tasks of its own: each ``deliver`` runs in its caller's
task, so the caller owns cancellation and shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from flowguard.actions._transport import make_client
from flowguard.actions.backoff import Verdict, backoff_seconds, retry_after_seconds, verdict
from flowguard.actions.delivery import DeliveredCache, DeliveryStore
from flowguard.actions.lanes import Lanes
from flowguard.actions.outbound import Context, Outbound, excerpt, scrub
from flowguard.actions.registry import preparer
from flowguard.actions.safety import check_url_target
from flowguard.actions.settings import ActionSettings
from flowguard.control.secrets import Keyring, SecretPolicy
from flowguard.engine.decision import Notice
from flowguard.errors import ActionFailed
from flowguard.logs import record_fields
from flowguard.settings import get_settings
from topics.execution import ActionResult

log = logging.getLogger("flowguard.actions")

# A claim outlives the delivery's own bound by this much before another process may take it.
_LEASE_MARGIN_SECONDS = 30.0
# URL targets (scheme, host) remembered as checked; past this many, checked every time.
_VETTED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes  # at most max_response_bytes; excerpted (and scrubbed) only when it is reported
    retry_after_seconds: float | None


class ActionRunner:
    """Delivers Slack, webhook and PagerDuty notices; see the module docstring."""

    def __init__(
        self,
        settings: ActionSettings | None = None,
        store: DeliveryStore | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        policy: SecretPolicy | None = None,
        keyring: Keyring | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or ActionSettings()
        self._store = store
        self._environ = environ
        # Which ${NAME} a workflow may read: the operator's setting unless a test gives one.
        self._policy = policy if policy is not None else get_settings().secret_policy()
        # Opens sealed workflow secrets: the operator's keys unless a test gives some.
        self._keyring = keyring if keyring is not None else get_settings().keyring()
        self._rng = rng or random.Random()
        self._clock = clock
        self._cache = DeliveredCache(self.settings.dedup_cache_size)
        self._lanes = Lanes(self.settings)
        self._vetted: set[tuple[str, str]] = set()
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open the shared HTTP client."""
        if self._client is None:
            self._client = make_client(self.settings)

    async def close(self) -> None:
        """Close the client (open connections with it) and the delivery store."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._store is not None:
            await self._store.close()

    async def __aenter__(self) -> ActionRunner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def deliver(self, notice: Notice, *, sample: bool = False) -> ActionResult:
        """Deliver ``notice`` once; the result says ``succeeded``, ``failed`` or ``skipped``.

        A sample (the Test Workflow button, ``replay --send-samples``) is marked
        as a test, tried once and never deduplicated: it neither consumes nor
        checks the action id that the real delivery will use.

        Never raises but :class:`asyncio.CancelledError`: the live app awaits this in a
        background task, and a raise would leave the execution without an outcome. Any
        other failure, a bug included, is a ``failed`` result with the reason.
        """
        kind, fields = notice.action.type, record_fields(notice.record)
        if self._client is None:
            log.error("action %s (%s): deliver() before start()", notice.action_id, kind,
                      extra=fields)  # fmt: skip
            return _result(notice, "failed", "the action runner was not started")
        if not sample and not await self._claim(notice.action_id):
            log.info("action %s (%s): skipped, already delivered", notice.action_id, kind,
                     extra=fields)  # fmt: skip
            return _result(notice, "skipped", "duplicate")
        delivered = False
        try:
            detail = await self._deliver(notice, sample)
            delivered = True
        except ActionFailed as exc:
            log.warning("action %s (%s) failed: %s", notice.action_id, kind, exc.reason,
                        extra=fields)  # fmt: skip
            return _result(notice, "failed", _sample(exc.reason, sample))
        except Exception as exc:  # a bug must still end in a result, never in a dead task
            reason = f"could not deliver: {type(exc).__name__} (a flowguard bug; see the log)"
            # The message may quote a secret (a header value, the URL); the stack does not.
            log.error(
                "action %s (%s): unexpected %s\n%s",
                notice.action_id,
                kind,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
                extra=fields,
            )
            return _result(notice, "failed", _sample(reason, sample))
        finally:
            if not sample:
                await self._settle(notice.action_id, delivered)
        log.info("action %s (%s) delivered: %s", notice.action_id, kind, detail, extra=fields)
        return _result(notice, "succeeded", _sample(detail, sample))

    async def _deliver(self, notice: Notice, sample: bool) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_total_seconds
        ctx = Context(
            self.settings, sample, self._clock(), self._environ, self._policy, self._keyring
        )
        out = preparer(notice.action.type)(notice, ctx)
        self._vet(out.url.scheme, out.url.host)
        attempts = out.retries + 1
        for number in range(1, attempts + 1):
            try:
                reply = await self._attempt(out, deadline)
            except _Transient as exc:
                reason, wait = exc.reason, None
            else:
                outcome = verdict(reply.status)
                if outcome is Verdict.DELIVERED:
                    return f"HTTP {reply.status}" + _attempt_note(number, attempts)
                said = excerpt(reply.body, self.settings.excerpt_chars, out.secrets)
                reason = f"HTTP {reply.status}" + (f": {said}" if said else "")
                if outcome is Verdict.FINAL:
                    raise ActionFailed(reason + _attempt_note(number, attempts))
                wait = reply.retry_after_seconds
            if number == attempts:
                raise ActionFailed(f"{reason} (gave up after {attempts} attempts)")
            wait = await self._pause(number, wait, deadline, reason)
            log.info(
                "action %s to %s: %s; retry %d in %.2fs",
                notice.action_id,
                out.host,
                reason,
                number,
                wait,
                extra=record_fields(notice.record),
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _vet(self, scheme: str, host: str) -> None:
        """The URL check, remembered per (scheme, host): the allowlist never changes."""
        if (scheme, host) not in self._vetted:
            check_url_target(scheme, host, self.settings.allow_hosts)
            if len(self._vetted) < _VETTED_MAX:
                self._vetted.add((scheme, host))

    async def _pause(self, retry: int, asked: float | None, deadline: float, reason: str) -> float:
        """Sleep before the next attempt: ``Retry-After`` if given, else jittered backoff."""
        wait = asked
        if wait is None:
            wait = backoff_seconds(
                retry,
                base_seconds=self.settings.backoff_base_seconds,
                max_seconds=self.settings.backoff_max_seconds,
                draw=self._rng.random(),
            )
        remaining = deadline - asyncio.get_running_loop().time()
        if wait >= remaining:
            raise ActionFailed(
                f"{reason}; gave up: the next attempt (in {wait:.1f}s) would pass the "
                f"{self.settings.max_total_seconds:g}s bound"
            )
        await asyncio.sleep(wait)
        return wait

    async def _attempt(self, out: Outbound, deadline: float) -> _Reply:
        assert self._client is not None
        loop = asyncio.get_running_loop()
        async with self._lanes.slot(out.endpoint, out.host, deadline):
            remaining = deadline - loop.time()
            timeout = httpx.Timeout(
                min(out.timeout_seconds, remaining),
                connect=min(self.settings.connect_timeout_seconds, remaining),
            )
            headers = dict(out.headers)
            if out.sign is not None:
                headers.update(out.sign(out.body, int(self._clock())))
            try:
                async with asyncio.timeout(remaining):
                    return await self._exchange(out, headers, timeout)
            except TimeoutError:
                # The whole delivery's time is used up: nothing left to retry with.
                raise ActionFailed(
                    f"gave up: no answer within the {self.settings.max_total_seconds:g}s bound"
                ) from None
            except httpx.TimeoutException as exc:
                raise _Transient(f"timed out ({_phase(exc)})") from None
            except httpx.LocalProtocolError:
                # Our own request is malformed (h11's message quotes the offending value):
                # final, and never its text. Header values are vetted before this point.
                raise ActionFailed(
                    "the request could not be sent: the HTTP library refused it as malformed"
                ) from None
            except httpx.TransportError as exc:
                raise _Transient(scrub(f"{type(exc).__name__}: {exc}", out.secrets)) from None

    async def _exchange(
        self, out: Outbound, headers: dict[str, str], limits: httpx.Timeout
    ) -> _Reply:
        assert self._client is not None
        request = self._client.build_request(
            out.method, out.url, content=out.body, headers=headers, timeout=limits
        )
        response = await self._client.send(request, stream=True)
        try:
            body = await _read_capped(response, self.settings.max_response_bytes)
        finally:
            await response.aclose()
        return _Reply(
            response.status_code,
            body,
            retry_after_seconds(response.headers.get("retry-after"), now=self._clock()),
        )

    async def _claim(self, action_id: str) -> bool:
        if not self._cache.claim(action_id):
            return False
        if self._store is None:
            return True
        lease = self.settings.max_total_seconds + _LEASE_MARGIN_SECONDS
        try:
            claimed = await self._store.claim(action_id, lease)
        except Exception as exc:  # any store's failure: deliver rather than drop an alert
            log.warning(
                "action %s: delivery store unavailable (%s); delivering without cross-process "
                "deduplication",
                action_id,
                type(exc).__name__,
            )
            return True
        if not claimed:
            self._cache.release(action_id)
        return bool(claimed)

    async def _settle(self, action_id: str, delivered: bool) -> None:
        if delivered:
            self._cache.confirm(action_id)
        else:
            self._cache.release(action_id)
        if self._store is None:
            return
        try:
            if delivered:
                await self._store.confirm(action_id)
            else:
                await self._store.release(action_id)
        except Exception as exc:  # the lease runs out on its own; say so and go on
            log.warning(
                "action %s: delivery store did not record the outcome (%s)",
                action_id,
                type(exc).__name__,
            )


class _Transient(Exception):
    """A network failure worth another attempt; ``reason`` is already secret-free."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body: a huge answer costs nothing more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _phase(exc: httpx.TimeoutException) -> str:
    names = {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "waiting for the response",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a connection",
    }
    return names.get(type(exc), type(exc).__name__)


def _attempt_note(number: int, attempts: int) -> str:
    return "" if number == 1 else f" on attempt {number} of {attempts}"


def _sample(detail: str, sample: bool) -> str:
    return f"sample: {detail}" if sample else detail


def _result(notice: Notice, status: str, detail: str) -> ActionResult:
    return ActionResult.model_validate(
        {
            "action_id": notice.action_id,
            "type": notice.action.type,
            "status": status,
            "detail": detail,
        }
    )
