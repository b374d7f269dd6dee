// client.js -- a crmd WebSocket client for pages: auth, requests by ref,
// aggregate and record subscriptions that survive reconnects.
//
// The wire contract is shared/spec/protocol.md (subprotocol crm.v1.json).
// What this module adds on top of it:
//   - reconnects by itself after any close, with exponential back-off
//     (0.5 s doubling to 15 s, +-20 % jitter so that many screens do not
//     come back in step), reset once a connection is authenticated again;
//   - an application ping every 15 s: no answer within 10 s closes the
//     socket (a dead network does not always close it) and so reconnects;
//   - record subscriptions resume with `since`: each keeps the seq it has
//     seen up to (`pos`) and asks for the changes after it, so nothing is
//     missed across a restart of the server.  A CONFLICT with resync (the
//     feed no longer holds that seq) starts the subscription afresh;
//   - aggregate subscriptions carry no position (the server pushes the
//     current figures first); their arguments may depend on the time
//     ("orders since midnight"), so refresh() re-subscribes those whose
//     arguments changed, and drops the old one once the new one answers.
//
// Why a change push also moves the position of the other subscriptions:
// the server pushes the feed in seq order over one connection, so once a
// push with seq X has arrived, every other live subscription of this
// connection has been sent everything it matches below X.  Resuming each
// from at least X - 1 keeps replays short on a busy store.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 15000;
const PING_TIMEOUT_MS = 10000;
const REQUEST_TIMEOUT_MS = 30000;

export class CrmError extends Error {
  constructor(code, message, details) {
    super(`${code}: ${message}`);
    this.code = code;
    this.details = details;
  }
}

export class CrmClient {
  // url: ws(s)://host/ws; token: the bearer token (kept by the caller);
  // onStatus(state, info): 'connecting' | 'live' | 'reconnecting' (info.inMs)
  // | 'unauthorized' (info.message) | 'stopped'; onError(name, err): a
  // subscription the server refused.
  constructor({ url, token, onStatus = () => {}, onError = () => {} }) {
    this.url = url;
    this.token = token;
    this.onStatus = onStatus;
    this.onError = onError;
    this.specs = new Map(); // name -> spec
    this.bySub = new Map(); // sub id on the current connection -> spec
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.nextRef = 1;
    this.ws = null;
    this.attempts = 0;
    this.stopped = true;
    this.lastSeq = 0; // highest seq seen in any push or reply
    this.timers = {};
  }

  // Figures of an aggregate: agg() returns {where?, group_by?, metrics}
  // (called again by refresh()); onGroups(groups, seq) on every push.
  addAggregate(name, collection, agg, onGroups) {
    this.specs.set(name, { name, kind: 'agg', collection, agg, onGroups, sub: null, key: null });
  }

