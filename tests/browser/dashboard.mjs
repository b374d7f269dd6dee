// dashboard.mjs -- the dashboard (web/) in headless Chromium against a real
// crmd, and reliability row R17 (Origin) from a real browser.
//
// Starts crmd (CRMD_BIN) on a free loopback port with the bundled schemas,
// scripts and plugins and the web/ folder, seeds a small CRM through the
// WebSocket API, then drives Debian's chromium with playwright-core:
//   1. the page asks for a token; a wrong one is refused and asked again;
//      the right one is kept in sessionStorage and never in the URL;
//   2. every figure shows what the server holds (data-value attributes of
//      the SVG marks, checked against aggregates asked over the API);
//   3. a contact and an order created over the API change the figures on the
//      page within one second (and the order appears in the live feed);
//   4. crmd is killed (SIGKILL) and started again on the same port; the page
//      reconnects by itself, resubscribes with `since`, and shows an order
//      made while it was away;
//   5. a screenshot is kept: $CRM_ARTIFACTS/dashboard.png;
//   6. R17: pages served from a foreign origin (http://127.0.0.2:PORT and a
//      data: URL) opening ws://127.0.0.1:CRMD/ws get 403 before any upgrade,
//      while the dashboard's own origin gets 101; checked from the browser and
//      with raw HTTP requests.
// Prints "ok - ..." per step with the figures measured, then a summary line.
// Any failure: a message, crmd's log tail, non-zero exit.  An overall deadline
// (CRM_BROWSER_TIMEOUT_S, default 120) means it never hangs.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

let chromium, WebSocket;
try {
  ({ chromium } = await import('playwright-core'));
  WebSocket = (await import('ws')).default;
} catch (e) {
  console.error(`browser: FAILED: cannot load playwright-core and ws (${e.message}); run \`make browser-deps\``);
  process.exit(1);
}

const env = process.env;
const CRMD_BIN = env.CRMD_BIN;
const CHROMIUM = env.CRM_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = env.CRM_ARTIFACTS || path.join(os.tmpdir(), 'crmd-artifacts');
const DEADLINE_S = Number(env.CRM_BROWSER_TIMEOUT_S || 120);
const FIGURE_MS = 1000; // the bound: an API write shows on the page within one second

let step = 'start-up';
let crmd = null;
let crmdLog = '';
let dataDir = null;
let browser = null;
let foreign = null;
let foreign2 = null;
const passed = [];

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  for (const srv of [foreign, foreign2]) if (srv) srv.close();
  foreign = foreign2 = null;
  if (crmd && crmd.exitCode === null && crmd.signalCode === null) {
    const gone = new Promise((r) => crmd.once('exit', r));
    crmd.kill('SIGKILL');
    await Promise.race([gone, sleep(3000)]);
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  dataDir = null;
}

let failing = false;
function fail(why) {
  if (failing) return;
  failing = true;
  console.error(`browser: FAILED during "${step}": ${why}`);
  if (crmdLog) console.error(`--- crmd stderr (last 3000 chars) ---\n${crmdLog.slice(-3000)}`);
  console.error(`${passed.length} passed, 1 failed`);
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 8000).unref();
  cleanup().finally(() => process.exit(1));
}
const deadline = setTimeout(() => fail(`overall timeout of ${DEADLINE_S} s`), DEADLINE_S * 1000);
process.on('unhandledRejection', (e) => fail(e && e.stack ? e.stack : String(e)));
process.on('uncaughtException', (e) => fail(e && e.stack ? e.stack : String(e)));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function ok(what) {
  passed.push(what);
  console.log(`ok - ${what}`);
}
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// ---- crmd ----

// crmd gets SIGKILL when this process dies, also when ctest's timeout kills
// it (setpriv, util-linux: PR_SET_PDEATHSIG before the exec), so no server
// outlives its test.
const DIES_WITH_US = fs.existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--'] : [];

