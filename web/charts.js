// charts.js -- small SVG charts written by hand: vertical bars, horizontal
// bars, stacked horizontal bars, a donut and a column sparkline.
//
// Each function redraws one <svg> from plain data.  Text goes in through
// text nodes only (never innerHTML), so a record's strings cannot inject
// markup.  Every drawn value carries data-key and data-value, which the
// browser test reads, and a figure whose value changed since the last
// draw gets the class "changed" for a moment (a CSS flash) so that a wall
// screen shows where something moved.

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.appendChild(document.createTextNode(String(text)));
  return e;
}

// Values drawn last time, per svg, to flash what changed.
const lastDrawn = new WeakMap();

// Charts are drawn in the pixels of their box (one viewBox unit = one CSS
// pixel), so text keeps its CSS size on any screen; the page redraws on a
// resize.  A box not laid out yet (hidden) gets the fallback size.
function begin(svg, fallbackW, fallbackH) {
  const prev = lastDrawn.get(svg) || new Map();
  const next = new Map();
  const box = svg.getBoundingClientRect();
  const w = Math.max(120, Math.round(box.width) || fallbackW);
  const h = Math.max(60, Math.round(box.height) || fallbackH);
  lastDrawn.set(svg, next);
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  return {
    w,
    h,
    // marks a value node: data attributes, and "changed" when it moved
    mark(node, key, value) {
      node.setAttribute('data-key', key);
      node.setAttribute('data-value', String(value));
      next.set(key, value);
      const drawnBefore = prev.size > 0; // the first draw flashes nothing
      if (drawnBefore && (!prev.has(key) || prev.get(key) !== value)) node.classList.add('changed');
      return node;
    },
  };
}

const fmtInt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
export function formatCount(n) {
  return fmtInt.format(n);
}

