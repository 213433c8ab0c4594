"""The exceptions the client raises: one base class, each carrying what a caller acts on."""

from __future__ import annotations

from typing import Optional

from .types import Overflow


class CallgateError(Exception):
    """Base class of every error this client raises."""


class TransportError(CallgateError):
    """The server could not be reached, or its answer was not JSON (nothing was decided)."""


class ApiError(CallgateError):
    """The server refused a request: ``status`` (HTTP), ``code`` and ``message`` from its body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.message = message


class Rejected(CallgateError):
    """No lease: the call was turned away, at once or after waiting in line.

    ``reason`` is the server's (``capacity``, ``queue_full``, ``never_fits``,
    ``dependency_down``), or ``timed_out`` / ``cancelled`` for a ticket that ended in
    line. ``overflow`` is what the flow says to do with the caller instead (its
    ``action``: busy, voicemail, callback, transfer, ivr), ``retry_after`` when a retry
    may succeed, in seconds (``None`` when waiting cannot help, e.g. ``never_fits``).
    """

    def __init__(
        self,
        reason: str,
        overflow: Optional[Overflow],
        retry_after: Optional[float],
        *,
        status: int = 429,
        ticket_id: Optional[str] = None,
        dependency: Optional[str] = None,
    ) -> None:
        action = overflow["action"] if overflow else None
        super().__init__(f"rejected: {reason}" + (f", overflow {action}" if action else ""))
        self.reason = reason
        self.overflow = overflow
        self.retry_after = retry_after
        self.status = status
        self.ticket_id = ticket_id
        self.dependency = dependency

    @property
    def overflow_action(self) -> Optional[str]:
        """The overflow's ``action``, or ``None`` when the flow has no overflow."""
        return self.overflow["action"] if self.overflow else None


class LeaseLost(CallgateError):
    """The lease ended while it was held: released by someone else, expired, or unknown.

    The units it held may already be someone else's: stop what the lease allowed.
    """

    def __init__(self, lease_id: str, reason: str) -> None:
        super().__init__(f"lease {lease_id} lost: {reason}")
        self.lease_id = lease_id
        self.reason = reason
