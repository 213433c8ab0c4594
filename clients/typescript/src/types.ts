/**
 * The JSON shapes of callgate's HTTP API v1.
 *
 * Written by hand from the OpenAPI document (`docs/openapi.json`, generated from the
 * server's handler types). Each interface has a field list beside it that the compiler
 * holds to exactly the interface's keys (`satisfies Fields<T>`), and
 * `test/schema.test.ts` compares those lists with the document's schemas, so a field
 * added or renamed on the server fails the client's tests until it is added here too.
 */

/** Every key of `T`, required or not: a list the compiler keeps equal to `T`'s keys. */
export type Fields<T> = { readonly [K in keyof Required<T>]: true };

/** The metadata stored with a lease: any JSON object (at most 4 KiB, 16 levels deep). */
export type Meta = Record<string, unknown>;

/** Units held in one pool. */
export interface PoolUnits {
  pool: string;
  units: number;
}
export const poolUnitsFields = { pool: true, units: true } as const satisfies Fields<PoolUnits>;

/** One pool of an acquire that names pools directly; `units` defaults to 1. */
export interface PoolRequest {
  pool: string;
  units?: number;
}
export const poolRequestFields = { pool: true, units: true } as const satisfies Fields<PoolRequest>;

/** `POST /v1/acquire`: `flow`, or `pools` with `class`. */
export interface AcquireRequest {
  flow?: string;
  pools?: PoolRequest[];
  class?: string;
  key?: string;
  ttl_ms?: number;
  max_wait_ms?: number;
  wait_ms?: number;
  meta?: Meta;
}
export const acquireRequestFields = {
  flow: true, pools: true, class: true, key: true, ttl_ms: true, max_wait_ms: true, wait_ms: true, meta: true,
} as const satisfies Fields<AcquireRequest>;

/** A lease as the API shows it (`L<n>`); times are Unix milliseconds. */
export interface LeaseView {
  id: string;
  key: string | null;
  class: string;
  flow?: string;
  pools: PoolUnits[];
  granted_at_ms: number;
  expires_at_ms: number;
  meta?: Meta;
}
export const leaseViewFields = {
  id: true, key: true, class: true, flow: true, pools: true, granted_at_ms: true, expires_at_ms: true, meta: true,
} as const satisfies Fields<LeaseView>;

/** A place in a waiting room (`T<n>`). */
export interface TicketView {
  id: string;
  key: string | null;
  position: number;
  eta_ms: number;
  deadline_ms: number;
}
export const ticketViewFields = {
  id: true, key: true, position: true, eta_ms: true, deadline_ms: true,
} as const satisfies Fields<TicketView>;

export type OverflowAction = "busy" | "voicemail" | "callback" | "transfer" | "ivr";

/** What the flow says to do with a caller it turned away (its first overflow step). */
export interface Overflow {
  action: OverflowAction;
  message?: string;
  number?: string;
  sip?: string;
  menu?: string;
  key?: string;
  after?: string;
  max_length?: string;
}

/** 200 from `POST /v1/acquire`. */
export interface GrantedAnswer {
  decision: "granted";
  lease: LeaseView;
}
export const grantedAnswerFields = { decision: true, lease: true } as const satisfies Fields<GrantedAnswer>;

/** 202 from `POST /v1/acquire`. */
export interface QueuedAnswer {
  decision: "queued";
  ticket: TicketView;
}
export const queuedAnswerFields = { decision: true, ticket: true } as const satisfies Fields<QueuedAnswer>;

/** 429 (`capacity`, `queue_full`, `dependency_down`) or 409 (`never_fits`). */
export interface RejectedAnswer {
  decision: "rejected";
  reason: string;
  overflow: Overflow | null;
  retry_after_ms?: number;
  dependency?: string;
}
export const rejectedAnswerFields = {
  decision: true, reason: true, overflow: true, retry_after_ms: true, dependency: true,
} as const satisfies Fields<RejectedAnswer>;

export type AcquireAnswer = GrantedAnswer | QueuedAnswer | RejectedAnswer;

/** The lease a granted ticket became, once it is no longer live. */
export interface EndedLease {
  id: string;
  live: false;
}

export type TicketState = "waiting" | "granted" | "timed_out" | "never_fits" | "cancelled";

/** `GET /v1/tickets/{id}`: which fields are present depends on `state`. */
export interface TicketStatus {
  id: string;
  state: TicketState;
  key?: string | null;
  position?: number;
  eta_ms?: number;
  deadline_ms?: number;
  lease?: LeaseView | EndedLease;
  overflow?: Overflow | null;
}
export const ticketStatusFields = {
  id: true, state: true, key: true, position: true, eta_ms: true, deadline_ms: true, lease: true, overflow: true,
} as const satisfies Fields<TicketStatus>;

/** `POST /v1/leases/{id}/renew`: the new TTL from now (default: the lease's own). */
export interface RenewRequest {
  ttl_ms?: number;
}
export const renewRequestFields = { ttl_ms: true } as const satisfies Fields<RenewRequest>;

/** 200 from `POST /v1/leases/{id}/renew`. */
export interface RenewAnswer {
  lease: LeaseView;
}
export const renewAnswerFields = { lease: true } as const satisfies Fields<RenewAnswer>;

/** Optional body of `DELETE /v1/leases/{id}`: how the call went (adaptive caps, breakers). */
export interface ReleaseRequest {
  latency_ms?: number;
  dependency?: string;
  ok?: boolean;
  dropped?: boolean;
}
export const releaseRequestFields = {
  latency_ms: true, dependency: true, ok: true, dropped: true,
} as const satisfies Fields<ReleaseRequest>;

/** `{ "released": bool }`: true only the first time. */
export interface ReleaseAnswer {
  released: boolean;
}
export const releaseAnswerFields = { released: true } as const satisfies Fields<ReleaseAnswer>;

/** `{ "cancelled": bool }`: false once the ticket had already ended. */
export interface CancelAnswer {
  cancelled: boolean;
}
export const cancelAnswerFields = { cancelled: true } as const satisfies Fields<CancelAnswer>;

/** A refusal's machine-readable `code` and human `message`. */
export interface ErrorDetail {
  code: string;
  message: string;
}
export const errorDetailFields = { code: true, message: true } as const satisfies Fields<ErrorDetail>;

/** Every 4xx/5xx body that is not an acquire decision. */
export interface ErrorBody {
  error: ErrorDetail;
}
export const errorBodyFields = { error: true } as const satisfies Fields<ErrorBody>;
