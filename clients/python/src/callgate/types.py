"""The JSON shapes of callgate's HTTP API v1, as TypedDicts.

Written by hand from the OpenAPI document (``docs/openapi.json``, generated from the
server's handler types); ``tests/test_schema.py`` checks that every TypedDict here has
exactly the fields of the schema it mirrors, so a field added or renamed on the server
fails the client's tests until it is added here too.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, TypedDict, Union

#: The metadata stored with a lease: any JSON object (at most 4 KiB, 16 levels deep).
Meta = dict[str, Any]


class PoolUnits(TypedDict):
    """``{ "pool", "units" }``: units held in one pool."""

    pool: str
    units: int


class _PoolRequestRequired(TypedDict):
    pool: str


class PoolRequest(_PoolRequestRequired, total=False):
    """One pool of an acquire that names pools directly; ``units`` defaults to 1."""

    units: int


# `class` is a Python keyword, so these use the functional syntax.
AcquireRequest = TypedDict(
    "AcquireRequest",
    {
        "flow": str,
        "pools": list[PoolRequest],
        "class": str,
        "key": str,
        "ttl_ms": int,
        "max_wait_ms": int,
        "wait_ms": int,
        "meta": Meta,
    },
    total=False,
)
AcquireRequest.__doc__ = """``POST /v1/acquire``: ``flow``, or ``pools`` with ``class``."""

_LeaseRequired = TypedDict(
    "_LeaseRequired",
    {
        "id": str,
        "key": Optional[str],
        "class": str,
        "pools": list[PoolUnits],
        "granted_at_ms": int,
        "expires_at_ms": int,
    },
)


class LeaseView(_LeaseRequired, total=False):
    """A lease as the API shows it (``L<n>``); times are Unix milliseconds."""

    flow: str
    meta: Meta


class TicketView(TypedDict):
    """A place in a waiting room (``T<n>``)."""

    id: str
    key: Optional[str]
    position: int
    eta_ms: int
    deadline_ms: int


OverflowAction = Literal["busy", "voicemail", "callback", "transfer", "ivr"]


class _OverflowRequired(TypedDict):
    action: OverflowAction


class Overflow(_OverflowRequired, total=False):
    """What the flow says to do with a caller it turned away (its first overflow step)."""

    message: str
    number: str
    sip: str
    menu: str
    key: str
    after: str
    max_length: str


class GrantedAnswer(TypedDict):
    """200 from ``POST /v1/acquire``."""

    decision: Literal["granted"]
    lease: LeaseView


class QueuedAnswer(TypedDict):
    """202 from ``POST /v1/acquire``."""

    decision: Literal["queued"]
    ticket: TicketView


class _RejectedRequired(TypedDict):
    decision: Literal["rejected"]
    reason: str
    overflow: Optional[Overflow]


class RejectedAnswer(_RejectedRequired, total=False):
    """429 (``capacity``, ``queue_full``, ``dependency_down``) or 409 (``never_fits``)."""

    retry_after_ms: int
    dependency: str


AcquireAnswer = Union[GrantedAnswer, QueuedAnswer, RejectedAnswer]


class EndedLease(TypedDict):
    """The lease a granted ticket became, once it is no longer live."""

    id: str
    live: bool


TicketState = Literal["waiting", "granted", "timed_out", "never_fits", "cancelled"]


class _TicketStatusRequired(TypedDict):
    id: str
    state: TicketState


class TicketStatus(_TicketStatusRequired, total=False):
    """``GET /v1/tickets/{id}``: which fields are present depends on ``state``."""

    key: Optional[str]
    position: int
    eta_ms: int
    deadline_ms: int
    lease: Union[LeaseView, EndedLease]
    overflow: Optional[Overflow]


class RenewRequest(TypedDict, total=False):
    """``POST /v1/leases/{id}/renew``: the new TTL from now (default: the lease's own)."""

    ttl_ms: int


class RenewAnswer(TypedDict):
    """200 from ``POST /v1/leases/{id}/renew``."""

    lease: LeaseView


class ReleaseRequest(TypedDict, total=False):
    """Optional body of ``DELETE /v1/leases/{id}``: how the call went (adaptive caps, breakers)."""

    latency_ms: float
    dependency: str
    ok: bool
    dropped: bool


class ReleaseAnswer(TypedDict):
    """``{ "released": bool }``: true only the first time."""

    released: bool


class CancelAnswer(TypedDict):
    """``{ "cancelled": bool }``: false once the ticket had already ended."""

    cancelled: bool


class ErrorDetail(TypedDict):
    """A refusal's machine-readable ``code`` and human ``message``."""

    code: str
    message: str


class ErrorBody(TypedDict):
    """Every 4xx/5xx body that is not an acquire decision."""

    error: ErrorDetail
