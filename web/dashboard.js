// dashboard.js -- the wall-screen dashboard: which figures, from which
// collections, and how they are drawn.  docs/dashboard.md explains each
// figure; client.js keeps the connection and the subscriptions alive.

import { CrmClient } from './client.js';
import { barChart, columns, donut, formatCount, hbarChart, stackedHBar } from './charts.js';

const TOKEN_KEY = 'crmd.dashboard.token'; // sessionStorage: gone when the tab closes

// Enum values in the order they are drawn (schemas/*.json).
const STAGES = [
  ['prospect', 'Prospect', '#7f8ea3'], ['new_customer', 'New', '#4fa3f7'], ['repeat', 'Repeat', '#3ccf91'],
  ['loyal', 'Loyal', '#b07cf7'], ['at_risk', 'At risk', '#f5b041'], ['churned', 'Churned', '#e5534b'],
];
const PRIORITIES = [['urgent', 'Urgent'], ['high', 'High'], ['normal', 'Normal'], ['low', 'Low']];
const TIERS = [['basic', 'Basic', '#7f8ea3'], ['silver', 'Silver', '#c9d1d9'], ['gold', 'Gold', '#e3b341'], ['platinum', 'Platinum', '#79c0ff']];
const SLA_SERIES = [
  { key: 'breached', label: 'SLA breached (escalated)', color: '#e5534b' },
  { key: 'soon', label: 'due within 2 h or overdue', color: '#f5b041' },
  { key: 'ok', label: 'on track', color: '#3ccf91' },
];
const OPEN_STATES = ['new', 'assigned', 'in_progress']; // scripts/complaints.lua open_states
const REVENUE_STATUSES = ['pending', 'paid', 'shipped', 'completed']; // not cancelled, not refunded
const SLA_SOON_MS = 2 * 3600 * 1000;
const HISTORY_DAYS = 14; // revenue columns: today and the 13 days before
const FEED_MAX = 14; // changes listed
const RATE_MINUTES = 30; // changes-per-minute columns
const DAY_MS = 86400000;

// ---- time (the screen's local time zone) ----

function startOfDay(t) {
  const d = new Date(t);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}
function startOfMonth(t) {
  const d = new Date(t);
  d.setHours(0, 0, 0, 0);
  d.setDate(1);
  return d.getTime();
}
function addDays(dayStart, n) {
  const d = new Date(dayStart);
  d.setDate(d.getDate() + n); // calendar days: right across daylight-saving changes
  return d.getTime();
}
const minute = (t) => Math.floor(t / 60000) * 60000;

// ---- the figures as the server last told them ----

const model = {
  lifecycle: new Map(), // stage -> count
  open: new Map(), // priority -> open tickets
  breached: new Map(),
  soon: new Map(),
  tiers: new Map(),
  revToday: new Map(), // currency -> {sum, count}
  revMonth: new Map(),
  revDays: new Map(), // day start (ms) -> Map(currency -> sum); past days only
  segments: new Map(), // id -> {name, members}
  feed: [], // newest first: {seq, coll, op, text, at}
  arrivals: [], // ms of each change push, for the rate columns
  seq: 0,
};

function countsByKey(groups, metric = 'count') {
  const m = new Map();
  for (const g of groups) m.set(g.key === null || g.key === undefined ? '(none)' : String(g.key), Number(g[metric]) || 0);
  return m;
}
function revenueByCurrency(groups) {
  const m = new Map();
  for (const g of groups) m.set(String(g.key ?? '?'), { sum: Number(g['sum:amount']) || 0, count: Number(g.count) || 0 });
  return m;
}

const openTickets = () => ({ state: { in: OPEN_STATES } });

// Every aggregate the page subscribes to.  where may depend on the time;
// client.refresh() (every 30 s) re-subscribes when it changed.
const AGGREGATES = [
  ['lifecycle', 'contacts', () => ({ group_by: 'lifecycle_stage', metrics: ['count'] }), (g) => (model.lifecycle = countsByKey(g))],
  ['tickets_open', 'tickets', () => ({ where: openTickets(), group_by: 'priority', metrics: ['count'] }), (g) => (model.open = countsByKey(g))],
  ['tickets_breached', 'tickets', () => ({ where: { ...openTickets(), escalation_level: { gte: 1 } }, group_by: 'priority', metrics: ['count'] }),
    (g) => (model.breached = countsByKey(g))],
  ['tickets_soon', 'tickets', () => ({
    where: { ...openTickets(), escalation_level: 0, sla_due_at: { lt: minute(Date.now()) + 60000 + SLA_SOON_MS } },
    group_by: 'priority', metrics: ['count'],
  }), (g) => (model.soon = countsByKey(g))],
  ['tiers', 'loyalty_accounts', () => ({ where: { status: 'active' }, group_by: 'tier', metrics: ['count'] }), (g) => (model.tiers = countsByKey(g))],
  ['revenue_today', 'orders', () => ({
    where: { ordered_at: { gte: startOfDay(Date.now()) }, status: { in: REVENUE_STATUSES } },
    group_by: 'currency', metrics: ['count', 'sum:amount'],
  }), (g) => (model.revToday = revenueByCurrency(g))],
  ['revenue_month', 'orders', () => ({
    where: { ordered_at: { gte: startOfMonth(Date.now()) }, status: { in: REVENUE_STATUSES } },
    group_by: 'currency', metrics: ['count', 'sum:amount'],
  }), (g) => (model.revMonth = revenueByCurrency(g))],
];

