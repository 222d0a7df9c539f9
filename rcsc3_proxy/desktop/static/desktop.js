// The Remote Desktop page: one noVNC viewer, resized to the browser window, with clipboard,
// reconnect, picture settings, a status line, the session's time left and, for the owner, who is
// watching (with "give control" / "end view"). Anyone but the owner watches view-only.
const cfg = JSON.parse(document.getElementById('rcsc3-config').textContent);
// noVNC: the bundle the page carries inline, or its modules under a versioned path (the URLs the page preloads).
const RFB = window.rcsc3NoVNC ? window.rcsc3NoVNC.default : (await import(new URL(cfg.rfb, document.baseURI).href)).default;
const $ = (id) => document.getElementById(id);
// this person's token for the desktop: the API refuses calls without it (request_guard.py)
const HEADERS = { [cfg.token_header]: cfg.token };
const OWNER = cfg.role === 'owner';

// Exposed for tests and curious students: what the page is doing right now.
const state = window.rcsc3Desktop = { phase: 'loading', status: cfg.status, connects: 0, rfb: null, earlyChannel: false,
                                     jpegDecoder: false, jpegsDrawn: 0, novncShape: '', role: cfg.role,
                                     control: OWNER, ended: false, viewers: [], timeLeft: null };

let rfb = null;
let servedStatus = cfg.status;  // the desktop's state when the page was served; used by the first connect only
let sizeUntold = false;          // whether the server has not heard this viewer's screen size
let closing = false;
let retryDelay = 250;
let retryTimer = null;

function setStatus(text, cls = '') {
  const el = $('status');
  el.textContent = text;
  el.className = cls;
  el.title = text;  // the whole line on hover, whatever the bar cuts off
  $('status-detail').textContent = text;
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

async function connect() {
  clearTimeout(retryTimer);
  if (state.ended) return;
  if (rfb) { rfb.disconnect(); rfb = null; }
  setStatus('Starting the desktop…');
  let st;
  try {
    // the first time, the request the page started before the modules loaded (none if the desktop ran)
    const early = window.rcsc3Ready;
    const served = servedStatus;
    window.rcsc3Ready = servedStatus = null;
    if (served && served.state === 'running') {
      // the page was served by a desktop already running (prestart, a second tab, a reload):
      // connect now rather than after another round trip through the proxies
      st = served;
      sizeUntold = true;
    } else {
      st = await (early || api(`api/status?start=1&wait=1&geometry=${window.rcsc3Geometry()}`));
    }
  } catch (e) {
    return scheduleRetry(`server not reachable (${e.message})`);
  }
  state.status = st;
  if (st.state === 'failed') return showError(st);
  if (st.state !== 'running') return scheduleRetry(OWNER ? `desktop is ${st.state}` : `${cfg.owner}'s desktop is ${st.state}`);
  $('error').hidden = true;
  setStatus(`Connecting · ${describe(st)}`);
  state.phase = 'connecting';
  const options = st.password ? { credentials: { password: st.password } } : {};
  // the websocket the page opened while noVNC loaded, if the desktop was running then and it is still up
  const early = window.rcsc3EarlyChannel;
  window.rcsc3EarlyChannel = null;
  const channel = early && early.readyState <= WebSocket.OPEN ? early : window.rcsc3WsUrl();
  if (early && channel !== early) early.close();
  state.earlyChannel = channel === early;
  rfb = new RFB($('screen'), channel, options);
  state.rfb = rfb;
  state.novncShape = novncShapeProblem(rfb);
  state.jpegDecoder = !state.novncShape && decodeJpegOffThread(rfb._display);
  // The owner's X screen follows the owner's window. A viewer sees it scaled into theirs, and their
  // input is held back by the bridge unless they have control (viewOnly only spares their browser the work).
  rfb.resizeSession = OWNER;
  rfb.scaleViewport = !OWNER;
  rfb.viewOnly = !state.control;
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
    if (state.connects === 1) setTimeout(afterFirstFrame, AFTER_FIRST_FRAME_MS);
  });
  rfb.addEventListener('disconnect', (e) => {
    state.phase = 'disconnected';
    rfb = null;
    if (state.ended) return setStatus(`${cfg.owner} ended your view of their desktop.`, 'bad');
    if (closing) return setStatus('Desktop closed. Reload the page to start a new one.');
    scheduleRetry(e.detail.clean ? 'disconnected' : 'connection lost');
  });
  rfb.addEventListener('clipboard', (e) => { $('clipboard-text').value = e.detail.text; });
  rfb.addEventListener('securityfailure', (e) => setStatus(`VNC security failure: ${e.detail.reason}`, 'bad'));
}

