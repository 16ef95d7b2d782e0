// The fts dashboard: live status and clients (server-sent events from
// /api/events), charts of the last hour, the share's files, and for a
// logged-in admin kick / warn / chat. Text from the server only ever goes
// into the page through textContent, never as HTML.
'use strict';

const $ = (sel) => document.querySelector(sel);
const state = {
  csrf: null,
  feed: null,
  every: 10,
  samples: [],
  unread: 0,
  unreadFrom: new Set(),
  dir: '',
  readOnly: true,
  dialog: null,
};

// ---- formatting ----------------------------------------------------------

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
}
const fmtRate = (n) => fmtBytes(n) + '/s';
function fmtDuration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
  const m = Math.floor(s % 3600 / 60), sec = Math.floor(s % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}
function el(tag, props = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k);
  return e;
}
function showError(msg) {
  const e = $('#error');
  e.textContent = msg || '';
  e.hidden = !msg;
}

// ---- server calls --------------------------------------------------------

async function api(path, body) {
  const opts = { credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.method = 'POST';
    opts.headers['Content-Type'] = 'application/json';
    if (state.csrf) opts.headers['X-CSRF-Token'] = state.csrf;
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  let data = null;
  try { data = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) {
    if (r.status === 401 && path.startsWith('/api/admin/') && path !== '/api/admin/login') setAdmin(null);
    throw new Error((data && data.error) || `${r.status} ${r.statusText}`);
  }
  return data;
}

// ---- live feed -----------------------------------------------------------

function connectFeed() {
  if (state.feed) state.feed.close();
  const es = new EventSource('/api/events');
  state.feed = es;
  es.addEventListener('open', () => { $('#feed-state').textContent = 'live'; });
  es.addEventListener('error', () => { $('#feed-state').textContent = 'connection lost, retrying…'; });
  es.addEventListener('stats', (ev) => {
    const s = JSON.parse(ev.data);
    renderStats(s);
    addSample(s.totals);
  });
  es.addEventListener('chat', (ev) => addMessage(JSON.parse(ev.data)));
}

function renderStats(s) {
  const sv = s.server;
  $('#version').textContent = sv.version;
  $('#root').textContent = sv.root;
  $('#uptime').textContent = fmtDuration(sv.uptime_s);
  $('#clients-connected').textContent = sv.clients_connected;
  $('#max-clients').textContent = sv.max_clients;
  $('#mode').textContent = sv.read_only ? 'read-only' : 'read-write';
  for (const dd of document.querySelectorAll('[data-total]')) {
    const k = dd.dataset.total;
    const v = s.totals[k];
    dd.textContent = /bytes/.test(k) ? fmtBytes(v) : String(v);
  }
  renderClients(s.clients);
  const now = s.clients.reduce((a, c) => a + c.rate_bps, 0);
  $('#throughput-now').textContent = now ? `now ${fmtRate(now)}` : '';
}

function renderClients(clients) {
  const body = $('#clients tbody');
  const seen = new Set();
  for (const c of clients) {
    const id = String(c.id);
    seen.add(id);
    let row = body.querySelector(`tr[data-client-id="${id}"]`);
    if (!row) {
      row = el('tr', { 'data-client-id': id });
      const warn = el('button', { type: 'button', class: 'warn', text: 'Warn' });
      const kick = el('button', { type: 'button', class: 'kick', text: 'Kick' });
      const talk = el('button', { type: 'button', class: 'talk', text: 'Chat' });
      warn.addEventListener('click', () => act('warn', c.id, row.dataset.name));
      kick.addEventListener('click', () => act('kick', c.id, row.dataset.name));
      talk.addEventListener('click', () => { $('#chat-to').value = row.dataset.name; location.hash = '#chat'; });
      row.append(
        el('td', { class: 'id', text: '#' + id }),
        el('td', { class: 'name' }),
        el('td', { class: 'addr wide' }),
        el('td', { class: 'state' }),
        el('td', { class: 'file' }),
        el('td', { class: 'progress' }, el('progress', { max: 1, value: 0 })),
        el('td', { class: 'rate' }),
        el('td', { class: 'actions admin-only' }, warn, ' ', kick, ' ', talk),
      );
      body.append(row);
    }
    row.dataset.name = c.name;
    row.dataset.bytesDone = c.bytes_done;
    row.dataset.state = c.state;
    // A key client's name is its key's; what it calls itself is a claim.
    const says = c.key ? ` (key; calls itself ${c.declared_name})` : '';
    row.querySelector('.name').textContent = c.name + says + (c.admin ? ' (admin)' : '');
    row.querySelector('.addr').textContent = c.addr;
    row.querySelector('.state').textContent = c.state;
    row.querySelector('.file').textContent = c.file || '';
    const p = row.querySelector('progress');
    if (c.file && c.bytes_total > 0) {
      p.max = c.bytes_total;
      p.value = c.bytes_done;
      p.hidden = false;
      p.title = `${fmtBytes(c.bytes_done)} of ${fmtBytes(c.bytes_total)}`;
    } else {
      p.hidden = true;
    }
    row.querySelector('.rate').textContent = c.rate_bps ? fmtRate(c.rate_bps) : '';
    row.classList.toggle('unread', state.unreadFrom.has(c.id));
  }
  for (const row of [...body.querySelectorAll('tr')]) {
    if (!seen.has(row.dataset.clientId)) row.remove();
  }
  $('#no-clients').hidden = clients.length > 0;
}

// ---- charts --------------------------------------------------------------

async function loadHistory() {
  try {
    const h = await api('/api/history');
    state.every = h.every_s || 10;
    state.samples = h.samples || [];
    drawCharts();
  } catch (e) { /* the live feed fills in */ }
}

// The page samples the totals every few seconds itself, so the charts
// move from the first minute on; the server's 10-second history fills in
// what happened before the page was opened.
const PAGE_EVERY = 3;
function addSample(t) {
  const now = Math.floor(Date.now() / 1000);
  const last = state.samples[state.samples.length - 1];
  if (last && now - last.t < PAGE_EVERY) return;
  state.samples.push({
    t: now,
    bytes_sent: t.bytes_sent,
    bytes_received: t.bytes_received,
    saved_by_delta_bytes: t.saved_by_delta_bytes,
    saved_by_compression_bytes: t.saved_by_compression_bytes,
  });
  while (state.samples.length && state.samples[0].t < now - 3600) state.samples.shift();
  drawCharts();
}

// Per-second rates between consecutive samples, for each key.
function rates(keys) {
  const out = [];
  const s = state.samples;
  for (let i = 1; i < s.length; i++) {
    const dt = Math.max(1, s[i].t - s[i - 1].t);
    out.push({ t: s[i].t, v: keys.map((k) => Math.max(0, s[i][k] - s[i - 1][k]) / dt) });
  }
  return out;
}

function drawChart(canvas, points, colors, fmt) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 600, h = canvas.clientHeight || 180;
  canvas.width = Math.round(w * ratio);
  canvas.height = Math.round(h * ratio);
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const css = getComputedStyle(document.documentElement);
  const left = 64, bottom = 18, top = 8;
  const now = Math.floor(Date.now() / 1000);
  // The window grows with the data, from 2 minutes up to the hour.
  const first = state.samples.length ? state.samples[0].t : now;
  const span = Math.min(3600, Math.max(120, now - first));
  const x = (t) => left + (w - left - 4) * (1 - (now - t) / span);
  const max = Math.max(1, ...points.flatMap((p) => p.v));
  const y = (v) => top + (h - top - bottom) * (1 - v / max);
  g.strokeStyle = css.getPropertyValue('--line');
  g.fillStyle = css.getPropertyValue('--muted');
  g.font = '11px system-ui, sans-serif';
  g.lineWidth = 1;
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    g.beginPath(); g.moveTo(left, yy); g.lineTo(w, yy); g.stroke();
    g.fillText(fmt(max * f), 2, yy + 4);
  }
  const mins = Math.round(span / 60);
  for (const [label, t] of [[`-${mins}m`, now - span], [`-${Math.round(mins / 2)}m`, now - span / 2], ['now', now]]) {
    g.fillText(label, Math.min(x(t), w - 24), h - 4);
  }
  if (points.length === 0) {
    g.fillText('collecting samples…', left + 8, top + 20);
    return;
  }
  colors.forEach((c, i) => {
    g.strokeStyle = css.getPropertyValue(c);
    g.lineWidth = 2;
    g.beginPath();
    points.forEach((p, j) => (j ? g.lineTo : g.moveTo).call(g, x(p.t), y(p.v[i])));
    g.stroke();
    // Dots too, so the first few samples show before there is a line.
    g.fillStyle = g.strokeStyle;
    for (const p of points) {
      g.beginPath();
      g.arc(x(p.t), y(p.v[i]), 2.5, 0, 2 * Math.PI);
      g.fill();
    }
  });
}

