/**
 * Client for callgate, the concurrency control plane for AI voice agents: hold a lease
 * for the life of a call, waiting in line when told to, renewing it in the background and
 * releasing it on the way out, also when the call throws.
 *
 * ```ts
 * await using lease = await gate.lease("outbound", { key: callId });
 * await runTheCall({ signal: lease.signal });
 * ```
 */

import type {
  AcquireRequest,
  LeaseView,
  Meta,
  Overflow,
  PoolRequest,
  ReleaseRequest,
  TicketStatus,
  TicketView,
} from "./types.js";

export type * from "./types.js";

// Node 20 has both symbols; older runtimes get the well-known registry symbols that
// TypeScript's `using` helpers look up.
(Symbol as { asyncDispose?: symbol }).asyncDispose ??= Symbol.for("Symbol.asyncDispose");
(Symbol as { dispose?: symbol }).dispose ??= Symbol.for("Symbol.dispose");

/** One acquire request blocks at most this long for a grant (the server allows 60 s). */
export const LONG_POLL_MS = 20_000;
/** Renew at least this often, so a lease lost behind the client's back is noticed soon. */
export const MAX_RENEW_EVERY_MS = 30_000;
/** Transport failures and 503s of idempotent requests are retried this many times. */
const RETRIES = 2;
const RETRY_PAUSE_MS = 200;

/** Base class of every error this client throws. */
export class CallgateError extends Error {
  override name = "CallgateError";
}

/** The server could not be reached, or its answer was not JSON (nothing was decided). */
export class TransportError extends CallgateError {
  override name = "TransportError";
}

/** The server refused a request: HTTP `status`, and `code` and `message` from its body. */
export class ApiError extends CallgateError {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${detail} (${code}, HTTP ${status})`);
  }
}

/**
 * No lease: the call was turned away, at once or after waiting in line. `reason` is the
 * server's (`capacity`, `queue_full`, `never_fits`, `dependency_down`), or `timed_out` /
 * `cancelled` for a ticket that ended in line; `overflow` is what the flow says to do
 * instead; `retryAfterMs` when a retry may succeed (null when waiting cannot help).
 */
export class Rejected extends CallgateError {
  override name = "Rejected";
  constructor(
    readonly reason: string,
    readonly overflow: Overflow | null,
    readonly retryAfterMs: number | null,
    readonly status = 429,
    readonly ticketId: string | null = null,
    readonly dependency: string | null = null,
  ) {
    super(`rejected: ${reason}${overflow ? `, overflow ${overflow.action}` : ""}`);
  }

  /** The overflow's `action` (busy, voicemail, callback, transfer, ivr), or null. */
  get overflowAction(): string | null {
    return this.overflow?.action ?? null;
  }
}

/** The lease ended while it was held: released by someone else, expired, or unknown. */
export class LeaseLost extends CallgateError {
  override name = "LeaseLost";
  constructor(
    readonly leaseId: string,
    readonly reason: string,
  ) {
    super(`lease ${leaseId} lost: ${reason}`);
  }
}

export interface GateOptions {
  /** The API key, sent as `Authorization: Bearer …` (a `client` key is enough). */
  token?: string;
  /** Bounds each request that does not wait in line (default 10 s). */
  timeoutMs?: number;
}

export interface AcquireOptions {
  /** Idempotency key, e.g. the provider's call id; generated when left out. */
  key?: string;
  /** The lease's TTL (default: the flow's `lease_ttl`). */
  ttlMs?: number;
  /** How long to wait in line at most (default: the flow's; 0: never wait). */
  maxWaitMs?: number;
  meta?: Meta;
  /** Instead of a flow: the pools, with `class`. */
  pools?: PoolRequest[];
  class?: string;
  /** Called when put in line and after each long poll that leaves it waiting. */
  onQueued?: (ticket: TicketView) => void;
  /** Aborting leaves the line (and frees a grant that raced with the abort). */
  signal?: AbortSignal;
}

export interface LeaseOptions extends AcquireOptions {
  /** Renew this often (default: a third of the TTL, at most 30 s). */
  renewEveryMs?: number;
  /** Called once if a renewal finds the lease gone. */
  onLost?: (lease: Lease) => void;
}

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Headers;
}

interface Step {
  method: string;
  path: string;
  body?: object | undefined;
  timeoutMs?: number;
}

const q = encodeURIComponent;
const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function ms(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) {
    throw new RangeError(`\`${name}\` must be a finite number of milliseconds >= 0, not ${value}`);
  }
  return Math.round(value);
}

