"""Client for callgate, the concurrency control plane for AI voice agents.

Hold a lease for the life of a call::

    from callgate import Gate, Rejected

    gate = Gate("http://127.0.0.1:7700", token="…")
    try:
        with gate.lease("outbound", key=call_id) as lease:
            run_the_call()
    except Rejected as no:
        act_on(no.overflow_action, no.retry_after)

``async with gate.lease(...)`` does the same on an asyncio event loop.
"""

from .errors import ApiError, CallgateError, LeaseLost, Rejected, TransportError
from .gate import Gate, Lease, LeaseScope

__all__ = ["ApiError", "CallgateError", "Gate", "Lease", "LeaseLost", "LeaseScope", "Rejected", "TransportError"]
__version__ = "0.1.0"
