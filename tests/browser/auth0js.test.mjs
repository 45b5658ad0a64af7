// auth0.js compatibility in a real browser (run it through tests/browser/run.sh).
//
// Headless Debian Chromium, driven by playwright-core, opens a page of a small app served by this
// script on its own origin (http://127.0.0.1:APP_PORT, not Sesame's), which loads auth0.js from
// the npm package auth0-js (dist/auth0.min.js, the version pinned in package-lock.json). The tests
// call auth0.js's WebAuth in that page exactly as an app does, so the browser sends real CORS
// preflights and cross-origin XHRs, follows the SDK's navigations through Sesame, and lands on the
// app's /callback, where auth0.js's own parseHash validates the id_token (signature via the JWKS,
// iss, aud, nonce and state from auth0.js's transaction cookie).
//
// auth0.js is pointed at plain http with `domain: 'http://127.0.0.1:PORT'` (a domain that starts
// with "http" is used as the root URL as-is). It would check the id_token `iss` against
// `'https://' + domain + '/'`, so `overrides.__token_issuer` / `overrides.__jwks_uri` name
// Sesame's issuer and JWKS instead.
//
// Environment (set by run.sh): SESAME_ISSUER (a sesame with the default magic_link.confirm = true,
// trailing slash), SESAME_NOCONFIRM_ISSUER (a sesame with magic_link.confirm = false, for
// passwordlessVerify's GET /passwordless/verify_redirect), APP_PORT (a free port for the app
// server), CLIENT_ID (a native client with the OTP and implicit grants whose allowed origin is
// the app and whose callback is the app's /callback, on both sesames), CHROMIUM, SCREENSHOT_DIR,
// SUMMARY_FILE (optional). Prints `ok`/`not ok` per test and ends with `N passed, N failed`; exits
// 1 on any failure. A failing test prints every request the browser sent to Sesame (method, URL,
// headers, body) and Sesame's answer, and the CORS preflights seen.

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const ISSUER = must('SESAME_ISSUER');
const ISSUER_NOCONFIRM = must('SESAME_NOCONFIRM_ISSUER');
const APP_PORT = Number(must('APP_PORT'));
const CLIENT_ID = process.env.CLIENT_ID || 'auth0js-app';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(import.meta.dirname ?? '.', 'screenshots');
const APP_ORIGIN = `http://127.0.0.1:${APP_PORT}`;
const APP_PAGE = `${APP_ORIGIN}/app`;
const APP_CALLBACK = `${APP_ORIGIN}/callback`;
const OTP_GRANT = 'http://auth0.com/oauth/grant-type/passwordless/otp';
const TEST_TIMEOUT_MS = 45_000;

