"""``async with gate.lease(...)`` against a real server (see conftest.py)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest
from conftest import Admin

from callgate import Gate, LeaseLost, Rejected


def test_async_grant_release_and_release_on_exception(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    async def main() -> None:
        async with gate.lease("outbound", key=key("a")) as lease:
            assert [x["id"] for x in admin.leases(key("a"))] == [lease.id]
        assert admin.leases(key("a")) == []
        with pytest.raises(ValueError):
            async with gate.lease("outbound", key=key("b")):
                raise ValueError("agent crashed")
        assert admin.leases(key("b")) == []

    asyncio.run(main())


def test_async_queued_then_granted(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    async def second() -> str:
        async with gate.lease("outbound", key=key("second")) as lease:
            assert lease.ticket is not None
            return lease.id

    async def main() -> None:
        async with gate.lease("outbound", key=key("first")):
            waiting = asyncio.create_task(second())
            while admin.pool("line")["waiting"] != 1:  # bounded by the test's own timeout below
                await asyncio.sleep(0.02)
            assert not waiting.done()
        assert (await asyncio.wait_for(waiting, 30)).startswith("L")

    asyncio.run(asyncio.wait_for(main(), 30))


def test_async_cancel_while_waiting_leaves_the_line(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    async def main() -> None:
        async with gate.lease("outbound", key=key("first")):
            waiting = asyncio.create_task(gate.lease("outbound", key=key("gave-up")).__aenter__())
            while admin.pool("line")["waiting"] != 1:
                await asyncio.sleep(0.02)
            waiting.cancel()  # the caller hung up
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert admin.pool("line")["waiting"] == 0
        assert admin.leases(key("gave-up")) == []

    asyncio.run(asyncio.wait_for(main(), 30))


def test_async_cancel_with_a_long_poll_still_on_its_way_leaves_nothing_behind(
    gate: Gate, admin: Admin, key: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The waiter's long poll is held in its worker thread until the cancellation's first
    # undo has left the line; then it lands, and takes a new place under the same key.
    on_its_way, land, landed = threading.Event(), threading.Event(), threading.Event()
    real = gate._request

    def held(step: Any) -> Any:
        body = step.body if isinstance(step.body, dict) else {}
        if body.get("key") == key("late") and "wait_ms" in body and not land.is_set():
            on_its_way.set()
            land.wait(30)
            try:
                return real(step)
            finally:
                landed.set()
        return real(step)

    monkeypatch.setattr(gate, "_request", held)

    async def main() -> None:
        async with gate.lease("outbound", key=key("first")):
            waiting = asyncio.create_task(gate.lease("outbound", key=key("late")).__aenter__())
            while not on_its_way.is_set():
                await asyncio.sleep(0.01)
            waiting.cancel()  # the caller hung up
            while admin.pool("line")["waiting"] != 0:  # the first undo left the line
                await asyncio.sleep(0.02)
            land.set()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # The cancellation ends only once the request it cut off has ended (its long
            # poll would have held its new place for the flow's 20 s max_wait), and that
            # place with it.
            assert landed.is_set(), "the undo finished before the request it cut off"
            assert admin.pool("line")["waiting"] == 0
        assert admin.leases(key("late")) == []

    asyncio.run(asyncio.wait_for(main(), 60))


def test_async_rejected(gate: Gate, key: Callable[[str], str]) -> None:
    async def main() -> None:
        async with gate.lease("busy", key=key("holder")):
            with pytest.raises(Rejected) as no:
                async with gate.lease("busy", key=key("turned-away")):
                    pytest.fail("the body ran without a lease")
            assert no.value.overflow_action == "voicemail"

    asyncio.run(main())


def test_async_lost_lease(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    async def main() -> None:
        with pytest.raises(LeaseLost):
            async with gate.lease("short", key=key("lost")) as lease:
                assert admin.call("DELETE", f"/v1/leases/{lease.id}")[0] == 200
                # The agent races its call against the lease: the lease loses.
                await asyncio.wait_for(lease.until_lost(), 10)
                assert lease.lost

    asyncio.run(main())
