// The hand-written types of src/types.ts have exactly the fields of the OpenAPI
// document's schemas. The document is $CALLGATE_OPENAPI, else the repository's
// docs/openapi.json, else what the running server serves at /openapi.json. Schemas are
// found through the operations, not by component names.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { before, describe, test } from "node:test";
import * as t from "../src/types.js";

type Schema = Record<string, any>;
const docPath = fileURLToPath(new URL("../../../../docs/openapi.json", import.meta.url)); // from dist/test/

async function loadDocument(): Promise<Schema | null> {
  const explicit = process.env.CALLGATE_OPENAPI;
  if (explicit) return JSON.parse(readFileSync(explicit, "utf8"));
  if (existsSync(docPath)) return JSON.parse(readFileSync(docPath, "utf8"));
  const url = process.env.CALLGATE_URL;
  if (url) {
    const res = await fetch(`${url}/openapi.json`);
    if (res.ok) return (await res.json()) as Schema;
    if (res.status !== 404) throw new Error(`GET /openapi.json: HTTP ${res.status}`);
  }
  return null;
}

// [field list, operation path, method, "request" or a status, property path inside it]
const checks: [string, object, string, string, string, string[]][] = [
  ["AcquireRequest", t.acquireRequestFields, "/v1/acquire", "post", "request", []],
  ["PoolRequest", t.poolRequestFields, "/v1/acquire", "post", "request", ["pools", "[]"]],
  ["GrantedAnswer", t.grantedAnswerFields, "/v1/acquire", "post", "200", []],
  ["LeaseView", t.leaseViewFields, "/v1/acquire", "post", "200", ["lease"]],
  ["PoolUnits", t.poolUnitsFields, "/v1/acquire", "post", "200", ["lease", "pools", "[]"]],
  ["QueuedAnswer", t.queuedAnswerFields, "/v1/acquire", "post", "202", []],
  ["TicketView", t.ticketViewFields, "/v1/acquire", "post", "202", ["ticket"]],
  ["RejectedAnswer", t.rejectedAnswerFields, "/v1/acquire", "post", "429", []],
  ["RejectedAnswer", t.rejectedAnswerFields, "/v1/acquire", "post", "409", []],
  ["ErrorBody", t.errorBodyFields, "/v1/acquire", "post", "400", []],
  ["ErrorDetail", t.errorDetailFields, "/v1/acquire", "post", "400", ["error"]],
  ["TicketStatus", t.ticketStatusFields, "/v1/tickets/{id}", "get", "200", []],
  ["CancelAnswer", t.cancelAnswerFields, "/v1/tickets/{id}", "delete", "200", []],
  ["RenewRequest", t.renewRequestFields, "/v1/leases/{id}/renew", "post", "request", []],
  ["RenewAnswer", t.renewAnswerFields, "/v1/leases/{id}/renew", "post", "200", []],
  ["LeaseView", t.leaseViewFields, "/v1/leases/{id}/renew", "post", "200", ["lease"]],
  ["ReleaseRequest", t.releaseRequestFields, "/v1/leases/{id}", "delete", "request", []],
  ["ReleaseAnswer", t.releaseAnswerFields, "/v1/leases/{id}", "delete", "200", []],
];

class Schemas {
  constructor(readonly doc: Schema) {}

  resolve(s: Schema): Schema {
    while (s.$ref) {
      let node: any = this.doc;
      for (const part of String(s.$ref).replace(/^#\//, "").split("/")) node = node[part];
      s = node;
    }
    return s;
  }

  /** The object (or array) schemas `s` may be, through refs, allOf, oneOf and anyOf. */
  variants(s: Schema): Schema[] {
    s = this.resolve(s);
    const out: Schema[] = [];
    for (const combo of ["oneOf", "anyOf"]) for (const v of s[combo] ?? []) out.push(...this.variants(v));
    if (s.allOf) {
      const properties: Schema = {};
      for (const v of s.allOf) for (const part of this.variants(v)) Object.assign(properties, part.properties ?? {});
      out.push({ properties });
    }
    const types = Array.isArray(s.type) ? s.type : [s.type];
    if (s.properties || types.includes("object")) out.push(s);
    if (s.items) out.push({ items: s.items });
    return out;
  }

  properties(s: Schema): string[] {
    return [...new Set(this.variants(s).flatMap((v) => Object.keys(v.properties ?? {})))].sort();
  }

  child(s: Schema, name: string): Schema {
    if (name === "[]") {
      const items = this.variants(s).find((v) => v.items)?.items;
      assert.ok(items, "not an array");
      return items;
    }
    const found = this.variants(s).filter((v) => v.properties?.[name]).map((v) => v.properties[name]);
    assert.ok(found.length > 0, `no property ${name}`);
    return { anyOf: found };
  }

  at(path: string, method: string, where: string): Schema {
    const op = this.doc.paths[path][method];
    const holder = where === "request" ? op.requestBody : op.responses[where];
    return this.resolve(holder).content["application/json"].schema;
  }
}

describe("types match the OpenAPI document", async () => {
  let schemas: Schemas | null = null;
  before(async () => {
    const doc = await loadDocument();
    schemas = doc && new Schemas(doc);
  });
  for (const [name, fields, path, method, where, inside] of checks) {
    test(`${name} @ ${method} ${path} ${where} ${inside.join(".")}`, (ctx) => {
      if (schemas === null) return ctx.skip("no OpenAPI document: neither docs/openapi.json nor the server's /openapi.json");
      let s = schemas.at(path, method, where);
      for (const n of inside) s = schemas.child(s, n);
      assert.deepEqual(Object.keys(fields).sort(), schemas.properties(s));
    });
  }
});
