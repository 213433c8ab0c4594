// `await using lease = await gate.lease(...)` and `withLease` against a real server.
import assert from "node:assert/strict";
import { afterEach, describe, test } from "node:test";
import { ApiError, Gate, LeaseLost, Rejected, type TicketView } from "../src/index.js";
import { admin, clientToken, key, leases, pool, poolsEmpty, skip, until, url } from "./support.js";

describe("lease", { skip }, () => {
  const gate = new Gate(url || "http://127.0.0.1:1", { token: clientToken });
  afterEach(poolsEmpty);

  test("granted, then released when the block ends", async () => {
    const k = key("call");
    {
      await using lease = await gate.lease("outbound", { key: k, meta: { agent: "node" } });
      assert.equal(lease.key, k);
      assert.equal(lease.ticket, null);
      const live = await leases(k);
      assert.deepEqual(live.map((l) => l.id), [lease.id]);
      assert.deepEqual(live[0].meta, { agent: "node" });
      assert.equal((await pool("line")).used, 1);
    }
    assert.deepEqual(await leases(k), []);
  });

  test("released when the block throws", async () => {
    const k = key("crash");
    await assert.rejects(async () => {
      await using _lease = await gate.lease("outbound", { key: k });
      assert.equal((await leases(k)).length, 1);
      throw new Error("agent crashed");
    }, /agent crashed/);
    assert.deepEqual(await leases(k), []);
    await assert.rejects(
      gate.withLease("outbound", { key: key("crash-2") }, async () => {
        throw new Error("agent crashed again");
      }),
      /agent crashed again/,
    );
    assert.deepEqual(await leases(key("crash-2")), []);
  });

  test("queued, then granted when the other lease ends", async () => {
    const told: TicketView[] = [];
    let second: Promise<string>;
    {
      await using first = await gate.lease("outbound", { key: key("first") });
      second = gate.withLease("outbound", { key: key("second"), onQueued: (t) => told.push(t) }, async (lease) => {
        assert.notEqual(lease.ticket, null);
        return lease.id;
      });
      await until("the second call waits in line", async () => (await pool("line")).waiting === 1);
      await until("the second call hears its place", async () => told.length > 0);
      assert.equal(told[0]?.position, 1);
      assert.ok(first.id);
    }
    assert.match(await second, /^L\d+$/);
  });

  test("rejected with the flow's overflow action", async () => {
    await using _holder = await gate.lease("busy", { key: key("holder") });
    const no = await gate.lease("busy", { key: key("turned-away") }).then(
      () => assert.fail("granted a full pool"),
      (e: unknown) => e,
    );
    assert.ok(no instanceof Rejected);
    assert.equal(no.reason, "capacity");
    assert.equal(no.overflowAction, "voicemail");
    assert.equal(no.overflow?.message, "Please leave a message.");
    assert.ok((no.retryAfterMs ?? 0) > 0);
    assert.deepEqual(await leases(key("turned-away")), []);
  });

  test("waiting past max_wait rejects with the overflow", async () => {
    await using _holder = await gate.lease("outbound", { key: key("holder") });
    await assert.rejects(gate.lease("outbound", { key: key("patient"), maxWaitMs: 300 }), (e: unknown) => {
      return e instanceof Rejected && e.overflowAction === "callback";
    });
  });

  test("aborting while in line leaves the line", async () => {
    await using _holder = await gate.lease("outbound", { key: key("holder") });
    const hangUp = new AbortController();
    const waiting = gate.lease("outbound", { key: key("gave-up"), signal: hangUp.signal });
    await until("in line", async () => (await pool("line")).waiting === 1);
    hangUp.abort(new Error("caller hung up"));
    await assert.rejects(waiting, /caller hung up/);
    assert.equal((await pool("line")).waiting, 0);
    assert.deepEqual(await leases(key("gave-up")), []);
  });

  test("renewal keeps a short-TTL lease alive past its TTL", async () => {
    // The flow's lease_ttl is 2 s; the bare lease is never renewed and shows that the
    // time waited really outlasts the TTL.
    const bare = await gate.acquire("short", { key: key("bare") });
    await using lease = await gate.lease("short", { key: key("held") });
    const firstExpiry = lease.view.expires_at_ms;
    assert.equal(firstExpiry - lease.view.granted_at_ms, 2000);
    while (Date.now() < firstExpiry + 500) await new Promise((r) => setTimeout(r, 100));
    await until("the bare lease expired", async () => (await leases(bare.key ?? "")).length === 0);
    const live = await leases(key("held"));
    assert.deepEqual(live.map((l) => l.id), [lease.id], "the renewed lease expired");
    assert.ok(live[0].expires_at_ms > firstExpiry);
    assert.equal(lease.lost, false);
  });

  test("a lost lease is reported", async () => {
    const seen: string[] = [];
    await assert.rejects(
      gate.withLease("short", { key: key("lost"), onLost: (l) => seen.push(l.id) }, async (lease) => {
        const freed = await admin("DELETE", `/v1/leases/${lease.id}`); // an operator frees it
        assert.deepEqual(freed, { status: 200, body: { released: true } });
        await new Promise((resolve) => lease.signal.addEventListener("abort", resolve));
        assert.equal(lease.lost, true);
        assert.match(lease.lostReason ?? "", /unknown_lease/);
        assert.throws(() => lease.check(), LeaseLost);
        return "call finished";
      }),
      (e: unknown) => e instanceof LeaseLost && seen.length === 1 && e.leaseId === seen[0],
    );
  });

  test("bad input is refused and leaves nothing", async () => {
    await assert.rejects(gate.lease("no-such-flow", { key: key("bad") }), (e: unknown) => {
      return e instanceof ApiError && e.status === 404 && e.code === "unknown_flow";
    });
    await assert.rejects(gate.lease("outbound", { key: "k".repeat(300) }), (e: unknown) => {
      return e instanceof ApiError && e.status === 400 && e.code === "key_too_long";
    });
    await assert.rejects(gate.lease("outbound", { ttlMs: -1 }), RangeError);
    assert.throws(() => new Gate("ftp://example.com"), TypeError);
    await assert.rejects(new Gate(url, { token: "not-a-key" }).lease("outbound"), (e: unknown) => {
      return e instanceof ApiError && e.status === 401;
    });
  });
});
