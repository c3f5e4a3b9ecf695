// Switchboard console: the account's calls, live over SSE, and buttons to drive
// simulated calls. Plain JavaScript, no dependencies (src/http/console.rs serves it
// under a CSP that allows nothing else).
//
// Security: the auth token lives only in `account.token`, never in storage, cookies
// or a URL; it is sent only as Basic auth to this origin, to sign short-lived URLs
// for the stream and the call actions. Everything an event carries is rendered
// with textContent, never as HTML.
'use strict';

/** Lifetime asked for a signed stream URL, and how long before its end it is renewed. */
const STREAM_TTL_SECS = 600;
const RENEW_BEFORE_SECS = 60;
const MIN_RENEW_SECS = 3;
/** Lifetime of the signed URL that sends hang-up, mute and unmute. */
const ACTIONS_TTL_SECS = 600;
/** Bounds that keep a console left open for days small. */
const MAX_EVENTS_PER_CALL = 200;
const MAX_ENDED_CALLS = 50;
const MAX_CALLS = 500;
const MAX_GATHERS = 20;
/** Waits between attempts to reopen a closed stream (then the last, forever). */
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
/** Statuses after which a call changes no more. */
const FINAL = new Set(['completed', 'busy', 'no-answer', 'failed', 'canceled']);

const $ = (id) => document.getElementById(id);

/** Who we are: set by the login form, cleared by Disconnect. */
const account = { sid: null, token: null };
/** This page's client id: the server keeps its place while the page reconnects. */
const client = 'console-' + Array.from(crypto.getRandomValues(new Uint8Array(6)),
  (b) => b.toString(16).padStart(2, '0')).join('');

/** The stream: `generation` invalidates the handlers of a stream replaced since. */
const conn = { es: null, generation: 0, lastId: null, failures: 0, timer: null };
/** The signed ClientEvents URL, reused until shortly before it expires. */
let actions = null;

/** What the events said: calls by sid, conference rooms by name, ended calls in order. */
const calls = new Map();
const rooms = new Map();
let ended = [];
let selected = null;

// ---------------------------------------------------------------------------
// Talking to the server

/** A failed request: the HTTP status (0 when unreachable), the API's error code, and why. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON request to this origin with the account's Basic credentials (or none for a signed URL). */
async function request(method, path, body, { basic = true } = {}) {
  const headers = {};
  if (basic) headers.Authorization = 'Basic ' + btoa(account.sid + ':' + account.token);
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method, headers, cache: 'no-store', credentials: 'omit',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, null, 'the server is unreachable');
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const why = (data && (data.message || data.code)) || response.statusText;
    throw new ApiError(response.status, data && data.code, `${response.status}: ${why}`);
  }
  return data;
}

const accountPath = (leaf) => `/v1/Accounts/${encodeURIComponent(account.sid)}/${leaf}`;

/**
 * Asks the server to sign `path` (this account's Stream or ClientEvents URL) for
 * `lifetime` seconds, or for its own default when it allows less than that
 * (`auth.max_url_lifetime_secs`): `{url, expires}`.
 */
async function sign(path, lifetime) {
  try {
    return await request('POST', accountPath('SignedUrls'), { url: path, expires_in: lifetime });
  } catch (err) {
    if (err.code !== 'expires_too_far') throw err;
    return request('POST', accountPath('SignedUrls'), { url: path });
  }
}

/**
 * Seconds from now until a URL signed for `lifetime` should be replaced: a fifth
 * of its life (at most RENEW_BEFORE_SECS) before it expires. Never sooner than
 * MIN_RENEW_SECS, so a browser whose clock is far off the server's renews slowly
 * rather than in a loop.
 */
function renewIn(signed, lifetime) {
  const left = Math.min(signed.expires - Date.now() / 1000, lifetime);
  return Math.max(MIN_RENEW_SECS, left - Math.min(RENEW_BEFORE_SECS, left / 5));
}

// ---------------------------------------------------------------------------
// The stream

function setConn(state, detail = '') {
  const badge = $('conn-state');
  badge.dataset.state = state;
  badge.textContent = state;
  $('conn-detail').textContent = detail;
}

