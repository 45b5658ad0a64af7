// Real-browser test of Sesame's magic-link login (run it through tests/browser/run.sh).
//
// Headless Debian Chromium, driven by playwright-core, does what a person does: opens the link
// from the (dev) mailbox, sees the confirmation page, clicks "Sign in", and lands on the app's
// callback page — a tiny node http server whose inline script writes location.search and
// location.hash into <pre id="result">, so the test reads exactly what a real app would see.
//
// Environment (set by run.sh): SESAME_ISSUER (running sesame, trailing slash), CALLBACK_PORT (a free
// port for the callback server), CLIENT_ID, CHROMIUM, SCREENSHOT_DIR, SUMMARY_FILE (optional).
// Prints `ok`/`not ok` per test and ends with `N passed, N failed`; exits 1 on any failure.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const ISSUER = must('SESAME_ISSUER');
const CALLBACK_PORT = Number(must('CALLBACK_PORT'));
const CLIENT_ID = process.env.CLIENT_ID || 'browser-app';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(import.meta.dirname ?? '.', 'screenshots');
const CB_ORIGIN = `http://127.0.0.1:${CALLBACK_PORT}`;
const CALLBACK = `${CB_ORIGIN}/callback`;
const TEST_TIMEOUT_MS = 45_000;

function must(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`magic-link.test.mjs: ${name} is not set (run it through tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const rand = (n = 16) => b64url(randomBytes(n));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function jwtPayload(jwt) {
  assert.equal(typeof jwt, 'string', 'a JWT is a string');
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, `a JWT has 3 parts, got ${parts.length}`);
  return JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
}

function checkIdToken(idToken, { nonce, email }) {
  const p = jwtPayload(idToken);
  assert.equal(p.iss, ISSUER, 'id_token iss is the issuer');
  const aud = Array.isArray(p.aud) ? p.aud : [p.aud];
  assert.ok(aud.includes(CLIENT_ID), `id_token aud ${JSON.stringify(p.aud)} names ${CLIENT_ID}`);
  assert.equal(p.nonce, nonce, 'id_token nonce is the one sent with /passwordless/start');
  if (p.email !== undefined) assert.equal(p.email, email, 'id_token email');
  assert.ok(typeof p.sub === 'string' && p.sub.length > 0, 'id_token has a sub');
  assert.ok(p.exp > Date.now() / 1000, 'id_token is not expired');
  return p;
}

// --- the app's callback page -------------------------------------------------------------------

const CALLBACK_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Browser test app: callback</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
pre{white-space:pre-wrap;word-break:break-all;background:#f4f4f5;padding:1rem;border-radius:.4rem}</style>
</head><body><h1>Browser test app: callback</h1><pre id="result">waiting for script…</pre>
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

const callbackHits = [];
const callbackServer = http.createServer((req, res) => {
  const url = new URL(req.url, CB_ORIGIN);
  callbackHits.push(`${req.method} ${url.pathname}${url.search}`);
  if (url.pathname === '/callback' && (req.method === 'GET' || req.method === 'HEAD')) {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(CALLBACK_HTML);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
});

// --- sesame over HTTP --------------------------------------------------------------------------

async function postJson(pathname, body) {
  const r = await fetch(new URL(pathname, ISSUER), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: Object.fromEntries(r.headers), text, json };
}

async function startLink(email, authParams) {
  const r = await postJson('passwordless/start', {
    client_id: CLIENT_ID,
    connection: 'email',
    email,
    send: 'link',
    authParams,
  });
  assert.equal(r.status, 200, `POST /passwordless/start → ${r.status} ${r.text}`);
}

/** The newest link mailed to `email`; delivery is asynchronous, so poll up to 5 s. */
async function linkFor(email) {
  const deadline = Date.now() + 5_000;
  let last;
  while (Date.now() < deadline) {
    const r = await fetch(new URL(`dev/mailbox?to=${encodeURIComponent(email)}`, ISSUER));
    last = `${r.status} ${await r.clone().text()}`;
    if (r.ok) {
      const entries = await r.json();
      if (entries.length > 0 && entries[0].link) {
        assert.ok(entries[0].link.startsWith(ISSUER), `the link ${entries[0].link} starts with the issuer`);
        return entries[0].link;
      }
    }
    await sleep(100);
  }
  throw new Error(`no link in /dev/mailbox for ${email} within 5 s (last answer: ${last})`);
}

// --- the browser -------------------------------------------------------------------------------

let browser;
const diagnostics = []; // lines printed when a test fails

async function newPage(label) {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  const events = [];
  page.on('console', (m) => events.push(`[${label}] console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => events.push(`[${label}] pageerror: ${e.message}`));
  page.on('requestfailed', (r) =>
    events.push(`[${label}] requestfailed: ${r.method()} ${r.url()} (${r.failure()?.errorText})`),
  );
  page.on('response', (r) => {
    const h = r.headers();
    events.push(
      `[${label}] ${r.request().method()} ${r.url()} → ${r.status()}` +
        (h.location ? ` location=${h.location}` : '') +
        (h['content-security-policy'] ? ` csp="${h['content-security-policy']}"` : ''),
    );
  });
  return { context, page, events };
}

