// Orders per second with the loyalty plugin vs without, same run, same binary.
// Each round starts a fresh crmd (bundled schemas, no scripts) with no plugin,
// then one with only loyalty.so; N orders with status "paid" for 500 contacts
// over 4 connections with 256 in flight.  "acked": orders acknowledged per
// second; "settled": orders per second until every earn line is written.
// Uses the ws package of tests/interop (make interop-deps).
//   node bench/bench_loyalty.mjs build/crmd schemas build/plugins/loyalty.so build/plugins/loyalty.json
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../tests/interop/', import.meta.url));
const WebSocket = require('ws');
const [crmd, schemas, so, json] = process.argv.slice(2).map((a) => path.resolve(a));
const N = +(process.env.N || 20000), CONTACTS = 500, WINDOW = 256, CONNS = 4;

async function server(withPlugin) {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'loyb-'));
  const plugins = fs.mkdtempSync(path.join(os.tmpdir(), 'loyp-'));
  if (withPlugin) { fs.symlinkSync(so, path.join(plugins, 'loyalty.so')); fs.copyFileSync(json, path.join(plugins, 'loyalty.json')); }
  const out = execFileSync(crmd, ['token', 'create', '--data', data, '--schemas', schemas, '--role', 'admin']).toString().trim().split('\n');
  const token = out[out.length - 1];
  const p = spawn(crmd, ['serve', '--data', data, '--schemas', schemas, '--listen', '127.0.0.1:0',
    '--plugins', plugins, '--scripts', '/nonexistent'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await new Promise((res, rej) => {
    let buf = '';
    p.stderr.on('data', (d) => { buf += d; const m = buf.match(/listening on 127\.0\.0\.1:(\d+)/); if (m) res(+m[1]); });
    p.on('exit', (code) => rej(new Error(`crmd exited (${code}): ${buf}`)));
  });
  return { p, port, token, data, plugins };
}
async function conn(s) {
  const ws = new WebSocket(`ws://127.0.0.1:${s.port}/ws`, 'crm.v1.json');
  await new Promise((r) => ws.on('open', r));
  const pending = new Map(); let ref = 1;
  ws.on('message', (m) => { const v = JSON.parse(m); if (v.ref !== undefined && pending.has(v.ref)) { pending.get(v.ref)(v); pending.delete(v.ref); } });
  const call = (o) => new Promise((r) => { const id = ref++; pending.set(id, r); ws.send(JSON.stringify({ ref: id, ...o })); });
  const a = await call({ op: 'auth', token: s.token }); if (!a.ok) throw new Error('auth');
  return { ws, call };
}
async function run(withPlugin) {
  const s = await server(withPlugin);
  const cs = await Promise.all(Array.from({ length: CONNS }, () => conn(s)));
  for (let i = 0; i < CONTACTS; i += 100)
    await Promise.all(Array.from({ length: 100 }, (_, k) => cs[0].call({ op: 'create', collection: 'contacts', record: { id: `c_${i + k}`, name: `P${i + k}` } })));
  let next = 0, failed = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(cs.map(async (c) => {
    const inflight = new Set();
    while (next < N) {
      const i = next++;
      const pr = c.call({ op: 'create', collection: 'orders', record: { contact: `c_${i % CONTACTS}`, amount: 1000 + (i % 5000), currency: 'EUR', status: 'paid', ordered_at: 1700000000000 } })
        .then((r) => { if (!r.ok) failed++; inflight.delete(pr); });
      inflight.add(pr);
      if (inflight.size >= WINDOW / CONNS) await Promise.race(inflight);
    }
    await Promise.all(inflight);
  }));
  const acked = Number(process.hrtime.bigint() - t0) / 1e9;
  let settled = acked;
  if (withPlugin) { // until every order's earn line is written
    for (;;) {
      const r = await cs[0].call({ op: 'aggregate', collection: 'loyalty_ledger', where: { kind: 'earn' }, metrics: ['count'] });
      if (r.result.groups[0].count >= N) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    settled = Number(process.hrtime.bigint() - t0) / 1e9;
  }
  cs.forEach((c) => c.ws.close()); s.p.kill('SIGTERM'); await new Promise((r) => s.p.on('exit', r));
  fs.rmSync(s.data, { recursive: true, force: true }); fs.rmSync(s.plugins, { recursive: true, force: true });
  if (failed) throw new Error(`${failed} failed`);
  return { acked: N / acked, settled: N / settled };
}
const res = { off: [], on: [] };
for (let round = 0; round < 3; round++) { res.off.push(await run(false)); res.on.push(await run(true)); }
const med = (a, k) => a.map((x) => x[k]).sort((x, y) => x - y)[1];
console.log(`N=${N} orders, ${CONNS} connections, ${WINDOW} in flight, 3 rounds alternating, medians:`);
console.log(`without loyalty: ${med(res.off, 'acked').toFixed(0)} orders/s acked`);
console.log(`with loyalty:    ${med(res.on, 'acked').toFixed(0)} orders/s acked, ${med(res.on, 'settled').toFixed(0)} orders/s with every earn written`);
console.log(JSON.stringify(res));