// noVNC (1.3) hands each JPEG rectangle of a Tight update to an <img> as a base64 data: URL: a
// JavaScript base64 pass, a resource load and a decode on the page's main thread, for each of the
// ~40 rectangles of a full screen. WebCodecs' ImageDecoder takes the bytes as they are and decodes
// them off the main thread; the frames go through noVNC's own render queue, in order, as its
// <img>s did. Where ImageDecoder is missing (not a secure context, older browsers) noVNC is unchanged.
class DecodedJpeg extends EventTarget {
  constructor(bytes, mime) {
    super();
    this.complete = false;
    this.width = this.height = 0;
    this.frame = null;
    const decoder = new ImageDecoder({ data: bytes, type: mime });  // copies the bytes
    decoder.decode().then(({ image }) => {
      this.frame = image;
      this.width = image.displayWidth;
      this.height = image.displayHeight;
    }, (e) => console.error('rcsc3: a JPEG rectangle did not decode', e)).finally(() => {
      decoder.close();
      this.complete = true;  // noVNC's size check reports one that did not decode
      this.dispatchEvent(new Event('load'));
    });
  }
}

// What of noVNC's private Display the JPEG path below relies on (noVNC 1.3's shape): '' when all of it
// is there, else what is not. With another release, or another shape, the page leaves noVNC alone.
function novncShapeProblem(client) {
  const release = cfg.novnc_release || '';
  if (!(cfg.novnc_accepted || []).some((r) => release === r || release.startsWith(`${r}.`))) {
    return `noVNC release ${release || '(unknown)'} is not one the page knows (${(cfg.novnc_accepted || []).join(', ')})`;
  }
  const display = client && client._display;
  if (!display) return 'RFB has no _display';
  const missing = [];
  if (typeof display.imageRect !== 'function' || display.imageRect.length !== 6) missing.push('imageRect(x, y, width, height, mime, arr)');
  if (typeof display.drawImage !== 'function' || display.drawImage.length !== 3) missing.push('drawImage(img, x, y)');
  if (typeof display._renderQPush !== 'function') missing.push('_renderQPush');
  if (typeof display._damage !== 'function') missing.push('_damage');
  if (!(display._drawCtx instanceof CanvasRenderingContext2D)) missing.push('_drawCtx');
  return missing.length ? `noVNC's Display lacks ${missing.join(', ')}` : '';
}
window.rcsc3NoVNCShape = novncShapeProblem;

function decodeJpegOffThread(display) {
  if (typeof ImageDecoder !== 'function') return false;
  const imageRect = display.imageRect;
  const drawImage = display.drawImage;
  display.imageRect = function (x, y, width, height, mime, arr) {
    if (mime !== 'image/jpeg' || width === 0 || height === 0) return imageRect.call(this, x, y, width, height, mime, arr);
    this._renderQPush({ type: 'img', img: new DecodedJpeg(arr, mime), x, y, width, height });
  };
  display.drawImage = function (img, x, y) {
    if (!(img instanceof DecodedJpeg)) return drawImage.call(this, img, x, y);
    // as noVNC's drawImage, whose damage size would come from the frame's (absent) width/height
    this._drawCtx.drawImage(img.frame, x, y);
    this._damage(x, y, img.width, img.height);
    img.frame.close();
    state.jpegsDrawn += 1;
  };
  return true;
}

// What can wait until the desktop shows: noVNC draws its first frame within a few hundred ms of
// connecting, and these would take the page's main thread or a connection from it meanwhile.
const AFTER_FIRST_FRAME_MS = 1500;
function afterFirstFrame() {
  // Chromium decodes a page's SVG icon on the page's own main thread (~20 ms), at page load
  document.querySelector('link[rel=icon]').href = cfg.favicon;
  // a visit to a running desktop made no start request: tell the server this viewer's size anyway,
  // which the next prestart uses for the X screen
  if (sizeUntold) api(`api/status?geometry=${window.rcsc3Geometry()}`).catch(() => {});
}

function scheduleRetry(why) {
  if (closing) return;
  setStatus(`${why}; reconnecting in ${(retryDelay / 1000).toFixed(1)} s…`, 'bad');
  retryTimer = setTimeout(connect, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 8000);
}

