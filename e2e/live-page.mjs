// Drives callgate's live page in the machine's headless Chromium (no browser download).
//
//   CALLGATE_URL=http://127.0.0.1:7700 CALLGATE_TOKEN=… [CALLGATE_SCREENSHOT=../docs/live-page.png] node live-page.mjs
//
// Checks, against a server that the caller started and filled (crates/server/tests/live_page.rs):
//   1. without a token the page asks for one; the login field takes it and the page goes live;
//   2. with ?token= the page loads, drops the token from the address bar and goes live;
//   3. a call granted through the API shows on the page within a second;
//   4. unknown state is shown as unknown: before a key is accepted, a banner and "—",
//      never "nobody is waiting" or zeros;
//   5. each pool shows its use by class; a failed alert notification is on the page;
//   7. today's forecast of the care line is drawn with the values GET /v1/forecast/today
//      serves: its band over every interval, a bar per interval so far with the arrivals
//      counted, the reserve ahead;
// then saves a screenshot, and with CALLGATE_CONTROL=stdio (the Rust test sets it):
//   6. asks for the server to stop (prints `@control stop`, waits for a line `stopped`):
//      the page says its stream is down and shows "—", never what it last knew or
//      "nobody is waiting"; asks for a server on the same port (`@control start`, waits for
//      `started`): the page recovers by itself, with the state the server restored.
// Exits non-zero with a message on the first failure.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const base = process.env.CALLGATE_URL;
const token = process.env.CALLGATE_TOKEN;
const shot = process.env.CALLGATE_SCREENSHOT;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
if (!base || !token) {
  console.error("set CALLGATE_URL and CALLGATE_TOKEN");
  process.exit(2);
}

const GRANT_WITHIN_MS = 1000;
// EventSource retries after about 3 s; the page's own retry (a stream that closed for
// good) after 2 s. Generous: the machine may be busy.
const RECOVER_WITHIN_MS = 20000;

// The caller's answers to `@control …` lines, one per line on stdin.
const control = process.env.CALLGATE_CONTROL === "stdio" ? createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null;

async function ask(what, answer) {
  console.log("@control " + what);
  const { value, done } = await control.next();
  if (done || value.trim() !== answer) throw new Error(`asked to ${what}, the caller answered ${done ? "nothing" : value}`);
}