function closeStream() {
  conn.generation += 1;
  clearTimeout(conn.timer);
  if (conn.es) conn.es.close();
  conn.es = null;
}

/**
 * Opens a stream of every event of the account, resuming after the last event
 * seen (or replaying what the server retains, the first time), on a freshly
 * signed URL; schedules its renewal before the URL expires.
 */
async function openStream() {
  closeStream();
  const generation = conn.generation;
  const cursor = conn.lastId || 'earliest';
  if ($('conn-state').dataset.state !== 'connected') setConn('connecting');
  let signed;
  try {
    // No filter: the client's one default subscription, every event of the
    // account; each renewed URL extends it to its own expiry.
    signed = await sign(accountPath(`Stream?client=${client}` +
      `&cursor=${encodeURIComponent(cursor)}`), STREAM_TTL_SECS);
  } catch (err) {
    if (generation !== conn.generation) return;
    if (err.status === 401) return signOut('The account SID or token is wrong.');
    return retryLater(`could not sign a stream URL (${err.message})`);
  }
  if (generation !== conn.generation) return;
  if (cursor === 'earliest') forgetCalls();
  const es = new EventSource(signed.url);
  let received = false;
  conn.es = es;
  es.onopen = () => {
    if (generation !== conn.generation) return;
    conn.failures = 0;
    setConn('connected', `as ${client}`);
  };
  es.onmessage = (message) => {
    if (generation !== conn.generation) return;
    received = true;
    if (message.lastEventId) conn.lastId = message.lastEventId;
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    onEvent(event);
  };
  es.onerror = () => {
    if (generation !== conn.generation) return;
    if (es.readyState !== EventSource.CLOSED) {
      // The browser reconnects by itself, with Last-Event-ID.
      setConn('reconnecting', 'the connection dropped; resuming where it stopped');
      return;
    }
    // The server refused the URL: it expired while the server was away, or (when
    // this URL never delivered anything) it refused the cursor; start over then.
    if (!received && cursor !== 'earliest') conn.lastId = null;
    retryLater('the stream was closed');
  };
  conn.timer = setTimeout(openStream, renewIn(signed, STREAM_TTL_SECS) * 1000);
}

/** Reopens the stream after a backoff with jitter, saying so in the header. */
function retryLater(why) {
  closeStream();
  const base = BACKOFF_MS[Math.min(conn.failures, BACKOFF_MS.length - 1)];
  conn.failures += 1;
  const wait = Math.round(base * (0.75 + Math.random() / 2));
  setConn('retrying', `${why}; trying again in ${Math.ceil(wait / 1000)} s`);
  conn.timer = setTimeout(openStream, wait);
}

// ---------------------------------------------------------------------------
// The model: what the events say about each call

function callOf(sid) {
  let call = calls.get(sid);
  if (!call) {
    call = { sid, from: '', to: '', direction: '', status: 'unknown', started: null,
      duration: null, digits: [], room: null, queue: null, events: [], truncated: false };
    calls.set(sid, call);
    // Maps iterate in insertion order: the first key is the call seen first.
    if (calls.size > MAX_CALLS) forgetCall(calls.keys().next().value);
  }
  return call;
}

function forgetCalls() {
  calls.clear();
  rooms.clear();
  ended = [];
  render();
}

function onEvent(event) {
  if (typeof event.type !== 'string') return;
  if (event.type.startsWith('stream.')) return onNotice(event);
  if (typeof event.call_sid !== 'string') return;
  const call = callOf(event.call_sid);
  if (call.events.some((e) => e.id === event.id)) return;
  call.events.push(event);
  if (call.events.length > MAX_EVENTS_PER_CALL) {
    call.events.shift();
    call.truncated = true;
  }
  const data = event.data && typeof event.data === 'object' ? event.data : {};
  switch (event.type) {
    case 'call.start':
      Object.assign(call, { from: String(data.from ?? ''), to: String(data.to ?? ''),
        direction: String(data.direction ?? ''), status: String(data.status || 'in-progress'),
        started: event.timestamp });
      break;
    case 'call.end':
      call.status = String(data.status || 'completed');
      call.duration = data.duration ?? null;
      call.queue = null;
      leaveRoom(call);
      if (!ended.includes(call.sid)) ended.push(call.sid);
      while (ended.length > MAX_ENDED_CALLS) forgetCall(ended[0]);
      break;
    case 'gather.end':
      if (data.digits) call.digits = [...call.digits, String(data.digits)].slice(-MAX_GATHERS);
      break;
    case 'conference.join':
    case 'conference.mute':
    case 'conference.unmute':
      joinRoom(call, String(data.conference ?? ''), data.muted === true);
      break;
    case 'conference.leave':
      leaveRoom(call);
      break;
    // Where a caller waits: the queue's name and its place when it joined.
    case 'queue.join':
      call.queue = `${String(data.queue ?? '')} (#${Number(data.position) || '?'})`;
      break;
    case 'queue.leave':
      call.queue = null;
      break;
  }
  render();
}