// ------------------------------------------------------------------ who is watching
// One long poll (api/viewers?since=N answers at the next change): the owner's bar names a new viewer
// within milliseconds; a viewer's page learns that it was given control, or that its view was ended.
async function watchViewers() {
  let since = '';
  let failures = 0;
  for (;;) {
    try {
      const v = await api(`api/viewers${since === '' ? '' : `?since=${since}`}`);
      since = v.version;
      failures = 0;
      showViewers(v);
    } catch (e) {
      if (String(e.message).endsWith('HTTP 404')) return;  // no viewer API (an older server)
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** failures++, 15000)));  // back off
    }
  }
}

function showViewers(v) {
  if (OWNER) return showWatchers(v.viewers || [], v.ended || []);
  const wasEnded = state.ended;
  state.ended = v.you.ended;
  state.control = v.you.control && !state.ended;
  if (rfb) rfb.viewOnly = !state.control;
  const mode = $('mode');
  mode.hidden = false;
  mode.classList.toggle('control', state.control);
  mode.classList.toggle('ended', state.ended);
  mode.textContent = state.ended ? 'View ended' : state.control ? 'You have control' : 'View only';
  mode.title = state.ended ? `${cfg.owner} ended your view of their desktop`
    : state.control ? `${cfg.owner} gave you control: your keys, clicks and clipboard reach their desktop`
      : `You watch ${cfg.owner}'s desktop; ${cfg.owner} sees that you do. Your keys and clicks do not reach it.`;
  $('clipboard-toggle').hidden = !state.control;
  if (!state.control) $('clipboard').hidden = true;
  $('reconnect').hidden = state.ended;  // nothing to reconnect to until the owner lets them back in
  if (state.ended) {
    clearTimeout(retryTimer);
    if (rfb) rfb.disconnect();
    setStatus(`${cfg.owner} ended your view of their desktop.`, 'bad');
  } else if (wasEnded) {
    retryDelay = 250;
    connect();  // let back in
  }
}

function showWatchers(viewers, ended) {
  state.viewers = viewers;
  const badge = $('viewers');
  const controls = viewers.filter((v) => v.control);
  badge.hidden = !viewers.length && !ended.length;
  badge.classList.toggle('control', controls.length > 0);
  badge.classList.toggle('ended', !viewers.length);
  const names = viewers.map((v) => v.name);
  if (!viewers.length) badge.textContent = `${ended.length} view${ended.length > 1 ? 's' : ''} ended`;
  else if (viewers.length === 1) badge.textContent = `${names[0]} ${controls.length ? 'has control' : 'is watching'}`;
  else badge.textContent = `${viewers.length} watching${controls.length ? `, ${controls.length} with control` : ''}`;
  badge.title = viewers.length ? `Watching your desktop: ${names.join(', ')}. Click to give control or end a view.` : '';
  const list = $('viewer-list');
  list.replaceChildren();
  const row = (name, what, buttons) => {
    const li = document.createElement('li');
    const who = document.createElement('span');
    who.className = 'who';
    const b = document.createElement('b');
    b.textContent = name;
    const s = document.createElement('span');
    s.textContent = ` ${what}`;
    who.append(b, s);
    li.append(who);
    for (const [text, action, body] of buttons) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = text;
      b.dataset.action = action;
      b.addEventListener('click', () => viewerAction(li.dataset.name, action, body));
      li.append(b);
    }
    list.append(li);
    return li;
  };
  for (const v of viewers) {
    const since = new Date(v.since).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const tabs = v.streams > 1 ? `, ${v.streams} tabs` : '';
    const li = row(v.name, `${v.control ? 'has control' : 'watching'} since ${since}${tabs}`,
                   [[v.control ? 'Take control back' : 'Give control', 'control', { control: !v.control }],
                    ['End view', 'end', null]]);
    li.dataset.name = v.name;
  }
  for (const name of ended) row(name, 'view ended', [['Let back in', 'allow', null]]).dataset.name = name;
  if (badge.hidden && !$('viewers-panel').hidden) togglePanel(null);
}