/** The client of one callgate server. */
export class Gate {
  readonly baseUrl: string;
  readonly #token: string | undefined;
  readonly #timeoutMs: number;

  constructor(baseUrl: string, options: GateOptions = {}) {
    const url = new URL(baseUrl);
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw new TypeError(`baseUrl must be an http(s) URL, not ${baseUrl}`);
    }
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.#token = options.token;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  async #requestOnce(step: Step, signal?: AbortSignal): Promise<Reply> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (step.body !== undefined) headers["content-type"] = "application/json";
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    const timeout = AbortSignal.timeout(step.timeoutMs ?? this.#timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await fetch(this.baseUrl + step.path, {
        method: step.method,
        headers,
        body: step.body === undefined ? undefined : JSON.stringify(step.body),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      text = await res.text();
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new TransportError(`${step.method} ${step.path}: ${(e as Error).message}`, { cause: e });
    }
    let body: unknown = {};
    try {
      body = text ? JSON.parse(text) : {};
    } catch {
      throw new TransportError(`${step.method} ${step.path}: HTTP ${res.status} with a body that is not JSON`);
    }
    if (typeof body !== "object" || body === null) {
      throw new TransportError(`${step.method} ${step.path}: HTTP ${res.status} with a body that is not a JSON object`);
    }
    return { status: res.status, body: body as Record<string, unknown>, headers: res.headers };
  }

  /** One idempotent request: retried after a transport failure or a 503 (nothing changed). */
  async #request(step: Step, signal?: AbortSignal): Promise<Reply> {
    for (let attempt = 0; ; attempt++) {
      const last = attempt === RETRIES;
      try {
        const reply = await this.#requestOnce(step, signal);
        if (reply.status !== 503 || last) return reply;
      } catch (e) {
        if (last || !(e instanceof TransportError)) throw e;
      }
      await pause(RETRY_PAUSE_MS * 2 ** attempt);
    }
  }

  static #error(reply: Reply): ApiError {
    const err = reply.body.error as { code?: unknown; message?: unknown } | undefined;
    if (err && typeof err === "object") {
      return new ApiError(reply.status, String(err.code ?? "unknown"), String(err.message ?? ""));
    }
    return new ApiError(reply.status, "unexpected", `unexpected answer ${JSON.stringify(reply.body).slice(0, 200)}`);
  }

  static #rejected(reply: Reply, ticketId: string | null): Rejected {
    const b = reply.body;
    let retryAfter: number | null = null;
    if (typeof b.retry_after_ms === "number") retryAfter = b.retry_after_ms;
    else if (/^\d+$/.test(reply.headers.get("retry-after") ?? "")) retryAfter = Number(reply.headers.get("retry-after")) * 1000;
    return new Rejected(
      String(b.reason ?? "unknown"),
      (b.overflow as Overflow | null | undefined) ?? null,
      retryAfter,
      reply.status,
      ticketId,
      typeof b.dependency === "string" ? b.dependency : null,
    );
  }

  static #ticketEnd(st: TicketStatus): LeaseView {
    switch (st.state) {
      case "granted": {
        const lease = st.lease;
        if (lease && "expires_at_ms" in lease) return lease;
        throw new LeaseLost(lease?.id ?? "?", `ticket ${st.id} was granted, but the lease ended before it was seen`);
      }
      case "timed_out":
        throw new Rejected("timed_out", st.overflow ?? null, null, 429, st.id);
      case "never_fits":
        throw new Rejected("never_fits", st.overflow ?? null, null, 409, st.id);
      case "cancelled":
        throw new Rejected("cancelled", null, null, 429, st.id);
      default:
        throw new CallgateError(`ticket ${st.id} is ${st.state} although a new one was given for its key`);
    }
  }

  #acquireBody(flow: string | undefined, o: AcquireOptions): AcquireRequest & { key: string } {
    const body: AcquireRequest & { key: string } = {
      // Always a key: it makes retries and the repeated long polls of a wait in line
      // idempotent, and lets an interrupted acquire be undone by key.
      key: o.key ?? `ts-${crypto.randomUUID()}`,
    };
    if (flow !== undefined) body.flow = flow;
    if (o.pools !== undefined) body.pools = o.pools;
    if (o.class !== undefined) body.class = o.class;
    if (o.ttlMs !== undefined) body.ttl_ms = Math.max(1, ms(o.ttlMs, "ttlMs"));
    if (o.maxWaitMs !== undefined) body.max_wait_ms = ms(o.maxWaitMs, "maxWaitMs");
    if (o.meta !== undefined) body.meta = o.meta;
    return body;
  }

  async #acquire(body: AcquireRequest & { key: string }, o: AcquireOptions): Promise<{ view: LeaseView; ticket: TicketView | null }> {
    const signal = o.signal;
    let ticket: TicketView | null = null;
    try {
      signal?.throwIfAborted();
      // The first ask answers at once, so a caller put in line learns its ticket; the
      // repeats (same key, so the same ticket) long-poll.
      let reply = await this.#request({ method: "POST", path: "/v1/acquire", body }, signal);
      const ask = { ...body, wait_ms: LONG_POLL_MS };
      for (;;) {
        const decision = reply.body.decision;
        if (reply.status === 200 && decision === "granted") return { view: reply.body.lease as LeaseView, ticket };
        if (decision === "rejected") throw Gate.#rejected(reply, ticket?.id ?? null);
        if (reply.status !== 202 || decision !== "queued") throw Gate.#error(reply);
        const t = reply.body.ticket as TicketView;
        if (ticket !== null && t.id !== ticket.id) {
          // Ours ended between two long polls and the repeat took a new place in line:
          // give that back and report how ours ended.
          await this.#request({ method: "DELETE", path: `/v1/tickets/${q(t.id)}` });
          return { view: Gate.#ticketEnd(await this.ticket(ticket.id)), ticket };
        }
        ticket = t;
        o.onQueued?.(t);
        reply = await this.#request(
          { method: "POST", path: "/v1/acquire", body: ask, timeoutMs: LONG_POLL_MS + this.#timeoutMs },
          signal,
        );
      }
    } catch (e) {
      const decided = e instanceof Rejected || (e instanceof ApiError && e.status >= 400 && e.status < 500);
      if (!decided) {
        // An abort or a lost connection may have left a ticket in line or a grant
        // nobody saw: undo both (harmless when there is nothing to undo).
        await this.#undo(body.key, ticket?.id ?? null);
      }
      throw e;
    }
  }

  async #undo(key: string, ticketId: string | null): Promise<void> {
    try {
      if (ticketId !== null) {
        await this.#request({ method: "DELETE", path: `/v1/tickets/${q(ticketId)}` });
      } else {
        // Interrupted before the answer came back: a ticket may be in line under our key
        // all the same. The waiting line (its first 500) says which.
        const line = await this.#request({ method: "GET", path: "/v1/tickets" });
        const waiting: unknown = line.status === 200 ? line.body : [];
        for (const t of Array.isArray(waiting) ? waiting : []) {
          if (t?.key === key) await this.#request({ method: "DELETE", path: `/v1/tickets/${q(String(t.id))}` });
        }
      }
      await this.#request({ method: "DELETE", path: `/v1/leases?key=${q(key)}` });
    } catch {
      // The ticket times out and the lease expires by themselves.
    }
  }

  /**
   * Acquires a lease, waiting in line when the flow has a waiting room, and returns it;
   * nothing renews or releases it (see {@link Gate.lease}). Throws {@link Rejected}.
   */
  async acquire(flow: string | undefined, options: AcquireOptions = {}): Promise<LeaseView> {
    return (await this.#acquire(this.#acquireBody(flow, options), options)).view;
  }

  /**
   * A lease held until it is disposed: `await using lease = await gate.lease("outbound",
   * { key })`. It is renewed in the background until then, and released by disposal
   * (also when the block throws). If a renewal finds it gone, `lease.lost` turns true,
   * `lease.signal` aborts and `onLost(lease)` is called. Throws {@link Rejected} when
   * the call is turned away, at once or after waiting in line.
   */
  async lease(flow: string | undefined, options: LeaseOptions = {}): Promise<Lease> {
    if (options.renewEveryMs !== undefined && !(Number.isFinite(options.renewEveryMs) && options.renewEveryMs > 0)) {
      throw new RangeError(`renewEveryMs must be a positive number, not ${options.renewEveryMs}`);
    }
    const body = this.#acquireBody(flow, options);
    const { view, ticket } = await this.#acquire(body, options);
    const ttlMs = body.ttl_ms ?? Math.max(1, view.expires_at_ms - view.granted_at_ms);
    const every = options.renewEveryMs ?? Math.min(ttlMs / 3, MAX_RENEW_EVERY_MS);
    return new Lease(this, view, ticket, ttlMs, every, options.onLost);
  }

  /**
   * `fn` runs while the lease is held; the lease is released when it settles. Resolves
   * to what `fn` resolves to; throws {@link LeaseLost} if the lease was lost meanwhile
   * and `fn` did not throw.
   */
  async withLease<T>(flow: string | undefined, options: LeaseOptions, fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = await this.lease(flow, options);
    let result: T;
    try {
      result = await fn(lease);
    } finally {
      await lease.release();
    }
    lease.check();
    return result;
  }

  /** Extends a live lease by `ttlMs` from now (default: its own TTL). */
  async renew(leaseId: string, ttlMs?: number): Promise<LeaseView> {
    const body = ttlMs === undefined ? {} : { ttl_ms: Math.max(1, ms(ttlMs, "ttlMs")) };
    const reply = await this.#request({ method: "POST", path: `/v1/leases/${q(leaseId)}/renew`, body });
    if (reply.status !== 200) throw Gate.#error(reply);
    return reply.body.lease as LeaseView;
  }

  /** Releases a lease; true the first time, false when it was not live. */
  async release(leaseId: string, report?: ReleaseRequest): Promise<boolean> {
    const reply = await this.#request({ method: "DELETE", path: `/v1/leases/${q(leaseId)}`, body: report });
    if (reply.status !== 200) throw Gate.#error(reply);
    return reply.body.released === true;
  }

  /** Releases the live lease with this key; true the first time. */
  async releaseKey(key: string): Promise<boolean> {
    const reply = await this.#request({ method: "DELETE", path: `/v1/leases?key=${q(key)}` });
    if (reply.status !== 200) throw Gate.#error(reply);
    return reply.body.released === true;
  }

  /** A ticket's state. */
  async ticket(ticketId: string): Promise<TicketStatus> {
    const reply = await this.#request({ method: "GET", path: `/v1/tickets/${q(ticketId)}` });
    if (reply.status !== 200) throw Gate.#error(reply);
    return reply.body as unknown as TicketStatus;
  }

  /** Leaves the line; true when the ticket was still waiting. */
  async cancel(ticketId: string): Promise<boolean> {
    const reply = await this.#request({ method: "DELETE", path: `/v1/tickets/${q(ticketId)}` });
    if (reply.status !== 200) throw Gate.#error(reply);
    return reply.body.cancelled === true;
  }
}