// ---- the live feed ----

function describe(push) {
  const r = push.record || {};
  const id = push.id;
  switch (push.collection) {
    case 'orders':
      if (push.op === 'create') return `New order ${r.number || id}: ${money(r.amount || 0, r.currency)}`;
      if (push.op === 'delete') return `Order ${id} deleted`;
      return `Order ${r.number || id} ${r.status || 'updated'}`;
    case 'tickets':
      if (push.op === 'create') return `Ticket opened (${r.priority || 'normal'}): ${r.subject || id}`;
      if (push.op === 'delete') return `Ticket ${id} deleted`;
      if (r.escalation_level > 0 && r.state !== 'resolved' && r.state !== 'closed')
        return `Ticket ${id} escalated, level ${r.escalation_level} (${r.priority})`;
      return `Ticket ${id} ${String(r.state || 'updated').replace('_', ' ')}`;
    case 'lifecycle_transitions': {
      const to = STAGES.find((s) => s[0] === r.to);
      const from = STAGES.find((s) => s[0] === r.from);
      if (push.op !== 'create') return `Stage change ${id} ${push.op}`;
      return `Contact ${r.contact}: ${from ? from[1] : 'new'} → ${to ? to[1] : r.to} (${String(r.reason || '').replace('_', ' ')})`;
    }
    default:
      return `${push.collection} ${id} ${push.op}`;
  }
}

function addFeed(push) {
  const r = push.record || {};
  const at = Number.isInteger(r._updated) ? r._updated : Date.now();
  model.feed.unshift({ seq: push.seq, coll: push.collection, op: push.op, text: describe(push), at });
  if (model.feed.length > FEED_MAX) model.feed.length = FEED_MAX;
  model.arrivals.push(at);
  schedule();
}

function feedGap(coll) {
  model.feed.unshift({ seq: null, coll, op: 'gap', text: `Reconnected after a long gap: older ${coll} changes not shown`, at: Date.now() });
  if (model.feed.length > FEED_MAX) model.feed.length = FEED_MAX;
  schedule();
}

// ---- revenue history (plain aggregate requests: past days rarely change) ----

let historyFor = null; // the day start the history was loaded for
async function loadHistory(client) {
  const today = startOfDay(Date.now());
  historyFor = today;
  const days = [];
  for (let i = HISTORY_DAYS - 1; i >= 1; i--) days.push(addDays(today, -i));
  try {
    const results = await Promise.all(days.map((d) => client.request({
      op: 'aggregate', collection: 'orders',
      where: { ordered_at: { gte: d, lt: addDays(d, 1) }, status: { in: REVENUE_STATUSES } },
      group_by: 'currency', metrics: ['sum:amount'],
    })));
    model.revDays = new Map(days.map((d, i) => [d, new Map((results[i].groups || []).map((g) => [String(g.key ?? '?'), Number(g['sum:amount']) || 0]))]));
  } catch (e) {
    historyFor = null; // try again on the next tick
  }
  schedule();
}

// ---- drawing ----

function money(minor, currency) {
  const v = (Number(minor) || 0) / 100;
  try {
    return new Intl.NumberFormat(undefined, { style: 'currency', currency: String(currency || 'XXX'), maximumFractionDigits: 0 }).format(v);
  } catch (e) {
    return `${v.toFixed(0)} ${currency || ''}`;
  }
}

const $ = (sel) => document.querySelector(sel);