/** A call in a room is listed by its own sid (the router's `data.participant`). */
function joinRoom(call, name, muted) {
  if (call.room !== name) leaveRoom(call);
  if (!rooms.has(name)) rooms.set(name, new Map());
  rooms.get(name).set(call.sid, { muted });
  call.room = name;
}

function leaveRoom(call) {
  const room = rooms.get(call.room);
  if (room) {
    room.delete(call.sid);
    if (room.size === 0) rooms.delete(call.room);
  }
  call.room = null;
}

function forgetCall(sid) {
  const call = calls.get(sid);
  if (call) leaveRoom(call);
  calls.delete(sid);
  ended = ended.filter((s) => s !== sid);
  if (selected === sid) select(null);
}

function onNotice(event) {
  const notes = {
    'stream.gap': 'some events were dropped (the console fell behind)',
    'stream.expired': 'the signed stream URL expired; renewing',
    'stream.shutdown': 'the server is restarting; reconnecting',
  };
  if (notes[event.type]) notice(notes[event.type]);
}

// ---------------------------------------------------------------------------
// Rendering (batched: one pass per animation frame however many events arrived)

let renderQueued = false;
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderCalls();
    renderDetail();
  });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** `HH:MM:SS.mmm`, local time. */
function clock(timestamp) {
  const date = new Date(timestamp);
  if (Number.isNaN(date.getTime())) return String(timestamp ?? '');
  const two = (n) => String(n).padStart(2, '0');
  return `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}.` +
    String(date.getMilliseconds()).padStart(3, '0');
}

/** Live calls first, newest first within each group. */
function ordered() {
  const live = [], done = [];
  for (const call of calls.values()) (FINAL.has(call.status) ? done : live).push(call);
  return [...live.reverse(), ...done.reverse()];
}

/**
 * The list item of each call, kept from one render to the next and updated in
 * place: a card rebuilt under the pointer would swallow a click that began on it.
 */
const cards = new Map();

function card(call) {
  let item = cards.get(call.sid);
  if (!item) {
    item = el('li');
    const button = el('button', 'call');
    button.type = 'button';
    button.dataset.callSid = call.sid;
    const head = el('span', 'call-head');
    head.append(el('span', 'caller mono'), el('span', 'badge'));
    button.append(head, el('span', 'call-meta mono'));
    item.append(button);
    cards.set(call.sid, item);
  }
  const button = item.firstChild;
  const [caller, status] = button.firstChild.children;
  button.dataset.status = call.status;
  button.setAttribute('aria-current', String(call.sid === selected));
  caller.textContent = call.from || '(unknown caller)';
  status.textContent = call.status;
  status.dataset.status = call.status;
  button.lastChild.textContent = `→ ${call.to || '?'}` +
    (call.started ? ` · ${clock(call.started).slice(0, 8)}` : '') +
    (call.digits.length ? ` · digits ${call.digits.join(' ')}` : '') +
    (call.queue ? ` · queued in ${call.queue}` : '');
  return item;
}

