"""A voice agent that is admitted by callgate before it starts a session.

Each incoming call asks callgate for a slot first (``async with gate.lease(...)``). A
granted call runs its session while the lease is renewed in the background; a queued call
waits in line (and could tell the caller its place); a rejected call gets the flow's
overflow (voicemail, a callback, busy) instead of a session that the voice platform would
refuse anyway. The slot is released when the session ends, fails or is cancelled; a
lease lost midway (an operator freed it) ends the session.

The session is Pipecat's (``pipecat-ai``) when it is installed and you hand it a
pipeline; otherwise a stand-in that "talks" for ``--talk`` seconds, so the example runs
with nothing but the callgate client::

    pip install ./clients/python
    callgate serve &                     # the default config: 10 slots, 2 kept for inbound
    python examples/voice-agent/agent.py --flow outbound --calls 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Callable, Coroutine, Optional

from callgate import Gate, LeaseLost, Rejected
from callgate.types import TicketView

try:  # optional: the example runs without it
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineTask

    HAVE_PIPECAT = True
except ImportError:
    HAVE_PIPECAT = False

#: Builds the Pipecat task of one call (transport, STT, LLM, TTS).
BuildTask = Callable[[str], "PipelineTask"]

#: Set this to your function that builds a call's ``PipelineTask`` (it needs your
#: transport and your STT/LLM/TTS keys, so the example does not guess one); while it is
#: None, or Pipecat is not installed, calls run the stand-in session.
build_task: Optional[BuildTask] = None


async def pipecat_session(call_id: str, build_task: BuildTask) -> None:
    """Runs one call's Pipecat pipeline until it ends."""
    task = build_task(call_id)
    try:
        await PipelineRunner(handle_sigint=False).run(task)
    except asyncio.CancelledError:
        await task.cancel()  # the lease was lost or the call was cancelled: stop talking
        raise


async def stand_in_session(call_id: str, talk: float) -> None:
    """What a session looks like to callgate: something that takes a while."""
    await asyncio.sleep(talk)


async def handle_call(gate: Gate, call_id: str, flow: str, session: Callable[[str], Coroutine[Any, Any, None]]) -> str:
    """Admits one call, runs its session while holding the lease; says what happened."""

    def queued(ticket: TicketView) -> None:
        # Where a caller can hear it: "You are number 2 in line, about a minute."
        print(f"{call_id}: waiting, number {ticket['position']} in line, about {ticket['eta_ms'] // 1000}s")

    try:
        async with gate.lease(flow, key=call_id, meta={"agent": "voice-agent-example"}, on_queued=queued) as lease:
            print(f"{call_id}: admitted as {lease.id}, starting the session")
            talking = asyncio.create_task(session(call_id))
            lost = asyncio.create_task(lease.until_lost())
            done, _ = await asyncio.wait({talking, lost}, return_when=asyncio.FIRST_COMPLETED)
            if lost in done:
                talking.cancel()  # leaving the block raises LeaseLost
                await asyncio.gather(talking, return_exceptions=True)
            else:
                lost.cancel()
                await talking
        return "completed"
    except Rejected as no:
        # The flow's overflow: hand the caller to it instead of starting a session.
        retry = f", retry in {no.retry_after:.0f}s" if no.retry_after else ""
        print(f"{call_id}: not admitted ({no.reason}): {no.overflow_action or 'no overflow'}{retry}")
        return f"rejected:{no.overflow_action}"
    except LeaseLost as e:
        print(f"{call_id}: {e}; the session was stopped")
        return "lost"


async def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("CALLGATE_SERVER", "http://127.0.0.1:7700"))
    p.add_argument("--token", default=os.environ.get("CALLGATE_TOKEN"))
    p.add_argument("--flow", default="inbound")
    p.add_argument("--calls", type=int, default=12, help="calls arriving at once")
    p.add_argument("--talk", type=float, default=3.0, help="seconds each stand-in session lasts")
    args = p.parse_args(argv)
    if not 1 <= args.calls <= 1000:
        p.error("--calls must be between 1 and 1000")

    gate = Gate(args.url, token=args.token)
    session: Callable[[str], Coroutine[Any, Any, None]]
    if HAVE_PIPECAT and build_task is not None:
        build = build_task
        session = lambda call_id: pipecat_session(call_id, build)  # noqa: E731
    else:
        session = lambda call_id: stand_in_session(call_id, args.talk)  # noqa: E731
    calls = [handle_call(gate, f"call-{os.getpid()}-{i}", args.flow, session) for i in range(1, args.calls + 1)]
    outcomes: list[Any] = await asyncio.gather(*calls)
    summary = {o: outcomes.count(o) for o in sorted(set(outcomes))}
    print("outcomes:", ", ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