function drawRevenue() {
  // the main currency: most revenue this month (then today); the others
  // are listed beside it, never added to it
  const cur = [...new Set([...model.revMonth.keys(), ...model.revToday.keys()])]
    .sort((a, b) => (model.revMonth.get(b)?.sum || 0) - (model.revMonth.get(a)?.sum || 0) || (model.revToday.get(b)?.sum || 0) - (model.revToday.get(a)?.sum || 0));
  const main = cur[0] || null;
  for (const [id, m] of [['#rev-today', model.revToday], ['#rev-month', model.revMonth]]) {
    const tile = $(id);
    const v = main ? m.get(main) || { sum: 0, count: 0 } : { sum: 0, count: 0 };
    const big = tile.querySelector('.big');
    const text = main ? money(v.sum, main) : '—';
    if (big.textContent !== text && big.textContent !== '') flash(big);
    big.textContent = text;
    tile.querySelector('.sub').textContent = `${formatCount(v.count)} orders` +
      cur.slice(1).filter((c) => m.has(c)).map((c) => ` · ${money(m.get(c).sum, c)}`).join('');
    tile.dataset.values = JSON.stringify(Object.fromEntries([...m].map(([c, x]) => [c, x.sum])));
  }
  const today = startOfDay(Date.now());
  const cols = [];
  for (let i = HISTORY_DAYS - 1; i >= 0; i--) {
    const d = addDays(today, -i);
    const v = i === 0 ? model.revToday.get(main)?.sum || 0 : model.revDays.get(d)?.get(main) || 0;
    const label = i === 0 ? 'today' : new Date(d).toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
    cols.push({ key: i === 0 ? 'today' : `d-${i}`, label, value: v });
  }
  $('#rev-days-title').textContent = `Revenue per day, last ${HISTORY_DAYS} days${main ? ` (${main})` : ''}`;
  columns($('#chart-revenue'), cols, { format: (v) => money(v, main), height: 150 });
}

function flash(node) {
  node.classList.remove('changed');
  void node.getBoundingClientRect(); // restart the animation
  node.classList.add('changed');
}

function draw() {
  barChart($('#chart-lifecycle'), STAGES.map(([k, label, color]) => ({ key: k, label, color, value: model.lifecycle.get(k) || 0 })),
    { empty: 'no contacts yet' });
  $('#lifecycle-total').textContent = formatCount([...model.lifecycle.values()].reduce((a, b) => a + b, 0));

  const rows = PRIORITIES.map(([k, label]) => {
    const total = model.open.get(k) || 0, breached = model.breached.get(k) || 0;
    const soon = Math.min(model.soon.get(k) || 0, Math.max(0, total - breached));
    return { key: k, label, parts: { breached, soon, ok: Math.max(0, total - breached - soon) } };
  });
  stackedHBar($('#chart-tickets'), rows, SLA_SERIES);
  const open = [...model.open.values()].reduce((a, b) => a + b, 0);
  $('#tickets-total').textContent = formatCount(open);
  $('#tickets-total').dataset.value = String(open);

  const tiers = TIERS.map(([k, label, color]) => ({ key: k, label, color, value: model.tiers.get(k) || 0 }));
  donut($('#chart-tiers'), tiers, { centerLabel: 'active members' });
  const legend = $('#tiers-legend');
  legend.replaceChildren(...tiers.map((t) => {
    const li = document.createElement('li');
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = t.color;
    li.append(sw, `${t.label} `);
    const b = document.createElement('b');
    b.textContent = formatCount(t.value);
    li.append(b);
    return li;
  }));

  const segs = [...model.segments.entries()].map(([id, s]) => ({ key: id, label: s.name, value: s.members, color: '#4fa3f7' }))
    .sort((a, b) => b.value - a.value || a.label.localeCompare(b.label)).slice(0, 8);
  hbarChart($('#chart-segments'), segs, { empty: 'no active segments', minRows: 4 });
  $('#segments-total').textContent = formatCount(model.segments.size);

  drawRevenue();
  drawFeed();
  $('#seq').textContent = formatCount(model.seq);
  $('#seq').dataset.value = String(model.seq);
}

function drawFeed() {
  const now = Date.now();
  const first = minute(now) - (RATE_MINUTES - 1) * 60000;
  model.arrivals = model.arrivals.filter((t) => t >= first);
  const counts = new Array(RATE_MINUTES).fill(0);
  for (const t of model.arrivals) counts[Math.min(RATE_MINUTES - 1, Math.floor((t - first) / 60000))]++;
  columns($('#chart-rate'), counts.map((c, i) => ({ key: `m${i}`, label: i === RATE_MINUTES - 1 ? 'now' : `${RATE_MINUTES - 1 - i} min ago`, value: c })),
    { height: 90 });
  const list = $('#feed');
  list.replaceChildren(...model.feed.map((f) => {
    const li = document.createElement('li');
    li.className = `feed-${f.coll} op-${f.op}`;
    if (f.seq !== null) li.dataset.seq = String(f.seq);
    const time = document.createElement('time');
    time.textContent = new Date(f.at).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = f.coll === 'lifecycle_transitions' ? 'stage' : f.coll.replace(/s$/, '');
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = f.text;
    li.append(time, tag, text);
    return li;
  }));
  if (!model.feed.length) {
    const li = document.createElement('li');
    li.className = 'empty';
    li.textContent = 'Waiting for changes…';
    list.append(li);
  }
}

