'use strict';
// Sesame's Management API (users) driven by node-auth0's own `ManagementClient`: the v7 one from
// `require('auth0')` (npm auth0 7.1.0, Fern-generated), not the auth0@4 one in auth0/legacy. Its
// documented `fetch` option carries every request over plain http, the client_credentials token
// request of its built-in TokenProvider included (form-encoded, client_secret in the body,
// audience https://{domain}/api/v2/). Logins, refresh and revocation go through the legacy
// AuthenticationClient, as in the other files (v7 has no authentication client).
//
// Every test makes its own users. Other test files may log users in while these tests run, so no
// assertion depends on how many users the server holds.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Management, ManagementClient, ManagementError } = require('auth0');
const { AuthApiError } = require('auth0/legacy');
const {
  DOMAIN,
  ISSUER,
  SERVER_URL,
  WEB_CLIENT_ID,
  authClient,
  codeOf,
  decodeJwt,
  mailbox,
  plainHttpFetch,
  userInfoClient,
  waitForMessage,
} = require('../support.js');

const AUDIENCE = `${ISSUER}api/v2/`;
const M2M_CLIENT_ID = 'sdk-m2m';
const M2M_CLIENT_SECRET = 'sdk-m2m-secret-0123456789';
const READONLY_CLIENT_ID = 'sdk-m2m-readonly';
const READONLY_CLIENT_SECRET = 'sdk-m2m-readonly-secret-0123';
const M2M_SCOPES = [
  'read:users',
  'update:users',
  'delete:users',
  'create:users',
  'read:users_app_metadata',
  'update:users_app_metadata',
  'read:logs',
];
const UNKNOWN_USER_ID = 'email|000000000000000000000000';
const LOGGED_OUT_URL = 'http://localhost:3000/logged-out';
const LOGIN_SCOPE = 'openid offline_access';
// Auth0's 404 for a user id it does not know.
const USER_NOT_FOUND = {
  statusCode: 404,
  error: 'Not Found',
  message: 'The user does not exist.',
  errorCode: 'inexistent_user',
};
// What Auth0 writes: 2024-01-02T03:04:05.678Z.
const ISO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function freshEmail() {
  return `mgmt-node-${crypto.randomBytes(6).toString('hex')}@example.com`;
}

/** The way an app configures it: client credentials, the SDK fetches and caches the token. */
function management({ clientId = M2M_CLIENT_ID, clientSecret = M2M_CLIENT_SECRET } = {}) {
  return new ManagementClient({ domain: DOMAIN, clientId, clientSecret, fetch: plainHttpFetch });
}

function managementWithToken(token) {
  return new ManagementClient({ domain: DOMAIN, token, fetch: plainHttpFetch });
}

const mgmt = management();
const readonly = management({ clientId: READONLY_CLIENT_ID, clientSecret: READONLY_CLIENT_SECRET });

function m2mAuthClient({ clientId = M2M_CLIENT_ID, clientSecret = M2M_CLIENT_SECRET } = {}) {
  return authClient({ clientId, clientSecret }).client;
}

let fullToken;
/** A full-scope token for the raw HTTP checks, fetched once. */
function m2mToken() {
  fullToken ??= m2mAuthClient()
    .oauth.clientCredentialsGrant({ audience: AUDIENCE })
    .then((res) => res.data.access_token);
  return fullToken;
}

/** A plain request to the Management API, for what the SDK hides (status codes, raw JSON). */
async function rawApi(path, { token, method = 'GET' } = {}) {
  const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const res = await globalThis.fetch(`${SERVER_URL}/api/v2/${path}`, { method, headers });
  const text = await res.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    // left as text: the assertions on it will say what came back
  }
  return { status: res.status, headers: res.headers, body };
}

/** A passwordless email login with sdk-web, asking for a refresh token. */
async function login(email) {
  const { client } = authClient();
  const before = (await mailbox(email)).length;
  await client.passwordless.sendEmail({ email, send: 'code' });
  const code = codeOf(await waitForMessage(email, before + 1));
  const { data } = await client.passwordless.loginWithEmail({ email, code, scope: LOGIN_SCOPE });
  assert.equal(typeof data.refresh_token, 'string', 'offline_access gave no refresh token');
  return {
    sub: decodeJwt(data.id_token).payload.sub,
    accessToken: data.access_token,
    refreshToken: data.refresh_token,
  };
}