async function viewerAction(name, action, body) {
  try {
    const r = await fetch(`api/viewers/${encodeURIComponent(name)}/${action}`, {
      method: 'POST', cache: 'no-store', credentials: 'same-origin',
      headers: { ...HEADERS, 'Content-Type': 'application/json' }, body: JSON.stringify(body || {}) });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    showViewers(await r.json());
  } catch (e) {
    setStatus(`Could not ${action === 'control' ? 'change control' : action === 'end' ? 'end the view' : 'let them back in'}` +
              ` for ${name}: ${e.message}`, 'bad');
  }
}

// ------------------------------------------------------------------ the session's time left
// The job API of this server (rcsc3/api/job: Slurm's end time, seconds left; asking it is no activity)
// is asked once a minute, so an admin's longer time limit shows; in between the seconds left count
// down on this page's own monotonic clock, which needs no agreement between the browser's clock and
// the node's. The warnings come at 10 and 2 minutes.
const WARN_S = 10 * 60, URGENT_S = 2 * 60, JOB_REFRESH_MS = 60 * 1000;
let jobTick = null;

function xsrfCookie() {
  // JupyterHub checks cookie-authenticated API requests for XSRF, GETs included (as JupyterLab, send the cookie back)
  const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : '';
}

async function showTimeLeft() {
  let job;
  try {
    const r = await fetch(new URL('../rcsc3/api/job', location.href), {
      cache: 'no-store', credentials: 'same-origin', headers: { 'X-XSRFToken': xsrfCookie() } });
    if (r.status === 404 || r.status === 403) return;  // not a Slurm job, no job API, or not ours to see: no indicator
    if (r.ok) job = await r.json();
  } catch (e) {
    job = null;  // unreachable for now: keep counting down what was known
  }
  setTimeout(showTimeLeft, JOB_REFRESH_MS);
  if (!job || typeof job.seconds_left !== 'number' || !isFinite(job.seconds_left)) return;
  clearTimeout(jobTick);
  const endsAt = performance.now() + job.seconds_left * 1000;
  const clock = new Date(Date.now() + job.seconds_left * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const el = $('time-left');
  el.hidden = false;
  const tick = () => {
    const left = Math.max(0, Math.round((endsAt - performance.now()) / 1000));
    state.timeLeft = left;
    const min = Math.ceil(left / 60);
    const amount = left >= 3600 ? `${Math.floor(min / 60)} h ${min % 60} min` : left >= 60 ? `${min} min` : `${left} s`;
    let text = `${amount} left`;
    let cls = '';
    if (left === 0) { text = 'Session time is up'; cls = 'urgent'; }
    else if (left <= URGENT_S) { text = `${amount} left: save your work now`; cls = 'urgent'; }
    else if (left <= WARN_S) { text = `${amount} left: save your work`; cls = 'warn'; }
    if (el.textContent !== text) el.textContent = text;
    el.className = cls;
    el.title = `This session (Slurm job ${job.job_id}${job.partition ? `, ${job.partition}` : ''}) ends at ${clock}; ` +
               'then every program on this desktop stops. Save your work before.';
    if (left > 0) jobTick = setTimeout(tick, 1000);
  };
  tick();
}

// ------------------------------------------------------------------ the bar's panels
const PANELS = { 'status-detail': 'status', settings: 'picture', 'viewers-panel': 'viewers', clipboard: 'clipboard-toggle' };
// One panel at a time; togglePanel(null) closes them all (as a press on the desktop does).
function togglePanel(id, open) {
  const show = id in PANELS && (open === undefined ? $(id).hidden : open);
  for (const [panel, button] of Object.entries(PANELS)) {
    const on = panel === id && show;
    $(panel).hidden = !on;
    $(button).setAttribute('aria-expanded', String(on));
  }
}
for (const [panel, button] of Object.entries(PANELS)) $(button).addEventListener('click', () => togglePanel(panel));
$('status').addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') togglePanel('status-detail'); });
$('screen').addEventListener('mousedown', () => togglePanel(null), true);

$('quality').value = cfg.quality;
$('compression').value = cfg.compression;
$('quality').addEventListener('input', (e) => { if (rfb) rfb.qualityLevel = Number(e.target.value); });
$('compression').addEventListener('input', (e) => { if (rfb) rfb.compressionLevel = Number(e.target.value); });
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

if (!OWNER) {
  for (const id of ['clipboard-toggle', 'retry']) $(id).hidden = true;
  $('mode').hidden = false;
  $('mode').textContent = 'View only';
}
if (cfg.status.state === 'failed') showError(cfg.status); else connect();
watchViewers();
showTimeLeft();
