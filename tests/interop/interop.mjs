// interop.mjs -- crmd's wire contract (shared spec: protocol.md) exercised by a
// client stack the project did not write: Node's `ws` and `@msgpack/msgpack`.
//
// Starts its own crmd (CRMD_BIN, schemas from CRM_SCHEMAS, a temp data dir),
// makes an admin and a marketing token with the CLI, then runs one scenario
// per subprotocol (crm.v1.json in text frames, crm.v1.msgpack in binary
// frames): auth gating, creates, pipelined requests with integer and string
// refs, get, update with if_rev, paged queries, aggregates, tx, subscriptions
// (snapshot + live pushes + leave, since replay, aggregate), hidden fields and
// FORBIDDEN for the marketing role, BAD_REQUEST for an unknown op. Ends with
// SIGTERM and expects exit 0. Any failure: a message and a non-zero exit.
// An overall deadline (CRM_INTEROP_TIMEOUT_S, default 60) means it never hangs.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// the two third-party packages, from node_modules (`make interop-deps`, or `npm ci` here)
let encode, decode, WebSocket;
try {
  ({ encode, decode } = await import('@msgpack/msgpack'));
  WebSocket = (await import('ws')).default;
} catch (e) {
  console.error(`interop: FAILED: cannot load ws and @msgpack/msgpack (${e.message}); run \`make interop-deps\` or \`npm ci\` in tests/interop`);
  process.exit(1);
}

const CRMD_BIN = process.env.CRMD_BIN;
const CRM_SCHEMAS = process.env.CRM_SCHEMAS;
const DEADLINE_S = Number(process.env.CRM_INTEROP_TIMEOUT_S || 60);
const REPLY_MS = 5000; // one reply or push
const QUIET_MS = 300; // "nothing more is pushed"

let crmd = null; // the child process
let crmdLog = '';
let dataDir = null;
let step = 'start-up';

// Kills crmd if it still runs (SIGKILL: only on a failure), waits for it, removes the data dir.
async function cleanup() {
  if (crmd && crmd.exitCode === null && crmd.signalCode === null) {
    const gone = new Promise((r) => crmd.once('exit', r));
    crmd.kill('SIGKILL');
    await Promise.race([gone, new Promise((r) => setTimeout(r, 3000))]);
  }
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  dataDir = null;
}

let failing = false;
function fail(why) {
  if (failing) return;
  failing = true;
  console.error(`interop: FAILED during "${step}": ${why}`);
  if (crmdLog) console.error(`--- crmd stderr (last 4000 chars) ---\n${crmdLog.slice(-4000)}`);
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 5000).unref();
  cleanup().finally(() => process.exit(1));
}

const deadline = setTimeout(() => fail(`overall timeout of ${DEADLINE_S} s`), DEADLINE_S * 1000);
process.on('unhandledRejection', (e) => fail(e && e.stack ? e.stack : String(e)));
process.on('uncaughtException', (e) => fail(e && e.stack ? e.stack : String(e)));

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

