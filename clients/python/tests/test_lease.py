"""``with gate.lease(...)`` against a real server (see conftest.py)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

import pytest
from conftest import Admin

from callgate import ApiError, CallgateError, Gate, Lease, LeaseLost, Rejected


def test_grant_then_release_on_exit(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    k = key("call")
    with gate.lease("outbound", key=k, meta={"agent": "pytest"}) as lease:
        assert lease.key == k and lease.id.startswith("L")
        assert lease.ticket is None  # the line was free: granted at once
        live = admin.leases(k)
        assert [x["id"] for x in live] == [lease.id]
        assert live[0]["meta"] == {"agent": "pytest"}
        assert admin.pool("line")["used"] == 1
    assert admin.leases(k) == []
    assert admin.pool("line")["used"] == 0


def test_release_when_the_body_raises(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    k = key("crash")
    with pytest.raises(RuntimeError, match="agent crashed"):
        with gate.lease("outbound", key=k):
            assert len(admin.leases(k)) == 1
            raise RuntimeError("agent crashed")
    assert admin.leases(k) == []


def test_queued_then_granted_when_the_other_lease_ends(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    got: dict[str, Lease] = {}
    failed: list[BaseException] = []
    told: list[int] = []

    def second_call() -> None:
        try:
            with gate.lease("outbound", key=key("second"), on_queued=lambda t: told.append(t["position"])) as lease:
                got["second"] = lease
        except BaseException as e:  # reported to the test below
            failed.append(e)

    with gate.lease("outbound", key=key("first")) as first:
        waiter = threading.Thread(target=second_call)
        waiter.start()
        admin.until("the second call waits in line", lambda: admin.pool("line")["waiting"] == 1)
        assert "second" not in got and not failed
    # Leaving the block released the first lease: the one waiting gets it.
    waiter.join(timeout=30)
    assert not waiter.is_alive() and not failed, failed
    second = got["second"]
    assert second.ticket is not None and second.ticket["position"] == 1
    assert told and all(p == 1 for p in told)  # the caller was told its place in line
    assert second.id != first.id


def test_rejected_carries_the_overflow_action(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    with gate.lease("busy", key=key("holder")):
        with pytest.raises(Rejected) as no:
            with gate.lease("busy", key=key("turned-away")):
                pytest.fail("the body ran without a lease")
        assert no.value.reason == "capacity"
        assert no.value.overflow_action == "voicemail"
        assert no.value.overflow is not None and no.value.overflow.get("message") == "Please leave a message."
        assert no.value.retry_after is not None and no.value.retry_after > 0
        assert admin.leases(key("turned-away")) == []


def test_waiting_too_long_raises_with_the_overflow(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    with gate.lease("outbound", key=key("holder")):
        with pytest.raises(Rejected) as no:
            with gate.lease("outbound", key=key("patient"), max_wait=0.3):
                pytest.fail("the body ran without a lease")
        assert no.value.overflow_action == "callback"
        assert admin.pool("line")["waiting"] == 0


def test_renewal_keeps_a_short_ttl_lease_alive(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    # The flow's lease_ttl is 2 s. A lease acquired without the idiom is not renewed;
    # it shows that the time waited below really outlasts the TTL.
    bare = gate.acquire("short", key=key("bare"))
    with gate.lease("short", key=key("held")) as lease:
        first_expiry = lease.expires_at_ms
        assert first_expiry - lease.view["granted_at_ms"] == 2000
        # Real time (the server's clock is real here): past the first expiry.
        while time.time() * 1000 < first_expiry + 500:
            time.sleep(0.1)
        admin.until("the bare lease expired", lambda: admin.leases(bare["key"] or "") == [])
        live = admin.leases(key("held"))
        assert [x["id"] for x in live] == [lease.id], "the renewed lease expired"
        assert live[0]["expires_at_ms"] > first_expiry
        assert not lease.lost
    assert admin.leases(key("held")) == []


def test_lost_lease_is_reported(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    seen: list[Optional[str]] = []
    with pytest.raises(LeaseLost) as lost:
        with gate.lease("short", key=key("lost"), on_lost=lambda lease: seen.append(lease.id)) as lease:
            status, body = admin.call("DELETE", f"/v1/leases/{lease.id}")  # an operator frees it
            assert (status, body) == (200, {"released": True})
            assert lease.wait_lost(timeout=10), "the renewer never noticed"
            assert lease.lost and "unknown_lease" in (lease.lost_reason or "")
            with pytest.raises(LeaseLost):
                lease.check()
    assert lost.value.lease_id == lease.id
    assert seen == [lease.id]


def test_bad_input_raises_and_leaves_nothing(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    with pytest.raises(ApiError) as err:
        with gate.lease("no-such-flow", key=key("bad")):
            pytest.fail("granted on an unknown flow")
    assert (err.value.status, err.value.code) == (404, "unknown_flow")
    with pytest.raises(ApiError) as err:
        with gate.lease("outbound", key="k" * 300):
            pytest.fail("granted with an oversized key")
    assert (err.value.status, err.value.code) == (400, "key_too_long")
    with pytest.raises(ValueError):
        gate.lease("outbound", ttl=-1)
    with pytest.raises(ValueError):
        Gate("ftp://example.com")
    scope = gate.lease("outbound", key=key("twice"))
    with scope:
        pass
    with pytest.raises(CallgateError, match="one lease"):
        with scope:
            pytest.fail("a scope entered twice")


def test_a_wrong_token_is_refused(url: str, admin: Admin) -> None:
    with pytest.raises(ApiError) as err:
        with Gate(url, token="not-a-key").lease("outbound"):
            pytest.fail("granted with a wrong token")
    assert err.value.status == 401
