// Real-browser test of Sesame's hosted login page behind GET /authorize (run it through
// tests/browser/run.sh).
//
// Headless Debian Chromium, driven by playwright-core, does what a person does on the page:
// types an address, reads the code from the (dev) mailbox, types it (a wrong one first), and
// lands on the app's callback; opens the magic link in a second tab of the same browser (the
// waiting tab continues by itself); opens it in another browser context (another device),
// which asks first and names the browser that asked; lets a code expire. Every step's page is
// screenshotted into SCREENSHOT_DIR (hosted-*.png) for review, and no step may trip the CSP.
//
// Environment (set by run.sh): SESAME_ISSUER, CALLBACK_PORT, CLIENT_ID (a public client whose
// callback is http://127.0.0.1:CALLBACK_PORT/callback), QUICK_CLIENT_ID (the same, on a
// connection whose codes live 60 s), CHROMIUM, SCREENSHOT_DIR, SUMMARY_FILE (optional).
// Prints `ok`/`not ok` per test and ends with `N passed, N failed`; exits 1 on any failure.

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const ISSUER = must('SESAME_ISSUER');
const CALLBACK_PORT = Number(must('CALLBACK_PORT'));
const CLIENT_ID = must('CLIENT_ID');
const QUICK_CLIENT_ID = must('QUICK_CLIENT_ID');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(import.meta.dirname ?? '.', 'screenshots');
const CB_ORIGIN = `http://127.0.0.1:${CALLBACK_PORT}`;
const CALLBACK = `${CB_ORIGIN}/callback`;
const TEST_TIMEOUT_MS = 120_000;

function must(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`hosted-login.test.mjs: ${name} is not set (run it through tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const rand = (n = 16) => b64url(randomBytes(n));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const shot = (name) => path.join(SCREENSHOT_DIR, `hosted-${name}.png`);

// --- the app: a callback page that shows what it got -------------------------------------------

const CALLBACK_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>App callback</title></head><body>
<h1>App callback</h1><pre id="result"></pre>
<script>
  const result = { query: Object.fromEntries(new URLSearchParams(location.search)) };
  const pre = document.getElementById('result');
  pre.textContent = JSON.stringify(result, null, 2);
  pre.dataset.ready = '1';
</script></body></html>`;

const callbackServer = http.createServer((req, res) => {
  const url = new URL(req.url, CB_ORIGIN);
  if (url.pathname === '/callback') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(CALLBACK_HTML);
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }
});

// --- sesame ------------------------------------------------------------------------------------

/** A fresh authorization request (PKCE S256), as an OIDC client would make it. */
function authorizeRequest(clientId = CLIENT_ID, extra = {}) {
  const verifier = rand(32);
  const state = rand();
  const nonce = rand();
  const q = new URLSearchParams({
    client_id: clientId,
    response_type: 'code',
    redirect_uri: CALLBACK,
    scope: 'openid email',
    state,
    nonce,
    code_challenge: b64url(createHash('sha256').update(verifier).digest()),
    code_challenge_method: 'S256',
    ...extra,
  });
  return { url: new URL(`authorize?${q}`, ISSUER).href, verifier, state, nonce, clientId };
}

/** The newest message to `to` once there are at least `n` (delivery is asynchronous). */
async function mail(to, n = 1) {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const r = await fetch(new URL(`dev/mailbox?to=${encodeURIComponent(to)}`, ISSUER), {
      headers: { accept: 'application/json' },
    });
    if (r.ok) {
      const entries = await r.json();
      if (entries.length >= n) return entries[0];
    }
    await sleep(100);
  }
  throw new Error(`no message ${n} to ${to} within 10 s`);
}

async function exchange(req, code) {
  const r = await fetch(new URL('oauth/token', ISSUER), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'authorization_code',
      client_id: req.clientId,
      code,
      redirect_uri: CALLBACK,
      code_verifier: req.verifier,
    }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, `POST /oauth/token → ${r.status} ${JSON.stringify(body)}`);
  const claims = JSON.parse(Buffer.from(body.id_token.split('.')[1], 'base64url').toString('utf8'));
  assert.equal(claims.nonce, req.nonce, 'the id_token carries the nonce of the request');
  return claims;
}

// --- the browser -------------------------------------------------------------------------------

let browser;
const diagnostics = [];

