/*
 * quick-server worker client, version 0.8.0 of the API of quick_server's worker.js.
 *
 * Runs long jobs on a quick-server worker route: POST {action: "start", payload}, poll
 * {action: "get", token} with a growing delay, fetch split results ({action: "cargo"}) and
 * stop tasks nobody waits for any more ({action: "stop"}).
 *
 * Loading:
 *   - classic <script src="/js/worker.js">: sets globalThis.quickServer =
 *     { Worker, CONFIG, VERSION }. The browser's own Web Worker class is not touched.
 *   - CommonJS (node, bundlers): the same object is module.exports, so
 *     `import { Worker } from './worker.js'` works through the bundler's CommonJS interop.
 *
 * Usage:
 *   const w = new quickServer.Worker();
 *   w.status((n) => ...);            // or w.status = (n) => ...; n = active requests, -1 after an error
 *   w.process('name', '/api/job', { x: 1 }, (data) => ..., ({ err, code }) => ...);
 *   w.cancel('name');
 *
 * A newer process() with the same name replaces the older one: the older callback is never
 * called and its server task is stopped. Errors reach errCb as { err, code }: code is the
 * HTTP status of a non-200 reply, or 0 when the network or the protocol failed.
 * No dependencies; needs fetch.
 */
(function () {
  'use strict';

  const VERSION = '0.8.0';

  const CONFIG = {
    preDelay: 500,
    timeStart: 500,
    timeCap: 60000,
    timeMinInc: 10,
    timeMulInc: 1.01,
    spinner: ['⠋', '⠙', '⠸', '⠴', '⠦', '⠇'],
    animationTime: 300,
  };

  // Delay before the next `get`: grows by 1 % but at least 10 ms, up to the cap.
  function nextDelay(delay) {
    const grown = Math.max(delay * CONFIG.timeMulInc, delay + CONFIG.timeMinInc);
    return Math.min(grown, CONFIG.timeCap);
  }

  // A failure reported to errCb as { err, code }.
  class Failure {
    constructor(err, code) {
      this.err = err;
      this.code = code;
    }
  }

  function asFailure(error) {
    if (error instanceof Failure) {
      return error;
    }
    const text = error && error.message ? error.message : String(error);
    return new Failure(text, 0);
  }

  // POSTs one protocol message and returns the parsed JSON answer.
  async function send(url, body, keepalive) {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      keepalive: !!keepalive,
    });
    if (res.status !== 200) {
      throw new Failure(res.statusText, res.status);
    }
    const ctype = res.headers.get('content-type') || '';
    if (!ctype.includes('application/json')) {
      throw new Failure(`reply is not JSON (${ctype || 'no content type'})`, res.status);
    }
    return res.json();
  }

  class Worker {
    constructor() {
      this._statusCb = null;
      this._active = true;
      this._failed = false;
      this._count = 0;
      this._current = new Map(); // name -> newest request
      this._title = null; // spinner state while requests run
      this.infoTitle = true;
      if (typeof globalThis.addEventListener === 'function') {
        globalThis.addEventListener('beforeunload', () => this.cancelAll());
      }
    }

    // `w.status(cb)` and `w.status = cb` both set the callback receiving the number of
    // active requests (-1 once any request failed).
    get status() {
      return (cb) => {
        this.status = cb;
      };
    }

    set status(cb) {
      this._statusCb = typeof cb === 'function' ? cb : null;
    }

    // While false, process() ignores new requests.
    get active() {
      return this._active;
    }

    set active(value) {
      this._active = !!value;
    }

    // Runs `payload` on the worker route `url` under `name`; cb(data) gets the result.
    process(name, url, payload, cb, errCb) {
      if (!this._active) {
        return;
      }
      const req = { name, url, payload, cb, errCb, token: null, live: true, counted: false };
      const previous = this._current.get(name);
      this._current.set(name, req);
      if (previous) {
        this._drop(previous);
      }
      this._begin(req);
      req.timer = setTimeout(() => {
        req.timer = null;
        this._start(req);
      }, CONFIG.preDelay);
    }

    // Alias of process(), the original's name.
    post(name, url, payload, cb, errCb) {
      this.process(name, url, payload, cb, errCb);
    }

    // Cancels the request of `name`: its callbacks are not called, its task is stopped.
    cancel(name) {
      const req = this._current.get(name);
      if (req) {
        this._current.delete(name);
        this._drop(req);
      }
    }

    // Cancels every request (done on page unload).
    cancelAll() {
      for (const name of Array.from(this._current.keys())) {
        this.cancel(name);
      }
    }

    async _start(req) {
      if (!req.live) {
        return;
      }
      let reply;
      try {
        reply = await send(req.url, { action: 'start', payload: req.payload });
      } catch (error) {
        this._fail(req, error);
        return;
      }
      req.token = String(reply.token);
      if (!req.live) {
        this._stop(req); // replaced or cancelled while starting
        return;
      }
      this._handle(req, reply, CONFIG.timeStart);
    }

    _handle(req, reply, delay) {
      if (reply.done) {
        req.token = null; // the server removed the task when it answered
        this._deliver(req, reply);
      } else if (!reply.continue) {
        req.token = null;
        this._fail(req, new Failure('request has timed out', 0));
      } else {
        req.timer = setTimeout(() => {
          req.timer = null;
          this._poll(req, delay);
        }, delay);
      }
    }

    async _poll(req, delay) {
      if (!req.live) {
        return;
      }
      let reply;
      try {
        reply = await send(req.url, { action: 'get', token: req.token });
      } catch (error) {
        this._fail(req, error);
        return;
      }
      if (req.live) {
        this._handle(req, reply, nextDelay(delay));
      }
    }

    async _deliver(req, reply) {
      let data;
      try {
        const text = reply.continue ? await this._fetchCargo(req.url, reply.result) : reply.result;
        data = JSON.parse(text);
      } catch (error) {
        this._fail(req, error);
        return;
      }
      if (!req.live) {
        return;
      }
      this._finish(req);
      if (typeof req.cb === 'function') {
        req.cb(data);
      }
    }

    // Fetches all chunks in parallel and joins them in order.
    async _fetchCargo(url, keys) {
      if (!Array.isArray(keys)) {
        throw new Failure('invalid cargo list', 0);
      }
      const parts = await Promise.all(keys.map(async (key) => {
        const token = String(key);
        const reply = await send(url, { action: 'cargo', token });
        if (String(reply.token) !== token) {
          throw new Failure(`cargo token mismatch: ${reply.token} != ${token}`, 0);
        }
        return reply.result;
      }));
      return parts.join('');
    }

    _fail(req, error) {
      if (req.token !== null) {
        this._stop(req);
      }
      if (!req.live) {
        return; // replaced or cancelled: nobody waits for this error
      }
      this._failed = true;
      this._finish(req);
      const { err, code } = asFailure(error);
      if (typeof req.errCb === 'function') {
        req.errCb({ err, code });
      } else if (typeof console !== 'undefined') {
        console.error(`worker request to ${req.url} failed: ${code} ${err}`);
      }
    }

    // Ends a request for good: no more callbacks, no more polling, task stopped.
    _drop(req) {
      req.live = false;
      if (req.timer) {
        clearTimeout(req.timer);
        req.timer = null;
      }
      this._end(req);
      if (req.token !== null) {
        this._stop(req);
      }
    }

    // Ends a request that completed (result or error).
    _finish(req) {
      req.live = false;
      if (this._current.get(req.name) === req) {
        this._current.delete(req.name);
      }
      this._end(req);
    }

    _stop(req) {
      const token = req.token;
      req.token = null;
      send(req.url, { action: 'stop', token }, true).catch(() => {});
    }

    _begin(req) {
      req.counted = true;
      this._count += 1;
      this._report();
      this._animate();
    }

    _end(req) {
      if (!req.counted) {
        return;
      }
      req.counted = false;
      this._count -= 1;
      this._report();
      this._animate();
    }

    _report() {
      if (this._statusCb) {
        this._statusCb(this._failed ? -1 : this._count);
      }
    }

    // Shows ` <spinner>` (and ` (<n>x)`) after the page title while requests run.
    _animate() {
      if (typeof document === 'undefined') {
        return;
      }
      const title = this._title;
      if (this._count > 0 && this.infoTitle) {
        if (title) {
          this._paint();
        } else {
          this._title = { base: document.title, shown: null, frame: 0, timer: null };
          this._tick();
        }
      } else if (title) {
        clearTimeout(title.timer);
        if (document.title === title.shown) {
          document.title = title.base;
        }
        this._title = null;
      }
    }

    _tick() {
      const title = this._title;
      if (!title) {
        return;
      }
      if (!this.infoTitle) {
        this._animate();
        return;
      }
      this._paint();
      title.frame = (title.frame + 1) % CONFIG.spinner.length;
      title.timer = setTimeout(() => this._tick(), CONFIG.animationTime);
    }

    _paint() {
      const title = this._title;
      if (title.shown !== null && document.title !== title.shown) {
        title.base = document.title; // the page changed its title meanwhile
      }
      const many = this._count > 1 ? ` (${this._count}x)` : '';
      title.shown = `${title.base} ${CONFIG.spinner[title.frame]}${many}`;
      document.title = title.shown;
    }
  }

  const api = { Worker, CONFIG, VERSION };
  if (typeof module === 'object' && module && module.exports) {
    module.exports = api;
  }
  globalThis.quickServer = api;
})();