function must(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`auth0js.test.mjs: ${name} is not set (run it through tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
}

const require = createRequire(import.meta.url);
const AUTH0_JS_VERSION = require('auth0-js/package.json').version;
const AUTH0_JS = readFileSync(require.resolve('auth0-js/dist/auth0.min.js'));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const origin = (u) => new URL(u).origin;
const rand = (n = 6) => Math.random().toString(36).slice(2, 2 + n);

function jwtPayload(jwt) {
  assert.equal(typeof jwt, 'string', 'a JWT is a string');
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `a JWT has 3 parts, got ${parts.length}`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

/** auth0.js's WebAuth options for a sesame: plain http, Sesame's issuer and JWKS. */
function webAuthOptions(issuer) {
  return {
    domain: issuer.replace(/\/$/, ''), // 'http://127.0.0.1:PORT'
    clientID: CLIENT_ID,
    redirectUri: APP_CALLBACK,
    responseType: 'token id_token',
    scope: 'openid email',
    overrides: {
      __token_issuer: issuer,
      __jwks_uri: new URL('.well-known/jwks.json', issuer).href,
    },
  };
}

// --- the app: a page and a callback on their own origin, both loading auth0.js ----------------

const APP_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>auth0.js test app</title>
<script src="/auth0.min.js"></script></head>
<body><h1>auth0.js test app</h1><p id="sdk"></p>
<script>
  document.getElementById('sdk').textContent = 'auth0.js ' + (window.auth0 ? auth0.version.raw : 'did not load');
</script></body></html>`;

const CALLBACK_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>auth0.js test app: callback</title>
<script src="/auth0.min.js"></script>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f5;padding:1rem;border-radius:.4rem}</style>
</head><body><h1>auth0.js test app: callback</h1><pre id="result">waiting for script…</pre>
<script>
  const params = (s) => Object.fromEntries(new URLSearchParams(s));
  const result = {
    path: location.pathname,
    query: params(location.search.replace(/^\\?/, '')),
    fragment: params(location.hash.replace(/^#/, '')),
  };
  const pre = document.getElementById('result');
  pre.textContent = JSON.stringify(result, null, 2);
  pre.dataset.ready = '1';
</script></body></html>`;

const appHits = [];
const appServer = http.createServer((req, res) => {
  const url = new URL(req.url, APP_ORIGIN);
  appHits.push(`${req.method} ${url.pathname}${url.search}`);
  const send = (status, type, body) => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'text/plain', 'method not allowed');
  if (url.pathname === '/auth0.min.js') return send(200, 'application/javascript; charset=utf-8', AUTH0_JS);
  if (url.pathname === '/app') return send(200, 'text/html; charset=utf-8', APP_HTML);
  if (url.pathname === '/callback') return send(200, 'text/html; charset=utf-8', CALLBACK_HTML);
  return send(404, 'text/plain', 'not found');
});

// --- sesame's dev mailbox ----------------------------------------------------------------------

/** The newest code mailed to `email` by `issuer`; delivery is asynchronous, so poll up to 5 s. */
async function codeFor(issuer, email) {
  const deadline = Date.now() + 5_000;
  let last;
  while (Date.now() < deadline) {
    const r = await fetch(new URL(`dev/mailbox?to=${encodeURIComponent(email)}`, issuer));
    last = `${r.status} ${await r.clone().text()}`;
    if (r.ok) {
      const entries = await r.json();
      if (entries.length > 0 && entries[0].code) return entries[0].code;
    }
    await sleep(100);
  }
  throw new Error(`no code in ${issuer}dev/mailbox for ${email} within 5 s (last answer: ${last})`);
}

// --- the browser -------------------------------------------------------------------------------

let browser;
const diagnostics = []; // functions giving lines to print when a test fails

/**
 * A new context and page. Records console output, page errors, every request to a sesame
 * (method, URL, headers, body, and the answer) and, through the DevTools protocol, the CORS
 * preflights Chromium sends for them (playwright does not report those as requests).
 */
async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  const events = [];
  const wire = [];
  const preflights = new Map(); // requestId → {url, status, headers, responseHeaders}
  const sesames = [origin(ISSUER), origin(ISSUER_NOCONFIRM)];
  page.on('console', (m) => events.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => events.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => events.push(`requestfailed: ${r.method()} ${r.url()} (${r.failure()?.errorText})`));
  page.on('framenavigated', (f) => {
    if (f === page.mainFrame()) events.push(`navigated: ${f.url()}`);
  });
  const entries = new Map(); // playwright Request → wire entry
  page.on('request', (req) => {
    if (!sesames.includes(origin(req.url()))) return;
    const entry = { method: req.method(), url: req.url(), type: req.resourceType(), body: req.postData() };
    let answered;
    entry.answered = new Promise((r) => (answered = r));
    entry.done = (async () => {
      entry.headers = await req.allHeaders().catch(() => req.headers());
      const resp = await Promise.race([entry.answered, req.response().catch(() => null)]);
      if (!resp) {
        entry.failure = req.failure()?.errorText ?? 'no response';
        return;
      }
      entry.status = resp.status();
      entry.responseHeaders = await resp.allHeaders().catch(() => resp.headers());
      if (entry.bodyText) entry.responseBody = await entry.bodyText;
    })();
    entry.settle = answered;
    entries.set(req, entry);
    wire.push(entry);
  });
  page.on('response', (resp) => {
    const entry = entries.get(resp.request());
    if (!entry) return;
    // Read the body at once: auth0.js navigates right after its XHR completes, and the body of
    // a request of the page being left is gone once the next document commits.
    const s = resp.status();
    if (s < 300 || s >= 400) {
      entry.bodyText = resp.text().catch((e) => `<body not available: ${e.message.split('\n')[0]}>`);
    }
    entry.settle(resp);
  });

  // auth0.js navigates as soon as its XHR to /co/authenticate completes, and the DevTools
  // protocol forgets the body of a request once the page that made it is left. So the app origin
  // notes each answer from a sesame in its sessionStorage (per tab, same origin: still there on
  // the callback page); `recoverBodies` reads them back. Observation only: nothing is changed.
  await context.addInitScript((sesameOrigins) => {
    const open = XMLHttpRequest.prototype.open;
    const send = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.open = function (method, url, ...rest) {
      this.__observed = { method: String(method).toUpperCase(), url: new URL(url, location.href).href };
      return open.call(this, method, url, ...rest);
    };
    XMLHttpRequest.prototype.send = function (...args) {
      const rec = this.__observed;
      if (rec && sesameOrigins.includes(new URL(rec.url).origin)) {
        this.addEventListener('readystatechange', () => {
          if (this.readyState !== 4) return;
          try {
            const list = JSON.parse(sessionStorage.getItem('__sesame_xhr') || '[]');
            list.push({ ...rec, status: this.status, body: this.responseText });
            sessionStorage.setItem('__sesame_xhr', JSON.stringify(list));
          } catch {}
        });
      }
      return send.apply(this, args);
    };
  }, sesames);

  const cdp = await context.newCDPSession(page);
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.type === 'Preflight' || e.request.method === 'OPTIONS') {
      preflights.set(e.requestId, { url: e.request.url, method: e.request.method, headers: e.request.headers });
    }
  });
  cdp.on('Network.responseReceived', (e) => {
    const p = preflights.get(e.requestId);
    if (p) {
      p.status = e.response.status;
      p.responseHeaders = e.response.headers;
    }
  });
  cdp.on('Network.loadingFailed', (e) => {
    const p = preflights.get(e.requestId);
    if (p) p.failure = `${e.errorText}${e.corsErrorStatus ? ` ${JSON.stringify(e.corsErrorStatus)}` : ''}`;
  });
  await cdp.send('Network.enable');

  diagnostics.push(async () => {
    await Promise.allSettled(wire.map((w) => w.done));
    const lines = [...events.map((e) => `[${label}] ${e}`)];
    for (const p of preflights.values()) {
      lines.push(
        `[${label}] preflight ${p.method} ${p.url} ${JSON.stringify(p.headers)} → ${p.status ?? p.failure} ${JSON.stringify(p.responseHeaders ?? {})}`,
      );
    }
    for (const w of wire) {
      lines.push(`[${label}] sent ${w.method} ${w.url} (${w.type})`);
      lines.push(`[${label}]   headers ${JSON.stringify(w.headers)}`);
      if (w.body !== null && w.body !== undefined) lines.push(`[${label}]   body ${w.body}`);
      lines.push(`[${label}]   answer ${w.status ?? w.failure} headers ${JSON.stringify(w.responseHeaders ?? {})}`);
      if (w.responseBody !== undefined) lines.push(`[${label}]   answer body ${w.responseBody.slice(0, 2000)}`);
    }
    return lines;
  });

  const resp = await page.goto(APP_PAGE, { waitUntil: 'load' });
  assert.equal(resp?.status(), 200, `GET ${APP_PAGE} → ${resp?.status()}`);
  assert.equal(
    (await page.locator('#sdk').textContent())?.trim(),
    `auth0.js ${AUTH0_JS_VERSION}`,
    'the app page loaded auth0.js from its own origin',
  );
  return { context, page, events, wire, preflights };
}

/** Fills in answer bodies the DevTools protocol lost, from what the app origin noted. */
async function recoverBodies(page, wire) {
  await Promise.allSettled(wire.map((w) => w.done));
  const observed = await page.evaluate(() => JSON.parse(sessionStorage.getItem('__sesame_xhr') || '[]'));
  for (const w of wire) {
    if (w.type !== 'xhr' || (w.responseBody !== undefined && !w.responseBody.startsWith('<body not available'))) continue;
    const i = observed.findIndex((o) => o.method === w.method && o.url === w.url);
    if (i >= 0) {
      w.responseBody = observed[i].body;
      observed.splice(i, 1);
    }
  }
}

const corsErrors = (events) => events.filter((e) => /CORS|Access-Control-Allow|cross-origin/i.test(e));

/** The recorded requests to `issuer` + `pathname`, answers included. */
async function sent(wire, issuer, pathname) {
  const want = new URL(pathname, issuer);
  const hits = wire.filter((w) => {
    const u = new URL(w.url);
    return u.origin === want.origin && u.pathname === want.pathname;
  });
  await Promise.allSettled(hits.map((w) => w.done));
  return hits;
}

/** Asserts that Chromium sent a CORS preflight for `pathname` and that Sesame allowed it. */
function assertPreflight(preflights, issuer, pathname, { headers = ['auth0-client', 'content-type'] } = {}) {
  const url = new URL(pathname, issuer).href;
  const seen = [...preflights.values()].filter((p) => p.url === url);
  assert.ok(seen.length > 0, `a CORS preflight for ${pathname} (saw: ${[...preflights.values()].map((p) => p.url).join(', ') || 'none'})`);
  const p = seen[0];
  assert.equal(p.method, 'OPTIONS', 'the preflight is an OPTIONS');
  const h = Object.fromEntries(Object.entries(p.headers).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(h.origin, APP_ORIGIN, 'preflight Origin');
  assert.equal(h['access-control-request-method'], 'POST', 'preflight Access-Control-Request-Method');
  const requested = (h['access-control-request-headers'] || '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of headers) assert.ok(requested.includes(name), `the preflight asks for ${name} (${requested})`);
  assert.ok(p.status >= 200 && p.status < 300, `preflight ${pathname} → ${p.status ?? p.failure}`);
  const rh = Object.fromEntries(Object.entries(p.responseHeaders ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  assert.equal(rh['access-control-allow-origin'], APP_ORIGIN, 'preflight Access-Control-Allow-Origin');
}

/**
 * Calls `webAuth[method](options, cb)` in the page with a fresh `new auth0.WebAuth(webAuthOpts)`
 * and resolves with what the SDK called back: {err, res}. The error is reduced to the fields an
 * app reads (auth0.js's `original` holds the XHR and does not serialise).
 */
function sdkCall(page, webAuthOpts, method, options) {
  return page.evaluate(
    ([webAuthOpts, method, options]) =>
      new Promise((resolve) => {
        const plain = (v) => (v === undefined || v === null ? null : JSON.parse(JSON.stringify(v)));
        const pickErr = (e) => {
          if (!e) return null;
          const out = {};
          for (const k of ['code', 'description', 'error', 'error_description', 'errorDescription', 'statusCode', 'statusText', 'name', 'message', 'state']) {
            if (e[k] !== undefined) out[k] = e[k];
          }
          return out;
        };
        try {
          const webAuth = new window.auth0.WebAuth(webAuthOpts);
          webAuth[method](options, (err, res) => resolve({ err: pickErr(err), res: plain(res) }));
        } catch (e) {
          resolve({ thrown: String((e && e.stack) || e) });
        }
      }),
    [webAuthOpts, method, options],
  );
}

/**
 * Calls an SDK method that navigates (passwordlessLogin, passwordlessVerify). Resolves with
 * {landed: true} once the page is on the app's callback and its script ran, or with the SDK's
 * {err} if it called back instead of navigating.
 */
async function sdkNavigate(page, webAuthOpts, method, options) {
  const landed = page
    .waitForURL((u) => u.href.startsWith(APP_CALLBACK), { timeout: 15_000 })
    .then(() => ({ landed: true }));
  landed.catch(() => {}); // the race below reports it
  // The evaluate's context is destroyed when auth0.js navigates away: only a callback counts.
  const called = sdkCall(page, webAuthOpts, method, options).then(
    (r) => r,
    () => new Promise(() => {}),
  );
  let outcome;
  try {
    outcome = await Promise.race([landed, called]);
  } catch (e) {
    const where = page.url();
    let text = '';
    try {
      text = (await page.locator('body').innerText({ timeout: 1_000 })).slice(0, 500);
    } catch {}
    throw new Error(`auth0.js ${method} did not reach ${APP_CALLBACK}: the page is at ${where} showing ${JSON.stringify(text)} (${e.message.split('\n')[0]})`);
  }
  if (outcome.landed) {
    await page.waitForSelector('#result[data-ready="1"]', { timeout: 10_000 });
    outcome.url = page.url();
    outcome.result = JSON.parse(await page.locator('#result').textContent());
  }
  return outcome;
}

/** webAuth.passwordlessStart({connection:'email', send:'code', email}) in the page; returns the code mailed. */
async function startInPage(page, issuer, email) {
  const r = await sdkCall(page, webAuthOptions(issuer), 'passwordlessStart', { connection: 'email', send: 'code', email });
  assert.equal(r.thrown, undefined, `passwordlessStart threw: ${r.thrown}`);
  assert.equal(r.err, null, `passwordlessStart called back with an error: ${JSON.stringify(r.err)}`);
  return { res: r.res, code: await codeFor(issuer, email) };
}

const lower = (h) => Object.fromEntries(Object.entries(h ?? {}).map(([k, v]) => [k.toLowerCase(), v]));

/** auth0.js's XHR to Sesame: JSON, telemetry, cross-origin; the answer carries CORS headers. */
function assertSdkXhr(w, { credentials = false } = {}) {
  const h = lower(w.headers);
  assert.equal(w.method, 'POST', `${w.url} is a POST`);
  assert.match(h['content-type'] ?? '', /^application\/json/, 'Content-Type: application/json');
  assert.ok(h['auth0-client'], 'the Auth0-Client telemetry header is sent');
  const telemetry = JSON.parse(Buffer.from(h['auth0-client'], 'base64url').toString('utf8'));
  assert.equal(telemetry.name, 'auth0.js', 'telemetry name');
  assert.equal(telemetry.version, AUTH0_JS_VERSION, 'telemetry version');
  assert.equal(h.origin, APP_ORIGIN, 'the request comes from the app origin');
  const rh = lower(w.responseHeaders);
  assert.equal(rh['access-control-allow-origin'], APP_ORIGIN, `${w.url}: Access-Control-Allow-Origin`);
  if (credentials) assert.equal(rh['access-control-allow-credentials'], 'true', `${w.url}: Access-Control-Allow-Credentials`);
}

/** The callback's fragment holds the tokens; parseHash in the callback page validates them. */
async function assertTokensAndParseHash(page, issuer, outcome, { email, authorizeQuery }) {
  const f = outcome.result.fragment;
  assert.equal(f.error, undefined, `no error in the fragment: ${f.error} ${f.error_description}`);
  assert.deepEqual(outcome.result.query, {}, 'no query parameters on the callback');
  assert.ok(f.access_token, 'access_token in the fragment');
  assert.ok(f.id_token, 'id_token in the fragment');
  assert.equal(f.token_type, 'Bearer', 'token_type');
  assert.ok(Number(f.expires_in) > 0, `expires_in ${f.expires_in}`);
  assert.equal(f.state, authorizeQuery.state, 'the state auth0.js sent comes back');
  const claims = jwtPayload(f.id_token);
  assert.equal(claims.nonce, authorizeQuery.nonce, 'id_token nonce is the one auth0.js sent');

  const parsed = await sdkCall(page, webAuthOptions(issuer), 'parseHash', {});
  assert.equal(parsed.thrown, undefined, `parseHash threw: ${parsed.thrown}`);
  assert.equal(parsed.err, null, `parseHash called back with an error: ${JSON.stringify(parsed.err)}`);
  const r = parsed.res;
  assert.ok(r, 'parseHash returned a result');
  assert.equal(r.accessToken, f.access_token, 'parseHash accessToken');
  assert.equal(r.idToken, f.id_token, 'parseHash idToken');
  assert.equal(r.state, authorizeQuery.state, 'parseHash state');
  assert.equal(r.tokenType, 'Bearer', 'parseHash tokenType');
  assert.equal(r.expiresIn, Number(f.expires_in), 'parseHash expiresIn');
  const p = r.idTokenPayload;
  assert.ok(p, 'parseHash idTokenPayload');
  assert.equal(p.iss, issuer, 'idTokenPayload.iss');
  assert.ok((Array.isArray(p.aud) ? p.aud : [p.aud]).includes(CLIENT_ID), `idTokenPayload.aud ${JSON.stringify(p.aud)}`);
  assert.equal(p.nonce, authorizeQuery.nonce, 'idTokenPayload.nonce');
  assert.equal(p.email, email, 'idTokenPayload.email');
  assert.ok(typeof p.sub === 'string' && p.sub.startsWith('email|'), `idTokenPayload.sub ${p.sub}`);

  // parseHash consumed auth0.js's transaction (state → nonce); a second parse must fail on state.
  const again = await sdkCall(page, webAuthOptions(issuer), 'parseHash', {});
  assert.equal(again.err?.error, 'invalid_token', `a second parseHash fails: ${JSON.stringify(again)}`);
}

// --- the tests ---------------------------------------------------------------------------------

const tests = [
  [
    `passwordlessStart({send:'code'}) from another origin: preflight allowed, no CORS error, the code is mailed`,
    async () => {
      const email = `a0js-start-${rand()}@example.com`;
      const { context, page, events, wire, preflights } = await newPage('start');
      try {
        const r = await sdkCall(page, webAuthOptions(ISSUER), 'passwordlessStart', {
          connection: 'email',
          send: 'code',
          email,
        });
        assert.equal(r.thrown, undefined, `passwordlessStart threw: ${r.thrown}`);
        assert.equal(r.err, null, `passwordlessStart called back with an error: ${JSON.stringify(r.err)}`);
        assert.equal(r.res?.email, email, `the answer names the email: ${JSON.stringify(r.res)}`);

        const [post, ...more] = await sent(wire, ISSUER, 'passwordless/start');
        assert.ok(post, 'auth0.js sent POST /passwordless/start');
        assert.equal(more.length, 0, 'one POST /passwordless/start');
        assertSdkXhr(post);
        assert.equal(post.status, 200, `POST /passwordless/start → ${post.status} ${post.responseBody}`);
        const body = JSON.parse(post.body);
        assert.equal(body.client_id, CLIENT_ID, 'body client_id');
        assert.equal(body.connection, 'email', 'body connection');
        assert.equal(body.send, 'code', 'body send');
        assert.equal(body.email, email, 'body email');
        assert.equal(body.authParams?.response_type, 'token id_token', 'authParams.response_type');
        assert.equal(body.authParams?.redirect_uri, APP_CALLBACK, 'authParams.redirect_uri');
        assert.ok(body.authParams?.state, 'authParams.state');
        assert.ok(body.authParams?.nonce, 'authParams.nonce');
        assertPreflight(preflights, ISSUER, 'passwordless/start');

        const code = await codeFor(ISSUER, email);
        assert.match(code, /^\d{6}$/, `a 6-digit code is mailed (${code})`);
        assert.deepEqual(corsErrors(events), [], 'no CORS errors in the console');
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'a0js-01-start.png'), fullPage: true });
      } finally {
        await context.close();
      }
    },
  ],
  [
    'passwordlessLogin: POST /co/authenticate (withCredentials) → GET /authorize?login_ticket → callback tokens → parseHash validates',
    async () => {
      const email = `a0js-login-${rand()}@example.com`;
      const { context, page, events, wire, preflights } = await newPage('login');
      try {
        const { code } = await startInPage(page, ISSUER, email);
        const outcome = await sdkNavigate(page, webAuthOptions(ISSUER), 'passwordlessLogin', {
          connection: 'email',
          email,
          verificationCode: code,
        });
        assert.equal(outcome.thrown, undefined, `passwordlessLogin threw: ${outcome.thrown}`);
        assert.ok(outcome.landed, `passwordlessLogin called back instead of navigating: ${JSON.stringify(outcome.err)}`);

        await recoverBodies(page, wire);
        const [co, ...moreCo] = await sent(wire, ISSUER, 'co/authenticate');
        assert.ok(co, 'auth0.js sent POST /co/authenticate');
        assert.equal(moreCo.length, 0, 'one POST /co/authenticate');
        assertSdkXhr(co, { credentials: true });
        assert.equal(co.status, 200, `POST /co/authenticate → ${co.status} ${co.responseBody}`);
        assert.deepEqual(
          JSON.parse(co.body),
          { client_id: CLIENT_ID, username: email, otp: code, realm: 'email', credential_type: OTP_GRANT },
          '/co/authenticate body',
        );
        const ticket = JSON.parse(co.responseBody);
        assert.ok(ticket.login_ticket && ticket.co_verifier && ticket.co_id, `/co/authenticate answer ${co.responseBody}`);
        assertPreflight(preflights, ISSUER, 'co/authenticate');

        const [authz, ...moreAuthz] = await sent(wire, ISSUER, 'authorize');
        assert.ok(authz, 'auth0.js navigated to GET /authorize');
        assert.equal(moreAuthz.length, 0, 'one GET /authorize');
        assert.equal(authz.method, 'GET', '/authorize is a GET');
        assert.equal(authz.type, 'document', '/authorize is a navigation');
        const q = Object.fromEntries(new URL(authz.url).searchParams);
        assert.equal(q.login_ticket, ticket.login_ticket, 'the /authorize login_ticket is the one from /co/authenticate');
        assert.equal(q.client_id, CLIENT_ID, '/authorize client_id');
        assert.equal(q.response_type, 'token id_token', '/authorize response_type');
        assert.equal(q.redirect_uri, APP_CALLBACK, '/authorize redirect_uri');
        assert.equal(q.realm, 'email', '/authorize realm');
        assert.ok(q.state && q.nonce, '/authorize state and nonce');
        assert.equal(authz.status, 302, `GET /authorize → ${authz.status}`);
        assert.ok(lower(authz.responseHeaders).location?.startsWith(`${APP_CALLBACK}#`), 'the 302 goes to the callback with a fragment');

        assert.equal(outcome.url.split('#')[0], APP_CALLBACK, 'landed on the callback');
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'a0js-02-login-callback.png'), fullPage: true });
        await assertTokensAndParseHash(page, ISSUER, outcome, { email, authorizeQuery: q });
        assert.deepEqual(corsErrors(events), [], 'no CORS errors in the console');
      } finally {
        await context.close();
      }
    },
  ],
  [
    'passwordlessVerify: POST /passwordless/verify → GET /passwordless/verify_redirect (confirm = false) → callback tokens → parseHash validates',
    async () => {
      const email = `a0js-verify-${rand()}@example.com`;
      const { context, page, events, wire, preflights } = await newPage('verify');
      try {
        const { code } = await startInPage(page, ISSUER_NOCONFIRM, email);
        const outcome = await sdkNavigate(page, webAuthOptions(ISSUER_NOCONFIRM), 'passwordlessVerify', {
          connection: 'email',
          email,
          verificationCode: code,
        });
        assert.equal(outcome.thrown, undefined, `passwordlessVerify threw: ${outcome.thrown}`);
        assert.ok(outcome.landed, `passwordlessVerify called back instead of navigating: ${JSON.stringify(outcome.err)}`);

        const [verify, ...moreVerify] = await sent(wire, ISSUER_NOCONFIRM, 'passwordless/verify');
        assert.ok(verify, 'auth0.js sent POST /passwordless/verify');
        assert.equal(moreVerify.length, 0, 'one POST /passwordless/verify');
        assertSdkXhr(verify);
        assert.equal(verify.status, 200, `POST /passwordless/verify → ${verify.status} ${verify.responseBody}`);
        assert.deepEqual(
          JSON.parse(verify.body),
          { connection: 'email', verification_code: code, email, client_id: CLIENT_ID },
          '/passwordless/verify body',
        );
        assertPreflight(preflights, ISSUER_NOCONFIRM, 'passwordless/verify');

        const [redirect, ...moreRedirect] = await sent(wire, ISSUER_NOCONFIRM, 'passwordless/verify_redirect');
        assert.ok(redirect, 'auth0.js navigated to GET /passwordless/verify_redirect');
        assert.equal(moreRedirect.length, 0, 'one request to /passwordless/verify_redirect (no confirmation page)');
        assert.equal(redirect.method, 'GET', 'verify_redirect is a GET');
        assert.equal(redirect.type, 'document', 'verify_redirect is a navigation');
        const q = Object.fromEntries(new URL(redirect.url).searchParams);
        assert.equal(q.client_id, CLIENT_ID, 'verify_redirect client_id');
        assert.equal(q.response_type, 'token id_token', 'verify_redirect response_type');
        assert.equal(q.redirect_uri, APP_CALLBACK, 'verify_redirect redirect_uri');
        assert.equal(q.connection, 'email', 'verify_redirect connection');
        assert.equal(q.email, email, 'verify_redirect email');
        assert.equal(q.verification_code, code, 'verify_redirect verification_code');
        assert.ok(q.state && q.nonce, 'verify_redirect state and nonce');
        assert.equal(redirect.status, 302, `GET /passwordless/verify_redirect → ${redirect.status} ${redirect.responseBody ?? ''}`);
        assert.ok(
          lower(redirect.responseHeaders).location?.startsWith(`${APP_CALLBACK}#`),
          'the 302 goes to the callback with a fragment',
        );

        assert.equal(outcome.url.split('#')[0], APP_CALLBACK, 'landed on the callback');
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, 'a0js-03-verify-callback.png'), fullPage: true });
        await assertTokensAndParseHash(page, ISSUER_NOCONFIRM, outcome, { email, authorizeQuery: q });
        assert.deepEqual(corsErrors(events), [], 'no CORS errors in the console');
      } finally {
        await context.close();
      }
    },
  ],
  [
    `passwordlessLogin with a wrong code: the SDK calls back access_denied / "Wrong email or verification code." and stays on the page`,
    async () => {
      const email = `a0js-wrong-${rand()}@example.com`;
      const { context, page, events, wire, preflights } = await newPage('wrong-code');
      try {
        const { code } = await startInPage(page, ISSUER, email);
        const wrong = [...code].map((d) => String((Number(d) + 1) % 10)).join('');
        const r = await sdkCall(page, webAuthOptions(ISSUER), 'passwordlessLogin', {
          connection: 'email',
          email,
          verificationCode: wrong,
        });
        assert.equal(r.thrown, undefined, `passwordlessLogin threw: ${r.thrown}`);
        assert.ok(r.err, `passwordlessLogin calls back with an error (got ${JSON.stringify(r)})`);
        assert.equal(r.err.code, 'access_denied', `err.code (err=${JSON.stringify(r.err)})`);
        assert.equal(r.err.description, 'Wrong email or verification code.', 'err.description');
        // /co/authenticate errors go through forceLegacyError: the same values as error/error_description.
        assert.equal(r.err.error, 'access_denied', 'err.error');
        assert.equal(r.err.error_description, 'Wrong email or verification code.', 'err.error_description');
        // (auth0.js builds this error from the response body alone, so it has no statusCode.)
        assert.equal(page.url(), APP_PAGE, 'the page did not navigate');

        const [co] = await sent(wire, ISSUER, 'co/authenticate');
        assert.ok(co, 'auth0.js sent POST /co/authenticate');
        assertSdkXhr(co, { credentials: true });
        assert.equal(co.status, 403, `POST /co/authenticate → ${co.status}`);
        assert.equal(JSON.parse(co.body).otp, wrong, 'the wrong code was sent');
        assertPreflight(preflights, ISSUER, 'co/authenticate');
        assert.equal((await sent(wire, ISSUER, 'authorize')).length, 0, 'no navigation to /authorize');
        assert.deepEqual(corsErrors(events), [], 'no CORS errors in the console (the 403 is readable cross-origin)');
      } finally {
        await context.close();
      }
    },
  ],
];