async function newContext(label) {
  const context = await browser.newContext({ viewport: { width: 900, height: 760 }, locale: 'en-GB' });
  const events = [];
  context.on('page', (p) => watch(p, label, events));
  const page = await context.newPage();
  diagnostics.push(() => events);
  return { context, page, events };
}

function watch(page, label, events) {
  page.on('console', (m) => events.push(`[${label}] console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => events.push(`[${label}] pageerror: ${e.message}`));
  page.on('response', (r) => events.push(`[${label}] ${r.request().method()} ${r.url()} → ${r.status()}`));
}

const cspViolations = (events) => events.filter((e) => /Content Security Policy|Refused to/i.test(e));

/** The address page → the code page. */
async function enterAddress(page, req, email, name) {
  const resp = await page.goto(req.url, { waitUntil: 'load' });
  assert.equal(resp.status(), 200, `GET /authorize → ${resp.status()}`);
  const csp = resp.headers()['content-security-policy'] ?? '';
  assert.ok(csp.includes("default-src 'none'") && !csp.includes('unsafe-inline'), `strict CSP: ${csp}`);
  assert.match((await page.locator('h1').textContent()) ?? '', /^Sign in to /);
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'identifier', 'the field has the focus');
  assert.equal(await page.locator('label[for="identifier"]').count(), 1, 'the field is labelled');
  if (name) await page.screenshot({ path: shot(`${name}-1-address`), fullPage: true });
  await page.fill('#identifier', email);
  await Promise.all([page.waitForLoadState('load'), page.click('#send')]);
  await page.waitForSelector('#code');
  assert.equal(await page.locator('#code').getAttribute('autocomplete'), 'one-time-code');
  assert.equal(await page.locator('#code').getAttribute('inputmode'), 'numeric');
  assert.ok((await page.locator('main').textContent()).includes(email), 'the page names where the code went');
  if (name) await page.screenshot({ path: shot(`${name}-2-code`), fullPage: true });
}

async function callbackResult(page) {
  await page.waitForURL((u) => u.href.startsWith(CALLBACK), { timeout: 20_000 });
  await page.waitForSelector('#result[data-ready="1"]');
  return JSON.parse(await page.locator('#result').textContent());
}

// --- the tests ---------------------------------------------------------------------------------

const tests = [
  [
    'code login: address → code page → a wrong code is announced → the right code → the app gets a code for tokens',
    async () => {
      const email = `hosted-${rand(6).toLowerCase()}@example.com`;
      const req = authorizeRequest();
      const { context, page, events } = await newContext('code');
      try {
        await enterAddress(page, req, email, 'code');
        const { code } = await mail(email);
        await page.fill('#code', '000000');
        await Promise.all([page.waitForLoadState('load'), page.click('#verify')]);
        const alert = page.locator('[role="alert"]');
        assert.equal((await alert.textContent())?.trim(), 'That code is not right. Check it and try again.');
        assert.equal(await page.locator('#code').getAttribute('aria-invalid'), 'true');
        await page.screenshot({ path: shot('code-3-wrong'), fullPage: true });
        await page.fill('#code', code);
        await page.click('#verify');
        const result = await callbackResult(page);
        await page.screenshot({ path: shot('code-4-callback'), fullPage: true });
        assert.equal(result.query.state, req.state, 'state comes back');
        assert.ok(result.query.code, `a code: ${JSON.stringify(result.query)}`);
        const claims = await exchange(req, result.query.code);
        assert.equal(claims.email, email);

        // The same browser is signed in now: a second /authorize goes straight back.
        const again = authorizeRequest();
        await page.goto(again.url);
        const second = await callbackResult(page);
        assert.equal(second.query.state, again.state, 'single sign-on');
        await exchange(again, second.query.code);
        assert.deepEqual(cspViolations(events), [], 'no CSP violations');
      } finally {
        await context.close();
      }
    },
  ],
  [
    'magic link in the same browser: a second tab opens it, and the waiting tab continues by itself',
    async () => {
      const email = `same-${rand(6).toLowerCase()}@example.com`;
      const req = authorizeRequest();
      const { context, page, events } = await newContext('same');
      try {
        await enterAddress(page, req, email, 'same');
        const { link } = await mail(email);
        assert.ok(link?.startsWith(ISSUER), `a link: ${link}`);
        const tab = await context.newPage();
        const resp = await tab.goto(link, { waitUntil: 'load' });
        assert.equal(resp.status(), 200);
        assert.equal((await tab.locator('h1').textContent())?.trim(), 'You are signed in');
        await tab.screenshot({ path: shot('same-3-link-tab'), fullPage: true });
        // The waiting tab's script sees the approval and continues (no click).
        const result = await callbackResult(page);
        await page.screenshot({ path: shot('same-4-callback'), fullPage: true });
        assert.equal(result.query.state, req.state);
        await exchange(req, result.query.code);
        assert.deepEqual(cspViolations(events), [], 'no CSP violations');
      } finally {
        await context.close();
      }
    },
  ],
  [
    'magic link on another device: it names the browser that asked, approves only on a click, and the asking browser signs in',
    async () => {
      const email = `other-${rand(6).toLowerCase()}@example.com`;
      const req = authorizeRequest();
      const asker = await newContext('asker');
      const other = await newContext('other-device');
      try {
        await enterAddress(asker.page, req, email, 'other');
        const { link } = await mail(email);
        const resp = await other.page.goto(link, { waitUntil: 'load' });
        assert.equal(resp.status(), 200);
        assert.equal((await other.page.locator('h1').textContent())?.trim(), 'Sign in on another device?');
        assert.equal((await other.page.locator('#requested-by').textContent())?.trim(), 'Chrome on Linux');
        await other.page.screenshot({ path: shot('other-3-confirm'), fullPage: true });
        await sleep(2500);
        assert.ok(!asker.page.url().startsWith(CALLBACK), 'nothing happens before the click');
        await Promise.all([other.page.waitForLoadState('load'), other.page.click('#confirm')]);
        await other.page.waitForSelector('text=Sign-in approved');
        await other.page.screenshot({ path: shot('other-4-approved'), fullPage: true });
        const cookies = await other.context.cookies();
        assert.ok(!cookies.some((c) => c.name === 'sesame_session'), 'no session on the device that clicked');
        const result = await callbackResult(asker.page);
        await asker.page.screenshot({ path: shot('other-5-callback'), fullPage: true });
        assert.equal(result.query.state, req.state);
        await exchange(req, result.query.code);
        assert.deepEqual([...cspViolations(asker.events), ...cspViolations(other.events)], [], 'no CSP violations');
      } finally {
        await asker.context.close();
        await other.context.close();
      }
    },
  ],
  [
    'an expired code: the page says so and asks for a new one (a 60 s code, 62 s later)',
    async () => {
      const email = `late-${rand(6).toLowerCase()}@example.com`;
      const req = authorizeRequest(QUICK_CLIENT_ID, { ui_locales: 'fr' });
      const { context, page, events } = await newContext('expired');
      try {
        await page.goto(req.url);
        assert.equal(await page.locator('html').getAttribute('lang'), 'fr', 'ui_locales=fr');
        await page.fill('#identifier', email);
        await Promise.all([page.waitForLoadState('load'), page.click('#send')]);
        await page.waitForSelector('#code');
        const { code } = await mail(email);
        await sleep(62_000);
        await page.fill('#code', code);
        await Promise.all([page.waitForLoadState('load'), page.click('#verify')]);
        assert.equal(
          (await page.locator('[role="alert"]').textContent())?.trim(),
          'Ce code a expiré. Demandez-en un nouveau.',
        );
        assert.equal(await page.locator('#identifier').count(), 1, 'back to the address page');
        await page.screenshot({ path: shot('expired-1'), fullPage: true });
        assert.deepEqual(cspViolations(events), [], 'no CSP violations');
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
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
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
    }
  }
  console.log(`screenshots: ${SCREENSHOT_DIR}/hosted-*.png`);
}

const watchdog = setTimeout(() => {
  console.log('not ok - the whole run took longer than 300 s');
  failed++;
  summary();
  process.exit(1);
}, 300_000);
watchdog.unref();

try {
  await main();
} catch (e) {
  failed++;
  console.log(`not ok - setup: ${String(e?.stack || e)}`);
} finally {
  await Promise.allSettled([browser?.close(), new Promise((r) => (callbackServer.listening ? callbackServer.close(r) : r()))]);
  callbackServer.closeAllConnections?.();
}
summary();
process.exit(failed === 0 && passed === tests.length ? 0 : 1);
