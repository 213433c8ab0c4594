"""``Gate``, the client of one callgate server, and ``Gate.lease``: hold a lease for the
life of a call, waiting in line when told to, renewing it in the background and releasing
it on the way out, also when the body raises.

The steps of an acquire (ask, wait in line, read how a ticket ended) are written once, as
a generator of HTTP requests; a thread-blocking driver runs them for ``with`` and an
asyncio driver for ``async with``, so both behave the same.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, Generator, Mapping, Optional, cast

from .errors import ApiError, CallgateError, LeaseLost, Rejected, TransportError
from .types import (
    AcquireRequest,
    LeaseView,
    Meta,
    Overflow,
    PoolRequest,
    ReleaseRequest,
    TicketStatus,
    TicketView,
)

log = logging.getLogger("callgate")

#: One acquire request blocks at most this long for a grant (the server allows 60 s):
#: well under the idle cut of common proxies, and it bounds how long a cancelled asyncio
#: waiter's worker thread lingers.
LONG_POLL_MS = 20_000
#: While a request cut off by a cancellation is still on its way, undo again this often.
UNDO_POLL_S = 0.25
#: Renew at least this often, however long the TTL: a lease released or expired behind
#: the client's back is noticed within this time.
MAX_RENEW_EVERY = 30.0
#: Transport failures and 503s of idempotent requests are retried this many times.
RETRIES = 2
#: The first retry's pause, doubled for each further one (seconds).
RETRY_PAUSE = 0.2

OnLost = Callable[["Lease"], None]


@dataclass
class _Step:
    """One HTTP request of a multi-step operation."""

    method: str
    path: str
    body: Optional[Mapping[str, Any]] = None
    timeout: Optional[float] = None
    retry: bool = False


@dataclass
class _Reply:
    status: int
    body: Any  # a JSON object, or the array of GET /v1/tickets
    headers: Mapping[str, str] = field(default_factory=dict)


def _ms(seconds: float, name: str) -> int:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"`{name}` must be a finite number of seconds >= 0, not {seconds!r}")
    return int(round(seconds * 1000))


class Gate:
    """The client of one callgate server.

    ``base_url`` is the server (``http://127.0.0.1:7700``); ``token`` the API key sent as
    ``Authorization: Bearer …`` (a ``client`` key is enough to acquire, renew and release);
    ``timeout`` bounds each request that does not wait in line (seconds).
    """

    def __init__(self, base_url: str, token: Optional[str] = None, *, timeout: float = 10.0) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"`base_url` must be an http(s) URL, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    # ----- one request ---------------------------------------------------------------

    def _request_once(self, step: _Step) -> _Reply:
        data = None if step.body is None else json.dumps(step.body).encode()
        req = urllib.request.Request(self.base_url + step.path, data=data, method=step.method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=step.timeout or self.timeout) as resp:
                status, raw, headers = resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            status, raw, headers = e.code, e.read(), e.headers
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise TransportError(f"{step.method} {step.path}: {e}") from e
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as e:
            raise TransportError(f"{step.method} {step.path}: HTTP {status} with a body that is not JSON") from e
        if not isinstance(body, (dict, list)):
            raise TransportError(f"{step.method} {step.path}: HTTP {status} with a body that is not a JSON object")
        return _Reply(status, body, {k.lower(): v for k, v in headers.items()})

    def _request(self, step: _Step) -> _Reply:
        """One request; an idempotent one (``retry``) is tried again after a transport
        failure or a 503 (the journal could not commit: nothing changed)."""
        attempts = 1 + (RETRIES if step.retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                reply = self._request_once(step)
            except TransportError:
                if last:
                    raise
            else:
                if reply.status != 503 or last:
                    return reply
            time.sleep(RETRY_PAUSE * (2**attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _error(reply: _Reply) -> ApiError:
        err = reply.body.get("error")
        if isinstance(err, dict):
            return ApiError(reply.status, str(err.get("code", "unknown")), str(err.get("message", "")))
        return ApiError(reply.status, "unexpected", f"unexpected answer {json.dumps(reply.body)[:200]}")

    def _drive(self, steps: Generator[_Step, _Reply, Any]) -> Any:
        """Runs a multi-step operation, blocking this thread."""
        try:
            step = next(steps)
            while True:
                step = steps.send(self._request(step))
        except StopIteration as done:
            return done.value

    async def _adrive(
        self, steps: Generator[_Step, _Reply, Any], interrupted: Optional[list["asyncio.Future[_Reply]"]] = None
    ) -> Any:
        """Runs a multi-step operation on the event loop (each request in a worker thread).

        A worker thread cannot be stopped: when the operation is cancelled, its request goes
        on, and is appended to ``interrupted`` so that an undo can wait for it."""
        try:
            step = next(steps)
            while True:
                request = asyncio.ensure_future(asyncio.to_thread(self._request, step))
                try:
                    reply = await asyncio.shield(request)
                except asyncio.CancelledError:
                    if interrupted is not None:
                        interrupted.append(request)
                    raise
                step = steps.send(reply)
        except StopIteration as done:
            return done.value

    # ----- the operations, as steps ------------------------------------------------------

    def _acquire_steps(
        self, body: AcquireRequest, on_ticket: Callable[[TicketView], None]
    ) -> Generator[_Step, _Reply, LeaseView]:
        # The first ask answers at once, so a caller put in line learns its ticket (to
        # say "you are third in line", or to leave the line); the repeats long-poll.
        # Retrying is safe: the key makes a repeated acquire return the same lease or ticket.
        reply = yield _Step("POST", "/v1/acquire", body, retry=True)
        ask = dict(body)
        ask["wait_ms"] = LONG_POLL_MS
        timeout = LONG_POLL_MS / 1000 + self.timeout
        ticket_id: Optional[str] = None
        while True:
            decision = reply.body.get("decision")
            if reply.status == 200 and decision == "granted":
                return cast(LeaseView, reply.body["lease"])
            if decision == "rejected":
                raise self._rejected(reply, ticket_id)
            if reply.status != 202 or decision != "queued":
                raise self._error(reply)
            ticket = cast(TicketView, reply.body["ticket"])
            if ticket_id is None:
                ticket_id = ticket["id"]
                on_ticket(ticket)
            elif ticket["id"] != ticket_id:
                # Ours ended between two long polls and the repeat took a new place in
                # line: give that back and report how ours ended.
                yield _Step("DELETE", f"/v1/tickets/{_q(ticket['id'])}", retry=True)
                ended = yield _Step("GET", f"/v1/tickets/{_q(ticket_id)}", retry=True)
                if ended.status != 200:
                    raise self._error(ended)
                return self._ticket_end(cast(TicketStatus, ended.body))
            else:
                on_ticket(ticket)
            reply = yield _Step("POST", "/v1/acquire", ask, timeout, retry=True)

    @staticmethod
    def _rejected(reply: _Reply, ticket_id: Optional[str]) -> Rejected:
        b = reply.body
        retry_after: Optional[float] = None
        if isinstance(b.get("retry_after_ms"), int):
            retry_after = b["retry_after_ms"] / 1000
        elif reply.headers.get("retry-after", "").isdigit():
            retry_after = float(reply.headers["retry-after"])
        return Rejected(
            str(b.get("reason", "unknown")),
            cast(Optional[Overflow], b.get("overflow")),
            retry_after,
            status=reply.status,
            ticket_id=ticket_id,
            dependency=b.get("dependency"),
        )

    @staticmethod
    def _ticket_end(st: TicketStatus) -> LeaseView:
        state, tid = st["state"], st["id"]
        if state == "granted":
            lease = st.get("lease")
            if isinstance(lease, dict) and "expires_at_ms" in lease:
                return cast(LeaseView, lease)
            lease_id = str(lease.get("id")) if isinstance(lease, dict) else "?"
            raise LeaseLost(lease_id, f"ticket {tid} was granted, but the lease ended before it was seen")
        if state == "timed_out":
            raise Rejected("timed_out", st.get("overflow"), None, ticket_id=tid)
        if state == "never_fits":
            raise Rejected("never_fits", st.get("overflow"), None, status=409, ticket_id=tid)
        if state == "cancelled":
            raise Rejected("cancelled", None, None, ticket_id=tid)
        raise CallgateError(f"ticket {tid} is {state} although a new one was given for its key")

    def _acquire_body(
        self,
        flow: Optional[str],
        key: Optional[str],
        ttl: Optional[float],
        max_wait: Optional[float],
        meta: Optional[Meta],
        pools: Optional[list[PoolRequest]],
        class_: Optional[str],
    ) -> AcquireRequest:
        body: AcquireRequest = {}
        if flow is not None:
            body["flow"] = flow
        if pools is not None:
            body["pools"] = pools
        if class_ is not None:
            body["class"] = class_
        # Always a key: it makes retries and the repeated long polls of a wait in line
        # idempotent, and lets an interrupted acquire be undone by key.
        body["key"] = key if key is not None else f"py-{uuid.uuid4()}"
        if ttl is not None:
            body["ttl_ms"] = max(1, _ms(ttl, "ttl"))
        if max_wait is not None:
            body["max_wait_ms"] = _ms(max_wait, "max_wait")
        if meta is not None:
            body["meta"] = meta
        return body

    def _cleanup_steps(self, key: str, ticket_id: Optional[str]) -> Generator[_Step, _Reply, None]:
        """Undo an acquire interrupted midway: leave the line, free a grant the caller
        never saw (both harmless when there is nothing to undo)."""
        if ticket_id is not None:
            yield _Step("DELETE", f"/v1/tickets/{_q(ticket_id)}", retry=True)
        else:
            # Interrupted before the answer came back: a ticket may be in line under our
            # key all the same. The waiting line (its first 500) says which.
            line = yield _Step("GET", "/v1/tickets", retry=True)
            waiting = line.body if line.status == 200 else []
            for t in waiting if isinstance(waiting, list) else []:
                if isinstance(t, dict) and t.get("key") == key:
                    yield _Step("DELETE", f"/v1/tickets/{_q(str(t.get('id')))}", retry=True)
        yield _Step("DELETE", f"/v1/leases?key={_q(key)}", retry=True)

    # ----- the plain API -------------------------------------------------------------

    def acquire(
        self,
        flow: Optional[str] = None,
        *,
        key: Optional[str] = None,
        ttl: Optional[float] = None,
        max_wait: Optional[float] = None,
        meta: Optional[Meta] = None,
        pools: Optional[list[PoolRequest]] = None,
        class_: Optional[str] = None,
    ) -> LeaseView:
        """Acquires a lease, waiting in line when the flow has a waiting room, and returns
        it; nothing renews or releases it (see :meth:`lease` for that). Raises
        :class:`Rejected` when turned away. ``max_wait=0`` never waits in line."""
        body = self._acquire_body(flow, key, ttl, max_wait, meta, pools, class_)
        return cast(LeaseView, self._drive(self._acquire_steps(body, lambda _t: None)))

    def renew(self, lease_id: str, ttl: Optional[float] = None) -> LeaseView:
        """Extends a live lease by ``ttl`` seconds from now (default: its own TTL)."""
        body = {} if ttl is None else {"ttl_ms": max(1, _ms(ttl, "ttl"))}
        reply = self._request(_Step("POST", f"/v1/leases/{_q(lease_id)}/renew", body, retry=True))
        if reply.status != 200:
            raise self._error(reply)
        return cast(LeaseView, reply.body["lease"])

    def release(self, lease_id: str, report: Optional[ReleaseRequest] = None) -> bool:
        """Releases a lease; True the first time, False when it was not live."""
        reply = self._request(_Step("DELETE", f"/v1/leases/{_q(lease_id)}", report, retry=True))
        if reply.status != 200:
            raise self._error(reply)
        return bool(reply.body.get("released"))

    def release_key(self, key: str) -> bool:
        """Releases the live lease with this key; True the first time."""
        reply = self._request(_Step("DELETE", f"/v1/leases?key={_q(key)}", retry=True))
        if reply.status != 200:
            raise self._error(reply)
        return bool(reply.body.get("released"))

    def ticket(self, ticket_id: str) -> TicketStatus:
        """A ticket's state (``GET /v1/tickets/{id}``)."""
        reply = self._request(_Step("GET", f"/v1/tickets/{_q(ticket_id)}", retry=True))
        if reply.status != 200:
            raise self._error(reply)
        return cast(TicketStatus, reply.body)

    def cancel(self, ticket_id: str) -> bool:
        """Leaves the line; True when the ticket was still waiting."""
        reply = self._request(_Step("DELETE", f"/v1/tickets/{_q(ticket_id)}", retry=True))
        if reply.status != 200:
            raise self._error(reply)
        return bool(reply.body.get("cancelled"))

    # ----- the idiom -------------------------------------------------------------------

    def lease(
        self,
        flow: Optional[str] = None,
        *,
        key: Optional[str] = None,
        ttl: Optional[float] = None,
        max_wait: Optional[float] = None,
        meta: Optional[Meta] = None,
        pools: Optional[list[PoolRequest]] = None,
        class_: Optional[str] = None,
        renew_every: Optional[float] = None,
        on_lost: Optional[OnLost] = None,
        on_queued: Optional[Callable[[TicketView], None]] = None,
    ) -> "LeaseScope":
        """A lease held for the life of a ``with`` (or ``async with``) block::

            with gate.lease("outbound", key=call_id) as lease:
                run_the_call()

        On entry it acquires, waiting in line when the flow has a waiting room (up to
        ``max_wait`` seconds, else the flow's own), and raises :class:`Rejected` (with
        the flow's overflow action and ``retry_after``) when the call is turned away. While
        the block runs, the lease is renewed in the background every ``renew_every``
        seconds (default: a third of its TTL, at most 30 s). ``on_queued(ticket)`` is
        called when the call is put in line and after each long poll that leaves it
        waiting (``position``, ``eta_ms``), e.g. to tell the caller. On exit, also when the block
        raises, it is released. If a renewal finds it gone (released by someone else, or
        expired), ``lease.lost`` turns true, ``on_lost(lease)`` is called, and leaving the
        block raises :class:`LeaseLost` unless the block raised something else.
        """
        if renew_every is not None and not (math.isfinite(renew_every) and renew_every > 0):
            raise ValueError(f"`renew_every` must be a positive number of seconds, not {renew_every!r}")
        body = self._acquire_body(flow, key, ttl, max_wait, meta, pools, class_)
        return LeaseScope(self, body, renew_every, on_lost, on_queued)


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


class Lease:
    """A held lease, as handed out by ``with gate.lease(...) as lease``.

    ``view`` is the server's latest view of it (``expires_at_ms`` moves with each renewal);
    ``ticket`` the place in line it waited in, if it did. Set ``report`` (a
    :class:`~callgate.types.ReleaseRequest`) to tell the server how the call went when
    the lease is released.
    """

    def __init__(self, gate: Gate, view: LeaseView, ttl_ms: int, renew_every: float, ticket: Optional[TicketView]):
        self._gate = gate
        self.view = view
        self.ticket = ticket
        self.report: Optional[ReleaseRequest] = None
        self._ttl_ms = ttl_ms
        self._renew_every = renew_every
        self._deadline = time.monotonic() + ttl_ms / 1000
        self._lost = threading.Event()
        self._lost_reason: Optional[str] = None
        self._ended = threading.Event()
        self._on_lost: Optional[OnLost] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._alost: Optional[asyncio.Event] = None

    @property
    def id(self) -> str:
        """``L<n>``."""
        return self.view["id"]

    @property
    def key(self) -> Optional[str]:
        """The idempotency key it was acquired with."""
        return self.view["key"]

    @property
    def expires_at_ms(self) -> int:
        """When it expires unless renewed (server time, Unix ms)."""
        return self.view["expires_at_ms"]

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease gone; it does not come back."""
        return self._lost.is_set()

    @property
    def lost_reason(self) -> Optional[str]:
        """Why it was lost (the server's message, or the last error before it expired)."""
        return self._lost_reason

    def check(self) -> None:
        """Raises :class:`LeaseLost` if the lease was lost."""
        if self.lost:
            raise LeaseLost(self.id, self._lost_reason or "lost")

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the lease is lost or ``timeout`` seconds pass; True if lost."""
        return self._lost.wait(timeout)

    async def until_lost(self) -> None:
        """(``async with`` only) Returns once the lease is lost: race it against the call."""
        if self._alost is None:
            raise CallgateError("until_lost() needs a lease held with `async with`")
        await self._alost.wait()

    def _mark_lost(self, reason: str) -> None:
        if self._ended.is_set() or self._lost.is_set():
            return
        self._lost_reason = reason
        self._lost.set()
        log.warning("Lease lost lease=%s reason=%s", self.id, reason)
        if self._loop is not None and self._alost is not None:
            self._loop.call_soon_threadsafe(self._alost.set)
        if self._on_lost is not None:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._call_on_lost)
            else:
                self._call_on_lost()

    def _call_on_lost(self) -> None:
        try:
            if self._on_lost is not None:
                self._on_lost(self)
        except Exception:  # a callback's failure must not kill the renewer
            log.exception("on_lost callback failed lease=%s", self.id)

    def _renew_once(self) -> Optional[float]:
        """One renewal; the pause before the next, or None to stop renewing."""
        if self._ended.is_set():
            return None
        sent = time.monotonic()
        try:
            self.view = self._gate.renew(self.id, self._ttl_ms / 1000)
        except ApiError as e:
            if e.status < 500:
                # 404: released, expired or unknown; 401/403: this key may not keep it.
                self._mark_lost(f"renewal refused: {e}")
                return None
            err: CallgateError = e
        except TransportError as e:
            err = e
        else:
            self._deadline = sent + self._ttl_ms / 1000
            return self._renew_every
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            self._mark_lost(f"expired: not renewed in time ({err})")
            return None
        # Still time: try again soon, several times before it expires.
        return max(0.05, min(self._renew_every, remaining / 4))


class LeaseScope:
    """What :meth:`Gate.lease` returns: a context manager for ``with`` and ``async with``."""

    def __init__(
        self,
        gate: Gate,
        body: AcquireRequest,
        renew_every: Optional[float],
        on_lost: Optional[OnLost],
        on_queued: Optional[Callable[[TicketView], None]] = None,
    ):
        self._gate = gate
        self._on_queued = on_queued
        self._body = body
        self._renew_every = renew_every
        self._on_lost = on_lost
        self._ticket: Optional[TicketView] = None
        self._lease: Optional[Lease] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._astop: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task[None]] = None
        self._entered = False

    def _enter_once(self) -> None:
        if self._entered:
            raise CallgateError("a lease scope holds one lease: call gate.lease(...) again for another")
        self._entered = True

    def _on_ticket(self, ticket: TicketView) -> None:
        self._ticket = ticket
        if self._on_queued is not None:
            self._on_queued(ticket)

    def _new_lease(self, view: LeaseView) -> Lease:
        ttl_ms = self._body.get("ttl_ms") or max(1, view["expires_at_ms"] - view["granted_at_ms"])
        every = self._renew_every if self._renew_every is not None else min(ttl_ms / 3000, MAX_RENEW_EVERY)
        lease = Lease(self._gate, view, ttl_ms, every, self._ticket)
        lease._on_lost = self._on_lost
        return lease

    def _undo_needed(self, e: BaseException) -> bool:
        # A refusal decided nothing to undo; anything else (an interrupt, a lost
        # connection) may have left a ticket in line or a grant nobody saw.
        return not isinstance(e, Rejected) and not (isinstance(e, ApiError) and 400 <= e.status < 500)

    # ----- with ---------------------------------------------------------------------------

    def __enter__(self) -> Lease:
        self._enter_once()
        steps = self._gate._acquire_steps(self._body, self._on_ticket)
        try:
            view = cast(LeaseView, self._gate._drive(steps))
        except BaseException as e:
            if self._undo_needed(e):
                self._undo_sync()
            raise
        lease = self._lease = self._new_lease(view)
        self._thread = threading.Thread(target=self._renew_loop, name=f"callgate-renew-{lease.id}", daemon=True)
        self._thread.start()
        return lease

    def _undo_sync(self, by_key: bool = False) -> None:
        """Undoes an interrupted acquire; ``by_key``: find the ticket in the line by its key
        (a request that landed after the first undo may have taken a new place)."""
        ticket_id = None if by_key else self._ticket and self._ticket["id"]
        try:
            self._gate._drive(self._gate._cleanup_steps(self._body["key"], ticket_id))
        except CallgateError as e:
            log.warning("Could not undo an interrupted acquire key=%s error=%s", self._body["key"], e)

    async def _aundo(self, interrupted: list["asyncio.Future[_Reply]"]) -> None:
        """The async undo: leave the line (which also ends a long poll the server holds),
        then, while a request cut off by the cancellation is still on its way, undo again
        by key, so that an acquire landing after the first undo leaves nothing behind."""
        await asyncio.to_thread(self._undo_sync)
        while True:
            pending = [r for r in interrupted if not r.done()]
            if not pending:
                break
            await asyncio.wait(pending, timeout=UNDO_POLL_S)
            await asyncio.to_thread(self._undo_sync, True)

    def _renew_loop(self) -> None:
        lease = self._lease
        assert lease is not None
        pause: Optional[float] = lease._renew_every
        while pause is not None and not self._stop.wait(pause):
            pause = lease._renew_once()

    def __exit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        lease = self._lease
        assert lease is not None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._finish(lease)
        if exc is None:
            lease.check()

    def _finish(self, lease: Lease) -> None:
        """Releases the lease (once; a failure is logged: its TTL frees it anyway)."""
        if lease._ended.is_set():
            return
        lease._ended.set()
        if lease.lost:
            return
        try:
            self._gate.release(lease.id, lease.report)
        except CallgateError as e:
            log.warning("Could not release lease=%s error=%s (it expires by its TTL)", lease.id, e)

    # ----- async with -------------------------------------------------------------------

    async def __aenter__(self) -> Lease:
        self._enter_once()
        steps = self._gate._acquire_steps(self._body, self._on_ticket)
        interrupted: list[asyncio.Future[_Reply]] = []
        try:
            view = cast(LeaseView, await self._gate._adrive(steps, interrupted))
        except BaseException as e:
            if self._undo_needed(e):
                # Shielded: an acquire cancelled midway still leaves the line and frees a
                # grant that raced with the cancellation, including one its own request,
                # still on its way in a worker thread, makes after the first undo.
                await asyncio.shield(self._aundo(interrupted))
            raise
        lease = self._lease = self._new_lease(view)
        lease._loop = asyncio.get_running_loop()
        lease._alost = asyncio.Event()
        self._astop = asyncio.Event()
        self._task = asyncio.create_task(self._arenew_loop(lease, self._astop), name=f"callgate-renew-{lease.id}")
        return lease

    async def _arenew_loop(self, lease: Lease, stop: asyncio.Event) -> None:
        pause: Optional[float] = lease._renew_every
        while pause is not None:
            try:
                await asyncio.wait_for(stop.wait(), pause)
                return
            except asyncio.TimeoutError:
                pass
            pause = await asyncio.to_thread(lease._renew_once)

    async def __aexit__(
        self, exc_type: Optional[type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        lease = self._lease
        assert lease is not None and self._astop is not None and self._task is not None
        self._astop.set()
        # Shielded, so that a block left by cancellation still releases its lease.
        await asyncio.shield(self._close_async(lease, self._task))
        if exc is None:
            lease.check()

    async def _close_async(self, lease: Lease, task: "asyncio.Task[None]") -> None:
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self._finish, lease)