function startCrmd() {
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'crmd-interop-'));
  crmd = spawn(DIES_WITH_US[0] || CRMD_BIN, [...DIES_WITH_US.slice(1), ...(DIES_WITH_US.length ? [CRMD_BIN] : []),
    'serve', '--data', dataDir, '--schemas', CRM_SCHEMAS, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return withTimeout(
    new Promise((resolve, reject) => {
      let pending = '';
      crmd.stderr.setEncoding('utf8');
      crmd.stderr.on('data', (chunk) => {
        crmdLog += chunk;
        if (crmdLog.length > 100000) crmdLog = crmdLog.slice(-50000);
        if (!pending && crmd.port) return;
        pending += chunk;
        let nl;
        while ((nl = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          const m = /listening on 127\.0\.0\.1:(\d+)/.exec(line);
          if (m && !crmd.port) {
            crmd.port = Number(m[1]);
            pending = '';
            resolve(crmd.port);
            return;
          }
        }
      });
      crmd.on('error', reject);
      crmd.on('exit', (code, sig) => reject(new Error(`crmd exited before ready (code ${code}, signal ${sig})`)));
    }),
    10000,
    'crmd to print "listening on"',
  );
}

function stopCrmd() {
  return withTimeout(
    new Promise((resolve) => {
      if (crmd.exitCode !== null || crmd.signalCode !== null) resolve({ code: crmd.exitCode, signal: crmd.signalCode });
      else crmd.once('exit', (code, signal) => resolve({ code, signal }));
      crmd.kill('SIGTERM');
    }),
    10000,
    'crmd to exit after SIGTERM',
  );
}

function makeToken(role) {
  const out = execFileSync(CRMD_BIN, ['token', 'create', '--data', dataDir, '--schemas', CRM_SCHEMAS, '--role', role], {
    encoding: 'utf8',
    timeout: 10000,
  });
  const lines = out.split('\n').map((l) => l.trim()).filter(Boolean);
  const tok = lines[lines.length - 1];
  assert.ok(tok && !/\s/.test(tok), `token create --role ${role}: no token on the last stdout line: ${JSON.stringify(out)}`);
  return tok;
}

// ---- a client on ws + @msgpack/msgpack ----

const refKey = (ref) => `${typeof ref}:${ref}`;

class Client {
  constructor(ws, proto, name) {
    this.ws = ws;
    this.proto = proto;
    this.name = name;
    this.binary = proto === 'crm.v1.msgpack';
    this.nextRef = 1;
    this.pending = new Map(); // refKey -> {resolve, reject, req}
    this.events = []; // pushes not yet taken
    this.eventWaiter = null;
    this.closed = null;
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: String(reason) };
      const err = new Error(`${name}: connection closed (code ${code} ${reason})`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      if (this.eventWaiter) this.eventWaiter.reject(err);
    });
    ws.on('error', () => {}); // surfaced through 'close'
  }

  static open(port, proto, name) {
    return withTimeout(
      new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, proto ? [proto] : []);
        ws.once('open', () => {
          assert.equal(ws.protocol, proto || '', `${name}: negotiated subprotocol`);
          resolve(new Client(ws, proto, name));
        });
        ws.once('error', reject);
      }),
      REPLY_MS,
      `${name}: WebSocket handshake`,
    );
  }

  onMessage(data, isBinary) {
    let msg;
    try {
      // every frame is the subprotocol's kind: binary msgpack, or UTF-8 JSON text
      assert.equal(isBinary, this.binary, `${this.name}: frame type (binary=${isBinary}) does not fit ${this.proto || 'JSON'}`);
      msg = this.binary ? decode(data) : JSON.parse(data.toString('utf8'));
      assert.ok(msg && typeof msg === 'object' && !Array.isArray(msg), `${this.name}: a message that is not a map`);
    } catch (e) {
      fail(`${this.name}: bad message from server: ${e.message}`);
      return;
    }
    if ('event' in msg) {
      assert.ok(!('ref' in msg), `${this.name}: a push carries a ref: ${show(msg)}`);
      if (this.eventWaiter) {
        const w = this.eventWaiter;
        this.eventWaiter = null;
        w.resolve(msg);
      } else this.events.push(msg);
      return;
    }
    const p = this.pending.get(refKey(msg.ref));
    if (!p) {
      fail(`${this.name}: reply to no outstanding request (ref ${JSON.stringify(msg.ref)}): ${show(msg)}`);
      return;
    }
    this.pending.delete(refKey(msg.ref));
    p.resolve(msg);
  }

  // Sends one request (ref chosen here unless given) and resolves with the raw reply.
  send(req) {
    if (!('ref' in req)) req = { ref: this.nextRef++, ...req };
    const key = refKey(req.ref);
    assert.ok(!this.pending.has(key), `${this.name}: ref ${key} already outstanding`);
    const p = new Promise((resolve, reject) => this.pending.set(key, { resolve, reject, req }));
    this.ws.send(this.binary ? encode(req) : JSON.stringify(req), { binary: this.binary });
    return withTimeout(p, REPLY_MS, `${this.name}: reply to ${show(req)}`).then((r) => {
      assert.deepEqual(r.ref, req.ref, `${this.name}: ref echoed with its type`);
      assert.equal(typeof r.ok, 'boolean', `${this.name}: reply without a boolean ok: ${show(r)}`);
      return r;
    });
  }

  // Sends and expects ok: true; resolves with the result.
  async ok(req) {
    const r = await this.send(req);
    if (r.ok !== true) throw new assert.AssertionError({ message: `${this.name}: expected ok for ${show(req)}, got ${show(r)}` });
    assert.ok('result' in r, `${this.name}: ok reply without result: ${show(r)}`);
    return r.result;
  }

  // Sends and expects the error code; resolves with the error object.
  async err(req, code) {
    const r = await this.send(req);
    if (r.ok !== false || !r.error || r.error.code !== code)
      throw new assert.AssertionError({ message: `${this.name}: expected ${code} for ${show(req)}, got ${show(r)}` });
    assert.equal(typeof r.error.message, 'string', `${this.name}: error without a message: ${show(r)}`);
    return r.error;
  }

  nextEvent(what = 'a push') {
    if (this.events.length) return Promise.resolve(this.events.shift());
    assert.ok(!this.eventWaiter, 'one event waiter at a time');
    const p = new Promise((resolve, reject) => (this.eventWaiter = { resolve, reject }));
    return withTimeout(p, REPLY_MS, `${this.name}: ${what}`).finally(() => (this.eventWaiter = null));
  }

  async expectNoEvent(what) {
    await new Promise((r) => setTimeout(r, QUIET_MS));
    assert.equal(this.events.length, 0, `${this.name}: unexpected push (${what}): ${show(this.events[0])}`);
  }

  close() {
    return new Promise((resolve) => {
      if (this.closed) return resolve();
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
      setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 2000).unref();
    });
  }
}