/** A held lease, renewed in the background until it is released or disposed. */
export class Lease implements AsyncDisposable {
  /** The server's latest view of the lease (`expires_at_ms` moves with each renewal). */
  view: LeaseView;
  /** The place in line it waited in, if it did. */
  readonly ticket: TicketView | null;
  /** Sent with the release: how the call went (adaptive caps, breakers). */
  report: ReleaseRequest | undefined;
  readonly #gate: Gate;
  readonly #ttlMs: number;
  readonly #everyMs: number;
  readonly #onLost: ((lease: Lease) => void) | undefined;
  readonly #lost = new AbortController();
  #lostReason: string | null = null;
  #deadline: number;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #renewing: Promise<void> | null = null;
  #released: Promise<void> | null = null;

  constructor(
    gate: Gate,
    view: LeaseView,
    ticket: TicketView | null,
    ttlMs: number,
    everyMs: number,
    onLost?: (lease: Lease) => void,
  ) {
    this.#gate = gate;
    this.view = view;
    this.ticket = ticket;
    this.#ttlMs = ttlMs;
    this.#everyMs = everyMs;
    this.#onLost = onLost;
    this.#deadline = performance.now() + ttlMs;
    this.#schedule(everyMs);
  }

  /** `L<n>`. */
  get id(): string {
    return this.view.id;
  }