/** The refresh token grant; returns the refresh token to use next (sesame rotates them). */
async function refresh(refreshToken) {
  const { client } = authClient();
  const { data } = await client.oauth.refreshTokenGrant({ refresh_token: refreshToken });
  assert.equal(typeof data.access_token, 'string');
  return data.refresh_token ?? refreshToken;
}

/** The refresh token grant refused; `error: null` accepts any error code. */
async function assertRefreshRefused(refreshToken, { statusCodes = [403], error = 'invalid_grant' } = {}) {
  const { client } = authClient();
  await assert.rejects(client.oauth.refreshTokenGrant({ refresh_token: refreshToken }), (err) => {
    assert.ok(err instanceof AuthApiError, `expected AuthApiError, got ${err && err.stack}`);
    assert.ok(statusCodes.includes(err.statusCode), `status ${err.statusCode}, body: ${err.body}`);
    if (error !== null) assert.equal(err.error, error, `body: ${err.body}`);
    return true;
  });
}

/** A rejected SDK call: the v7 error class, its statusCode, and Auth0's error body as parsed. */
async function assertManagementError(promise, { type, statusCode, error, message, errorCode }) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof ManagementError, `expected a ManagementError, got ${err && err.stack}`);
    if (type) assert.ok(err instanceof type, `expected ${type.name}, got ${err.name}`);
    assert.equal(err.statusCode, statusCode, err.message);
    assert.equal(typeof err.body, 'object', `the body was not JSON: ${err.message}`);
    assert.equal(err.body.statusCode, statusCode, err.message);
    if (error !== undefined) assert.equal(err.body.error, error, err.message);
    if (errorCode !== undefined) assert.equal(err.body.errorCode, errorCode, err.message);
    if (message instanceof RegExp) assert.match(err.body.message, message);
    else if (message !== undefined) assert.equal(err.body.message, message);
    return true;
  });
}

async function assertAuthApiError(promise, { statusCode, error, description }) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof AuthApiError, `expected AuthApiError, got ${err && err.stack}`);
    assert.equal(err.statusCode, statusCode, `body: ${err.body}`);
    assert.equal(err.error, error, `body: ${err.body}`);
    if (description !== undefined) assert.equal(err.error_description, description);
    return true;
  });
}

function assertIsoDate(value, what) {
  assert.equal(typeof value, 'string', `${what} is ${JSON.stringify(value)}`);
  assert.match(value, ISO_DATE, what);
  assert.ok(!Number.isNaN(Date.parse(value)), what);
}

function localId(userId) {
  assert.ok(userId.startsWith('email|'), userId);
  return userId.slice('email|'.length);
}

/** Auth0's shape of a passwordless email user. */
function assertEmailUser(user, { email, id }) {
  assert.ok(user.user_id.startsWith('email|'), user.user_id);
  if (id !== undefined) assert.equal(user.user_id, id);
  assert.equal(user.email, email);
  assert.equal(user.email_verified, true);
  assert.deepEqual(user.identities, [
    { connection: 'email', provider: 'email', user_id: localId(user.user_id), isSocial: false },
  ]);
  assertIsoDate(user.created_at, 'created_at');
  assertIsoDate(user.updated_at, 'updated_at');
}

/** A user right after their first login, nothing changed by the Management API yet. */
function assertFreshLoggedInUser(user, { email, id }) {
  assertEmailUser(user, { email, id });
  assert.equal(user.logins_count, 1);
  assertIsoDate(user.last_login, 'last_login');
  assert.ok(Date.parse(user.created_at) <= Date.parse(user.last_login));
  assert.deepEqual(user.user_metadata, {});
  assert.deepEqual(user.app_metadata, {});
  assert.equal(user.blocked, false);
  // Auth0's defaults for a passwordless email user.
  assert.equal(user.name, email);
  assert.equal(user.nickname, email.split('@')[0]);
}