// Starts crmd on port (0: a free one) and resolves with the port it listens on.
function startCrmd(port) {
  crmd = spawn(DIES_WITH_US[0] || CRMD_BIN, [...DIES_WITH_US.slice(1), ...(DIES_WITH_US.length ? [CRMD_BIN] : []),
    'serve', '--data', dataDir, '--schemas', env.CRM_SCHEMAS, '--scripts', env.CRM_SCRIPTS,
    '--plugins', env.CRM_PLUGINS, '--web', env.CRM_WEB, '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const proc = crmd;
  return withTimeout(new Promise((resolve, reject) => {
    let pending = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (chunk) => {
      crmdLog = (crmdLog + chunk).slice(-100000);
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
        if (m) resolve(Number(m[1]));
      }
    });
    proc.on('error', reject);
    proc.on('exit', (code, sig) => reject(new Error(`crmd exited before ready (code ${code}, signal ${sig})`)));
  }), 15000, 'crmd to print "listening on"');
}

function exitOf(proc) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve({ code: proc.exitCode, signal: proc.signalCode });
  return new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
}

function makeToken(role) {
  const out = execFileSync(CRMD_BIN, ['token', 'create', '--data', dataDir, '--schemas', env.CRM_SCHEMAS, '--role', role],
    { encoding: 'utf8', timeout: 15000 });
  const tok = out.trim().split('\n').pop().trim();
  assert.match(tok, /^\S+$/, `token create --role ${role}: no token on the last line`);
  return tok;
}

// A JSON API client (node's ws sends no Origin header: not a browser).
class Api {
  static open(port, token) {
    return withTimeout(new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['crm.v1.json']);
      ws.once('open', async () => {
        const a = new Api(ws);
        try {
          await a.call({ op: 'auth', token });
          resolve(a);
        } catch (e) {
          reject(e);
        }
      });
      ws.once('error', reject);
    }), 5000, 'API connection');
  }

  constructor(ws) {
    this.ws = ws;
    this.ref = 0;
    this.pending = new Map();
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString('utf8'));
      const p = this.pending.get(m.ref);
      if (!p) return;
      this.pending.delete(m.ref);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(`${m.error.code}: ${m.error.message}`));
    });
    ws.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('API connection closed'));
      this.pending.clear();
    });
  }

  call(msg) {
    const ref = ++this.ref;
    return withTimeout(new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.ws.send(JSON.stringify({ ref, ...msg }));
    }), 10000, `reply to ${msg.op}`);
  }

  create(collection, record) {
    return this.call({ op: 'create', collection, record });
  }

  async groups(collection, agg) {
    const r = await this.call({ op: 'aggregate', collection, ...agg });
    return Object.fromEntries(r.groups.map((g) => [String(g.key), g]));
  }

  close() {
    this.ws.close();
  }
}

// ---- the page ----

// Every data-key -> data-value (number) drawn in one chart.
function figure(page, id) {
  return page.$$eval(`#${id} [data-key]`, (els) => Object.fromEntries(els.map((e) => [e.dataset.key, Number(e.dataset.value)])));
}

// Waits until the chart's marks satisfy want (a map key -> value); returns
// the milliseconds it took.
async function waitFigure(page, id, want, timeout, what) {
  const t0 = Date.now();
  try {
    await page.waitForFunction(([id, want]) => {
      for (const [k, v] of Object.entries(want)) {
        const e = document.querySelector(`#${id} [data-key="${k}"]`);
        if (!e || Number(e.dataset.value) !== v) return false;
      }
      return true;
    }, [id, want], { timeout, polling: 10 });
  } catch (e) {
    throw new Error(`${what}: ${id} did not show ${JSON.stringify(want)} within ${timeout} ms; it shows ${JSON.stringify(await figure(page, id))}`);
  }
  return Date.now() - t0;
}

async function revenue(page, tile) {
  return JSON.parse((await page.getAttribute(`#${tile}`, 'data-values')) || '{}');
}

// ---- R17: raw upgrade requests ----

function upgradeStatus(port, origin) {
  return withTimeout(new Promise((resolve, reject) => {
    const headers = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' };
    if (origin) headers.Origin = origin;
    const req = http.request({ host: '127.0.0.1', port, path: '/ws', headers });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  }), 5000, `upgrade with Origin ${origin}`);
}

async function refusedCount(port) {
  const body = await new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let b = '';
      res.on('data', (c) => (b += c));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  const m = /^crmd_origin_refused_total (\d+)$/m.exec(body);
  assert.ok(m, '/metrics has crmd_origin_refused_total');
  return Number(m[1]);
}

