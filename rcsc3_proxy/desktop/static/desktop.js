// The Remote Desktop page: one noVNC viewer, resized to the browser window,
// with clipboard, reconnect, quality/compression sliders and a status line.
const cfg = JSON.parse(document.getElementById('rcsc3-config').textContent);
// noVNC: the bundle the page carries inline, or its modules under a versioned path (the URLs the page preloads).
const RFB = window.rcsc3NoVNC ? window.rcsc3NoVNC.default : (await import(new URL(cfg.rfb, document.baseURI).href)).default;
const $ = (id) => document.getElementById(id);
// the desktop's secret: the API refuses calls without it (request_guard.py)
const HEADERS = { [cfg.token_header]: cfg.token };

// Exposed for tests and curious students: what the page is doing right now.
const state = window.rcsc3Desktop = { phase: 'loading', status: cfg.status, connects: 0, rfb: null, earlyChannel: false,
                                     jpegDecoder: false, jpegsDrawn: 0 };

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
  if (st.state !== 'running') return scheduleRetry(`desktop is ${st.state}`);
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
  state.jpegDecoder = decodeJpegOffThread(rfb._display);
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
    if (state.connects === 1) setTimeout(afterFirstFrame, AFTER_FIRST_FRAME_MS);
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

function decodeJpegOffThread(display) {
  if (typeof ImageDecoder !== 'function' || !display || display.imageRect.length !== 6 ||
      typeof display._renderQPush !== 'function' || typeof display._damage !== 'function' || !display._drawCtx) return false;
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