function renderCalls() {
  const list = $('calls');
  const all = ordered();
  const items = all.map(card);
  for (const sid of cards.keys()) if (!calls.has(sid)) cards.delete(sid);
  const shown = list.children;
  if (items.length !== shown.length || items.some((item, i) => item !== shown[i])) {
    // Moving the focused card would drop the focus: give it back.
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    list.replaceChildren(...items);
    if (focused && focused.isConnected) focused.focus();
  }
  $('calls-empty').hidden = items.length > 0;
  const live = all.filter((c) => !FINAL.has(c.status)).length;
  $('call-count').textContent = all.length ? `${live} live, ${all.length - live} ended` : '';
}

/** One line for a timeline entry: the event's data as `key=value`, `verb` left out. */
function summary(data) {
  if (!data || typeof data !== 'object') return '';
  const text = Object.entries(data)
    .filter(([key]) => key !== 'verb')
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('  ');
  return text.length > 300 ? text.slice(0, 299) + '…' : text;
}

function renderDetail() {
  const call = selected && calls.get(selected);
  $('detail-empty').hidden = Boolean(call);
  $('detail-body').hidden = !call;
  if (!call) return;
  const live = !FINAL.has(call.status);
  $('detail-caller').textContent = call.from || '(unknown caller)';
  const status = $('detail-status');
  status.textContent = call.status;
  status.dataset.status = call.status;
  $('detail-sid').textContent = call.sid;
  $('detail-to').textContent = call.to || '—';
  $('detail-direction').textContent = call.direction || '—';
  $('detail-started').textContent = call.started ? clock(call.started) : '—';
  $('detail-duration').textContent = call.duration === null ? '—' : `${call.duration} s`;
  $('detail-digits').textContent = call.digits.join(' ') || '—';
  $('detail-conference').textContent = call.room ?? '—';
  $('detail-queue').textContent = call.queue ?? '—';

  const room = call.room !== null ? rooms.get(call.room) : null;
  const me = room && room.get(call.sid);
  $('send-digits').disabled = !live;
  $('hangup').disabled = !live;
  $('mute').disabled = !live || !me || me.muted;
  $('unmute').disabled = !live || !me || !me.muted;

  $('participants-box').hidden = !room;
  $('participants').replaceChildren(...(room ? [...room] : []).map(([sid, p]) => {
    const item = el('li');
    item.dataset.participant = sid;
    item.dataset.muted = String(p.muted);
    const who = calls.get(sid)?.from || sid;
    item.append(el('span', 'mono', who), el('span', 'mono muted', sid === call.sid ? 'this call' : sid),
      el('span', p.muted ? 'tag muted-tag' : 'tag', p.muted ? 'muted' : 'speaking'));
    return item;
  }));

  const timeline = $('timeline');
  const atBottom = timeline.scrollTop + timeline.clientHeight >= timeline.scrollHeight - 4;
  const start = call.events.length ? Date.parse(call.events[0].timestamp) : NaN;
  timeline.replaceChildren(...call.events.map((event) => {
    const item = el('li');
    item.dataset.type = event.type;
    const offset = (Date.parse(event.timestamp) - start) / 1000;
    item.append(el('time', 'mono', clock(event.timestamp)),
      el('span', 'offset mono', Number.isFinite(offset) ? `+${offset.toFixed(3)}` : ''),
      el('span', 'type mono', event.type),
      el('span', 'summary mono', summary(event.data)));
    return item;
  }));
  if (atBottom) timeline.scrollTop = timeline.scrollHeight;
  $('timeline-note').textContent = call.truncated ? `(last ${MAX_EVENTS_PER_CALL} events)` : '';
}

function select(sid) {
  selected = sid;
  // The selected call is kept in the fragment (never anything secret), so a
  // reload comes back to it once the replay has brought it back.
  history.replaceState(null, '', sid ? `#${sid}` : location.pathname);
  render();
}

function notice(text, isError = false) {
  const node = $('notice');
  node.textContent = text;
  node.classList.toggle('error', isError);
}

// ---------------------------------------------------------------------------
// What the buttons do

/** Runs a button's request, reporting the outcome in the notice line. */
async function act(what, run) {
  try {
    await run();
    notice(what);
  } catch (err) {
    notice(`${what} failed: ${err.message}`, true);
  }
}

