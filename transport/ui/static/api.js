// Calls to the JSON API of the binder that served the page (same origin:
// no CORS involved), with the tab's token, and the two ways the views
// follow data: blocking queries and a slow poll.

import {problem, clear} from './status.js';

const TOKEN_KEY = 'lieur.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
  if (t) declined = false;
  [...tokenListeners].forEach((f) => f(t));
}

const tokenListeners = new Set();
export function onTokenChange(f) {
  tokenListeners.add(f);
}
export function offTokenChange(f) {
  tokenListeners.delete(f);
}

// askToken is installed by app.js: it opens the token dialog and resolves
// to true once a token was entered, false when the user cancelled. Calls
// that get a 401 while it is open share its answer.
let prompt = async () => false;
let pending = null;
export function setTokenPrompt(f) {
  prompt = f;
}
export function askToken(reason) {
  if (!pending) pending = prompt(reason).finally(() => { pending = null; });
  return pending;
}

// needToken is what a read refused with 401 does: ask for a token once;
// when the user declines, wait (without asking again) until one is set
// with the Token button, or a minute passes.
let declined = false;
async function needToken(e, signal) {
  if (!declined) {
    if (await askToken(`Reading needs a token (this cluster runs with --auth-reads): ${e.message}`)) return;
    declined = true;
  }
  await new Promise((resolve) => {
    const done = () => { clearTimeout(timer); tokenListeners.delete(done); resolve(); };
    const timer = setTimeout(done, 60000);
    tokenListeners.add(done);
    signal.addEventListener('abort', done, {once: true});
  });
}

// ApiError is a non-2xx answer: status, the API's error message and code.
export class ApiError extends Error {
  constructor(method, path, status, message, code) {
    super(message);
    this.method = method;
    this.path = path;
    this.status = status;
    this.code = code || '';
  }
  describe() {
    return `${this.method} ${this.path} answered ${this.status}${this.code ? ` (${this.code})` : ''}: ${this.message}`;
  }
}

// NetworkError: the binder did not answer at all.
export class NetworkError extends Error {
  constructor(method, path, cause) {
    super(`This binder (${location.host}) is not answering (${method} ${path.split('?')[0]}${cause ? `: ${cause}` : ''})`);
    this.status = 0;
  }
  describe() {
    return this.message;
  }
}

// call sends one request and returns {data, headers}; it throws ApiError,
// NetworkError, or the AbortError of signal.
export async function call(method, path, {body, signal, headers} = {}) {
  const h = new Headers(headers || {});
  h.set('Accept', 'application/json');
  const t = token();
  if (t) h.set('Authorization', `Bearer ${t}`);
  const init = {method, headers: h, signal, cache: 'no-store', redirect: 'error'};
  if (body !== undefined) {
    h.set('Content-Type', 'application/json');
    init.body = JSON.stringify(body);
  }
  let resp;
  let text;
  try {
    resp = await fetch(path, init);
    text = await resp.text();
  } catch (e) {
    if (signal && signal.aborted) throw signal.reason || e;
    throw new NetworkError(method, path, e && e.name === 'TimeoutError' ? 'timed out' : '');
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const msg = data && typeof data.error === 'string' ? data.error : (text || resp.statusText);
    throw new ApiError(method, path, resp.status, msg, data && data.code);
  }
  return {data, headers: resp.headers};
}

// withToken runs an action; when it is refused for want of a (better)
// token, it asks for one and runs it once more.
export async function withToken(what, f) {
  try {
    return await f();
  } catch (e) {
    if (!(e instanceof ApiError) || (e.status !== 401 && e.status !== 403) || e.code === 'forbidden') throw e;
    const reason = e.status === 401 ? `${what} needs a token: ${e.message}` : `${what}: ${e.message}`;
    if (!(await askToken(reason))) throw e;
    return f();
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}

// Waits of blocking queries. A binder checks that it may serve a read
// (that it has heard from a leader lately) when a blocking query starts,
// not while it waits: the wait bounds how late the page learns that its
// binder is cut off, and a binder that hangs (rather than refusing
// connections) is noticed within WAIT + GRACE.
const WAIT_S = 10;
const GRACE_MS = 5000;

// follow keeps a blocking query open on path (which already holds its own
// query parameters, or none) until signal aborts: the first request
// answers at once, each later one passes the previous X-Lieur-Index and
// answers when something changed or the wait ended. onData(data, index)
// runs on every answer whose index moved, and on the first. key names the
// banner entry of its failures. then, when given, is the path of the
// later requests instead of path: a first request may carry parameters
// (a limit) that must not cut the answers that follow.
export function follow(key, path, onData, signal, {indexOf, then} = {}) {
  const next = then || path;
  const sep = next.includes('?') ? '&' : '?';
  (async () => {
    let index = null;
    let backoff = 500;
    while (!signal.aborted) {
      const url = index === null ? path : `${next}${sep}index=${index}&wait=${WAIT_S}s`;
      const started = performance.now();
      try {
        const limit = AbortSignal.any([signal, AbortSignal.timeout(WAIT_S * 1000 + GRACE_MS)]);
        const {data, headers} = await call('GET', url, {signal: limit});
        let next = Number(headers.get('X-Lieur-Index'));
        if (indexOf) next = indexOf(data, next);
        if (!Number.isFinite(next)) next = 0;
        clear(key);
        backoff = 500;
        const moved = index === null || next !== index;
        // An index that goes back (a restored snapshot, a wiped binder)
        // restarts from what is there now.
        index = next;
        if (moved) onData(data, next);
        else if (performance.now() - started < 1000) await sleep(1000, signal);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) {
          problem(key, `${e.describe()}. Enter a token with the Token button.`);
          await needToken(e, signal);
          continue;
        }
        problem(key, explain(e));
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  })();
}

// poll calls path every period until signal aborts; onData gets each
// answer, onError each failure (after the banner has it).
export function poll(key, path, periodMs, onData, signal, onError) {
  (async () => {
    while (!signal.aborted) {
      const started = performance.now();
      try {
        const limit = AbortSignal.any([signal, AbortSignal.timeout(Math.max(periodMs * 2, 3000))]);
        const {data} = await call('GET', path, {signal: limit});
        clear(key);
        onData(data);
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && e.status === 401) {
          problem(key, `${e.describe()}. Enter a token with the Token button.`);
          await needToken(e, signal);
          continue;
        }
        if (!onError || !onError(e)) problem(key, explain(e));
      }
      await sleep(Math.max(0, periodMs - (performance.now() - started)), signal);
    }
  })();
}

// explain turns a failed read into a sentence for the banner.
export function explain(e) {
  if (e instanceof NetworkError) {
    return `${e.message}. The page keeps what it last saw and retries.`;
  }
  if (e instanceof ApiError) {
    if (e.code === 'stale' || e.code === 'catching_up') {
      return `This binder refuses reads for now (${e.code}): ${e.message}. The page keeps what it last saw and retries.`;
    }
    if (e.status === 404 && e.message.startsWith('no such endpoint')) {
      return `This binder does not serve ${e.path.split('?')[0]} (an older build?): ${e.message}`;
    }
    return e.describe();
  }
  return String(e && e.message ? e.message : e);
}
