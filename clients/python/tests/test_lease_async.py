"""``async with gate.lease(...)`` against a real server (see conftest.py)."""

from __future__ import annotations

import asyncio
from typing import Callable

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