function drawCharts() {
  if ($('#dashboard').hidden) return;
  drawChart($('#chart-throughput'), rates(['bytes_sent', 'bytes_received']), ['--sent', '--received'], fmtRate);
  drawChart($('#chart-saved'), rates(['saved_by_delta_bytes', 'saved_by_compression_bytes']), ['--delta', '--compression'], fmtRate);
  const s = state.samples;
  if (s.length > 1) {
    const a = s[0], b = s[s.length - 1];
    const d = b.saved_by_delta_bytes - a.saved_by_delta_bytes;
    const c = b.saved_by_compression_bytes - a.saved_by_compression_bytes;
    $('#saved-hour').textContent = `this hour: ${fmtBytes(d)} by delta, ${fmtBytes(c)} by compression`;
  }
}

// ---- admin ---------------------------------------------------------------

function setAdmin(csrf) {
  const was = !!state.csrf;
  state.csrf = csrf;
  document.body.classList.toggle('admin', !!csrf);
  if (was !== !!csrf) connectFeed();
  if (!csrf && location.hash === '#chat') location.hash = '#dashboard';
}

async function restoreSession() {
  try {
    const s = await api('/api/admin/session');
    setAdmin(s.admin ? s.csrf : null);
    $('#admin-box').hidden = !s.admin && !s.admin_enabled;
  } catch (_) { /* the page still works without admin */ }
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const pw = $('#admin-password');
  try {
    const r = await api('/api/admin/login', { password: pw.value });
    pw.value = '';
    showError('');
    setAdmin(r.csrf);
  } catch (e) {
    showError('Admin login failed: ' + e.message);
  }
});

