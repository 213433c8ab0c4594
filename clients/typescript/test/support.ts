// The server the tests run against: scripts/test-clients starts one and passes its
// address and tokens in CALLGATE_URL, CALLGATE_CLIENT_TOKEN and CALLGATE_ADMIN_TOKEN.
import { randomUUID } from "node:crypto";

export const url = process.env.CALLGATE_URL ?? "";
export const clientToken = process.env.CALLGATE_CLIENT_TOKEN ?? "";
const adminToken = process.env.CALLGATE_ADMIN_TOKEN ?? "";
/** Why the server tests cannot run, or null. */
export const skip = url && clientToken && adminToken ? false : "CALLGATE_URL is not set: run scripts/test-clients";

const run = randomUUID().slice(0, 8);
/** Unique keys per run, so tests never see each other's leases. */
export const key = (name: string) => `node-${run}-${name}`;

/** Reads and changes the server behind the client's back, with the admin key. */
export async function admin(method: string, path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url + path, { method, headers: { authorization: `Bearer ${adminToken}` } });
  return { status: res.status, body: await res.json() };
}

export async function leases(k: string): Promise<any[]> {
  const { status, body } = await admin("GET", `/v1/leases?key=${encodeURIComponent(k)}`);
  if (status !== 200) throw new Error(JSON.stringify(body));
  return body.leases.filter((l: any) => l.key === k);
}

export async function pool(name: string): Promise<any> {
  const { status, body } = await admin("GET", `/v1/pools/${name}`);
  if (status !== 200) throw new Error(JSON.stringify(body));
  return body;
}

/** Waits until the server's state satisfies `check` (polled); fails after `withinMs`. A
 * bound on waiting for a state, not a timing assertion. */
export async function until(what: string, check: () => Promise<boolean>, withinMs = 10_000): Promise<void> {
  const end = performance.now() + withinMs;
  while (!(await check())) {
    if (performance.now() > end) throw new Error(`server never reached: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every test leaves every pool empty, or the next one would start from a full pool. */
export async function poolsEmpty(): Promise<void> {
  for (const name of ["line", "trunk", "short"]) {
    await until(`pool ${name} empty`, async () => {
      const p = await pool(name);
      return p.used === 0 && p.waiting === 0;
    });
  }
}