async function api(method, path, body) {
  const r = await fetch(base + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

function check(ok, message) {
  if (!ok) throw new Error(message);
  console.log("ok   " + message);
}

// A fresh profile each run (Playwright passes it as --user-data-dir).
const profile = mkdtempSync(join(tmpdir(), "callgate-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1440, height: 900 },
  deviceScaleFactor: 1,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});

let failed = false;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));

  // 1. No token: the login field, then live.
  await page.goto(base + "/");
  await page.waitForSelector("#login:not([hidden])", { timeout: 5000 });
  check(true, "without a token the page asks for one");
  check(await page.isVisible("#unknown"), "without a token a banner says the state is unknown");
  check(
    (await page.textContent("#total-waiting")) === "—" && (await page.textContent("#total-leases")) === "—",
    "without a token the totals show — (not 0)"
  );
  check(await page.isHidden("#line-empty"), "without a token the page does not say nobody is waiting");
  await page.fill("#token", token);
  await page.click("#login button");
  await page.waitForSelector("body[data-ready='1']", { timeout: 5000 });
  check(await page.isHidden("#login"), "the login field takes the token and the page goes live");
  check(await page.isHidden("#unknown"), "once live, the unknown banner is gone");

  // 5. Use by class, and the notification that could not be delivered.
  const byClass = await page.textContent("[data-by-class='vapi-main']");
  check(/inbound \d+/.test(byClass) && /outbound \d+/.test(byClass) && /vip \d+/.test(byClass), `vapi-main shows use by class (${byClass})`);
  await page.waitForSelector("[data-notify-failed='account-saturated']", { timeout: 5000 });
  const failedNote = await page.textContent("[data-notify-failed='account-saturated']");
  check(failedNote.includes("notification failed"), `the failed notification is on the page (${failedNote})`);
  // What Vapi measured, per assistant (GET /v1/calls/summary).
  await page.waitForSelector("[data-assistant='asst_support']", { timeout: 5000 });
  const assistant = await page.textContent("[data-assistant='asst_support']");
  check(/asst_support3\d+ms1\.\ds/.test(assistant.replace(/\s+/g, "")), `the assistant's turn latency is on the page (${assistant})`);

  // 7. Today's forecast against the arrivals so far, with the API's values.
  await page.waitForSelector("svg[data-forecast-chart='care-line'] rect.actual", { timeout: 5000 });
  const today = (await api("GET", "/v1/forecast/today?pool=care-line")).body;
  const drawn = await page.evaluate(() => {
    const chart = document.querySelector("svg[data-forecast-chart='care-line']");
    const bars = [...chart.querySelectorAll("rect.actual")].map((r) => [Number(r.dataset.start), Number(r.dataset.actual)]);
    const band = chart.querySelector("polygon.band");
    const reserve = chart.querySelector("polyline.reserve");
    return {
      bars,
      bandPoints: band ? band.getAttribute("points").trim().split(/\s+/).length : 0,
      reserve: reserve ? reserve.dataset.reserve.split(",").map(Number) : [],
      caption: document.querySelector("[data-forecast-summary='care-line']").textContent,
    };
  });
  const forecastRows = today.intervals.filter((r) => typeof r.arrivals === "number").length;
  check(forecastRows === 96 && drawn.bandPoints === 2 * forecastRows, `the forecast's band spans the day (${drawn.bandPoints} points for ${forecastRows} intervals)`);
  // The page and this read may straddle a 15-minute boundary: compare the intervals both have.
  const served = new Map(today.intervals.filter((r) => r.actual !== null).map((r) => [r.start_ms, r.actual]));
  const same = drawn.bars.filter(([start]) => served.has(start));
  check(same.length >= Math.min(drawn.bars.length, served.size) - 1 && same.length > 0, `a bar per interval so far (${drawn.bars.length} drawn, ${served.size} served)`);
  check(same.every(([start, n]) => served.get(start) === n) && same.some(([, n]) => n > 0), `the bars are the arrivals counted (${same.map(([, n]) => n).join(" ")})`);
  const busyHour = (start) => { const h = new Date(start).getUTCHours(); return h >= 8 && h < 18; };
  check(same.every(([start, n]) => n === (busyHour(start) ? 7 : 1)), "the bars show today's calls: 7 an interval from 08:00 to 18:00, 1 otherwise");
  const reserveServed = today.intervals.filter((r) => typeof r.reserve === "number").map((r) => r.reserve);
  check(drawn.reserve.length > 0 && drawn.reserve.every((u) => u >= 1 && u <= 4), `the reserve ahead is drawn within floor and ceiling (${drawn.reserve.join(",")})`);
  check(drawn.reserve.slice(-4).join(",") === reserveServed.slice(-4).join(","), "the reserve of the day's last intervals is the API's");
  check(/care-line · inbound · \d{4}-\d\d-\d\d \(UTC\): \d+ arrived so far, \d+ forecast/.test(drawn.caption), `the chart says what it shows (${drawn.caption})`);

  // 2. ?token=: a new tab (sessionStorage is per tab, so it starts without the token).
  const fresh = await browser.newPage();
  fresh.on("pageerror", (e) => errors.push(String(e)));
  await fresh.goto(base + "/?token=" + encodeURIComponent(token));
  await fresh.waitForSelector("body[data-ready='1']", { timeout: 5000 });
  check(!fresh.url().includes("token="), "?token= is taken and dropped from the address bar");
  await fresh.close();

  // Some traffic while the page watches, so its feed shows what it is for.
  await api("POST", "/v1/acquire", { flow: "renewals", key: "dial-0420" });
  await api("POST", "/v1/acquire", { flow: "sales", key: "CA-sales-77" });
  await api("POST", "/v1/samples", { pool: "vapi-main", latency_ms: 940 });

  // 3. A grant through the API shows within a second.
  const used = Number(await page.textContent("[data-used='vapi-main']"));
  const key = "e2e-" + Date.now();
  const started = Date.now();
  const grant = await api("POST", "/v1/acquire", { flow: "vip-line", key });
  check(grant.status === 200 && grant.body.decision === "granted", `the API grants ${key} (${grant.status})`);
  await page.waitForSelector(`#feed li[data-key='${key}']`, { timeout: GRANT_WITHIN_MS });
  await page.waitForFunction(
    ([n]) => Number(document.querySelector("[data-used='vapi-main']").textContent) === n,
    [used + 1],
    { timeout: Math.max(1, GRANT_WITHIN_MS - (Date.now() - started)) }
  );
  check(Date.now() - started <= GRANT_WITHIN_MS, `the grant is on the page after ${Date.now() - started} ms (at most ${GRANT_WITHIN_MS})`);

  check(errors.length === 0, "no script errors" + (errors.length ? ": " + errors.join("; ") : ""));
  if (shot) {
    await page.waitForTimeout(700); // let the highlight of the new grant fade
    await page.screenshot({ path: shot, fullPage: true });
    console.log("saved " + shot);
  }

  // 6. The server goes away mid-test, then comes back on the same port.
  if (control) {
    const text = (sel) => page.textContent(sel);
    const before = {
      used: await text("[data-used='vapi-main']"),
      waiting: await text("#total-waiting"),
      rows: await page.locator("#line tr").count(),
    };
    check(Number(before.waiting) > 0 && before.rows > 0, `before the stop, callers wait (${before.waiting})`);
    await ask("stop", "stopped");
    await page.waitForSelector("#unknown:not([hidden])", { timeout: 5000 });
    check(true, "the server stopped: a banner says the state is unknown");
    const why = await text("#unknown-why");
    check(/disconnected|cannot be reached/.test(why), `the banner says why (${why})`);
    check((await page.getAttribute("#conn", "data-state")) === "down", "the connection shows as down");
    check(
      (await text("[data-used='vapi-main']")) === "—" &&
        (await text("#total-leases")) === "—" &&
        (await text("#total-waiting")) === "—" &&
        (await text("#waiting-count")) === "—",
      "while the server is away, figures show — (not what the page last knew)"
    );
    check((await text("[data-by-class='vapi-main']")).includes("—"), "use by class shows —");
    check(await page.isHidden("#line-empty"), "while the server is away the page does not say nobody is waiting");
    check((await page.locator("#line tr").count()) === 0, "while the server is away no stale waiting line is shown");
    check((await page.getAttribute("body", "data-ready")) !== "1", "the page is not marked ready");

    await ask("start", "started");
    await page.waitForSelector("body[data-ready='1']", { timeout: RECOVER_WITHIN_MS });
    await page.waitForSelector("#unknown", { state: "hidden", timeout: 5000 });
    check((await page.getAttribute("#conn", "data-state")) === "live", "the connection is live again");
    const after = {
      used: await text("[data-used='vapi-main']"),
      waiting: await text("#total-waiting"),
      rows: await page.locator("#line tr").count(),
    };
    check(
      after.used === before.used && after.waiting === before.waiting && after.rows === before.rows,
      `the page recovers by itself, with the restored state (${JSON.stringify(after)})`
    );
    // And it follows the new server's events.
    const key = "e2e-after-" + Date.now();
    const grant = await api("POST", "/v1/acquire", { flow: "vip-line", key });
    check(grant.status === 200 || grant.status === 202, `the new server decides ${key} (${grant.status})`);
    await page.waitForSelector(`#feed li[data-key='${key}']`, { timeout: 5000 });
    check(true, "the page follows the new server's events");
    check(errors.length === 0, "no script errors" + (errors.length ? ": " + errors.join("; ") : ""));
  } else {
    console.log("skip the stopped-server check (CALLGATE_CONTROL=stdio lets the caller stop and start the server)");
  }
} catch (e) {
  failed = true;
  console.error("FAIL " + e.message);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