const cspViolations = (events) => events.filter((e) => /Content Security Policy|Refused to/i.test(e));

/** Opens `link`; asserts the confirmation page; nothing may be consumed by the GET. */
async function openConfirmation(page, link, events, { shot, twice = false }) {
  const resp = await page.goto(link, { waitUntil: 'load' });
  assert.ok(resp, 'the link navigation has a response');
  assert.equal(resp.status(), 200, `GET link → ${resp.status()}`);
  if (twice) {
    // A second GET (a mail scanner, a reload) must still show the page: nothing is consumed yet.
    const again = await page.goto(link, { waitUntil: 'load' });
    assert.equal(again.status(), 200, `second GET of the link → ${again.status()}`);
  }
  assert.equal(await page.title(), 'Sign in', 'confirmation page title');
  const h1 = (await page.locator('h1').textContent())?.trim();
  assert.equal(h1, 'Sign in to Browser test app', 'confirmation page heading');
  const button = page.locator('#confirm');
  assert.equal(await button.count(), 1, 'one #confirm button');
  assert.ok(await button.isVisible(), '#confirm is visible');
  assert.equal((await button.textContent())?.trim(), 'Sign in', '#confirm label');
  assert.ok(!page.url().startsWith(CALLBACK), 'the GET did not go on to the callback');
  const form = await page.locator('form').evaluate((f) => ({ method: f.method, action: f.action }));
  assert.equal(form.method, 'post', 'the confirmation form posts');
  assert.equal(form.action, new URL('passwordless/verify_redirect', ISSUER).href, 'form action');
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual(cspViolations(events), [], 'no CSP violations on the confirmation page');
  return resp;
}

/** Clicks #confirm and waits for the callback page; returns what the page's script saw. */
async function confirmAndReadCallback(page, events, { shot }) {
  let callbackRequest;
  const onRequest = (r) => {
    if (r.isNavigationRequest() && r.url().startsWith(CALLBACK)) callbackRequest = r;
  };
  page.on('request', onRequest);
  await page.click('#confirm');
  await page.waitForURL((u) => u.href.startsWith(CALLBACK), { timeout: 15_000 });
  await page.waitForSelector('#result[data-ready="1"]', { timeout: 10_000 });
  page.off('request', onRequest);

  // The step before the callback: the form POST, answered with a 302 to the callback.
  assert.ok(callbackRequest, 'saw the navigation request to the callback');
  const post = callbackRequest.redirectedFrom();
  assert.ok(post, 'the callback was reached by a redirect');
  assert.equal(post.method(), 'POST', 'the redirect answered the form POST');
  assert.equal(post.url(), new URL('passwordless/verify_redirect', ISSUER).href, 'POST target');
  const postResp = await post.response();
  assert.equal(postResp?.status(), 302, `POST /passwordless/verify_redirect → ${postResp?.status()}`);
  const location = (await postResp.allHeaders()).location;
  assert.ok(location?.startsWith(CALLBACK), `302 location ${location} goes to the callback`);

  const result = JSON.parse(await page.locator('#result').textContent());
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  assert.deepEqual(cspViolations(events), [], 'no CSP violations during the confirm → callback');
  return { result, location, url: page.url() };
}

// --- the tests ---------------------------------------------------------------------------------

const shared = {}; // the implicit flow's link, used again by the last test

