// sqlmux admin page: reads the JSON API every few seconds and renders it.
// Read-only; builds the DOM with textContent only (statement texts come
// from applications and are never parsed as HTML).
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const MAX_ROWS = 500;
  const SVG_NS = 'http:' + '//www.w3.org/2000/svg';

  const state = {
    statements: [],
    sortKey: 'total_ms',
    sortAsc: false,
    filter: '',
    selected: null,
  };

  const $ = (id) => document.getElementById(id);

  function reportError(message) {
    const box = $('errors');
    box.hidden = false;
    box.textContent += message + '\n';
  }
  window.addEventListener('error', (e) => reportError('script error: ' + e.message));
  window.addEventListener('unhandledrejection', (e) =>
    reportError('script error: ' + (e.reason && e.reason.message ? e.reason.message : e.reason)));

  // ---- small DOM helpers ------------------------------------------------

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cell(text, cls) {
    return el('td', cls, text === null || text === undefined ? '–' : text);
  }

  function tagCell(value, extra) {
    const td = el('td');
    if (value) td.appendChild(el('span', 'tag ' + (extra || value), value));
    else td.textContent = '–';
    return td;
  }

  function sqlCell(text) {
    const td = el('td', 'sql', text || '(text not recorded)');
    td.title = text || '';
    return td;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  // ---- formatting -------------------------------------------------------

  function fmtInt(n) {
    return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
  }

  function fmtMs(v) {
    if (v === null || v === undefined) return '–';
    if (v < 10) return v.toFixed(3);
    if (v < 1000) return v.toFixed(1);
    return Math.round(v).toLocaleString('en-US');
  }

  // Pool wait percentiles are bucket upper bounds.
  function fmtBound(v) {
    return v === null || v === undefined ? '–' : '≤ ' + fmtMs(v);
  }

  function fmtSeconds(v) {
    return v === null || v === undefined ? '–' : v.toFixed(1);
  }

  function fmtLe(us) {
    if (us < 1000) return us + 'µs';
    if (us < 1e6) return us / 1000 + 'ms';
    return us / 1e6 + 's';
  }

  function shortTime(t) {
    // "YYYY-MM-DD HH:MM:SS UTC" -> "HH:MM:SS"
    const m = /\d\d:\d\d:\d\d/.exec(t || '');
    return m ? m[0] : t || '–';
  }

  // ---- data -------------------------------------------------------------

  async function getJSON(path) {
    const r = await fetch(path, { credentials: 'same-origin', cache: 'no-store' });
    if (!r.ok) {
      const err = new Error(path + ': HTTP ' + r.status);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  function setLive(ok, text) {
    $('live').className = 'dot ' + (ok ? 'live' : 'down');
    $('updated').textContent = text;
  }

  async function refresh() {
    try {
      const [pools, statements, n1, leaks] = await Promise.all([
        getJSON('api/pools'),
        getJSON('api/statements'),
        getJSON('api/n_plus_one'),
        getJSON('api/leaks'),
      ]);
      renderPools(pools);
      state.statements = statements;
      renderStatements();
      renderNPlusOne(n1);
      renderLeaks(leaks);
      renderCards(pools, statements, n1, leaks);
      if (state.selected) await loadDetail(state.selected);
      setLive(true, 'live · updated ' + new Date().toLocaleTimeString('en-GB'));
    } catch (e) {
      setLive(false, e.status === 401 ? 'not signed in (HTTP 401)' : 'cannot reach sqlmux: ' + e.message);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  // ---- cards and pools --------------------------------------------------

  function sum(rows, key) {
    return rows.reduce((a, r) => a + (Number(r[key]) || 0), 0);
  }

  function renderCards(pools, statements, n1, leaks) {
    $('c-pools').textContent = fmtInt(pools.length);
    $('c-clients').textContent = fmtInt(sum(pools, 'cl_active') + sum(pools, 'cl_waiting'));
    $('c-servers').textContent = fmtInt(sum(pools, 'sv_active')) + ' / ' + fmtInt(sum(pools, 'sv_idle'));
    $('c-waiting').textContent = fmtInt(sum(pools, 'cl_waiting'));
    $('c-statements').textContent = fmtInt(statements.length);
    $('c-n1').textContent = fmtInt(n1.length);
    $('c-leaks').textContent = fmtInt(leaks.filter((l) => l.state === 'open').length);
  }

  function renderPools(pools) {
    const body = $('pools').tBodies[0];
    body.replaceChildren(...pools.map((p) => {
      const tr = el('tr');
      tr.append(
        tagCell(p.protocol),
        cell(p.database),
        cell(p.user),
        cell(p.pool_mode),
        cell(fmtInt(p.cl_active), 'num'),
        cell(fmtInt(p.cl_waiting), 'num'),
        cell(fmtInt(p.sv_active), 'num'),
        cell(fmtInt(p.sv_idle), 'num'),
        cell(fmtInt(p.size), 'num'),
        cell(fmtBound(p.checkout_wait_p50_ms), 'num'),
        cell(fmtBound(p.checkout_wait_p95_ms), 'num'),
        cell(fmtBound(p.checkout_wait_p99_ms), 'num'),
      );
      return tr;
    }));
    $('pools-empty').hidden = pools.length > 0;
  }

  // ---- statements -------------------------------------------------------

  function visibleStatements() {
    const f = state.filter.toLowerCase();
    const rows = state.statements.filter((s) => !f ||
      [s.query, s.database, s.user, s.fingerprint, s.protocol]
        .some((v) => String(v || '').toLowerCase().includes(f)));
    const k = state.sortKey;
    const dir = state.sortAsc ? 1 : -1;
    rows.sort((a, b) => dir * ((Number(a[k]) || 0) - (Number(b[k]) || 0)) ||
      String(a.fingerprint).localeCompare(String(b.fingerprint)));
    return rows;
  }

  function statementRow(s) {
    const tr = el('tr');
    tr.dataset.fp = s.fingerprint;
    if (s.fingerprint === state.selected) tr.className = 'selected';
    tr.append(
      tagCell(s.protocol),
      sqlCell(s.query),
      cell(s.database),
      cell(s.user),
      cell(fmtInt(s.calls), 'num'),
      cell(fmtInt(s.errors), s.errors > 0 ? 'num err' : 'num'),
      cell(fmtMs(s.total_ms), 'num'),
      cell(fmtMs(s.mean_ms), 'num'),
      cell(fmtMs(s.p50_ms), 'num'),
      cell(fmtMs(s.p95_ms), 'num'),
      cell(fmtMs(s.p99_ms), 'num'),
      cell(fmtMs(s.max_ms), 'num'),
    );
    tr.addEventListener('click', () => select(s.fingerprint));
    return tr;
  }

  function renderStatements() {
    const rows = visibleStatements();
    $('statements').tBodies[0].replaceChildren(...rows.slice(0, MAX_ROWS).map(statementRow));
    const empty = $('statements-empty');
    empty.hidden = rows.length > 0 && rows.length <= MAX_ROWS;
    empty.textContent = rows.length > MAX_ROWS
      ? 'Showing ' + MAX_ROWS + ' of ' + rows.length + ' statements; filter to narrow down.'
      : state.statements.length ? 'No statement matches the filter.' : 'No statements recorded yet.';
    for (const th of document.querySelectorAll('#statements th.sortable')) {
      th.classList.toggle('sorted', th.dataset.key === state.sortKey);
      th.classList.toggle('asc', th.dataset.key === state.sortKey && state.sortAsc);
    }
  }

  function setupStatementControls() {
    for (const th of document.querySelectorAll('#statements th.sortable')) {
      th.addEventListener('click', () => {
        if (state.sortKey === th.dataset.key) state.sortAsc = !state.sortAsc;
        else { state.sortKey = th.dataset.key; state.sortAsc = false; }
        renderStatements();
      });
    }
    $('filter').addEventListener('input', (e) => {
      state.filter = e.target.value;
      renderStatements();
    });
  }

  // ---- one statement: summary and histogram -----------------------------

  function select(fp) {
    location.hash = 'fp=' + fp;
  }

  function fromHash() {
    const m = /fp=([0-9a-fA-F]{16})/.exec(location.hash);
    state.selected = m ? m[1].toLowerCase() : null;
    for (const tr of $('statements').tBodies[0].rows) {
      tr.classList.toggle('selected', tr.dataset.fp === state.selected);
    }
    if (state.selected) {
      loadDetail(state.selected).catch((e) => showDetailError(e));
    } else {
      $('detail').hidden = true;
    }
  }

  function showDetailError(e) {
    $('detail').hidden = false;
    $('d-fp').textContent = state.selected || '';
    $('d-query').textContent = e.status === 404
      ? 'This fingerprint is not tracked (never seen, reset, or folded into "other").'
      : 'Cannot load the statement: ' + e.message;
    $('d-stats').replaceChildren();
    $('chart').replaceChildren();
  }

  async function loadDetail(fp) {
    let d;
    try {
      d = await getJSON('api/statements/' + fp);
    } catch (e) {
      if (fp === state.selected) showDetailError(e);
      return;
    }
    if (fp !== state.selected) return;
    $('detail').hidden = false;
    $('d-fp').textContent = d.fingerprint;
    $('d-query').textContent = d.query || '(text not recorded)';
    const stats = [
      ['protocol', d.protocol || '–'], ['calls', fmtInt(d.calls)], ['errors', fmtInt(d.errors)],
      ['rows', fmtInt(d.rows)], ['total ms', fmtMs(d.total_ms)], ['mean ms', fmtMs(d.mean_ms)],
      ['p50 ms', fmtMs(d.p50_ms)], ['p95 ms', fmtMs(d.p95_ms)], ['p99 ms', fmtMs(d.p99_ms)],
      ['max ms', fmtMs(d.max_ms)],
    ];
    $('d-stats').replaceChildren(...stats.map(([k, v]) => {
      const s = el('div', 'stat');
      s.append(el('div', 'k', k), el('div', 'v', v));
      return s;
    }));
    $('chart').replaceChildren(histogramChart(d));
  }

  // The 1-2-5 progression of bucket bounds (µs) from the first to the last
  // non-empty bucket, so empty buckets in between show as gaps.
  function fullBuckets(hist) {
    const counts = new Map(hist.map((b) => [Math.round(b.le_ms * 1000), b.count]));
    const present = [...counts.keys()];
    if (!present.length) return [];
    const lo = Math.min(...present);
    const hi = Math.max(...present);
    const out = [];
    for (let decade = 1; decade <= 1e10; decade *= 10) {
      for (const m of [1, 2, 5]) {
        const le = m * decade;
        if (le >= lo && le <= hi) out.push({ le, count: counts.get(le) || 0 });
      }
    }
    return out;
  }

  function niceMax(v) {
    if (v <= 5) return 5;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return v;
  }

  function histogramChart(d) {
    const buckets = fullBuckets(d.histogram || []);
    const W = 960, H = 280, L = 56, R = 16, T = 28, B = 44;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', id: 'histogram' });
    root.appendChild(svg('title', {}, 'Latency histogram of ' + d.fingerprint));
    if (!buckets.length) {
      root.appendChild(svg('text', { x: L, y: T + 20 }, 'No samples yet.'));
      return root;
    }
    const top = niceMax(Math.max(...buckets.map((b) => b.count)));
    const plotW = W - L - R, plotH = H - T - B;
    const slot = plotW / buckets.length;
    const y = (c) => T + plotH - (c / top) * plotH;
    for (let i = 0; i <= 4; i++) {
      const v = (top / 4) * i;
      root.appendChild(svg('line', { class: 'gridline', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      root.appendChild(svg('text', { x: L - 8, y: y(v) + 4, 'text-anchor': 'end' }, fmtInt(Math.round(v))));
    }
    const every = Math.ceil(buckets.length / 16);
    buckets.forEach((b, i) => {
      const x = L + i * slot;
      const h = T + plotH - y(b.count);
      const bar = svg('rect', {
        class: 'bar', x: x + slot * 0.12, y: y(b.count), width: slot * 0.76, height: Math.max(h, 0),
        rx: 2, 'data-le-us': b.le, 'data-count': b.count,
      });
      const prev = i > 0 ? buckets[i - 1].le : null;
      bar.appendChild(svg('title', {}, (prev ? fmtLe(prev) + ' – ' : '≤ ') + fmtLe(b.le) + ': ' + fmtInt(b.count)));
      root.appendChild(bar);
      if (i % every === 0) {
        root.appendChild(svg('text', { x: x + slot / 2, y: H - B + 16, 'text-anchor': 'middle' }, fmtLe(b.le)));
      }
    });
    root.appendChild(svg('line', { class: 'axis', x1: L, x2: W - R, y1: T + plotH, y2: T + plotH }));
    root.appendChild(svg('text', { x: L + plotW / 2, y: H - 6, 'text-anchor': 'middle' },
      'latency (upper bound of each bucket)'));
    drawMarkers(root, d, buckets, { L, T, slot, plotH });
    return root;
  }

  function drawMarkers(root, d, buckets, g) {
    const seen = new Map();
    for (const [name, ms] of [['p50', d.p50_ms], ['p95', d.p95_ms], ['p99', d.p99_ms]]) {
      if (ms === null || ms === undefined) continue;
      let i = buckets.findIndex((b) => b.le >= ms * 1000);
      if (i < 0) i = buckets.length - 1;
      const n = seen.get(i) || 0;
      seen.set(i, n + 1);
      const x = g.L + i * g.slot + g.slot / 2 + n * 6;
      root.appendChild(svg('line', { class: 'marker ' + name, x1: x, x2: x, y1: g.T - 4, y2: g.T + g.plotH }));
      root.appendChild(svg('text', { class: 'mlabel ' + name, x: x + 3 + n * 24, y: g.T - 8 }, name));
    }
  }

  // ---- N+1 bursts and leaks ---------------------------------------------

  function renderNPlusOne(events) {
    const rows = events.slice(0, 50).map((e) => {
      const tr = el('tr');
      const q = sqlCell(e.query);
      if (e.ongoing) q.prepend(el('span', 'tag ongoing', 'ongoing'), ' ');
      tr.append(
        cell(shortTime(e.detected_at)), tagCell(e.protocol), cell(e.database), cell(e.user),
        cell(e.client_addr), cell(e.application_name || '–'),
        cell(fmtInt(e.repeats), 'num'), cell(fmtMs(e.window_ms), 'num'), q, sqlCell(e.parent_query),
      );
      return tr;
    });
    $('n1').tBodies[0].replaceChildren(...rows);
    $('n1-empty').hidden = events.length > 0;
  }

  function renderLeaks(leaks) {
    const rows = leaks.slice(0, 50).map((l) => {
      const tr = el('tr');
      tr.append(
        tagCell(l.state, l.state === 'open' ? 'open' : 'closed'), cell(shortTime(l.detected_at)),
        tagCell(l.protocol), cell(l.database), cell(l.user), cell(l.client_addr),
        cell(l.application_name || '–'), cell(fmtSeconds(l.xact_age_s), 'num'),
        cell(fmtSeconds(l.idle_s), 'num'), sqlCell(l.last_query), cell(l.action),
      );
      return tr;
    });
    $('leaks').tBodies[0].replaceChildren(...rows);
    $('leaks-empty').hidden = leaks.length > 0;
  }

  // ---- start ------------------------------------------------------------

  setupStatementControls();
  $('d-close').addEventListener('click', (e) => {
    e.preventDefault();
    history.replaceState(null, '', location.pathname + location.search);
    fromHash();
  });
  window.addEventListener('hashchange', fromHash);
  fromHash();
  refresh();
})();