  // A record subscription.  opts: where, snapshot (bool: records on the
  // first subscribe and after a resync), onSnapshot(records, seq),
  // onChange(push), onResync() (positions were lost: the caller may mark
  // a gap).
  addRecords(name, collection, opts) {
    this.specs.set(name, { name, kind: 'rec', collection, ...opts, sub: null, pos: null, live: false });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timers.reconnect);
    this.teardown();
    if (this.ws) this.ws.close(1000, 'stopped');
    this.ws = null;
    this.onStatus('stopped', {});
  }

  // One request; resolves with `result`, rejects with a CrmError.
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new CrmError('UNAVAILABLE', 'not connected'));
        return;
      }
      const ref = this.nextRef++;
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new CrmError('UNAVAILABLE', `no reply to ${msg.op} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(ref, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ref, ...msg }));
    });
  }

  // Re-subscribes the aggregates whose arguments changed (time windows).
  refresh() {
    if (!this.authed) return;
    for (const spec of this.specs.values())
      if (spec.kind === 'agg' && JSON.stringify(spec.agg()) !== spec.key) this.subscribeAgg(spec);
  }

  // ---- connection ----

  connect() {
    clearTimeout(this.timers.reconnect);
    this.onStatus('connecting', { attempt: this.attempts + 1 });
    let ws;
    try {
      ws = new WebSocket(this.url, ['crm.v1.json']);
    } catch (e) {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => {
      if (ws === this.ws) this.onMessage(ev.data);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.teardown();
      if (!this.stopped && this.authFailed) this.stopped = true;
      else this.scheduleReconnect();
    };
  }

  async onOpen(ws) {
    let who;
    this.authFailed = false;
    try {
      who = await this.request({ op: 'auth', token: this.token });
    } catch (e) {
      if (ws !== this.ws) return;
      if (e.code === 'UNAUTHENTICATED' || e.code === 'FORBIDDEN') {
        this.authFailed = true;
        this.onStatus('unauthorized', { message: e.message });
      }
      ws.close();
      return;
    }
    if (ws !== this.ws) return;
    this.authed = true;
    this.attempts = 0;
    this.timers.ping = setInterval(() => this.ping(ws), PING_EVERY_MS);
    this.onStatus('live', { user: who && who.user, role: who && who.role });
    for (const spec of this.specs.values()) {
      if (spec.kind === 'agg') this.subscribeAgg(spec);
      else this.subscribeRec(spec);
    }
  }

  ping(ws) {
    this.request({ op: 'ping' }, PING_TIMEOUT_MS).catch(() => {
      if (ws === this.ws) ws.close(); // onclose reconnects
    });
  }

  // What a closed connection leaves behind: nothing pending, no live subs
  // (positions are kept: they are where the next connection resumes).
  teardown() {
    clearInterval(this.timers.ping);
    this.authed = false;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new CrmError('UNAVAILABLE', 'connection closed'));
    }
    this.pending.clear();
    this.bySub.clear();
    for (const spec of this.specs.values()) {
      spec.sub = null;
      spec.live = false;
      if (spec.kind === 'agg') spec.key = null;
    }
  }

  scheduleReconnect() {
    if (this.stopped) return;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempts);
    const delay = Math.round(base * (0.8 + 0.4 * Math.random()));
    this.attempts++;
    this.onStatus('reconnecting', { inMs: delay, attempt: this.attempts });
    this.timers.reconnect = setTimeout(() => this.connect(), delay);
  }

  // ---- subscriptions ----

  async subscribeAgg(spec) {
    const agg = spec.agg();
    const key = JSON.stringify(agg);
    const old = spec.sub;
    spec.key = key; // asked for; refresh() does not ask twice
    let r;
    try {
      r = await this.request({ op: 'subscribe', collection: spec.collection, aggregate: agg });
    } catch (e) {
      // not connected: the next connection subscribes again.  Refused: not
      // again until the arguments change (refresh() would only repeat it).
      if (e.code !== 'UNAVAILABLE') this.onError(spec.name, e);
      else if (spec.key === key) spec.key = null;
      return;
    }
    if (spec.key !== key || !this.authed) {
      // a newer subscribe for this spec was sent meanwhile: this one is stale
      this.request({ op: 'unsubscribe', sub: r.sub }).catch(() => {});
      return;
    }
    this.bySub.set(r.sub, spec);
    spec.sub = r.sub;
    if (old !== null && old !== r.sub) {
      this.bySub.delete(old);
      this.request({ op: 'unsubscribe', sub: old }).catch(() => {});
    }
  }

  async subscribeRec(spec) {
    const msg = { op: 'subscribe', collection: spec.collection };
    if (spec.where) msg.where = spec.where;
    if (spec.pos !== null) msg.since = spec.pos;
    else if (spec.snapshot) msg.snapshot = true;
    let r;
    try {
      r = await this.request(msg);
    } catch (e) {
      if (e.code === 'CONFLICT' && e.details && e.details.resync) {
        spec.pos = null; // the feed no longer reaches back there: start afresh
        if (spec.onResync) spec.onResync();
        if (this.authed) this.subscribeRec(spec);
      } else if (e.code !== 'UNAVAILABLE') {
        this.onError(spec.name, e);
      }
      return;
    }
    if (!this.authed) return;
    this.bySub.set(r.sub, spec);
    spec.sub = r.sub;
    spec.live = true;
    this.seen(r.seq);
    if (msg.since === undefined) {
      spec.pos = r.seq;
      if (msg.snapshot && spec.onSnapshot) spec.onSnapshot(r.records || [], r.seq);
    }
  }

  // ---- incoming ----

  onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return; // the server only sends JSON on this subprotocol
    }
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.event === 'string') {
      this.onEvent(msg);
      return;
    }
    const p = this.pending.get(msg.ref);
    if (!p) return;
    this.pending.delete(msg.ref);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.result);
    else {
      const e = msg.error || {};
      p.reject(new CrmError(e.code || 'INTERNAL', e.message || 'error', e.details));
    }
  }

  onEvent(msg) {
    const spec = this.bySub.get(msg.sub);
    const seq = Number.isInteger(msg.seq) ? msg.seq : null;
    if (seq !== null) this.seen(seq);
    if (!spec) return; // an old subscription being dropped
    if (msg.event === 'change' && spec.kind === 'rec') {
      if (seq !== null) {
        spec.pos = Math.max(spec.pos || 0, seq);
        for (const other of this.specs.values())
          if (other !== spec && other.kind === 'rec' && other.live && other.pos !== null && other.pos < seq - 1)
            other.pos = seq - 1;
      }
      if (spec.onChange) spec.onChange(msg);
    } else if (msg.event === 'aggregate' && spec.kind === 'agg') {
      spec.onGroups(Array.isArray(msg.groups) ? msg.groups : [], seq);
    } else if (msg.event === 'overflow') {
      // the server ended this subscription (we read too slowly): resume it
      this.bySub.delete(msg.sub);
      spec.sub = null;
      spec.live = false;
      if (spec.kind === 'rec') {
        if (seq !== null) spec.pos = seq;
        this.subscribeRec(spec);
      } else {
        spec.key = null;
        this.subscribeAgg(spec);
      }
    }
  }

  seen(seq) {
    if (Number.isInteger(seq) && seq > this.lastSeq) this.lastSeq = seq;
  }
}