/** RS256 signature of a JWT against the server's JWKS, looked up by kid. */
async function assertSignedByServer(token) {
  const [headerPart, payloadPart, signature] = token.split('.');
  const { header } = decodeJwt(token);
  const res = await globalThis.fetch(`${SERVER_URL}/.well-known/jwks.json`);
  assert.equal(res.status, 200);
  const jwk = (await res.json()).keys.find((k) => k.kid === header.kid);
  assert.ok(jwk, `no JWKS key with kid ${header.kid}`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  const valid = crypto.verify(
    'RSA-SHA256',
    Buffer.from(`${headerPart}.${payloadPart}`),
    key,
    Buffer.from(signature, 'base64url'),
  );
  assert.ok(valid, 'the access token signature does not verify against the JWKS');
}

const scopesOf = (scope) => String(scope).split(' ').filter(Boolean).sort();

// --- client_credentials -------------------------------------------------------------------

test('client_credentials: an RS256 JWT for sdk-m2m@clients carrying every granted scope', async () => {
  const { data } = await m2mAuthClient().oauth.clientCredentialsGrant({ audience: AUDIENCE });
  assert.equal(data.token_type, 'Bearer');
  assert.ok(Number.isInteger(data.expires_in) && data.expires_in > 0, `expires_in ${data.expires_in}`);
  assert.equal(data.id_token, undefined);
  assert.equal(data.refresh_token, undefined);

  const { header, payload } = decodeJwt(data.access_token);
  assert.equal(header.alg, 'RS256');
  await assertSignedByServer(data.access_token);
  assert.equal(payload.iss, ISSUER);
  assert.equal(payload.sub, `${M2M_CLIENT_ID}@clients`);
  assert.equal(payload.gty, 'client-credentials');
  assert.deepEqual([payload.aud].flat(), [AUDIENCE]);
  // No scope asked: the token carries all the client was granted for this API.
  assert.deepEqual(scopesOf(payload.scope), [...M2M_SCOPES].sort());
  assert.equal(payload.exp - payload.iat, data.expires_in);
});

test('client_credentials for an audience that is not a registered API is 403 access_denied', async () => {
  await assertAuthApiError(
    m2mAuthClient().oauth.clientCredentialsGrant({ audience: 'https://api.unregistered.example/' }),
    { statusCode: 403, error: 'access_denied' },
  );
});

test('scopes the client was not granted are dropped from its token, as at Auth0', async () => {
  const client = m2mAuthClient({ clientId: READONLY_CLIENT_ID, clientSecret: READONLY_CLIENT_SECRET });
  const { data } = await client.oauth.clientCredentialsGrant({ audience: AUDIENCE, scope: 'read:users delete:users' });
  const { payload } = decodeJwt(data.access_token);
  assert.equal(payload.sub, `${READONLY_CLIENT_ID}@clients`);
  assert.equal(payload.scope, 'read:users');
  if (data.scope !== undefined) assert.equal(data.scope, 'read:users');
});

// --- reading users ------------------------------------------------------------------------

test('users.listUsersByEmail finds a user who logged in with an email code, in Auth0 shape', async () => {
  const email = freshEmail();
  const { sub } = await login(email);
  assert.ok(sub.startsWith('email|'), sub);

  const users = await mgmt.users.listUsersByEmail({ email });
  assert.ok(Array.isArray(users), JSON.stringify(users));
  assert.equal(users.length, 1, JSON.stringify(users));
  assertFreshLoggedInUser(users[0], { email, id: sub });
});

test('users.get gives the same user; an unknown id is 404 inexistent_user', async () => {
  const email = freshEmail();
  const { sub } = await login(email);

  const [byEmail] = await mgmt.users.listUsersByEmail({ email });
  const user = await mgmt.users.get(sub);
  assertFreshLoggedInUser(user, { email, id: sub });
  assert.deepEqual(user, byEmail);

  await assertManagementError(mgmt.users.get(UNKNOWN_USER_ID), {
    type: Management.NotFoundError,
    ...USER_NOT_FOUND,
  });
});

// --- updating users -----------------------------------------------------------------------

test('users.update merges metadata at the root as Auth0 does; null removes a key; /userinfo shows it', async () => {
  const email = freshEmail();
  const { sub, accessToken } = await login(email);

  let user = await mgmt.users.update(sub, { user_metadata: { a: 1, nested: { x: 1 } } });
  assert.deepEqual(user.user_metadata, { a: 1, nested: { x: 1 } });
  // A root-level key merges in; a nested object is replaced whole.
  user = await mgmt.users.update(sub, { user_metadata: { b: 2, nested: { y: 2 } } });
  assert.deepEqual(user.user_metadata, { a: 1, b: 2, nested: { y: 2 } });
  user = await mgmt.users.update(sub, { user_metadata: { a: null } });
  assert.deepEqual(user.user_metadata, { b: 2, nested: { y: 2 } });

  user = await mgmt.users.update(sub, { app_metadata: { plan: 'pro' } });
  assert.deepEqual(user.app_metadata, { plan: 'pro' });
  user = await mgmt.users.update(sub, { app_metadata: { tier: 2 } });
  assert.deepEqual(user.app_metadata, { plan: 'pro', tier: 2 });
  user = await mgmt.users.update(sub, { app_metadata: { plan: null } });
  assert.deepEqual(user.app_metadata, { tier: 2 });
  assert.deepEqual(user.user_metadata, { b: 2, nested: { y: 2 } }, 'app_metadata changed user_metadata');

  user = await mgmt.users.update(sub, { name: 'Jane', nickname: 'jj', picture: 'https://example.com/p.png' });
  assert.equal(user.name, 'Jane');
  assert.equal(user.nickname, 'jj');
  assert.equal(user.picture, 'https://example.com/p.png');
  assert.equal(user.email, email);
  assert.deepEqual(user.user_metadata, { b: 2, nested: { y: 2 } }, 'a profile change touched metadata');

  // What PATCH answered is what is stored.
  const stored = await mgmt.users.get(sub);
  assert.equal(stored.name, 'Jane');
  assert.equal(stored.nickname, 'jj');
  assert.equal(stored.picture, 'https://example.com/p.png');
  assert.deepEqual(stored.user_metadata, { b: 2, nested: { y: 2 } });
  assert.deepEqual(stored.app_metadata, { tier: 2 });
  assert.ok(Date.parse(stored.updated_at) >= Date.parse(stored.created_at));

  // The user's own token from the login sees the current metadata at /userinfo.
  const info = await userInfoClient().getUserInfo(accessToken);
  assert.equal(info.data.sub, sub);
  assert.deepEqual(info.data.user_metadata, { b: 2, nested: { y: 2 } });
  assert.deepEqual(info.data.app_metadata, { tier: 2 });
});

test('a blocked user can neither start a login nor refresh; unblocked, they log in again', async () => {
  const email = freshEmail();
  const first = await login(email);
  // The refresh token works before the block, so its refusal below is the block's doing.
  const refreshToken = await refresh(first.refreshToken);

  let user = await mgmt.users.update(first.sub, { blocked: true });
  assert.equal(user.blocked, true);
  assert.equal((await mgmt.users.get(first.sub)).blocked, true);

  const { client } = authClient();
  await assertAuthApiError(client.passwordless.sendEmail({ email, send: 'code' }), {
    statusCode: 401,
    error: 'unauthorized',
    description: 'user is blocked',
  });
  // Auth0 answers 403 invalid_grant or 401 unauthorized "user is blocked"; either way it fails.
  await assertRefreshRefused(refreshToken, { statusCodes: [401, 403], error: null });

  user = await mgmt.users.update(first.sub, { blocked: false });
  assert.equal(user.blocked, false);
  const again = await login(email);
  assert.equal(again.sub, first.sub);
  // The refused start sent nothing: one code per successful start.
  assert.equal((await mailbox(email)).length, 2);
});

// --- creating and listing users -----------------------------------------------------------

test('users.create makes an email user (201) whose first login keeps its id; a second create is 409', async () => {
  const email = freshEmail();
  const { data: created, rawResponse } = await mgmt.users
    .create({ connection: 'email', email, email_verified: true })
    .withRawResponse();
  assert.equal(rawResponse.status, 201);
  assertEmailUser(created, { email });

  const found = await mgmt.users.listUsersByEmail({ email });
  assert.deepEqual(found.map((u) => u.user_id), [created.user_id]);

  await assertManagementError(
    mgmt.users.create({ connection: 'email', email, email_verified: true }),
    { type: Management.ConflictError, statusCode: 409 },
  );
  assert.equal((await mgmt.users.listUsersByEmail({ email })).length, 1);

  const { sub } = await login(email);
  assert.equal(sub, created.user_id);
  assert.equal((await mgmt.users.get(sub)).logins_count, 1);
});

test('users.list with per_page=2 and include_totals pages through every user exactly once', async () => {
  const created = [];
  for (let i = 0; i < 3; i += 1) {
    created.push(await mgmt.users.create({ connection: 'email', email: freshEmail(), email_verified: true }));
  }
  const ids = new Set(created.map((u) => u.user_id));

  const page = await mgmt.users.list({ page: 0, per_page: 2, include_totals: true });
  assert.equal(page.response.start, 0);
  assert.equal(page.response.limit, 2);
  assert.ok(page.response.total >= created.length, `total ${page.response.total}`);

  // Only this test's users are counted: other test files may be logging users in meanwhile.
  const seen = new Map();
  for (let index = 0; ; index += 1) {
    assert.ok(index < 10000, 'the pages never end');
    const { start, limit, length, total } = page.response;
    assert.equal(start, index * 2, `page ${index}`);
    assert.equal(limit, 2, `page ${index}`);
    assert.equal(length, page.data.length, `page ${index}`);
    assert.ok(page.data.length <= 2, `page ${index} has ${page.data.length} users`);
    assert.equal(typeof total, 'number');
    for (const user of page.data) {
      if (ids.has(user.user_id)) seen.set(user.user_id, (seen.get(user.user_id) ?? 0) + 1);
    }
    if (!page.hasNextPage()) break;
    await page.getNextPage();
  }
  for (const id of ids) assert.equal(seen.get(id), 1, `${id} seen ${seen.get(id) ?? 0} times`);

  // Without include_totals Auth0 answers a bare array.
  const raw = await rawApi('users?per_page=1', { token: await m2mToken() });
  assert.equal(raw.status, 200, JSON.stringify(raw.body));
  assert.ok(Array.isArray(raw.body), JSON.stringify(raw.body));
  assert.ok(raw.body.length <= 1);
});

test('users.list with q=email:"…" (search_engine v3) finds exactly that user', async () => {
  const created = [];
  for (let i = 0; i < 2; i += 1) {
    created.push(await mgmt.users.create({ connection: 'email', email: freshEmail(), email_verified: true }));
  }
  const target = created[1];

  const page = await mgmt.users.list({ q: `email:"${target.email}"`, search_engine: 'v3' });
  assert.deepEqual(page.data.map((u) => u.user_id), [target.user_id]);
  assert.equal(page.data[0].email, target.email);
  assert.equal(page.response.total, 1);

  const none = await mgmt.users.list({ q: `email:"${freshEmail()}"`, search_engine: 'v3' });
  assert.deepEqual(none.data, []);
});

// --- logs ---------------------------------------------------------------------------------

test("users.logs.list has the user's logins ('s'), newest first", async () => {
  const email = freshEmail();
  const { sub } = await login(email);
  await login(email);

  const page = await mgmt.users.logs.list(sub);
  assert.ok(Array.isArray(page.response.logs), JSON.stringify(page.response));
  const logs = page.data;
  for (const entry of logs) {
    assertIsoDate(entry.date, 'date');
    assert.equal(typeof entry.type, 'string');
    assert.equal(typeof entry.client_id, 'string');
    assert.equal(entry.user_id, sub);
  }
  const logins = logs.filter((entry) => entry.type === 's');
  assert.ok(logins.length >= 2, JSON.stringify(logs));
  for (const entry of logins) assert.equal(entry.client_id, WEB_CLIENT_ID);
  for (let i = 1; i < logs.length; i += 1) {
    assert.ok(Date.parse(logs[i - 1].date) >= Date.parse(logs[i].date), 'not newest first');
  }

  // Without include_totals (Auth0's default), the same logs as a bare array.
  const raw = await rawApi(`users/${encodeURIComponent(sub)}/logs`, { token: await m2mToken() });
  assert.equal(raw.status, 200, JSON.stringify(raw.body));
  assert.ok(Array.isArray(raw.body), JSON.stringify(raw.body));
  assert.equal(raw.body.filter((entry) => entry.type === 's').length, logins.length);
});

// --- deleting users -----------------------------------------------------------------------

test('users.delete: 204, then 404, the refresh token is dead, and the address logs in as a new user', async () => {
  const email = freshEmail();
  const first = await login(email);
  const refreshToken = await refresh(first.refreshToken);

  const { rawResponse } = await mgmt.users.delete(first.sub).withRawResponse();
  assert.equal(rawResponse.status, 204);

  await assertManagementError(mgmt.users.get(first.sub), {
    type: Management.NotFoundError,
    ...USER_NOT_FOUND,
  });
  await assertRefreshRefused(refreshToken);
  assert.deepEqual(await mgmt.users.listUsersByEmail({ email }), []);

  const again = await login(email);
  assert.notEqual(again.sub, first.sub);
  assertFreshLoggedInUser(await mgmt.users.get(again.sub), { email, id: again.sub });
});

// --- who may call -------------------------------------------------------------------------

test('a read:users token reads but cannot change: 403 insufficient_scope', async () => {
  const email = freshEmail();
  const created = await mgmt.users.create({ connection: 'email', email, email_verified: true });

  assert.equal((await readonly.users.get(created.user_id)).email, email);
  assert.equal((await readonly.users.listUsersByEmail({ email })).length, 1);

  const forbidden = {
    type: Management.ForbiddenError,
    statusCode: 403,
    error: 'Forbidden',
    message: /^Insufficient scope/,
    errorCode: 'insufficient_scope',
  };
  await assertManagementError(readonly.users.update(created.user_id, { user_metadata: { x: 1 } }), forbidden);
  await assertManagementError(readonly.users.delete(created.user_id), forbidden);
  await assertManagementError(
    readonly.users.create({ connection: 'email', email: freshEmail(), email_verified: true }),
    forbidden,
  );
  // User logs need read:logs, as at Auth0.
  await assertManagementError(readonly.users.logs.list(created.user_id), forbidden);

  // Nothing the refused calls asked for happened.
  const after = await mgmt.users.get(created.user_id);
  assert.deepEqual(after.user_metadata ?? {}, {});
});

test('no token, a garbage token, a tampered one, or a user access token: 401', async () => {
  const none = await rawApi('users');
  assert.equal(none.status, 401, JSON.stringify(none.body));
  assert.equal(none.body.statusCode, 401);
  assert.equal(none.body.error, 'Unauthorized');
  assert.equal(typeof none.body.message, 'string');

  const unauthorized = { type: Management.UnauthorizedError, statusCode: 401, error: 'Unauthorized' };
  await assertManagementError(managementWithToken('garbage').users.get(UNKNOWN_USER_ID), unauthorized);

  // One character of the signature changed: the server must check it, not just decode.
  const token = await m2mToken();
  const [h, p, s] = token.split('.');
  const middle = Math.floor(s.length / 2);
  const flipped = s[middle] === 'A' ? 'B' : 'A';
  const tampered = `${h}.${p}.${s.slice(0, middle)}${flipped}${s.slice(middle + 1)}`;
  await assertManagementError(managementWithToken(tampered).users.get(UNKNOWN_USER_ID), unauthorized);

  // A user's own access token (from a login, for /userinfo) is no Management API token.
  const { accessToken } = await login(freshEmail());
  await assertManagementError(managementWithToken(accessToken).users.get(UNKNOWN_USER_ID), unauthorized);
});

// --- refresh token revocation and logout --------------------------------------------------

test('oauth.revokeRefreshToken: 200, then the refresh token is refused', async () => {
  const { refreshToken: issued } = await login(freshEmail());
  const refreshToken = await refresh(issued);

  const { client } = authClient();
  const res = await client.oauth.revokeRefreshToken({ token: refreshToken });
  assert.equal(res.status, 200);
  await assertRefreshRefused(refreshToken);
});

test('GET /v2/logout: an allowed returnTo is a 302 to it, another is 400, none is 200', async () => {
  const logout = (params) =>
    globalThis.fetch(`${SERVER_URL}/v2/logout?${new URLSearchParams(params)}`, { redirect: 'manual' });

  const allowed = await logout({ client_id: WEB_CLIENT_ID, returnTo: LOGGED_OUT_URL });
  assert.equal(allowed.status, 302);
  assert.equal(allowed.headers.get('location'), LOGGED_OUT_URL);

  const evil = await logout({ client_id: WEB_CLIENT_ID, returnTo: 'https://evil.example/' });
  assert.equal(evil.status, 400);
  assert.equal(evil.headers.get('location'), null);

  const bare = await logout({ client_id: WEB_CLIENT_ID });
  assert.equal(bare.status, 200);
});