async function loadNumbers() {
  const data = await request('GET',
    `/2010-04-01/Accounts/${encodeURIComponent(account.sid)}/IncomingPhoneNumbers.json`);
  const choice = $('call-to');
  const previous = choice.value;
  const numbers = (data && data.incoming_phone_numbers) || [];
  choice.replaceChildren(...numbers.map((n) => {
    const option = el('option', '', n.friendly_name && n.friendly_name !== n.phone_number
      ? `${n.phone_number} (${n.friendly_name})` : n.phone_number);
    option.value = n.phone_number;
    return option;
  }));
  if (numbers.some((n) => n.phone_number === previous)) choice.value = previous;
  $('start-call').disabled = numbers.length === 0;
  if (!numbers.length) notice('This account has no numbers yet: provision one with IncomingPhoneNumbers.json.');
}

/** Sends `client.<action>` for the selected call on a signed ClientEvents URL granting it. */
async function clientEvent(action, sid) {
  if (!actions || Date.now() >= actions.renewAt) {
    const signed = await sign(accountPath(`ClientEvents?client=${client}&act=hangup,mute,unmute`),
      ACTIONS_TTL_SECS);
    actions = { url: signed.url, renewAt: Date.now() + renewIn(signed, ACTIONS_TTL_SECS) * 1000 };
  }
  await request('POST', actions.url, { type: `client.${action}`, call_sid: sid }, { basic: false });
}

async function signIn(event) {
  event.preventDefault();
  account.sid = $('sid').value.trim();
  account.token = $('token').value.trim();
  $('token').value = '';
  $('connect').disabled = true;
  try {
    await loadNumbers();
  } catch (err) {
    signOut(err.status === 401 ? 'The account SID or token is wrong.' : err.message);
    return;
  } finally {
    $('connect').disabled = false;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  $('account').hidden = false;
  $('account-sid').textContent = account.sid;
  conn.failures = 0;
  openStream();
}

function signOut(why = '') {
  closeStream();
  Object.assign(account, { sid: null, token: null });
  Object.assign(conn, { lastId: null, failures: 0 });
  actions = null;
  forgetCalls();
  select(null);
  setConn('disconnected', why);
  $('login').hidden = false;
  $('app').hidden = true;
  $('account').hidden = true;
  $('token').focus();
}

function wire() {
  $('login-form').addEventListener('submit', signIn);
  $('disconnect').addEventListener('click', () => signOut());
  $('refresh-numbers').addEventListener('click', () => act('Numbers reloaded', loadNumbers));

  $('call-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const from = $('call-from').value.trim();
    const to = $('call-to').value;
    act(`Calling ${to} from ${from}`, async () => {
      const { call_sid: sid } = await request('POST', '/v1/Sim/Calls', { from, to });
      const call = callOf(sid);
      if (call.status === 'unknown') Object.assign(call, { from, to, status: 'ringing' });
      select(sid);
    });
  });

  $('digits-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('digits-input');
    const digits = input.value.trim();
    const sid = selected;
    if (!sid || !/^[0-9*#w]{1,64}$/.test(digits)) {
      notice('Digits: 1 to 64 of 0-9, *, # and w.', true);
      return;
    }
    act(`Pressed ${digits}`, async () => {
      await request('POST', `/v1/Sim/Calls/${encodeURIComponent(sid)}/Digits`, { digits });
      input.value = '';
    });
  });

  for (const action of ['mute', 'unmute', 'hangup']) {
    $(action).addEventListener('click', () => {
      const sid = selected;
      if (sid) act(`Sent client.${action}`, () => clientEvent(action, sid));
    });
  }

  $('calls').addEventListener('click', (event) => {
    const button = event.target.closest('[data-call-sid]');
    if (button) select(button.dataset.callSid);
  });
  // Up and Down move through the list, as in a mail client.
  $('calls').addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
    const buttons = [...$('calls').querySelectorAll('[data-call-sid]')];
    const at = buttons.indexOf(document.activeElement);
    const next = buttons[at + (event.key === 'ArrowDown' ? 1 : -1)];
    if (next) {
      event.preventDefault();
      next.focus();
      select(next.dataset.callSid);
    }
  });

  if (/^#CA[0-9a-fA-F]{32}$/.test(location.hash)) selected = location.hash.slice(1);
  $('sid').focus();
}

wire();
