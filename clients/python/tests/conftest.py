"""Fixtures for the client tests, which run against a real callgate server.

``scripts/test-clients`` starts one (a temp data dir, ``clients/test-server.toml``) and
passes its address and tokens in ``CALLGATE_URL``, ``CALLGATE_CLIENT_TOKEN`` and
``CALLGATE_ADMIN_TOKEN``. Each test uses its own keys and leaves every pool as it found it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Optional

import pytest

from callgate import Gate


class Admin:
    """Reads and changes the server behind the client's back, with the admin key."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def leases(self, key: str) -> list[dict[str, Any]]:
        status, body = self.call("GET", f"/v1/leases?key={key}")
        assert status == 200, body
        return [lease for lease in body["leases"] if lease["key"] == key]

    def pool(self, name: str) -> dict[str, Any]:
        status, body = self.call("GET", f"/v1/pools/{name}")
        assert status == 200, body
        return dict(body)

    def until(self, what: str, check: Callable[[], bool], within: float = 10.0) -> None:
        """Waits until the server's state satisfies ``check`` (polled); fails after
        ``within`` seconds. A bound on waiting for a state, not a timing assertion."""
        end = time.monotonic() + within
        while not check():
            if time.monotonic() > end:
                pytest.fail(f"server never reached: {what}")
            time.sleep(0.02)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.skip(f"{name} is not set: run scripts/test-clients, which starts a server")
    return value


@pytest.fixture(scope="session")
def url() -> str:
    return _env("CALLGATE_URL")


@pytest.fixture(scope="session")
def gate(url: str) -> Gate:
    return Gate(url, token=_env("CALLGATE_CLIENT_TOKEN"))


@pytest.fixture(scope="session")
def admin(url: str) -> Admin:
    return Admin(url, _env("CALLGATE_ADMIN_TOKEN"))


@pytest.fixture
def key() -> Callable[[str], str]:
    """Unique keys per test, so tests never see each other's leases."""
    run = uuid.uuid4().hex[:8]
    return lambda name: f"pytest-{run}-{name}"


@pytest.fixture(autouse=True)
def pools_left_empty(request: pytest.FixtureRequest) -> Any:
    """Every test leaves every pool empty, or the next one would start from a full pool."""
    yield
    if "admin" in request.fixturenames:
        admin: Optional[Admin] = request.getfixturevalue("admin")
        assert admin is not None
        for name in ("line", "trunk", "short"):
            admin.until(f"pool {name} empty", lambda: admin.pool(name)["used"] == 0 and admin.pool(name)["waiting"] == 0)