$('#logout-button').addEventListener('click', async () => {
  try { await api('/api/admin/logout', {}); } catch (_) { /* gone anyway */ }
  setAdmin(null);
});

// The warn / kick dialog.
function act(kind, id, name) {
  const d = $('#action');
  const who = id === null ? 'every client' : `${name} (#${id})`;
  $('#action-title').textContent = kind === 'kick' ? `Kick ${who}` : `Warn ${who}`;
  $('#action-label').textContent = kind === 'kick' ? 'Reason (shown to the client)' : 'Warning text';
  $('#action-text').value = '';
  $('#action-ok').textContent = kind === 'kick' ? 'Kick' : 'Send warning';
  state.dialog = { kind, id };
  d.showModal();
  $('#action-text').focus();
}

$('#action-cancel').addEventListener('click', () => $('#action').close());
$('#action-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const a = state.dialog;
  const text = $('#action-text').value;
  $('#action').close();
  if (!a) return;
  try {
    if (a.kind === 'kick') await api('/api/admin/kick', { id: a.id, reason: text });
    else await api('/api/admin/warn', { id: a.id, text });
    showError('');
  } catch (e) {
    showError(`${a.kind} failed: ${e.message}`);
  }
});
$('#warn-all').addEventListener('click', () => act('warn', null, ''));

// ---- chat ----------------------------------------------------------------

function addMessage(n) {
  const fromAdmin = n.from.startsWith('admin');
  const li = el('li', { class: fromAdmin ? 'from-admin' : 'from-client' });
  if (n.from_id !== undefined && n.from_id !== null) li.dataset.fromId = n.from_id;
  li.classList.add('message');
  const when = (n.time || '').replace(/^.*T/, '').replace(/Z$/, '');
  const meta = el('span', { class: 'meta', text: `${when} ${n.from} → ${n.to}` });
  li.append(meta, el('span', { class: 'text', text: n.text }));
  if (!fromAdmin) {
    li.title = 'click to answer';
    li.addEventListener('click', () => { $('#chat-to').value = n.from_id ?? n.from; $('#chat-text').focus(); });
  }
  const log = $('#chat-log');
  log.append(li);
  while (log.children.length > 500) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
  if (!fromAdmin && ($('#chat').hidden || document.hidden)) {
    state.unread++;
    if (n.from_id !== undefined && n.from_id !== null) state.unreadFrom.add(n.from_id);
    showUnread();
  }
}

function showUnread() {
  const b = $('#chat-unread');
  b.textContent = String(state.unread);
  b.hidden = state.unread === 0;
  document.title = state.unread ? `(${state.unread}) fts` : 'fts';
  for (const row of document.querySelectorAll('#clients tbody tr')) {
    row.classList.toggle('unread', state.unreadFrom.has(Number(row.dataset.clientId)));
  }
}

