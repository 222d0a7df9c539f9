// The Remote Desktop page: one noVNC viewer, resized to the browser window,
// with clipboard, reconnect, quality/compression sliders and a status line.
const cfg = JSON.parse(document.getElementById('rcsc3-config').textContent);
// noVNC lives under a versioned path (cached for good by the browser): the same URLs the page preloads.
const { default: RFB } = await import(new URL(cfg.rfb, document.baseURI).href);
const $ = (id) => document.getElementById(id);
const HEADERS = { 'X-Rcsc3-Desktop': '1' };  // the API refuses POSTs without it (no cross-site forms)
const params = new URLSearchParams(location.search);

// Exposed for tests and curious students: what the page is doing right now.
const state = window.rcsc3Desktop = { phase: 'loading', status: cfg.status, connects: 0, rfb: null };

let rfb = null;
let closing = false;
let retryDelay = 250;
let retryTimer = null;

function setStatus(text, cls = '') {
  const el = $('status');
  el.textContent = text;
  el.className = cls;
}

function describe(st) {
  const flavor = st.flavor ? `${st.flavor === 'turbovnc' ? 'TurboVNC' : 'TigerVNC'} ${st.version}` : 'no VNC server';
  const display = st.display !== null && st.display !== undefined ? ` on :${st.display}` : '';
  return `${flavor}${display} · ${st.gl_description}`;
}

function showError(st) {
  state.phase = 'failed';
  $('error').hidden = false;
  $('error-text').textContent = st.error;
  setStatus(`Error: ${st.error}`, 'bad');
}

async function api(path, method = 'GET') {
  const r = await fetch(path, { method, headers: HEADERS, cache: 'no-store', credentials: 'same-origin' });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function wsUrl() {
  // jupyter-server-proxy's desktop-vnc entry: raw into Xvnc's socket, or on to websockify (setting "bridge").
  const u = new URL('../desktop-vnc/', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  if (params.get('token')) u.searchParams.set('token', params.get('token'));  // plain jupyter server auth
  return u.href;
}

async function connect() {
  clearTimeout(retryTimer);
  if (rfb) { rfb.disconnect(); rfb = null; }
  setStatus('Starting the desktop…');
  let st;
  try {
    // the first time, the request the page started before the modules loaded
    const early = window.rcsc3Ready;
    window.rcsc3Ready = null;
    if (early && cfg.status.state === 'running') {
      // the page was served by a desktop already running (prestart, a second tab, a reload):
      // connect now rather than after another round trip through the proxies
      early.catch(() => {});
      st = cfg.status;
    } else {
      st = await (early || api(`api/status?start=1&wait=1&geometry=${window.rcsc3Geometry()}`));
    }
  } catch (e) {
    return scheduleRetry(`server not reachable (${e.message})`);
  }
  state.status = st;
  if (st.state === 'failed') return showError(st);
  if (st.state !== 'running') return scheduleRetry(`desktop is ${st.state}`);
  $('error').hidden = true;
  setStatus(`Connecting · ${describe(st)}`);
  state.phase = 'connecting';
  const options = st.password ? { credentials: { password: st.password } } : {};
  rfb = new RFB($('screen'), wsUrl(), options);
  state.rfb = rfb;
  rfb.resizeSession = true;     // the X screen follows the browser window
  rfb.scaleViewport = false;
  rfb.clipViewport = false;
  rfb.focusOnClick = true;
  rfb.qualityLevel = Number($('quality').value);
  rfb.compressionLevel = Number($('compression').value);
  rfb.addEventListener('connect', () => {
    state.phase = 'connected';
    state.connects += 1;
    retryDelay = 250;
    setStatus(`Connected · ${describe(st)}`, 'ok');
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (e) => {
    state.phase = 'disconnected';
    rfb = null;
    if (closing) return setStatus('Desktop closed. Reload the page to start a new one.');
    scheduleRetry(e.detail.clean ? 'disconnected' : 'connection lost');
  });
  rfb.addEventListener('clipboard', (e) => { $('clipboard-text').value = e.detail.text; });
  rfb.addEventListener('securityfailure', (e) => setStatus(`VNC security failure: ${e.detail.reason}`, 'bad'));
}

function scheduleRetry(why) {
  if (closing) return;
  setStatus(`${why}; reconnecting in ${(retryDelay / 1000).toFixed(1)} s…`, 'bad');
  retryTimer = setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 8000);
}

$('quality').value = cfg.quality;
$('compression').value = cfg.compression;
$('quality').addEventListener('input', (e) => { if (rfb) rfb.qualityLevel = Number(e.target.value); });
$('compression').addEventListener('input', (e) => { if (rfb) rfb.compressionLevel = Number(e.target.value); });
$('clipboard-toggle').addEventListener('click', () => { $('clipboard').hidden = !$('clipboard').hidden; });
$('clipboard-text').addEventListener('input', (e) => { if (rfb) rfb.clipboardPasteFrom(e.target.value); });
$('reconnect').addEventListener('click', () => { closing = false; retryDelay = 250; connect(); });
$('retry').addEventListener('click', async () => {
  closing = false;
  state.status = await api('api/start', 'POST');
  connect();
});
$('close').addEventListener('click', async () => {
  closing = true;
  if (rfb) rfb.disconnect();
  state.status = await api('api/stop', 'POST');
  state.phase = 'closed';
  setStatus('Desktop closed. Reload the page to start a new one.');
});

if (cfg.status.state === 'failed') showError(cfg.status); else connect();