// Short form for axis labels and bar ends: 1234 -> 1.2k, 2500000 -> 2.5M.
export function formatShort(n) {
  const a = Math.abs(n);
  if (a >= 1e9) return `${(n / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
  if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e4) return `${(n / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  return fmtInt.format(n);
}

function emptyNote(svg, w, h, text) {
  svg.appendChild(el('text', { x: w / 2, y: h / 2, class: 'empty', 'text-anchor': 'middle' }, text));
}

// items: [{key, label, value, color}]; one vertical bar each, the value on top.
export function barChart(svg, items, opts = {}) {
  const m = begin(svg, 600, 300);
  const { w, h } = m, top = 34, bottom = 36, side = 8;
  const max = Math.max(1, ...items.map((i) => i.value));
  const slot = (w - 2 * side) / Math.max(1, items.length);
  const bw = Math.min(110, slot * 0.66);
  const base = h - bottom;
  svg.appendChild(el('line', { x1: side, x2: w - side, y1: base + 0.5, y2: base + 0.5, class: 'axis' }));
  items.forEach((it, i) => {
    const x = side + slot * i + (slot - bw) / 2;
    const bh = Math.round(((base - top) * it.value) / max);
    const g = el('g', { class: 'bar' });
    g.appendChild(el('rect', { x, y: base - bh, width: bw, height: Math.max(bh, it.value > 0 ? 2 : 0), rx: 3, fill: it.color }));
    g.appendChild(m.mark(el('text', { x: x + bw / 2, y: base - bh - 8, class: 'value', 'text-anchor': 'middle' }, formatShort(it.value)), it.key, it.value));
    g.appendChild(el('text', { x: x + bw / 2, y: base + 24, class: 'label', 'text-anchor': 'middle' }, clip(it.label, Math.max(4, Math.floor(slot / 8.5)))));
    svg.appendChild(g);
  });
  if (opts.empty && items.every((i) => i.value === 0)) emptyNote(svg, w, top + 40, opts.empty);
}

// items: [{key, label, value, color}]; one horizontal bar each, label left.
export function hbarChart(svg, items, opts = {}) {
  const rows = Math.max(items.length, opts.minRows || 1);
  const m = begin(svg, 600, rows * 40 + 8);
  const { w, h } = m, rh = Math.min(48, (h - 8) / rows), left = Math.min(200, w * 0.38), right = 64;
  const max = Math.max(1, ...items.map((i) => i.value));
  items.forEach((it, i) => {
    const y = 4 + i * rh;
    const bw = Math.round(((w - left - right) * it.value) / max);
    const g = el('g', { class: 'bar' });
    g.appendChild(el('text', { x: left - 10, y: y + rh / 2 + 6, class: 'label', 'text-anchor': 'end' }, clip(it.label, Math.floor((left - 12) / 8.5))));
    g.appendChild(el('rect', { x: left, y: y + rh * 0.18, width: Math.max(bw, it.value > 0 ? 2 : 0), height: rh * 0.64, rx: 3, fill: it.color }));
    g.appendChild(m.mark(el('text', { x: left + bw + 8, y: y + rh / 2 + 6, class: 'value' }, formatShort(it.value)), it.key, it.value));
    svg.appendChild(g);
  });
  if (!items.length && opts.empty) emptyNote(svg, w, h, opts.empty);
}

// rows: [{key, label, parts: {seriesKey: n}}]; series: [{key, label, color}].
// One stacked horizontal bar per row, its total at the end.
export function stackedHBar(svg, rows, series) {
  const m = begin(svg, 600, rows.length * 46 + 8);
  const { w, h } = m, rh = Math.min(64, (h - 8) / Math.max(1, rows.length)), left = 90, right = 64;
  const totals = rows.map((r) => series.reduce((s, se) => s + (r.parts[se.key] || 0), 0));
  const max = Math.max(1, ...totals);
  rows.forEach((r, i) => {
    const y = 4 + i * rh;
    let x = left;
    const g = el('g', { class: 'bar' });
    g.appendChild(el('text', { x: left - 10, y: y + rh / 2 + 6, class: 'label', 'text-anchor': 'end' }, r.label));
    for (const se of series) {
      const v = r.parts[se.key] || 0;
      const bw = ((w - left - right) * v) / max;
      const rect = el('rect', { x, y: y + rh * 0.15, width: bw, height: rh * 0.7, fill: se.color });
      m.mark(rect, `${r.key}.${se.key}`, v);
      rect.appendChild(el('title', {}, `${se.label}: ${v}`));
      g.appendChild(rect);
      if (bw >= 28) g.appendChild(el('text', { x: x + bw / 2, y: y + rh / 2 + 6, class: 'inbar', 'text-anchor': 'middle' }, formatShort(v)));
      x += bw;
    }
    g.appendChild(m.mark(el('text', { x: x + 8, y: y + rh / 2 + 6, class: 'value' }, formatShort(totals[i])), r.key, totals[i]));
    svg.appendChild(g);
  });
}

// items: [{key, label, value, color}]; a ring with the total in the middle.
export function donut(svg, items, opts = {}) {
  const m = begin(svg, 300, 300);
  const { w, h } = m, cx = w / 2, cy = h / 2, r = Math.max(40, Math.min(w, h) / 2 - 4), thick = r * 0.36;
  const total = items.reduce((s, i) => s + i.value, 0);
  svg.appendChild(el('circle', { cx, cy, r: r - thick / 2, class: 'ring', 'stroke-width': thick, fill: 'none' }));
  let a0 = -Math.PI / 2;
  for (const it of items) {
    const frac = total ? it.value / total : 0;
    const a1 = a0 + frac * 2 * Math.PI;
    let seg;
    if (frac >= 0.9999) {
      seg = el('circle', { cx, cy, r: r - thick / 2, fill: 'none', stroke: it.color, 'stroke-width': thick });
    } else {
      const ro = r, ri = r - thick, large = a1 - a0 > Math.PI ? 1 : 0;
      const p = (rad, a) => `${(cx + rad * Math.cos(a)).toFixed(2)} ${(cy + rad * Math.sin(a)).toFixed(2)}`;
      seg = el('path', {
        d: `M ${p(ro, a0)} A ${ro} ${ro} 0 ${large} 1 ${p(ro, a1)} L ${p(ri, a1)} A ${ri} ${ri} 0 ${large} 0 ${p(ri, a0)} Z`,
        fill: it.color,
      });
    }
    m.mark(seg, it.key, it.value);
    seg.appendChild(el('title', {}, `${it.label}: ${it.value}`));
    svg.appendChild(seg);
    a0 = a1;
  }
  const big = Math.round(r * 0.36);
  svg.appendChild(m.mark(el('text', { x: cx, y: cy + big * 0.3, class: 'center', 'text-anchor': 'middle', 'font-size': big }, formatShort(total)), 'total', total));
  const small = Math.max(10, Math.min(16, Math.round(r * 0.12)));
  svg.appendChild(el('text', { x: cx, y: cy + big * 0.3 + small + 6, class: 'center-label', 'text-anchor': 'middle', 'font-size': small }, opts.centerLabel || 'total'));
}

// values: [{key, label, value}] oldest first; thin columns, the last one
// highlighted (it is "now"), a label under the first and the last.
export function columns(svg, values, opts = {}) {
  const m = begin(svg, 600, opts.height || 120);
  const { w, h } = m, top = 18, bottom = 22;
  const max = Math.max(1, ...values.map((v) => v.value));
  const slot = w / Math.max(1, values.length);
  const base = h - bottom;
  values.forEach((v, i) => {
    const bh = ((base - top) * v.value) / max;
    const rect = el('rect', {
      x: i * slot + slot * 0.12, y: base - bh, width: slot * 0.76, height: Math.max(bh, v.value > 0 ? 1.5 : 0),
      class: i === values.length - 1 ? 'col now' : 'col', rx: 2,
    });
    m.mark(rect, v.key, v.value);
    rect.appendChild(el('title', {}, `${v.label}: ${opts.format ? opts.format(v.value) : v.value}`));
    svg.appendChild(rect);
  });
  svg.appendChild(el('line', { x1: 0, x2: w, y1: base + 0.5, y2: base + 0.5, class: 'axis' }));
  if (values.length) {
    svg.appendChild(el('text', { x: 2, y: h - 4, class: 'tick' }, values[0].label));
    svg.appendChild(el('text', { x: w - 2, y: h - 4, class: 'tick', 'text-anchor': 'end' }, values[values.length - 1].label));
  }
  svg.appendChild(el('text', { x: w - 2, y: 12, class: 'tick', 'text-anchor': 'end' }, `max ${opts.format ? opts.format(max) : formatShort(max)}`));
}

function clip(s, n) {
  s = String(s);
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