  get key(): string | null {
    return this.view.key;
  }

  /** True once a renewal found the lease gone; it does not come back. */
  get lost(): boolean {
    return this.#lost.signal.aborted;
  }

  get lostReason(): string | null {
    return this.#lostReason;
  }

  /** Aborts when the lease is lost: pass it to what the lease allows (the call's work). */
  get signal(): AbortSignal {
    return this.#lost.signal;
  }

  /** Throws {@link LeaseLost} if the lease was lost. */
  check(): void {
    if (this.lost) throw new LeaseLost(this.id, this.#lostReason ?? "lost");
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#renewing = this.#renewOnce().then((next) => {
        this.#renewing = null;
        if (next !== null && this.#released === null) this.#schedule(next);
      });
    }, delayMs);
  }

  #markLost(reason: string): void {
    if (this.#released !== null || this.lost) return;
    this.#lostReason = reason;
    this.#lost.abort(new LeaseLost(this.id, reason));
    try {
      this.#onLost?.(this);
    } catch {
      // A callback's failure must not stop the lease's bookkeeping.
    }
  }

  /** One renewal; the pause before the next, or null to stop renewing. */
  async #renewOnce(): Promise<number | null> {
    if (this.#released !== null) return null;
    const sent = performance.now();
    let err: unknown;
    try {
      this.view = await this.#gate.renew(this.id, this.#ttlMs);
      this.#deadline = sent + this.#ttlMs;
      return this.#everyMs;
    } catch (e) {
      if (e instanceof ApiError && e.status < 500) {
        // 404: released, expired or unknown; 401/403: this key may not keep it.
        this.#markLost(`renewal refused: ${e.message}`);
        return null;
      }
      err = e;
    }
    const remaining = this.#deadline - performance.now();
    if (remaining <= 0) {
      this.#markLost(`expired: not renewed in time (${(err as Error).message})`);
      return null;
    }
    return Math.max(50, Math.min(this.#everyMs, remaining / 4));
  }

  /**
   * Stops renewing and releases the lease (once; later calls wait for the first). A
   * failure to release is not thrown: the lease expires by its TTL.
   */
  release(): Promise<void> {
    this.#released ??= (async () => {
      if (this.#timer !== null) clearTimeout(this.#timer);
      await this.#renewing;
      if (this.lost) return;
      try {
        await this.#gate.release(this.id, this.report);
      } catch {
        // It expires by its TTL.
      }
    })();
    return this.#released;
  }

  /** `await using`: releases the lease. A lost lease is not thrown here (it would hide
   * the block's own error): check `lease.lost` or use `withLease`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