const tests = [
  [
    'implicit flow: link → confirmation page (GET consumes nothing) → #confirm → tokens in the fragment',
    async () => {
      const email = `implicit-${rand(6).toLowerCase()}@example.com`;
      const state = rand();
      const nonce = rand();
      await startLink(email, {
        redirect_uri: CALLBACK,
        response_type: 'token id_token',
        scope: 'openid email',
        state,
        nonce,
      });
      const link = await linkFor(email);
      const { context, page, events } = await newPage('implicit');
      diagnostics.push(() => events);
      try {
        await openConfirmation(page, link, events, {
          shot: path.join(SCREENSHOT_DIR, '01-implicit-confirm.png'),
          twice: true,
        });
        shared.usedLink = { link, state };
        const { result, url } = await confirmAndReadCallback(page, events, {
          shot: path.join(SCREENSHOT_DIR, '02-implicit-callback.png'),
        });
        assert.ok(url.includes('#'), `tokens arrive in the fragment (${url.split('#')[0]}#…)`);
        assert.deepEqual(result.query, {}, 'no query parameters on an implicit callback');
        const f = result.fragment;
        assert.equal(f.error, undefined, `no error: ${f.error} ${f.error_description}`);
        assert.ok(f.access_token, 'access_token in the fragment');
        assert.ok(f.id_token, 'id_token in the fragment');
        assert.equal(f.state, state, 'state comes back');
        assert.equal(f.token_type, 'Bearer', 'token_type');
        assert.ok(Number(f.expires_in) > 0, `expires_in ${f.expires_in}`);
        checkIdToken(f.id_token, { nonce, email });
      } finally {
        await context.close();
      }
    },
  ],
  [
    'code flow with PKCE: link → #confirm → ?code&state → POST /oauth/token → id_token',
    async () => {
      const email = `code-${rand(6).toLowerCase()}@example.com`;
      const state = rand();
      const nonce = rand();
      const verifier = rand(32);
      const challenge = b64url(createHash('sha256').update(verifier).digest());
      await startLink(email, {
        redirect_uri: CALLBACK,
        response_type: 'code',
        scope: 'openid email',
        state,
        nonce,
        code_challenge: challenge,
        code_challenge_method: 'S256',
      });
      const link = await linkFor(email);
      const { context, page, events } = await newPage('code');
      diagnostics.push(() => events);
      let code;
      try {
        await openConfirmation(page, link, events, { shot: path.join(SCREENSHOT_DIR, '03-code-confirm.png') });
        const { result } = await confirmAndReadCallback(page, events, {
          shot: path.join(SCREENSHOT_DIR, '04-code-callback.png'),
        });
        const q = result.query;
        assert.equal(q.error, undefined, `no error: ${q.error} ${q.error_description}`);
        assert.ok(q.code, 'code in the query');
        assert.equal(q.state, state, 'state comes back');
        assert.equal(result.fragment.access_token, undefined, 'no tokens in the fragment of a code callback');
        assert.equal(q.access_token, undefined, 'no tokens in the query of a code callback');
        code = q.code;
      } finally {
        await context.close();
      }

      const tok = await postJson('oauth/token', {
        grant_type: 'authorization_code',
        client_id: CLIENT_ID,
        code,
        redirect_uri: CALLBACK,
        code_verifier: verifier,
      });
      assert.equal(tok.status, 200, `POST /oauth/token → ${tok.status} ${tok.text}`);
      assert.ok(tok.json?.id_token, 'id_token from /oauth/token');
      assert.ok(tok.json?.access_token, 'access_token from /oauth/token');
      assert.equal(tok.json?.token_type, 'Bearer', 'token_type');
      checkIdToken(tok.json.id_token, { nonce, email });

      // The code works once.
      const again = await postJson('oauth/token', {
        grant_type: 'authorization_code',
        client_id: CLIENT_ID,
        code,
        redirect_uri: CALLBACK,
        code_verifier: verifier,
      });
      assert.notEqual(again.status, 200, `a second exchange of the same code must fail (got ${again.status} ${again.text})`);
    },
  ],
  [
    'a used link: confirmation page again → #confirm → callback gets error=unauthorized and the state',
    async () => {
      assert.ok(shared.usedLink, 'needs the link that the implicit-flow test used (it failed before using it)');
      const { link, state } = shared.usedLink;
      const { context, page, events } = await newPage('used-link');
      diagnostics.push(() => events);
      try {
        await openConfirmation(page, link, events, { shot: path.join(SCREENSHOT_DIR, '05-used-link-confirm.png') });
        const { result } = await confirmAndReadCallback(page, events, {
          shot: path.join(SCREENSHOT_DIR, '06-used-link-callback.png'),
        });
        // response_type "token id_token": the error goes back in the fragment, like the tokens.
        const f = result.fragment;
        assert.equal(
          f.error,
          'unauthorized',
          `error in the fragment (fragment=${JSON.stringify(f)}, query=${JSON.stringify(result.query)})`,
        );
        assert.equal(f.error_description, 'Wrong email or verification code.', 'error_description');
        assert.equal(f.state, state, 'state comes back with the error');
        assert.equal(f.access_token, undefined, 'no access_token');
        assert.equal(f.id_token, undefined, 'no id_token');
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
    new Promise((r) => (callbackServer.listening ? callbackServer.close(r) : r())),
  ]);
  callbackServer.closeAllConnections?.();
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
    callbackServer.once('error', reject);
    callbackServer.listen(CALLBACK_PORT, '127.0.0.1', resolve);
  });
  console.log(`callback server: ${CALLBACK}`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // playwright-core gives every launch a new, empty profile (its own --user-data-dir in a
    // temp dir, removed on close); these keep Chromium off the (closed) network.
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
      for (const get of diagnostics.slice(before)) for (const line of get()) console.log(`  | ${line}`);
      if (callbackHits.length) console.log(`  | callback server saw: ${callbackHits.join(', ')}`);
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