function show(v) {
  const s = JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));
  return s && s.length > 600 ? s.slice(0, 600) + '...' : s;
}

function assertRecord(rec, what) {
  assert.ok(rec && typeof rec === 'object', `${what}: not a record: ${show(rec)}`);
  assert.equal(typeof rec.id, 'string', `${what}: id`);
  assert.ok(Number.isInteger(rec._rev) && rec._rev >= 1, `${what}: _rev ${show(rec._rev)}`);
  assert.ok(Number.isInteger(rec._created) && rec._created > 1.5e12, `${what}: _created ${show(rec._created)}`);
  assert.ok(Number.isInteger(rec._updated) && rec._updated >= rec._created, `${what}: _updated ${show(rec._updated)}`);
}

// ---- the scenario, once per subprotocol ----

async function scenario(port, proto, adminTok, mkTok) {
  const T = proto === 'crm.v1.msgpack' ? 'M' : 'J'; // keeps the two runs' data apart
  const city = `Interop-${T}`;
  const a = await Client.open(port, proto, `${T}/admin`);

  step = `${proto}: auth gating`;
  assert.equal(await a.ok({ op: 'ping' }), 'pong');
  await a.err({ op: 'get', collection: 'contacts', id: 'c_none' }, 'UNAUTHENTICATED');
  await a.err({ op: 'query', collection: 'contacts' }, 'UNAUTHENTICATED');
  await a.err({ op: 'create', collection: 'contacts', record: { name: 'x' } }, 'UNAUTHENTICATED');
  await a.err({ op: 'auth', token: 'crm_not_a_real_token' }, 'UNAUTHENTICATED');
  const who = await a.ok({ op: 'auth', token: adminTok });
  assert.equal(who.role, 'admin', `auth result ${show(who)}`);
  assert.ok('user' in who, `auth result has user: ${show(who)}`);

  step = `${proto}: unknown op`;
  await a.err({ op: 'frobnicate', collection: 'contacts' }, 'BAD_REQUEST');
  await a.err({ ref: `${T}-unknown`, op: 'no_such_op' }, 'BAD_REQUEST');

  step = `${proto}: schema`;
  const sch = await a.ok({ op: 'schema', collection: 'contacts' });
  assert.equal(sch.collection, 'contacts');
  assert.equal(sch.fields.name.required, true);

  step = `${proto}: create and get`;
  const ann = await a.ok({
    op: 'create',
    collection: 'contacts',
    record: { name: `Ann ${T}`, email: `ann.${T}@example.org`, phone: '+47 555 0101', city, total_spent: 1200, tags: ['vip', 'ü€😀'], churn_risk: 0.25 },
  });
  assertRecord(ann, 'created Ann');
  assert.ok(ann.id.startsWith('c_'), `server-made id ${ann.id}`);
  assert.equal(ann._rev, 1);
  assert.equal(ann.lifecycle_stage, 'prospect', 'schema default applied');
  assert.deepEqual(ann.tags, ['vip', 'ü€😀'], 'non-ASCII strings round-trip');
  assert.equal(ann.churn_risk, 0.25, 'float round-trips');
  const got = await a.ok({ op: 'get', collection: 'contacts', id: ann.id });
  assert.deepEqual(got, ann, 'get returns the stored record');
  const bobId = `c_bob_${T}`;
  const bob = await a.ok({ op: 'create', collection: 'contacts', id: bobId, record: { name: `Bob ${T}`, city, email: `bob.${T}@example.org`, total_spent: 300 } });
  assert.equal(bob.id, bobId, 'client-supplied id kept');
  const v = await a.err({ op: 'create', collection: 'contacts', record: { city, bogus: 1 } }, 'VALIDATION');
  assert.deepEqual(Object.keys((v.details && v.details.fields) || {}).sort(), ['bogus', 'name'], `VALIDATION details.fields: ${show(v)}`);
  await a.err({ op: 'create', collection: 'contacts', record: { name: 'dup', email: `ann.${T}@example.org` } }, 'CONFLICT');
  await a.err({ op: 'get', collection: 'contacts', id: `c_missing_${T}` }, 'NOT_FOUND');

  step = `${proto}: pipelined requests, integer and string refs`;
  {
    const reqs = [];
    for (let i = 0; i < 24; i++) {
      const ref = i % 2 ? `${T}-p-${i}` : 100000 + i;
      reqs.push({ ref, op: 'create', collection: 'contacts', record: { name: `P${String(i).padStart(2, '0')} ${T}`, city, total_spent: i * 10 } });
    }
    // the same value as an integer ref and as a string ref, in flight together
    reqs.push({ ref: 777, op: 'get', collection: 'contacts', id: ann.id });
    reqs.push({ ref: '777', op: 'ping' });
    reqs.push({ ref: `${T}-ping`, op: 'ping' });
    reqs.push({ ref: 0, op: 'get', collection: 'contacts', id: bobId });
    const replies = await Promise.all(reqs.map((q) => a.send(q))); // all sent before any reply is read
    for (let i = 0; i < 24; i++) {
      assert.equal(replies[i].ok, true, `pipelined create ${i}: ${show(replies[i])}`);
      assert.equal(replies[i].result.name, reqs[i].record.name, `pipelined create ${i} answered its own request`);
    }
    assert.equal(replies[24].result.id, ann.id, 'integer ref 777 got the get');
    assert.equal(replies[25].result, 'pong', 'string ref "777" got the ping');
    assert.equal(replies[26].result, 'pong');
    assert.equal(replies[27].result.id, bobId, 'ref 0 works');
    const ids = new Set(replies.slice(0, 24).map((r) => r.result.id));
    assert.equal(ids.size, 24, 'distinct ids');
  }

  step = `${proto}: update with if_rev`;
  const upd = await a.ok({ op: 'update', collection: 'contacts', id: ann.id, patch: { owner: 'rep1', churn_risk: null }, if_rev: 1 });
  assert.equal(upd._rev, 2);
  assert.equal(upd.owner, 'rep1');
  assert.ok(!('churn_risk' in upd), 'a field patched to null is removed');
  assert.ok(upd._updated >= ann._updated);
  assert.equal(upd._created, ann._created);
  const conflict = await a.err({ op: 'update', collection: 'contacts', id: ann.id, patch: { owner: 'rep2' }, if_rev: 1 }, 'CONFLICT');
  assert.ok(conflict.message.length > 0);
  assert.equal((await a.ok({ op: 'get', collection: 'contacts', id: ann.id })).owner, 'rep1', 'conflicting update not applied');
  await a.err({ op: 'update', collection: 'contacts', id: ann.id, patch: { total_spent: -5 } }, 'VALIDATION');

  step = `${proto}: query with where, order_by, limit and next to the end`;
  {
    const all = [];
    let after;
    let pages = 0;
    for (;;) {
      const q = { op: 'query', collection: 'contacts', where: { city, name: { prefix: 'P' } }, order_by: '-name', limit: 5 };
      if (after !== undefined) q.after = after;
      const res = await a.ok(q);
      assert.ok(Array.isArray(res.records), `records: ${show(res)}`);
      assert.ok('next' in res, 'query result has next');
      assert.ok(res.records.length <= 5, 'limit honoured');
      all.push(...res.records);
      pages++;
      if (res.next === null) break;
      assert.equal(typeof res.next, 'string', `cursor: ${show(res.next)}`);
      assert.equal(res.records.length, 5, 'a page before the last is full');
      after = res.next;
      assert.ok(pages < 20, 'paging terminates');
    }
    assert.equal(all.length, 24, 'every P record seen once');
    const names = all.map((r) => r.name);
    assert.deepEqual(names, [...names].sort().reverse(), 'descending by name across pages');
    assert.equal(new Set(all.map((r) => r.id)).size, 24, 'no duplicates across pages');
    assert.ok(pages === 5, `5 pages of at most 5 (got ${pages})`);
    const rich = await a.ok({ op: 'query', collection: 'contacts', where: { city, total_spent: { gte: 200, lt: 1300 } }, order_by: 'total_spent', limit: 100 });
    assert.deepEqual(
      rich.records.map((r) => r.total_spent),
      [200, 210, 220, 230, 300, 1200],
      'range filter and ascending order',
    );
    const inq = await a.ok({ op: 'query', collection: 'contacts', where: { id: { in: [ann.id, bobId] } } });
    assert.equal(inq.records.length, 2, `in on id: ${show(inq)}`);
    await a.err({ op: 'query', collection: 'contacts', where: { city: { near: 1 } } }, 'BAD_REQUEST');
  }

  step = `${proto}: aggregate group_by`;
  {
    await a.ok({ op: 'create', collection: 'contacts', record: { name: `Z ${T}`, city: `${city}-2`, total_spent: 7 } });
    const res = await a.ok({
      op: 'aggregate',
      collection: 'contacts',
      where: { city: { prefix: city } },
      group_by: 'city',
      metrics: ['count', 'sum:total_spent', 'min:total_spent', 'max:total_spent', 'avg:total_spent'],
    });
    assert.ok(Array.isArray(res.groups), show(res));
    const byKey = Object.fromEntries(res.groups.map((g) => [g.key, g]));
    assert.deepEqual(Object.keys(byKey).sort(), [city, `${city}-2`], `group keys: ${show(res)}`);
    const g = byKey[city];
    const expectSum = 1200 + 300 + 2760; // Ann, Bob, P00..P23 (0..230)
    assert.equal(g.count, 26);
    assert.equal(g['sum:total_spent'], expectSum);
    assert.equal(g['min:total_spent'], 0);
    assert.equal(g['max:total_spent'], 1200);
    assert.ok(Math.abs(g['avg:total_spent'] - expectSum / 26) < 1e-9, `avg ${g['avg:total_spent']}`);
    assert.equal(byKey[`${city}-2`].count, 1);
    const one = await a.ok({ op: 'aggregate', collection: 'contacts', where: { city }, metrics: ['count'] });
    assert.equal(one.groups.length, 1);
    assert.equal(one.groups[0].key, null, 'no group_by: one group with key null');
    assert.equal(one.groups[0].count, 26);
  }

  step = `${proto}: tx`;
  {
    const coId = `co_${T}`;
    const res = await a.ok({
      op: 'tx',
      ops: [
        { op: 'create', collection: 'companies', id: coId, record: { name: `Acme ${T}`, city } },
        { op: 'update', collection: 'contacts', id: bobId, patch: { company: coId } },
        { op: 'create', collection: 'tickets', id: `t_tx_${T}`, record: { contact: bobId, subject: 'from a tx' } },
      ],
    });
    assert.ok(Array.isArray(res) && res.length === 3, `tx result: ${show(res)}`);
    assert.equal(res[0].id, coId);
    assert.equal(res[1].company, coId);
    assert.equal(res[1]._rev, 2);
    assert.equal(res[2].state, 'new');
    // all or nothing: the second op breaks a unique index
    await a.err(
      {
        op: 'tx',
        ops: [
          { op: 'create', collection: 'contacts', id: `c_txfail_${T}`, record: { name: 'never' } },
          { op: 'create', collection: 'contacts', record: { name: 'dup', email: `ann.${T}@example.org` } },
        ],
      },
      'CONFLICT',
    );
    await a.err({ op: 'get', collection: 'contacts', id: `c_txfail_${T}` }, 'NOT_FOUND');
    await a.err({ op: 'tx', ops: [{ op: 'create', collection: 'tickets', record: { contact: `c_nobody_${T}`, subject: 'x' } }] }, 'VALIDATION');
  }

  step = `${proto}: subscribe with snapshot, live pushes from another connection`;
  const w = await Client.open(port, proto, `${T}/writer`);
  await w.ok({ op: 'auth', token: adminTok });
  const t1 = `t_1_${T}`, t2 = `t_2_${T}`, t3 = `t_3_${T}`, t4 = `t_4_${T}`;
  await w.ok({ op: 'create', collection: 'tickets', id: t1, record: { contact: ann.id, subject: 'broken', priority: 'high', team: city } });
  await w.ok({ op: 'create', collection: 'tickets', id: t4, record: { contact: ann.id, subject: 'slow', priority: 'low', team: city } });
  const sub = await a.ok({ op: 'subscribe', collection: 'tickets', where: { team: city, priority: 'high' }, snapshot: true });
  assert.ok(Number.isInteger(sub.sub), `sub id: ${show(sub)}`);
  assert.ok(Number.isInteger(sub.seq) && sub.seq > 0, `seq: ${show(sub)}`);
  assert.deepEqual(sub.records.map((r) => r.id), [t1], 'snapshot holds the matching records');
  assertRecord(sub.records[0], 'snapshot record');
  const S = sub.seq;
  await a.expectNoEvent('right after subscribing');
  const c2 = await w.ok({ op: 'create', collection: 'tickets', id: t2, record: { contact: ann.id, subject: 'urgent', priority: 'high', team: city } });
  await w.ok({ op: 'create', collection: 'tickets', id: t3, record: { contact: ann.id, subject: 'meh', priority: 'low', team: city } }); // S+2: no match
  await w.ok({ op: 'update', collection: 'tickets', id: t1, patch: { priority: 'normal' } }); // S+3: leaves
  const u4 = await w.ok({ op: 'update', collection: 'tickets', id: t4, patch: { priority: 'high' } }); // S+4: enters
  await w.ok({ op: 'update', collection: 'tickets', id: t2, patch: { state: 'assigned' } }); // S+5: stays
  await w.ok({ op: 'delete', collection: 'tickets', id: t2 }); // S+6: deleted
  const live = [];
  for (let i = 0; i < 5; i++) live.push(await a.nextEvent(`live push ${i + 1} of 5`));
  await a.expectNoEvent('after the five expected pushes');
  for (const e of live) {
    assert.equal(e.event, 'change', show(e));
    assert.equal(e.sub, sub.sub, show(e));
    assert.equal(e.collection, 'tickets', show(e));
  }
  assert.deepEqual(
    live.map((e) => [e.seq, e.op, e.id, 'record' in e]),
    [
      [S + 1, 'create', t2, true],
      [S + 3, 'leave', t1, false],
      [S + 4, 'update', t4, true],
      [S + 5, 'update', t2, true],
      [S + 6, 'delete', t2, false],
    ],
    `live pushes: ${show(live)}`,
  );
  assert.deepEqual(live[0].record, c2, 'pushed record is the stored one');
  assert.deepEqual(live[2].record, u4);
  assert.equal(live[2].prev_rev, 1, 'prev_rev on update');
  assert.equal(live[3].record.state, 'assigned');

  step = `${proto}: subscribe with since replays, then goes live`;
  {
    const z = await Client.open(port, proto, `${T}/replay`);
    await z.ok({ op: 'auth', token: adminTok });
    const rs = await z.ok({ op: 'subscribe', collection: 'tickets', where: { team: city, priority: 'high' }, since: S });
    assert.ok(Number.isInteger(rs.sub), show(rs));
    assert.equal(rs.seq, S, `a since subscription answers seq = since: ${show(rs)}`);
    const replay = [];
    for (let i = 0; i < 5; i++) replay.push(await z.nextEvent(`replayed push ${i + 1} of 5`));
    assert.deepEqual(
      replay.map((e) => [e.seq, e.op, e.id, e.sub]),
      live.map((e) => [e.seq, e.op, e.id, rs.sub]),
      `replay equals what was pushed live: ${show(replay)}`,
    );
    assert.deepEqual(replay[0].record, live[0].record);
    // then live, on both subscriptions, with the next seq
    const t5 = `t_5_${T}`;
    await w.ok({ op: 'create', collection: 'tickets', id: t5, record: { contact: bobId, subject: 'after replay', priority: 'high', team: city } });
    const ez = await z.nextEvent('live push after replay');
    const ea = await a.nextEvent('live push to the first subscriber');
    assert.equal(ez.id, t5);
    assert.equal(ea.id, t5);
    assert.equal(ez.seq, ea.seq);
    assert.ok(ez.seq > S + 6, 'seq increases');
    // since 0 replays everything retained: the first change is seq 1
    const all = await z.ok({ op: 'subscribe', collection: 'tickets', where: { id: t3 }, since: 0 });
    const first = await z.nextEvent('since 0 replay');
    assert.equal(first.sub, all.sub);
    assert.deepEqual([first.seq, first.op, first.id], [S + 2, 'create', t3], `since 0 replay: ${show(first)}`);
    await z.expectNoEvent('t3 changed once');
    assert.equal(await z.ok({ op: 'unsubscribe', sub: all.sub }), true);
    const resync = await z.err({ op: 'subscribe', collection: 'tickets', since: 1e12 }, 'CONFLICT');
    assert.equal(resync.details && resync.details.resync, true, `resync details: ${show(resync)}`);
    assert.equal(await z.ok({ op: 'unsubscribe', sub: rs.sub }), true);
    await w.ok({ op: 'update', collection: 'tickets', id: t5, patch: { subject: 'after unsubscribe' } });
    const ea2 = await a.nextEvent('push after the other client unsubscribed');
    assert.equal(ea2.id, t5);
    await z.expectNoEvent('after unsubscribe');
    await z.close();
  }
  assert.equal(await a.ok({ op: 'unsubscribe', sub: sub.sub }), true);

  step = `${proto}: aggregate subscription`;
  {
    const g = await Client.open(port, proto, `${T}/aggregate`);
    await g.ok({ op: 'auth', token: adminTok });
    const as = await g.ok({ op: 'subscribe', collection: 'tickets', where: { team: city }, aggregate: { group_by: 'priority', metrics: ['count'] } });
    assert.ok(Number.isInteger(as.sub), show(as));
    const counts = (e) => Object.fromEntries(e.groups.map((x) => [x.key, x.count]));
    const first = await g.nextEvent('first aggregate push');
    assert.equal(first.event, 'aggregate', show(first));
    assert.equal(first.sub, as.sub);
    assert.ok(Number.isInteger(first.seq), `aggregate push seq: ${show(first)}`);
    assert.deepEqual(counts(first), { high: 2, low: 1, normal: 1 }, `current figures: ${show(first)}`);
    await w.ok({ op: 'create', collection: 'tickets', record: { contact: bobId, subject: 'agg', priority: 'urgent', team: city } });
    let e = await g.nextEvent('aggregate push after a create');
    while (!counts(e).urgent) e = await g.nextEvent('aggregate push with the new group'); // coalescing may split
    assert.deepEqual(counts(e), { high: 2, low: 1, normal: 1, urgent: 1 }, show(e));
    assert.ok(e.seq > first.seq, 'aggregate push seq grows');
    await g.close();
  }

  step = `${proto}: marketing role, hidden fields and FORBIDDEN`;
  {
    const m = await Client.open(port, proto, `${T}/marketing`);
    await m.err({ op: 'get', collection: 'contacts', id: ann.id }, 'UNAUTHENTICATED');
    const mw = await m.ok({ op: 'auth', token: mkTok });
    assert.equal(mw.role, 'marketing');
    const hidden = (r, what) => {
      assert.ok(!('email' in r) && !('phone' in r), `${what}: hidden fields leaked: ${show(r)}`);
    };
    const g = await m.ok({ op: 'get', collection: 'contacts', id: ann.id });
    assert.equal(g.name, ann.name);
    assert.equal(g.city, city);
    hidden(g, 'get');
    const q = await m.ok({ op: 'query', collection: 'contacts', where: { city }, limit: 1000 });
    assert.equal(q.records.length, 26);
    q.records.forEach((r) => hidden(r, 'query'));
    await m.err({ op: 'query', collection: 'contacts', where: { email: `ann.${T}@example.org` } }, 'FORBIDDEN');
    await m.err({ op: 'query', collection: 'contacts', where: { phone: { prefix: '+47' } } }, 'FORBIDDEN');
    await m.err({ op: 'query', collection: 'contacts', where: { city }, order_by: '-email' }, 'FORBIDDEN');
    await m.err({ op: 'aggregate', collection: 'contacts', group_by: 'phone', metrics: ['count'] }, 'FORBIDDEN');
    await m.err({ op: 'aggregate', collection: 'contacts', where: { email: { ne: 'x' } }, metrics: ['count'] }, 'FORBIDDEN');
    await m.err({ op: 'subscribe', collection: 'contacts', where: { phone: '+47 555 0101' } }, 'FORBIDDEN');
    await m.err({ op: 'subscribe', collection: 'contacts', aggregate: { group_by: 'email', metrics: ['count'] } }, 'FORBIDDEN');
    await m.err({ op: 'create', collection: 'contacts', record: { name: 'not allowed' } }, 'FORBIDDEN');
    await m.err({ op: 'get', collection: 'tickets', id: t1 }, 'FORBIDDEN');
    const agg = await m.ok({ op: 'aggregate', collection: 'contacts', where: { city }, group_by: 'city', metrics: ['count'] });
    assert.equal(agg.groups[0].count, 26);
    const ms = await m.ok({ op: 'subscribe', collection: 'contacts', where: { city }, snapshot: true });
    assert.equal(ms.records.length, 26);
    ms.records.forEach((r) => hidden(r, 'snapshot'));
    await a.ok({ op: 'update', collection: 'contacts', id: ann.id, patch: { email: `ann2.${T}@example.org`, phone: '+47 555 0102', owner: 'rep3' } });
    const e = await m.nextEvent('push of a contact update to marketing');
    assert.equal(e.op, 'update');
    assert.equal(e.id, ann.id);
    assert.equal(e.seq, ms.seq + 1);
    assert.equal(e.record.owner, 'rep3');
    hidden(e.record, 'push');
    // an update touching only hidden fields still pushes (the record changed), without them
    await a.ok({ op: 'update', collection: 'contacts', id: bobId, patch: { phone: '+47 555 0199' } });
    const e2 = await m.nextEvent('push of a hidden-only update');
    assert.equal(e2.id, bobId);
    hidden(e2.record, 'push of hidden-only update');
    // a since replay hides them too
    assert.equal(await m.ok({ op: 'unsubscribe', sub: ms.sub }), true);
    const rs = await m.ok({ op: 'subscribe', collection: 'contacts', where: { city }, since: ms.seq });
    const r1 = await m.nextEvent('replayed contact update 1 of 2');
    const r2 = await m.nextEvent('replayed contact update 2 of 2');
    assert.deepEqual([r1.sub, r1.seq, r1.id, r2.sub, r2.seq, r2.id], [rs.sub, e.seq, ann.id, rs.sub, e2.seq, bobId]);
    hidden(r1.record, 'replayed push');
    hidden(r2.record, 'replayed push');
    await m.close();
  }

  step = `${proto}: delete with if_rev`;
  {
    const cur = await a.ok({ op: 'get', collection: 'contacts', id: ann.id });
    await a.err({ op: 'delete', collection: 'contacts', id: ann.id, if_rev: cur._rev - 1 }, 'CONFLICT');
    // Ann stays (tickets refer to her); delete a fresh record
    const tmp = await a.ok({ op: 'create', collection: 'contacts', record: { name: `Tmp ${T}` } });
    const del = await a.ok({ op: 'delete', collection: 'contacts', id: tmp.id, if_rev: 1 });
    assert.deepEqual(del, { id: tmp.id, _rev: 2 }, `delete result: ${show(del)}`);
    await a.err({ op: 'get', collection: 'contacts', id: tmp.id }, 'NOT_FOUND');
  }

  await w.close();
  await a.close();
}

