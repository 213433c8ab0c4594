"""The hand-written TypedDicts of ``callgate.types`` have exactly the fields of the
OpenAPI document's schemas (generated from the server's handler types).

The document is ``$CALLGATE_OPENAPI``, else the repository's ``docs/openapi.json``, else
what the running server serves at ``/openapi.json``. Schemas are found through the
operations (the body of ``POST /v1/acquire``, its 202 answer's ``ticket``, …), not by
their component names, so renaming a component on the server changes nothing here.
"""

from __future__ import annotations

import json
import os
import pathlib
import urllib.error
import urllib.request
from typing import Any, Optional

import pytest

from callgate import types as t

DOC_PATH = pathlib.Path(__file__).resolve().parents[3] / "docs" / "openapi.json"

# (TypedDict, operation path, method, "request" or a status, property path inside it)
CHECKS: list[tuple[Any, str, str, str, tuple[str, ...]]] = [
    (t.AcquireRequest, "/v1/acquire", "post", "request", ()),
    (t.PoolRequest, "/v1/acquire", "post", "request", ("pools", "[]")),
    (t.GrantedAnswer, "/v1/acquire", "post", "200", ()),
    (t.LeaseView, "/v1/acquire", "post", "200", ("lease",)),
    (t.PoolUnits, "/v1/acquire", "post", "200", ("lease", "pools", "[]")),
    (t.QueuedAnswer, "/v1/acquire", "post", "202", ()),
    (t.TicketView, "/v1/acquire", "post", "202", ("ticket",)),
    (t.RejectedAnswer, "/v1/acquire", "post", "429", ()),
    (t.RejectedAnswer, "/v1/acquire", "post", "409", ()),
    (t.ErrorBody, "/v1/acquire", "post", "400", ()),
    (t.ErrorDetail, "/v1/acquire", "post", "400", ("error",)),
    (t.TicketStatus, "/v1/tickets/{id}", "get", "200", ()),
    (t.CancelAnswer, "/v1/tickets/{id}", "delete", "200", ()),
    (t.RenewRequest, "/v1/leases/{id}/renew", "post", "request", ()),
    (t.RenewAnswer, "/v1/leases/{id}/renew", "post", "200", ()),
    (t.LeaseView, "/v1/leases/{id}/renew", "post", "200", ("lease",)),
    (t.ReleaseRequest, "/v1/leases/{id}", "delete", "request", ()),
    (t.ReleaseAnswer, "/v1/leases/{id}", "delete", "200", ()),
]


def _document() -> Optional[dict[str, Any]]:
    explicit = os.environ.get("CALLGATE_OPENAPI")
    if explicit:
        return dict(json.loads(pathlib.Path(explicit).read_text()))
    if DOC_PATH.exists():
        return dict(json.loads(DOC_PATH.read_text()))
    url = os.environ.get("CALLGATE_URL")
    if url:
        try:
            with urllib.request.urlopen(url + "/openapi.json", timeout=10) as resp:
                return dict(json.loads(resp.read()))
        except urllib.error.HTTPError as e:
            if e.code != 404:
                raise
    return None


class Schemas:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc

    def resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            node: Any = self.doc
            for part in s["$ref"].lstrip("#/").split("/"):
                node = node[part]
            s = node
        return s

    def variants(self, s: dict[str, Any]) -> list[dict[str, Any]]:
        """The object schemas ``s`` may be: through refs, allOf, oneOf and anyOf (a
        nullable value is ``oneOf: [null, X]``); a schema without properties is left out."""
        s = self.resolve(s)
        out: list[dict[str, Any]] = []
        for combo in ("oneOf", "anyOf"):
            for v in s.get(combo, []):
                out += self.variants(v)
        if "allOf" in s:
            merged: dict[str, Any] = {"properties": {}}
            for v in s["allOf"]:
                for part in self.variants(v):
                    merged["properties"].update(part.get("properties", {}))
            out.append(merged)
        if "properties" in s or s.get("type") == "object" or "object" in (s.get("type") or []):
            out.append(s)
        if "items" in s:
            out.append({"items": s["items"]})
        return out

    def properties(self, s: dict[str, Any]) -> set[str]:
        return {p for v in self.variants(s) for p in v.get("properties", {})}

    def child(self, s: dict[str, Any], name: str) -> dict[str, Any]:
        if name == "[]":
            items = [v["items"] for v in self.variants(s) if "items" in v] or [self.resolve(s).get("items")]
            assert items[0] is not None, "not an array"
            return dict(items[0])
        found = [v["properties"][name] for v in self.variants(s) if name in v.get("properties", {})]
        assert found, f"no property {name}"
        # A property that is `X | null` resolves to X's variants through `variants`.
        return {"anyOf": found}

    def at(self, path: str, method: str, where: str) -> dict[str, Any]:
        op = self.doc["paths"][path][method]
        if where == "request":
            return dict(self.resolve(op["requestBody"])["content"]["application/json"]["schema"])
        return dict(self.resolve(op["responses"][where])["content"]["application/json"]["schema"])


@pytest.fixture(scope="module")
def schemas() -> Schemas:
    doc = _document()
    if doc is None:
        pytest.skip("no OpenAPI document: neither docs/openapi.json nor the server's /openapi.json")
    return Schemas(doc)


def _fields(td: Any) -> set[str]:
    return set(td.__required_keys__) | set(td.__optional_keys__)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: f"{c[0].__name__}@{c[2]} {c[1]} {c[3]}{'.'.join(c[4])}")
def test_typed_dict_matches_the_document(schemas: Schemas, check: tuple[Any, str, str, str, tuple[str, ...]]) -> None:
    td, path, method, where, inside = check
    s = schemas.at(path, method, where)
    for name in inside:
        s = schemas.child(s, name)
    assert _fields(td) == schemas.properties(s), f"{td.__name__} differs from the document at {method} {path} {where}"
