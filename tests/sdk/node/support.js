'use strict';
// Helpers for driving a running `sesame serve` with node-auth0's AuthenticationClient
// (npm `auth0` 7.1.0, `require('auth0/legacy')`, a bundled auth0@4.37.1).
//
// tests/sdk/run.sh exports SESAME_URL (http://127.0.0.1:<port>), SESAME_DOMAIN (127.0.0.1:<port>)
// and SESAME_ISSUER (https://127.0.0.1:<port>/), plus the paths of the private_key_jwt clients'
// PKCS#8 PEM private keys: SESAME_PKJWT_RSA_KEY (RSA 2048, client `sdk-pkjwt`) and
// SESAME_PKJWT_EC_KEY (P-256, client `sdk-pkjwt-ec`), made fresh by each run.

const https = require('node:https');
const net = require('node:net');
const crypto = require('node:crypto');
const fs = require('node:fs');
const { AuthenticationClient, UserInfoClient } = require('auth0/legacy');

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through tests/sdk/run.sh`);
  return value;
};

const SERVER_URL = env('SESAME_URL').replace(/\/+$/, '');
const DOMAIN = env('SESAME_DOMAIN');
const ISSUER = env('SESAME_ISSUER');

const WEB_CLIENT_ID = 'sdk-web';
const WEB_CLIENT_SECRET = 'sdk-web-secret-0123456789';
const PKJWT_RSA_CLIENT_ID = 'sdk-pkjwt';
const PKJWT_EC_CLIENT_ID = 'sdk-pkjwt-ec';

/** A private_key_jwt client's PKCS#8 PEM private key (read lazily: only those tests need it). */
function pkjwtPrivateKey(kind) {
  const name = { rsa: 'SESAME_PKJWT_RSA_KEY', ec: 'SESAME_PKJWT_EC_KEY' }[kind];
  if (!name) throw new Error(`unknown key kind ${kind}`);
  return fs.readFileSync(env(name), 'ascii');
}

// Auth0's exact strings (spec 5.3).
const WRONG_EMAIL_CODE = 'Wrong email or verification code.';
const WRONG_PHONE_CODE = 'Wrong phone number or verification code.';

/**
 * The SDK hard-codes `https://${domain}`. Its documented `fetch` option lets us send the same
 * requests over plain http (and drop the undici `dispatcher`, which is the `agent` below).
 */
function plainHttpFetch(url, init = {}) {
  const { dispatcher, ...rest } = init; // eslint-disable-line no-unused-vars
  const target = String(url).replace(/^https:\/\//, 'http://');
  return globalThis.fetch(target, rest);
}

/**
 * ID-token validation fetches `https://${domain}/.well-known/jwks.json` through `node:https` with
 * `options.agent`. An https.Agent whose connections are plain TCP makes that plain http too.
 * It counts the connections it opens, so a test can prove the JWKS really was fetched.
 */
class PlainHttpAgent extends https.Agent {
  constructor() {
    super({ keepAlive: false });
    this.connections = 0;
  }

  createConnection(options) {
    this.connections += 1;
    return net.createConnection({ host: options.host, port: options.port });
  }
}

function authClient({ clientId = WEB_CLIENT_ID, clientSecret = WEB_CLIENT_SECRET } = {}) {
  const agent = new PlainHttpAgent();
  const client = new AuthenticationClient({
    domain: DOMAIN,
    clientId,
    clientSecret,
    fetch: plainHttpFetch,
    agent,
  });
  return { client, agent };
}

/**
 * An AuthenticationClient for a private_key_jwt client: no secret, `clientAssertionSigningKey`
 * (PKCS#8 PEM), so the SDK signs a fresh assertion (jose SignJWT) for every request.
 */
function privateKeyJwtAuthClient({ clientId, signingKey, signingAlg } = {}) {
  const agent = new PlainHttpAgent();
  const options = {
    domain: DOMAIN,
    clientId,
    clientAssertionSigningKey: signingKey,
    fetch: plainHttpFetch,
    agent,
  };
  if (signingAlg) options.clientAssertionSigningAlg = signingAlg;
  return { client: new AuthenticationClient(options), agent };
}

function userInfoClient() {
  return new UserInfoClient({ domain: DOMAIN, fetch: plainHttpFetch });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function mailbox(to) {
  const res = await globalThis.fetch(`${SERVER_URL}/dev/mailbox?to=${encodeURIComponent(to)}`);
  if (res.status !== 200) throw new Error(`GET /dev/mailbox answered ${res.status}`);
  return res.json();
}

/** Polls the dev mailbox (delivery is asynchronous) until `to` has `count` messages; the newest. */
async function waitForMessage(to, count = 1, timeoutMs = 8000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const messages = await mailbox(to);
    if (messages.length >= count) return messages[0];
    if (Date.now() > deadline) {
      throw new Error(
        `no message #${count} for ${to} after ${timeoutMs} ms: ${JSON.stringify(messages)}`,
      );
    }
    await sleep(100);
  }
}

/** The one-time code of a message, from its text, cross-checked with the mailbox's `code`. */
function codeOf(message) {
  const match = /(?<!\d)(\d{6})(?!\d)/.exec(message.text);
  if (!match) throw new Error(`no 6-digit code in ${JSON.stringify(message.text)}`);
  if (message.code !== match[1]) {
    throw new Error(`mailbox code ${message.code} differs from the text's ${match[1]}`);
  }
  return match[1];
}

/** A code of the same shape that is certainly not `code`. */
function otherCode(code) {
  return String((Number(code) + 1) % 10 ** code.length).padStart(code.length, '0');
}

function freshEmail() {
  return `sdk-node-${crypto.randomBytes(6).toString('hex')}@example.com`;
}

/** A libphonenumber-valid French mobile number (+33 61 xx xx xx x). */
function freshPhone() {
  let digits = '';
  for (let i = 0; i < 7; i += 1) digits += crypto.randomInt(10);
  return `+3361${digits}`;
}

function decodeJwt(token) {
  const [header, payload] = token.split('.');
  const json = (part) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
  return { header: json(header), payload: json(payload) };
}

module.exports = {
  AuthenticationClient,
  DOMAIN,
  ISSUER,
  PKJWT_EC_CLIENT_ID,
  PKJWT_RSA_CLIENT_ID,
  SERVER_URL,
  WEB_CLIENT_ID,
  WEB_CLIENT_SECRET,
  WRONG_EMAIL_CODE,
  WRONG_PHONE_CODE,
  authClient,
  codeOf,
  decodeJwt,
  freshEmail,
  freshPhone,
  mailbox,
  otherCode,
  pkjwtPrivateKey,
  plainHttpFetch,
  privateKeyJwtAuthClient,
  userInfoClient,
  waitForMessage,
};