// A page on a foreign origin that opens crmd's /ws; resolves with what the
// page saw and what Chromium reported about the handshake.
async function foreignAttempt(context, url, port) {
  const page = await context.newPage();
  const errors = [];
  page.on('websocket', (ws) => ws.on('socketerror', (msg) => errors.push(msg)));
  await page.goto(url);
  const seen = await page.evaluate((port) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'crm.v1.json');
    ws.onopen = () => resolve('open');
    ws.onclose = (e) => resolve(`closed ${e.code}`);
  }), port);
  await sleep(100); // the socketerror event trails the close
  await page.close();
  return { seen, errors };
}

// ---- the scenario ----

async function main() {
  for (const v of ['CRMD_BIN', 'CRM_SCHEMAS', 'CRM_SCRIPTS', 'CRM_PLUGINS', 'CRM_WEB']) assert.ok(env[v], `${v} must be set`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run \`make browser-deps\` (Debian package chromium)`);
  const t0 = Date.now();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crmd-browser-'));

  step = 'starting crmd, tokens, seed data';
  const port = await startCrmd(0);
  const adminTok = makeToken('admin');
  const dashTok = makeToken('dashboard');
  let api = await Api.open(port, adminTok);
  const now = Date.now();
  for (const [id, name, city] of [['c_a', 'Ada', 'Oslo'], ['c_b', 'Bo', 'Oslo'], ['c_c', 'Cy', 'Oslo'], ['c_d', 'Di', 'Rome'], ['c_e', 'Ed', 'Rome']])
    await api.create('contacts', { id, name, city });
  await api.create('orders', { number: 'N-1', contact: 'c_a', amount: 12000, currency: 'EUR', ordered_at: now - 1000, status: 'paid' });
  await api.create('orders', { number: 'N-2', contact: 'c_a', amount: 3000, currency: 'EUR', ordered_at: now - 900, status: 'completed' });
  await api.create('orders', { number: 'N-3', contact: 'c_b', amount: 5000, currency: 'GBP', ordered_at: now - 800, status: 'paid' });
  await api.create('orders', { number: 'N-4', contact: 'c_d', amount: 99999, currency: 'EUR', ordered_at: now - 700, status: 'cancelled' });
  await api.create('tickets', { id: 't_urgent', contact: 'c_c', subject: 'Broken on arrival', priority: 'urgent' });
  await api.create('tickets', { id: 't_late', contact: 'c_c', subject: 'Still waiting', priority: 'high', escalation_level: 1 });
  await api.create('tickets', { id: 't_soon', contact: 'c_e', subject: 'Invoice copy', priority: 'low' });
  await api.call({ op: 'update', collection: 'tickets', id: 't_soon', patch: { sla_due_at: now + 3600 * 1000 } });
  const seg = await api.create('segments', { name: 'Oslo', rules: { all: [{ field: 'city', eq: 'Oslo' }] } });
  ok(`crmd on 127.0.0.1:${port}, 5 contacts, 4 orders, 3 tickets, 1 segment`);

  step = 'launching Chromium';
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 1600, height: 900 } });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const sockets = []; // every WebSocket the page opened: {createdAt, sent: [msg], received: n}
  page.on('websocket', (ws) => {
    const rec = { createdAt: Date.now(), sent: [], received: 0, url: ws.url() };
    sockets.push(rec);
    ws.on('framesent', (f) => {
      try {
        rec.sent.push(JSON.parse(f.payload));
      } catch (e) { /* not ours */ }
    });
    ws.on('framereceived', () => rec.received++);
  });

  step = 'token prompt';
  const base = `http://127.0.0.1:${port}/`;
  await page.goto(base);
  await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
  await page.fill('#token', 'crm_not_a_token');
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="unauthorized"]', { timeout: 5000 });
  await page.waitForSelector('#login:not([hidden])', { timeout: 5000 });
  assert.match(await page.textContent('#login-error'), /refused/);
  const tLogin = Date.now();
  await page.fill('#token', dashTok);
  await page.click('#connect');
  await page.waitForSelector('#status[data-state="live"]', { timeout: 10000 });
  const liveMs = Date.now() - tLogin;
  assert.equal(await page.evaluate(() => sessionStorage.getItem('crmd.dashboard.token')), dashTok, 'the token is kept in sessionStorage');
  assert.ok(!page.url().includes(dashTok) && !page.url().includes('?'), `the token stays out of the URL (${page.url()})`);
  assert.ok(sockets.every((s) => !s.url.includes('crm_')), 'no token in any WebSocket URL');
  ok(`token prompt: a wrong token is refused and asked again; the right one is live in ${liveMs} ms, in sessionStorage, not in the URL`);

  step = 'figures match the server';
  const open = { state: { in: ['new', 'assigned', 'in_progress'] } };
  const stages = await api.groups('contacts', { group_by: 'lifecycle_stage', metrics: ['count'] });
  const tiers = await api.groups('loyalty_accounts', { where: { status: 'active' }, group_by: 'tier', metrics: ['count'] });
  const wantStages = Object.fromEntries(['prospect', 'new_customer', 'repeat', 'loyal', 'at_risk', 'churned'].map((k) => [k, stages[k] ? stages[k].count : 0]));
  assert.equal(Object.values(wantStages).reduce((a, b) => a + b, 0), 5, 'every contact has a stage');
  assert.ok(wantStages.prospect < 5, 'the lifecycle script moved the buyers on (scripts loaded)');
  await waitFigure(page, 'chart-lifecycle', wantStages, 5000, 'lifecycle');
  const wantTiers = Object.fromEntries(['basic', 'silver', 'gold', 'platinum'].map((k) => [k, tiers[k] ? tiers[k].count : 0]));
  wantTiers.total = Object.values(wantTiers).reduce((a, b) => a + b, 0);
  assert.ok(wantTiers.total >= 2, 'the loyalty plugin opened accounts for the buyers (plugins loaded)');
  await waitFigure(page, 'chart-tiers', wantTiers, 5000, 'loyalty tiers');
  const openNow = await api.groups('tickets', { where: open, group_by: 'priority', metrics: ['count'] });
  assert.equal(openNow.urgent.count + openNow.high.count + openNow.low.count, 3);
  await waitFigure(page, 'chart-tickets', {
    urgent: 1, 'urgent.ok': 1, 'urgent.breached': 0, 'urgent.soon': 0,
    high: 1, 'high.breached': 1, 'high.ok': 0,
    low: 1, 'low.soon': 1, 'low.ok': 0, normal: 0,
  }, 5000, 'tickets by priority and SLA');
  await waitFigure(page, 'chart-segments', { [seg.id]: 3 }, 10000, 'segment sizes (after the backfill)');
  await page.waitForFunction(() => {
    const v = JSON.parse(document.querySelector('#rev-today').dataset.values || '{}');
    return v.EUR === 15000 && v.GBP === 5000;
  }, null, { timeout: 5000 });
  assert.deepEqual(await revenue(page, 'rev-month'), { EUR: 15000, GBP: 5000 }, 'revenue this month (the cancelled order left out)');
  assert.equal(await page.textContent('#tickets-total'), '3');
  ok(`figures shown = the server's: stages ${JSON.stringify(wantStages)}, tiers ${JSON.stringify(wantTiers)}, tickets 3 by priority and SLA, segment 3, revenue EUR 150.00 + GBP 50.00`);

  step = 'a narrower role: the figures it may not see are marked, the others shown';
  {
    const p2 = await context.newPage(); // sessionStorage is per tab: a new prompt
    await p2.goto(base);
    await p2.waitForSelector('#login:not([hidden])', { timeout: 5000 });
    await p2.fill('#token', makeToken('sales'));
    await p2.click('#connect');
    await p2.waitForSelector('#status[data-state="live"]', { timeout: 10000 });
    await p2.waitForSelector('#card-tickets.forbidden', { timeout: 5000 });
    await waitFigure(p2, 'chart-lifecycle', wantStages, 5000, 'lifecycle for sales');
    const marked = await p2.$$eval('.card.forbidden', (els) => els.map((e) => e.id).sort());
    assert.deepEqual(marked, ['card-segments', 'card-tickets', 'card-tiers'], 'sales may not subscribe to tickets, loyalty_accounts, segments');
    assert.match(await p2.textContent('#errors'), /FORBIDDEN/);
    await p2.close();
    ok(`role sales: ${marked.join(', ')} marked not allowed (FORBIDDEN), lifecycle and revenue shown`);
  }

  step = 'an API write changes the figures within one second';
  // Timed from the write's acknowledgement (the record exists from then on;
  // the ack itself waits for the fsync, which a loaded machine stretches):
  // each figure must be on the page within FIGURE_MS of it.  From the send
  // is printed too.
  const prospects = wantStages.prospect;
  let tSend = Date.now();
  await api.create('contacts', { id: 'c_f', name: 'Fay', city: 'Oslo' });
  let tAck = Date.now();
  await waitFigure(page, 'chart-lifecycle', { prospect: prospects + 1 }, FIGURE_MS, 'new contact');
  const contact = { ack: tAck - tSend, shown: Date.now() - tAck };
  await waitFigure(page, 'chart-segments', { [seg.id]: 4 }, Math.max(1, FIGURE_MS - (Date.now() - tAck)), 'segment grows');
  const segment = { shown: Date.now() - tAck };
  tSend = Date.now();
  await api.create('orders', { number: 'N-LIVE', contact: 'c_f', amount: 2500, currency: 'EUR', ordered_at: Date.now(), status: 'paid' });
  tAck = Date.now();
  await page.waitForFunction(() => JSON.parse(document.querySelector('#rev-today').dataset.values || '{}').EUR === 17500, null, { timeout: FIGURE_MS, polling: 10 });
  const order = { ack: tAck - tSend, shown: Date.now() - tAck };
  await page.waitForFunction(() => [...document.querySelectorAll('#feed li')].some((li) => li.textContent.includes('N-LIVE')), null, { timeout: Math.max(1, FIGURE_MS - (Date.now() - tAck)), polling: 10 });
  const feedMs = Date.now() - tAck;
  for (const [what, ms] of [['contact', contact.shown], ['segment', segment.shown], ['order', order.shown], ['feed line', feedMs]])
    assert.ok(ms < FIGURE_MS, `${what} shown ${ms} ms after the ack`);
  const liveSeq = Number(await page.getAttribute('#feed li.feed-orders', 'data-seq'));
  assert.ok(liveSeq > 0, 'the feed entry carries its seq');
  ok(`API write -> page, after the ack (ack after): new contact's stage bar ${contact.shown} ms (${contact.ack} ms), its segment's bar ${segment.shown} ms, ` +
    `new order in the revenue tile ${order.shown} ms (${order.ack} ms) and in the feed ${feedMs} ms (seq ${liveSeq}); bound ${FIGURE_MS} ms`);

  step = 'SIGKILL crmd, restart on the same port, page resumes with since';
  api.close();
  const socketsBefore = sockets.length;
  const killed = crmd;
  killed.kill('SIGKILL');
  await exitOf(killed);
  await page.waitForSelector('#status[data-state="reconnecting"]', { timeout: 5000 });
  // let the page fail a few times so that its back-off has grown
  await withTimeout((async () => { while (sockets.length < socketsBefore + 2) await sleep(50); })(), 10000, 'two failed reconnect attempts');
  const tRestart = Date.now();
  assert.equal(await startCrmd(port), port, 'crmd restarted on the same port');
  api = await Api.open(port, adminTok);
  await api.create('orders', { number: 'N-AWAY', contact: 'c_e', amount: 4000, currency: 'EUR', ordered_at: Date.now(), status: 'paid' });
  const tAway = Date.now();
  await page.waitForSelector('#status[data-state="live"]', { timeout: 20000 });
  const reconnectMs = Date.now() - tRestart;
  await page.waitForFunction(() => [...document.querySelectorAll('#feed li')].some((li) => li.textContent.includes('N-AWAY')), null, { timeout: 5000 });
  await page.waitForFunction(() => JSON.parse(document.querySelector('#rev-today').dataset.values || '{}').EUR === 21500, null, { timeout: 5000 });
  const live = sockets.filter((s) => s.received > 0);
  const last = live[live.length - 1];
  assert.ok(sockets.indexOf(last) >= socketsBefore, 'a new connection carries the page now');
  const resub = last.sent.filter((m) => m.op === 'subscribe' && !m.aggregate);
  assert.equal(resub.length, 4, `4 record subscriptions again: ${JSON.stringify(resub)}`);
  for (const m of resub) {
    assert.ok(Number.isInteger(m.since), `resubscribed to ${m.collection} with since: ${JSON.stringify(m)}`);
    assert.ok(m.snapshot === undefined, `no snapshot on resume: ${JSON.stringify(m)}`);
  }
  const ordersSince = resub.find((m) => m.collection === 'orders').since;
  assert.ok(ordersSince >= liveSeq, `orders resumed from ${ordersSince}, at or after the last order seen (${liveSeq})`);
  const byReplay = last.createdAt > tAway;
  ok(`restart: page live again ${reconnectMs} ms after crmd was started again; 4 record subscriptions resumed with since (orders from ${ordersSince}); the order made meanwhile shown${byReplay ? ' (by replay: the page connected after it was written)' : ''}`);

  step = 'screenshot';
  await sleep(1800); // let the change flashes fade
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'dashboard.png');
  await page.screenshot({ path: shot });
  assert.ok(fs.statSync(shot).size > 10000, 'screenshot written');
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
  ok(`screenshot ${shot}`);

  step = 'R17: a page from a foreign origin is refused before the upgrade';
  foreign = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>foreign</title><p>another site</p>');
  });
  await new Promise((r) => foreign.listen(0, '127.0.0.2', r));
  const foreignOrigin = `http://127.0.0.2:${foreign.address().port}`;
  foreign2 = http.createServer(foreign.listeners('request')[0]);
  await new Promise((r) => foreign2.listen(0, '127.0.0.1', r));
  const otherPort = `http://127.0.0.1:${foreign2.address().port}`;
  const refused0 = await refusedCount(port);
  let chromiumSaw = '';
  for (const [origin, what] of [[foreignOrigin, 'another address'], [otherPort, 'another port']]) {
    const r = await foreignAttempt(context, `${origin}/`, port);
    chromiumSaw = r.errors.join('; ');
    assert.equal(r.seen, 'closed 1006', `the page on ${what} (${origin}) never opens its WebSocket (${r.seen})`);
    assert.ok(r.errors.some((e) => /\b403\b/.test(e)), `Chromium saw 403 for ${origin}: ${JSON.stringify(r.errors)}`);
  }
  const refused1 = await refusedCount(port);
  assert.equal(refused1 - refused0, 2, 'crmd counted both refusals');
  // A data: page (Origin null) does not even get to crmd: Chromium's own
  // local-network-access check blocks a public context opening loopback.
  const fromData = await foreignAttempt(context, 'data:text/html,<title>data</title>', port);
  assert.equal(fromData.seen, 'closed 1006', `the data: page's WebSocket never opens (${fromData.seen})`);
  const dataHow = fromData.errors.some((e) => /\b403\b/.test(e)) ? '403' : `blocked by Chromium (${fromData.errors.join('; ')})`;
  const raw = {
    foreign: await upgradeStatus(port, foreignOrigin),
    null: await upgradeStatus(port, 'null'),
    sameOrigin: await upgradeStatus(port, `http://127.0.0.1:${port}`),
    none: await upgradeStatus(port, null),
  };
  assert.deepEqual(raw, { foreign: 403, null: 403, sameOrigin: 101, none: 101 });
  assert.equal(await page.getAttribute('#status', 'data-state'), 'live', 'the dashboard (own origin) stays live');
  ok(`R17: Chromium pages on ${foreignOrigin} and ${otherPort} -> 403 before the upgrade (Chromium: ${chromiumSaw}); a data: page -> ${dataHow}; raw handshakes: foreign 403, null 403, same origin 101, none 101; the dashboard's own origin stays live`);

  step = 'SIGTERM';
  await browser.close();
  browser = null;
  api.close();
  crmd.kill('SIGTERM');
  const { code, signal } = await withTimeout(exitOf(crmd), 10000, 'crmd to exit after SIGTERM');
  assert.equal(signal, null);
  assert.equal(code, 0, 'crmd exit code after SIGTERM');
  clearTimeout(deadline);
  await cleanup();
  console.log(`browser: OK in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`${passed.length} passed, 0 failed`);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