// --- runner ------------------------------------------------------------------------------------

async function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, t]);
  } finally {
    clearTimeout(timer);
  }
}

let cleaningUp = false;
async function cleanup() {
  if (cleaningUp) return;
  cleaningUp = true;
  await Promise.allSettled([
    browser?.close(),
    new Promise((r) => (appServer.listening ? appServer.close(r) : r())),
  ]);
  appServer.closeAllConnections?.();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

let passed = 0;
let failed = 0;
function summary() {
  const line = `${passed} passed, ${failed} failed`;
  console.log(line);
  if (process.env.SUMMARY_FILE) writeFileSync(process.env.SUMMARY_FILE, `${line}\n`);
}

async function main() {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await new Promise((resolve, reject) => {
    appServer.once('error', reject);
    appServer.listen(APP_PORT, '127.0.0.1', resolve);
  });
  console.log(`app server: ${APP_PAGE} (auth0.js ${AUTH0_JS_VERSION} at ${APP_ORIGIN}/auth0.min.js)`);
  console.log(`sesames: ${ISSUER} (magic_link.confirm = true), ${ISSUER_NOCONFIRM} (confirm = false)`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // A new, empty profile per launch; these keep Chromium off the (closed) network.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  console.log(`browser: ${CHROMIUM} ${browser.version()}`);

  for (const [name, fn] of tests) {
    const before = diagnostics.length;
    try {
      await withTimeout(fn(), TEST_TIMEOUT_MS, name);
      passed++;
      console.log(`ok ${passed + failed} - ${name}`);
    } catch (e) {
      failed++;
      console.log(`not ok ${passed + failed} - ${name}`);
      console.log(`  ${String(e?.stack || e).split('\n').join('\n  ')}`);
      for (const get of diagnostics.slice(before)) {
        for (const line of await withTimeout(get(), 5_000, 'diagnostics').catch((err) => [String(err)])) {
          console.log(`  | ${line}`);
        }
      }
      if (appHits.length) console.log(`  | app server saw: ${appHits.join(', ')}`);
    }
  }
  console.log(`screenshots: ${SCREENSHOT_DIR}`);
}

const watchdog = setTimeout(() => {
  console.log('not ok - the whole run took longer than 180 s');
  failed++;
  summary();
  process.exit(1);
}, 180_000);
watchdog.unref();

try {
  await main();
} catch (e) {
  failed++;
  console.log(`not ok - setup: ${String(e?.stack || e)}`);
} finally {
  await cleanup();
}
summary();
process.exit(failed === 0 && passed === tests.length ? 0 : 1);