async function extras(port) {
  step = 'no subprotocol offered: JSON';
  const n = await Client.open(port, null, 'noproto');
  assert.equal(await n.ok({ ref: 'x', op: 'ping' }), 'pong');
  await n.close();
  step = 'unknown subprotocol only: handshake refused';
  await assert.rejects(Client.open(port, 'crm.v9.unknown', 'unknown-proto'), 'an unknown subprotocol must be refused');
}

async function main() {
  assert.ok(CRMD_BIN, 'CRMD_BIN must name the crmd binary');
  assert.ok(CRM_SCHEMAS, 'CRM_SCHEMAS must name the schemas folder');
  const t0 = Date.now();
  step = 'starting crmd';
  const port = await startCrmd();
  step = 'creating tokens with the CLI';
  const adminTok = makeToken('admin');
  const mkTok = makeToken('marketing');
  const passed = [];
  for (const proto of ['crm.v1.json', 'crm.v1.msgpack']) {
    await scenario(port, proto, adminTok, mkTok);
    passed.push(proto);
    console.log(`ok - scenario over ${proto}`);
  }
  await extras(port);
  console.log('ok - no subprotocol = JSON; unknown subprotocol refused');
  step = 'SIGTERM';
  const { code, signal } = await stopCrmd();
  assert.equal(signal, null, `crmd died of signal ${signal}`);
  assert.equal(code, 0, `crmd exit code after SIGTERM`);
  console.log('ok - crmd exited 0 on SIGTERM');
  clearTimeout(deadline);
  await cleanup();
  console.log(`interop: OK, ${passed.join(' and ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
