// callgate's live page: initial GETs, then /v1/events (server-sent events) keep it current.
// Plain JS, no build step. Every text that comes from the server is set with textContent.
"use strict";

const TOKEN_KEY = "callgate-token";
const FEED_MAX = 24;
const RATE_WINDOW_MS = 10000;

const state = {
  token: null,
  pools: new Map(), // name -> pool object of GET /v1/pools
  poolOrder: [],
  line: new Map(), // ticket id -> waiting ticket of GET /v1/tickets
  breakers: [],
  alerts: [],
  schedules: [], // GET /v1/schedules: every [[schedules]] entry, and which are in force
  stats: { pools: [], flows: [], adaptive: [] },
  campaigns: null,
  assistants: null, // GET /v1/calls/summary's rows: what Vapi measured per assistant
  today: new Map(), // pool -> GET /v1/forecast/today: today's forecast, arrivals so far, reserve ahead
  decisions: [], // client times of arrival decisions, for decisions/s
  leases: null, // live leases (calls), from /v1/stats and events
  skew: 0, // server clock minus client clock (ms)
  source: null,
  // Whether what the page shows is the server's state: false until everything loaded and
  // the event stream is open, and again while it is down or no key was accepted. While
  // false, figures show "—" and a banner says why, never zeros or "nobody is waiting".
  known: false,
};

const UNKNOWN = "—";

function setKnown(known, why) {
  state.known = known;
  document.body.dataset.known = known ? "1" : "0";
  $("unknown").hidden = known;
  if (!known) $("unknown-why").textContent = why;
}

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// ----- auth ------------------------------------------------------------------------------

function takeToken() {
  const url = new URL(window.location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  state.token = sessionStorage.getItem(TOKEN_KEY);
}

function askForToken() {
  setKnown(false, "this server needs an API key.");
  $("main").hidden = true;
  $("login").hidden = false;
  setConn("down", "needs a key");
  $("token").focus();
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  const t = $("token").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  state.token = t;
  $("login").hidden = true;
  $("main").hidden = false;
  start();
});

class Unauthorized extends Error {}

async function get(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401) throw new Unauthorized(path);
  if (!r.ok) return null;
  return r.json();
}

// A read the page cannot do without (pools, the waiting line): a failure is an error,
// so the page stays "unknown" rather than showing an empty list.
async function need(path) {
  const v = await get(path);
  if (v === null) throw new Error(path + " failed");
  return v;
}

// ----- formatting ------------------------------------------------------------------------

function serverNow() {
  return Date.now() + state.skew;
}

function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  if (m < 60) return m + "m " + String(rest).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
}