function markRead() {
  if ($('#chat').hidden || document.hidden) return;
  state.unread = 0;
  state.unreadFrom.clear();
  showUnread();
}
document.addEventListener('visibilitychange', markRead);

$('#chat-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const text = $('#chat-text');
  try {
    await api('/api/admin/chat', { to: $('#chat-to').value.trim(), text: text.value });
    text.value = '';
    showError('');
  } catch (e) {
    showError('Message not sent: ' + e.message);
  }
});

// ---- files ---------------------------------------------------------------

const encPath = (p) => p.split('/').filter(Boolean).map(encodeURIComponent).join('/');

async function loadDir(dir) {
  let r;
  try {
    r = await api('/api/ls?path=' + encodeURIComponent(dir));
  } catch (e) {
    showError(`Cannot list '${dir || '/'}': ${e.message}`);
    return;
  }
  showError('');
  state.dir = r.path;
  state.readOnly = r.read_only;
  $('#upload-form').hidden = r.read_only;
  const crumbs = $('#files-path');
  crumbs.replaceChildren(el('a', { href: '#files:', text: 'share' }));
  let acc = '';
  for (const part of r.path.split('/').filter(Boolean)) {
    acc = acc ? acc + '/' + part : part;
    crumbs.append(' / ', el('a', { href: '#files:' + encodeURIComponent(acc), text: part }));
  }
  const body = $('#files-list tbody');
  body.replaceChildren();
  const entries = r.entries.slice().sort((a, b) =>
    (a.kind === 'dir' ? 0 : 1) - (b.kind === 'dir' ? 0 : 1) || a.path.localeCompare(b.path));
  for (const e of entries) {
    const name = e.path.split('/').pop();
    const row = el('tr', { 'data-name': name });
    let link;
    if (e.kind === 'dir') {
      link = el('a', { class: 'dir', href: '#files:' + encodeURIComponent(e.path), text: name + '/' });
    } else {
      link = el('a', { class: 'download', href: '/files/' + encPath(e.path), text: name });
      link.setAttribute('download', name);
    }
    const when = new Date(e.mtime * 1000);
    row.append(
      el('td', {}, link),
      el('td', { class: 'size', text: e.kind === 'dir' ? '' : fmtBytes(e.size) }),
      el('td', { class: 'wide', text: when.toLocaleString() }),
    );
    body.append(row);
  }
  if (!entries.length) body.append(el('tr', {}, el('td', { colSpan: 3, class: 'note', text: 'empty folder' })));
}

function uploadOne(file) {
  return new Promise((resolve, reject) => {
    const target = (state.dir ? state.dir + '/' : '') + file.name;
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', '/files/' + encPath(target));
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    const bar = $('#upload-progress');
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) { bar.max = e.total; bar.value = e.loaded; }
    });
    xhr.addEventListener('load', () => {
      bar.hidden = true;
      if (xhr.status >= 200 && xhr.status < 300) resolve();
      else {
        let msg = `${xhr.status}`;
        try { msg = JSON.parse(xhr.responseText).error || msg; } catch (_) { /* plain */ }
        reject(new Error(msg));
      }
    });
    xhr.addEventListener('error', () => { bar.hidden = true; reject(new Error('connection lost')); });
    xhr.send(file);
  });
}

$('#upload-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('#upload-input');
  const status = $('#upload-status');
  const files = [...input.files];
  if (!files.length) { status.textContent = 'choose a file first'; return; }
  for (const f of files) {
    status.textContent = `uploading ${f.name}…`;
    try {
      await uploadOne(f);
      status.textContent = `uploaded ${f.name} (${fmtBytes(f.size)})`;
    } catch (e) {
      status.textContent = `upload of ${f.name} failed: ${e.message}`;
      break;
    }
  }
  input.value = '';
  loadDir(state.dir);
});

// ---- navigation ----------------------------------------------------------

function route() {
  const h = location.hash || '#dashboard';
  const view = h.startsWith('#files:') ? 'files' : h === '#chat' ? 'chat' : 'dashboard';
  for (const v of ['dashboard', 'files', 'chat']) {
    $('#' + v).hidden = v !== view;
    $('#nav-' + v).classList.toggle('current', v === view);
  }
  if (view === 'files') loadDir(decodeURIComponent(h.slice('#files:'.length)));
  if (view === 'chat') markRead();
  if (view === 'dashboard') drawCharts();
}

window.addEventListener('hashchange', route);
window.addEventListener('resize', drawCharts);

connectFeed();
restoreSession();
loadHistory();
route();