// One draw per frame however many pushes arrive (a busy store sends many);
// a hidden tab gets no frames, so a timer draws then.
let drawPending = false;
function schedule() {
  if (drawPending) return;
  drawPending = true;
  const run = () => {
    if (!drawPending) return;
    drawPending = false;
    draw();
  };
  requestAnimationFrame(run);
  setTimeout(run, 500);
}

// ---- status, token prompt, start ----

function setStatus(state, info) {
  const el = $('#status');
  el.dataset.state = state;
  const text = {
    connecting: 'connecting…',
    live: 'live',
    reconnecting: `reconnecting in ${Math.ceil((info.inMs || 0) / 1000)} s`,
    unauthorized: 'token refused',
    stopped: 'signed out',
  }[state] || state;
  el.textContent = text;
  if (state === 'live') $('#whoami').textContent = info.role ? `role ${info.role}` : '';
}

let client = null;
// the card each subscription feeds (by the name's first word)
const CARD_OF = { lifecycle: '#card-lifecycle', tickets: '#card-tickets', tiers: '#card-tiers', revenue: '#card-revenue', segments: '#card-segments' };

function showPrompt(message) {
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#token').value = '';
  $('#token').focus();
}

function start(token) {
  $('#login').hidden = true;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  client = new CrmClient({
    url: `${proto}//${location.host}/ws`,
    token,
    onStatus: (state, info) => {
      setStatus(state, info);
      if (state === 'live') loadHistory(client); // past days may have changed while away
      if (state === 'unauthorized') {
        sessionStorage.removeItem(TOKEN_KEY);
        showPrompt(`The server refused this token (${info.message}). Enter another.`);
      }
    },
    onError: (name, err) => {
      // one line per figure the server refused (e.g. FORBIDDEN for a narrower role)
      const box = $('#errors');
      let li = box.querySelector(`li[data-name="${name}"]`);
      if (!li) {
        li = document.createElement('li');
        li.dataset.name = name;
        box.append(li);
      }
      li.textContent = `${name}: ${err.message}`;
      box.hidden = false;
      const card = CARD_OF[name.replace(/_.*/, '')];
      if (card && err.code === 'FORBIDDEN') $(card).classList.add('forbidden'); // dimmed, not a false zero
    },
  });
  for (const [name, coll, agg, apply] of AGGREGATES)
    client.addAggregate(name, coll, agg, (groups, seq) => {
      apply(groups);
      if (seq > model.seq) model.seq = seq;
      schedule();
    });
  client.addRecords('segments', 'segments', {
    where: { active: true },
    snapshot: true,
    onSnapshot: (records) => {
      model.segments = new Map(records.map((r) => [r.id, { name: r.name || r.id, members: r.member_count || 0 }]));
      schedule();
    },
    onChange: (p) => {
      if (p.record) model.segments.set(p.id, { name: p.record.name || p.id, members: p.record.member_count || 0 });
      else model.segments.delete(p.id); // delete, or "leave" (no longer active)
      if (p.seq > model.seq) model.seq = p.seq;
      schedule();
    },
  });
  for (const coll of ['orders', 'tickets', 'lifecycle_transitions'])
    client.addRecords(`feed_${coll}`, coll, {
      onChange: (p) => {
        if (p.seq > model.seq) model.seq = p.seq;
        addFeed(p);
      },
      onResync: () => feedGap(coll),
    });
  client.start();
}

function clock() {
  const now = new Date();
  $('#clock').textContent = now.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  $('#date').textContent = now.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
}

function tick() {
  if (client) {
    client.refresh(); // new day, new month, the SLA window moving on
    if (client.authed && historyFor !== startOfDay(Date.now())) loadHistory(client);
  }
  schedule(); // the changes-per-minute columns move on
}

$('#login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('#token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  start(token);
});
$('#signout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  if (client) client.stop();
  client = null;
  showPrompt('');
});
new ResizeObserver(() => schedule()).observe(document.querySelector('main'));
setInterval(clock, 1000);
setInterval(tick, 30000);
clock();
draw();
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) start(saved);
else showPrompt('');