function clock(ms) {
  const d = new Date(ms - state.skew);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function number(v, digits) {
  if (v === null || v === undefined) return "–";
  return Number(v).toFixed(digits === undefined ? 0 : digits);
}

// ----- rendering -------------------------------------------------------------------------

function figures(kind, name) {
  return (state.stats[kind] || []).find((f) => f.name === name) || {};
}

function renderPools() {
  const root = $("pools");
  const cards = [];
  for (const name of state.poolOrder) {
    const p = state.pools.get(name);
    if (p) cards.push(poolCard(p));
  }
  root.replaceChildren(...cards);
  // A call may hold several pools: the counts of calls come from the server.
  $("total-leases").textContent = !state.known || state.leases === null ? UNKNOWN : state.leases;
  $("total-waiting").textContent = state.known ? state.line.size : UNKNOWN;
}

function poolCard(p) {
  const f = figures("pools", p.name);
  const adaptive = (state.stats.adaptive || []).find((a) => a.pool === p.name);
  const reserved = Object.values(p.reserve || {}).reduce((a, b) => a + b, 0);
  const full = p.used >= p.cap && p.cap > 0;
  const units = el("div", { class: "units" + (p.limit > 60 ? " many" : ""), "aria-hidden": "true" });
  const shown = Math.min(p.limit, 60);
  const scale = p.limit / Math.max(shown, 1);
  for (let i = 0; i < shown; i++) {
    const at = i * scale;
    let cls = "unit";
    if (state.known && at < p.used) cls += " used";
    if (at >= p.cap) cls += " capped";
    else if (at >= p.cap - reserved) cls += " reserved";
    units.append(el("div", { class: cls }));
  }
  const reserve = Object.entries(p.reserve || {})
    .map(([c, u]) => c + " " + u)
    .join(" · ");
  // A reserve that follows the forecast: the value in force, its source, the next hours.
  const fr = p.forecast_reserve;
  const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
  const forecast = fr
    ? el(
        "div",
        { class: "by-class", "data-forecast-reserve": p.name, title: fr.note || "" },
        fr.class + " reserve " + fr.units + " (" + fr.source + (fr.needed != null ? ", needs " + fr.needed + " lines" : "") + ")" +
          (fr.next && fr.next.length ? " · next: " + fr.next.map((n) => hhmm(n.start_ms) + " " + n.units).join(" · ") : "")
      )
    : null;
  const byClass = Object.entries(p.used_by_class || {})
    .filter(([, u]) => u > 0)
    .map(([c, u]) => c + " " + u)
    .join(" · ");
  const known = state.known;
  return el(
    "article",
    { class: "pool" + (full ? " full" : ""), "data-pool": p.name },
    el(
      "h3",
      {},
      p.name,
      adaptive
        ? el("span", { class: "badge", title: "adaptive cap" }, adaptive.algorithm + " " + adaptive.min + "–" + adaptive.max)
        : null
    ),
    el(
      "div",
      { class: "big" },
      el("span", { "data-used": p.name }, known ? p.used : UNKNOWN),
      el("small", {}, " / " + p.cap + " cap" + (p.cap !== p.limit ? " · limit " + p.limit : ""))
    ),
    units,
    el("div", { class: "by-class", "data-by-class": p.name }, known ? (byClass ? "in use: " + byClass : "nothing in use") : "in use: " + UNKNOWN),
    forecast,
    el(
      "div",
      { class: "facts" },
      // Figures of the moment are unknown with the rest (the ones last read may be stale).
      fact("waiting", known ? p.waiting : UNKNOWN),
      fact("decisions/s", known ? number(f.decisions_per_second, 1) : UNKNOWN),
      fact("rejected/min", !known ? UNKNOWN : f.rejections_per_minute === undefined ? "–" : f.rejections_per_minute),
      fact("p95 wait", known ? duration(f.p95_wait_ms) : UNKNOWN),
      fact("p95 latency", known ? duration(f.p95_latency_ms) : UNKNOWN),
      fact("mean hold", known ? duration(p.mean_hold_ms) : UNKNOWN)
    ),
    el("div", { class: "reserve" }, reserve ? "held back: " + reserve : "no reserve")
  );
}

function fact(label, value) {
  return el("div", {}, el("b", {}, value), label);
}

function renderLine() {
  // Unknown (not loaded, no key, stream down): no rows, not the line as it last was.
  const rows = (state.known ? [...state.line.values()] : []).sort(
    (a, b) => (a.position || 0) - (b.position || 0) || a.enqueued_at_ms - b.enqueued_at_ms
  );
  const now = serverNow();
  const tr = rows.map((t, i) => {
    const waited = Math.max(0, now - t.enqueued_at_ms);
    return el(
      "tr",
      { class: waited > 60000 ? "long" : "", "data-ticket": t.id },
      el("td", {}, t.position || i + 1),
      el("td", { class: "key" }, t.key || t.id),
      el("td", {}, t.class),
      el("td", {}, t.flow || "–"),
      el("td", { class: "num wait" }, duration(waited)),
      el("td", { class: "num" }, t.eta_ms === undefined ? "–" : duration(t.eta_ms))
    );
  });
  $("line").replaceChildren(...tr);
  $("line-empty").hidden = !state.known || rows.length > 0;
  $("waiting-count").textContent = state.known ? rows.length : UNKNOWN;
}

function renderBreakers() {
  const items = state.breakers.map((b) => {
    let detail = b.calls + " calls, " + b.failed + " failed";
    if (b.state === "open" && b.until_ms) detail = "probes in " + duration(Math.max(0, b.until_ms - serverNow()));
    if (b.state === "half_open") detail = "probing";
    const flows = b.flows && b.flows.length ? " → " + b.flows.join(", ") + " on fallback" : "";
    return el(
      "li",
      { "data-breaker": b.name },
      el("span", { class: "chip " + b.state }, b.state.replace("_", "-")),
      el("b", {}, b.name),
      el("span", { class: "detail" }, detail + (b.state !== "closed" ? flows : ""))
    );
  });
  $("breakers").replaceChildren(...items);
  $("breakers-empty").hidden = !state.known || items.length > 0;
}

function renderSchedules() {
  const list = state.schedules;
  $("schedules-panel").hidden = !Array.isArray(list) || list.length === 0;
  const items = (list || []).map((s) =>
    el(
      "li",
      { "data-schedule": s.name, "data-active": s.active ? "1" : "0" },
      el("span", { class: "chip " + (s.active ? "active" : "quiet") }, s.active ? "active" : "off"),
      el("b", {}, s.name),
      el(
        "span",
        { class: "detail" },
        s.days.join(" ") + " " + s.start + "–" + s.end + " " + s.timezone + (s.active && s.since_ms ? " · since " + duration(serverNow() - s.since_ms) : "")
      )
    )
  );
  $("schedules").replaceChildren(...items);
}

function alertValue(a) {
  if (a.value === null || a.value === undefined) return "no data";
  if (a.metric === "utilization" || a.metric === "error_rate") return Math.round(a.value * 100) + "%";
  if (a.metric === "p95_wait" || a.metric === "p95_latency") return duration(a.value);
  return number(a.value, a.value % 1 ? 1 : 0);
}

function alertThreshold(a) {
  if (a.metric === "utilization" || a.metric === "error_rate") return Math.round(a.threshold * 100) + "%";
  if (a.metric === "p95_wait" || a.metric === "p95_latency") return duration(a.threshold);
  return a.threshold;
}

function renderAlerts() {
  const rank = { firing: 0, pending: 1, quiet: 2 };
  const sorted = [...state.alerts].sort((a, b) => rank[a.state] - rank[b.state]);
  const items = sorted.map((a) => {
    const since = a.firing_since_ms || a.pending_since_ms;
    const when = since ? " · " + (a.state === "firing" ? "firing" : "pending") + " " + duration(serverNow() - since) : "";
    return el(
      "li",
      { class: a.state, "data-alert": a.name },
      el("span", { class: "chip " + a.state }, a.state),
      el("b", {}, a.name),
      el(
        "span",
        { class: "detail" },
        a.metric.replace(/_/g, " ") + " of " + a.target.name + " " + alertValue(a) + " (" + a.direction + " " + alertThreshold(a) + ")" + when
      ),
      // A notification that did not reach its webhook: nobody was told, so say it here.
      a.last_notification && !a.last_notification.ok
        ? el(
            "span",
            { class: "notify-failed", "data-notify-failed": a.name },
            "notification failed: " + a.last_notification.detail + " (" + a.notifications_failed + " failed)"
          )
        : null
    );
  });
  $("alerts").replaceChildren(...items);
  $("alerts-empty").hidden = !state.known || items.length > 0;
  $("alerts-count").textContent = state.known ? state.alerts.filter((a) => a.state === "firing").length : UNKNOWN;
}

function renderCampaigns() {
  const list = state.campaigns;
  if (!Array.isArray(list) || list.length === 0) {
    $("campaigns-panel").hidden = true;
    return;
  }
  $("campaigns-panel").hidden = false;
  const items = list.map((c) => {
    const leads = c.leads || {};
    const total = leads.total || 0;
    const done = total - (leads.pending || 0) - (leads.dialing || 0) - (leads.in_call || 0);
    const pct = total > 0 ? Math.round((100 * done) / total) : 0;
    return el(
      "li",
      { "data-campaign": c.name },
      el("span", { class: "chip " + (c.state === "running" ? "closed" : "paused") }, c.state),
      el("b", {}, c.name),
      el("span", { class: "progress", title: pct + "% of leads done" }, el("span", { style: "width:" + pct + "%" })),
      el("span", { class: "detail" }, (total ? done + "/" + total : "no leads") + " · " + (c.live || 0) + " live"),
      // Paused by callgate for an account error: say why, until someone resumes it.
      c.paused_reason ? el("span", { class: "detail reason", title: c.paused_reason }, c.paused_reason) : null
    );
  });
  $("campaigns").replaceChildren(...items);
}

function renderAssistants() {
  const rows = state.assistants;
  if (!Array.isArray(rows) || rows.length === 0) {
    $("assistants-panel").hidden = true;
    return;
  }
  $("assistants-panel").hidden = false;
  const ms = (v) => (typeof v === "number" ? duration(v) : UNKNOWN);
  const tr = rows.slice(0, 12).map((a) =>
    el(
      "tr",
      { "data-assistant": a.assistant || "" },
      el("td", { title: a.provider + " · " + (a.flows || []).join(", ") }, a.assistant || "(none)"),
      el("td", { class: "num" }, String(a.calls)),
      el("td", { class: "num" }, ms(a.turn_p50_ms)),
      el("td", { class: "num" }, ms(a.turn_p95_ms)),
      el("td", { class: "num" }, String(a.user_interrupted)),
      el("td", { class: "num" }, typeof a.cost_per_minute_usd === "number" ? "$" + number(a.cost_per_minute_usd, 3) : UNKNOWN),
      el("td", { class: "num" + (a.error_endings > 0 ? " bad" : "") }, String(a.error_endings))
    )
  );
  $("assistants").replaceChildren(...tr);
}

function renderRate() {
  const now = Date.now();
  state.decisions = state.decisions.filter((t) => now - t < RATE_WINDOW_MS);
  const fromStats = (state.stats.pools || []).reduce((m, f) => Math.max(m, f.decisions_per_second || 0), 0);
  const live = state.decisions.length / (RATE_WINDOW_MS / 1000);
  $("total-rate").textContent = state.known ? number(Math.max(live, fromStats), 1) : UNKNOWN;
}

function feed(kind, what, detail, attrs) {
  const item = el(
    "li",
    Object.assign({ class: kind }, attrs || {}),
    el("span", { class: "t" }, clock(serverNow())),
    el("span", { class: "what" }, what),
    el("span", { class: "detail" }, detail)
  );
  const list = $("feed");
  list.prepend(item);
  while (list.children.length > FEED_MAX) list.lastChild.remove();
  $("feed-empty").hidden = true;
}

function flash(pool) {
  const card = document.querySelector('[data-pool="' + CSS.escape(pool) + '"]');
  if (!card) return;
  card.classList.add("flash");
  setTimeout(() => card.classList.remove("flash"), 600);
}

// ----- events ----------------------------------------------------------------------------

function addUnits(pools, sign, cls) {
  for (const pu of pools || []) {
    const p = state.pools.get(pu.pool);
    if (!p) continue;
    p.used = Math.max(0, p.used + sign * pu.units);
    if (cls) {
      p.used_by_class = p.used_by_class || {};
      p.used_by_class[cls] = Math.max(0, (p.used_by_class[cls] || 0) + sign * pu.units);
    }
  }
}

function addWaiting(pools, sign) {
  for (const pu of pools || []) {
    const p = state.pools.get(pu.pool);
    if (p) p.waiting = Math.max(0, p.waiting + sign);
  }
}

let lineRefresh = null;
function refreshLineSoon() {
  if (lineRefresh) return;
  lineRefresh = setTimeout(async () => {
    lineRefresh = null;
    await loadLine().catch(() => {});
    renderLine();
  }, 250);
}

function onEvent(e) {
  if (typeof e.at_ms === "number") state.skew = e.at_ms - Date.now();
  const names = (pools) => (pools || []).map((p) => p.pool).join(", ");
  switch (e.type) {
    case "granted": {
      const l = e.lease;
      addUnits(l.pools, +1, l.class);
      if (state.leases !== null) state.leases += 1;
      if (e.ticket) {
        state.line.delete(e.ticket);
        addWaiting(l.pools, -1);
        refreshLineSoon();
      } else {
        state.decisions.push(Date.now());
      }
      feed("granted", "granted", (l.key || l.id) + " · " + (l.flow || l.class) + (e.ticket ? " after " + duration(e.waited_ms) : ""), {
        "data-lease": l.id,
        "data-key": l.key || "",
      });
      renderPools();
      for (const pu of l.pools) flash(pu.pool);
      break;
    }
    case "queued": {
      const t = e.ticket;
      state.line.set(t.id, Object.assign({ position: e.position }, t));
      addWaiting(t.pools, +1);
      state.decisions.push(Date.now());
      feed("queued", "queued #" + e.position, (t.key || t.id) + " · " + (t.flow || t.class), { "data-key": t.key || "" });
      renderPools();
      refreshLineSoon();
      break;
    }
    case "rejected":
      state.decisions.push(Date.now());
      feed("rejected", "rejected", (e.flow || e.class) + " · " + e.reason.replace(/_/g, " ") + (e.dependency ? " (" + e.dependency + ")" : ""));
      break;
    case "released":
    case "expired": {
      const l = e.lease;
      addUnits(l.pools, -1, l.class);
      if (state.leases !== null) state.leases = Math.max(0, state.leases - 1);
      feed(e.type, e.type, (l.key || l.id) + " · held " + duration(e.held_ms) + " · " + names(l.pools));
      renderPools();
      break;
    }
    case "ticket_cancelled":
    case "ticket_timed_out":
    case "ticket_never_fits": {
      const t = e.ticket;
      state.line.delete(t.id);
      addWaiting(t.pools, -1);
      const how = { ticket_cancelled: "hung up", ticket_timed_out: "timed out", ticket_never_fits: "never fits" }[e.type];
      feed("rejected", how, (t.key || t.id) + " after " + duration(e.waited_ms));
      renderPools();
      refreshLineSoon();
      break;
    }
    case "limit_changed": {
      const p = state.pools.get(e.pool);
      if (p) {
        const what = p.limit !== e.limit ? "limit " + p.limit + " → " + e.limit : "cap " + p.cap + " → " + e.cap;
        p.limit = e.limit;
        p.cap = e.cap;
        feed("released", "pool", e.pool + " " + what);
        renderPools();
      }
      break;
    }
    case "breaker_changed":
      feed(e.state === "open" ? "rejected" : "released", "breaker", e.breaker + " " + e.from + " → " + e.state + " (" + e.cause + ")");
      loadBreakers().then(renderBreakers, () => {});
      break;
    case "alert_fired":
    case "alert_resolved":
      feed(e.type === "alert_fired" ? "rejected" : "granted", e.type === "alert_fired" ? "alert" : "resolved", e.alert);
      loadAlerts().then(renderAlerts, () => {});
      break;
    case "alert_action":
      feed(e.ok ? "released" : "rejected", (e.undo ? "undo " : "") + e.action.replace(/_/g, " "), e.detail);
      // A failed notification shows on its alert.
      if (e.action === "notify") loadAlerts().then(renderAlerts, () => {});
      break;
    case "schedule_changed":
      feed("released", "schedule", e.active.length ? "in force: " + e.active.join(", ") : "none in force (as configured)");
      loadSchedules().then(renderSchedules, () => {});
      loadPools().then(renderPools, () => {});
      break;
    case "reserve_changed":
      feed("released", "forecast reserve", e.pool + " · " + e.class + " " + e.was + " → " + e.units + " (" + e.source + ")");
      loadPools().then(renderPools, () => {});
      break;
    case "prewarm_called":
      feed(e.ok ? "released" : "rejected", "prewarm", e.hook + " · " + e.expected_sessions + " sessions at " + new Date(e.at_ms).toISOString().slice(11, 16));
      break;
    case "schedule_failed":
      feed("rejected", "schedule", "not applied: " + e.reason);
      break;
    case "spill": {
      // A caller spilled or routed to another flow: admitted there (granted), no line there
      // (rejected), the transferred call came in (arrived), or never did (expired).
      const kind = { granted: "granted", arrived: "granted", rejected: "rejected", expired: "expired" }[e.outcome] || "released";
      const route = e.from ? e.from + " → " + e.to : "→ " + e.to;
      feed(kind, "spill " + e.outcome, (e.call_id || e.key || "") + " · " + route);
      break;
    }
    case "campaign_paused":
    case "campaign_resumed":
      feed(
        e.type === "campaign_paused" ? "rejected" : "granted",
        e.type === "campaign_paused" ? "campaign paused" : "campaign " + e.state,
        e.campaign + " · " + (e.type === "campaign_paused" ? e.reason : "cleared: " + e.cleared)
      );
      loadCampaigns().then(renderCampaigns, () => {});
      break;
    default:
      break;
  }
  renderRate();
}

function setConn(s, text) {
  $("conn").dataset.state = s;
  $("conn-text").textContent = text;
}

function connect() {
  if (state.source) state.source.close();
  const url = "/v1/events" + (state.token ? "?token=" + encodeURIComponent(state.token) : "");
  const source = new EventSource(url);
  state.source = source;
  source.onopen = () => {
    setConn("live", "live");
    // Anything missed while disconnected: read it again; known once it is read.
    loadAll().then(
      () => {
        setKnown(true);
        renderAll();
        document.body.dataset.ready = "1";
      },
      (err) => {
        if (err instanceof Unauthorized) askForToken();
      }
    );
  };
  source.onmessage = (m) => {
    try {
      onEvent(JSON.parse(m.data));
    } catch (err) {
      console.error("bad event", err);
    }
  };
  source.addEventListener("lagged", () => loadAll().then(renderAll, () => {}));
  // Reconnected (EventSource sends Last-Event-ID) but the server no longer had what we missed.
  source.addEventListener("missed", () => loadAll().then(renderAll, () => {}));
  source.onerror = () => {
    setConn("down", "reconnecting…");
    document.body.dataset.ready = "";
    setKnown(false, "the event stream is disconnected; reconnecting.");
    renderAll();
    // EventSource reconnects by itself; a 401 closes it for good, so check.
    if (source.readyState === EventSource.CLOSED) {
      get("/v1/pools").then(() => setTimeout(connect, 2000), (err) => {
        if (err instanceof Unauthorized) askForToken();
        else setTimeout(connect, 2000);
      });
    }
  };
}

// ----- loading ---------------------------------------------------------------------------

async function loadPools() {
  const pools = await need("/v1/pools");
  state.poolOrder = pools.map((p) => p.name);
  state.pools = new Map(pools.map((p) => [p.name, p]));
}

async function loadLine() {
  const line = await need("/v1/tickets");
  state.line = new Map(line.map((t) => [t.id, t]));
}

async function loadBreakers() {
  state.breakers = (await get("/v1/breakers")) || [];
}

async function loadAlerts() {
  state.alerts = (await get("/v1/alerts")) || [];
}

async function loadSchedules() {
  state.schedules = (await get("/v1/schedules")) || [];
}

async function loadStats() {
  const s = await get("/v1/stats");
  if (s) {
    state.stats = s;
    state.skew = s.at_ms - Date.now();
    if (typeof s.leases === "number") state.leases = s.leases;
  }
}

async function loadCampaigns() {
  const list = await get("/v1/campaigns").catch(() => null);
  if (!Array.isArray(list)) {
    state.campaigns = null;
    return;
  }
  // The list is brief; each campaign's own view has its lead counts (the first 8 shown).
  const shown = list.slice(0, 8);
  const views = await Promise.all(shown.map((c) => get("/v1/campaigns/" + encodeURIComponent(c.name)).catch(() => null)));
  state.campaigns = shown.map((c, i) => Object.assign({}, c, views[i] || {}));
}

async function loadAssistants() {
  const s = await get("/v1/calls/summary").catch(() => null);
  state.assistants = s && Array.isArray(s.assistants) ? s.assistants : null;
}

async function loadToday() {
  // Pools whose reserve follows the forecast (the first 4).
  const names = state.poolOrder.filter((n) => state.pools.get(n) && state.pools.get(n).forecast_reserve).slice(0, 4);
  const views = await Promise.all(names.map((n) => get("/v1/forecast/today?pool=" + encodeURIComponent(n)).catch(() => null)));
  state.today = new Map(names.map((n, i) => [n, views[i]]).filter(([, v]) => v && Array.isArray(v.intervals)));
}

async function loadAll() {
  await Promise.all([
    loadPools(), loadLine(), loadBreakers(), loadAlerts(), loadStats(), loadCampaigns(), loadAssistants(), loadSchedules(),
  ]);
  await loadToday();
}

function renderForecast() {
  const panel = $("forecast-panel");
  panel.hidden = state.today.size === 0;
  const root = $("forecast-charts");
  if (!state.known) {
    // What the page last knew is not shown as the present.
    root.replaceChildren(el("p", { class: "empty" }, UNKNOWN));
    return;
  }
  root.replaceChildren(...[...state.today.values()].map((v) => forecastChart(v, serverNow())));
}

function renderAll() {
  renderPools();
  renderForecast();
  renderLine();
  renderBreakers();
  renderAlerts();
  renderCampaigns();
  renderAssistants();
  renderSchedules();
  renderRate();
}

let timers = [];
async function start() {
  setKnown(false, "loading…");
  try {
    await loadAll();
  } catch (err) {
    if (err instanceof Unauthorized) return askForToken();
    setConn("down", "cannot reach the server");
    setKnown(false, "the server cannot be reached; retrying.");
    renderAll();
    setTimeout(start, 2000);
    return;
  }
  renderAll();
  // Known once the event stream is open (connect's onopen reads everything again).
  connect();
  timers.forEach(clearInterval);
  timers = [
    setInterval(() => {
      renderLine();
      renderBreakers();
      renderRate();
    }, 1000),
    setInterval(() => loadStats().then(renderPools, () => {}), 2000),
    setInterval(() => loadAlerts().then(renderAlerts, () => {}), 3000),
    setInterval(() => loadCampaigns().then(renderCampaigns, () => {}), 5000),
    setInterval(() => loadAssistants().then(renderAssistants, () => {}), 10000),
    setInterval(() => loadPools().then(renderPools, () => {}), 15000),
    setInterval(() => loadToday().then(renderForecast, () => {}), 60000),
  ];
}

takeToken();
renderAll();
start();
