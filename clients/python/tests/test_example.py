"""examples/voice-agent/agent.py admits a session before it starts, against the real server."""

from __future__ import annotations

import asyncio
import importlib.util
import pathlib
from types import ModuleType
from typing import Callable

from conftest import Admin

from callgate import Gate

AGENT = pathlib.Path(__file__).resolve().parents[3] / "examples" / "voice-agent" / "agent.py"


def _agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("voice_agent_example", AGENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_admits_one_session_and_hands_the_next_to_the_overflow(
    gate: Gate, admin: Admin, key: Callable[[str], str]
) -> None:
    agent = _agent()

    async def main() -> None:
        hang_up = asyncio.Event()
        started: list[str] = []

        async def session(call_id: str) -> None:
            started.append(call_id)
            await hang_up.wait()

        first = asyncio.create_task(agent.handle_call(gate, key("first"), "busy", session))
        while admin.pool("trunk")["used"] != 1:
            await asyncio.sleep(0.02)
        # The only slot is taken: the next call never starts a session.
        assert await agent.handle_call(gate, key("second"), "busy", session) == "rejected:voicemail"
        assert started == [key("first")]
        hang_up.set()
        assert await first == "completed"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_example_stops_a_session_whose_lease_is_lost(gate: Gate, admin: Admin, key: Callable[[str], str]) -> None:
    agent = _agent()

    async def main() -> None:
        async def session(call_id: str) -> None:
            (lease,) = admin.leases(call_id)
            admin.call("DELETE", f"/v1/leases/{lease['id']}")  # an operator frees the slot
            await asyncio.Event().wait()  # talks until stopped

        assert await agent.handle_call(gate, key("lost"), "short", session) == "lost"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_the_example_runs_from_the_command_line(url: str, admin: Admin) -> None:
    agent = _agent()
    assert asyncio.run(agent.main(["--url", url, "--token", admin.token, "--flow", "outbound", "--calls", "1", "--talk", "0"])) == 0
