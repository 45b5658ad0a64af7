'use strict';
// Sesame driven by Auth0's node SDK: `AuthenticationClient` from `require('auth0/legacy')`
// (npm auth0 7.1.0). node-auth0 refuses to send anything without client authentication, so these
// tests use the confidential client `sdk-web`. Every token response with an id_token is validated
// by the SDK itself (RS256 via the JWKS, iss === https://{domain}/, aud === client_id, exp/iat).

const test = require('node:test');
const assert = require('node:assert/strict');
const { AuthApiError } = require('auth0/legacy');
const {
  ISSUER,
  WEB_CLIENT_ID,
  WRONG_EMAIL_CODE,
  WRONG_PHONE_CODE,
  authClient,
  codeOf,
  decodeJwt,
  freshEmail,
  freshPhone,
  otherCode,
  userInfoClient,
  waitForMessage,
} = require('../support.js');

const OTP_GRANT_SCOPE = 'openid profile email';

async function sendEmailCode(client, email) {
  await client.passwordless.sendEmail({ email, send: 'code' });
  const message = await waitForMessage(email);
  assert.equal(message.to, email);
  assert.equal(message.channel, 'email');
  return codeOf(message);
}

async function sendSmsCode(client, phone) {
  await client.passwordless.sendSMS({ phone_number: phone });
  const message = await waitForMessage(phone);
  assert.equal(message.to, phone);
  assert.equal(message.channel, 'sms');
  return codeOf(message);
}

function assertTokens(data) {
  assert.equal(typeof data.access_token, 'string');
  assert.ok(data.access_token.length > 0);
  assert.equal(data.token_type.toLowerCase(), 'bearer');
  assert.equal(data.expires_in, 86400);
  assert.equal(typeof data.id_token, 'string');
}

/** Checks a rejected promise is the SDK's AuthApiError with exactly these values. */
async function assertAuthApiError(promise, { statusCode, error, description }) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof AuthApiError, `expected AuthApiError, got ${err && err.stack}`);
    assert.equal(err.name, 'AuthApiError');
    assert.equal(err.statusCode, statusCode, `body: ${err.body}`);
    assert.equal(err.error, error, `body: ${err.body}`);
    if (description !== undefined) {
      assert.equal(err.error_description, description);
      assert.equal(err.message, description);
    }
    return true;
  });
}

test('email code login with a confidential client; the SDK validates the id_token', async () => {
  const email = freshEmail();
  const { client, agent } = authClient();
  const code = await sendEmailCode(client, email);

  const res = await client.passwordless.loginWithEmail({ email, code, scope: OTP_GRANT_SCOPE });
  assertTokens(res.data);
  // The SDK validated the id_token, which needs the JWKS, fetched through our agent.
  assert.ok(agent.connections >= 1, 'the SDK never fetched the JWKS');

  const { header, payload } = decodeJwt(res.data.id_token);
  assert.equal(header.alg, 'RS256');
  assert.ok(header.kid, 'id_token header has no kid');
  assert.equal(payload.iss, ISSUER);
  assert.deepEqual([payload.aud].flat(), [WEB_CLIENT_ID]);
  assert.ok(payload.sub.startsWith('email|'), payload.sub);
  assert.equal(payload.email, email);
  assert.equal(payload.email_verified, true);
  assert.equal(payload.exp - payload.iat, 36000);

  const info = await userInfoClient().getUserInfo(res.data.access_token);
  assert.equal(info.data.sub, payload.sub);
  assert.equal(info.data.email, email);
});

test('sms code login with a confidential client', async () => {
  const phone = freshPhone();
  const { client } = authClient();
  const code = await sendSmsCode(client, phone);

  const res = await client.passwordless.loginWithSMS({
    phone_number: phone,
    code,
    scope: 'openid profile phone',
  });
  assertTokens(res.data);
  const { payload } = decodeJwt(res.data.id_token);
  assert.equal(payload.iss, ISSUER);
  assert.deepEqual([payload.aud].flat(), [WEB_CLIENT_ID]);
  assert.ok(payload.sub.startsWith('sms|'), payload.sub);
  assert.equal(payload.phone_number, phone);

  const info = await userInfoClient().getUserInfo(res.data.access_token);
  assert.equal(info.data.sub, payload.sub);
  assert.equal(info.data.phone_number, phone);
});

test('a wrong email code is AuthApiError 403 invalid_grant, and the right code still works', async () => {
  const email = freshEmail();
  const { client } = authClient();
  const code = await sendEmailCode(client, email);

  await assertAuthApiError(
    client.passwordless.loginWithEmail({ email, code: otherCode(code), scope: OTP_GRANT_SCOPE }),
    { statusCode: 403, error: 'invalid_grant', description: WRONG_EMAIL_CODE },
  );

  const res = await client.passwordless.loginWithEmail({ email, code, scope: OTP_GRANT_SCOPE });
  assertTokens(res.data);
});

test('a wrong sms code is AuthApiError 403 invalid_grant', async () => {
  const phone = freshPhone();
  const { client } = authClient();
  const code = await sendSmsCode(client, phone);

  await assertAuthApiError(
    client.passwordless.loginWithSMS({ phone_number: phone, code: otherCode(code), scope: 'openid' }),
    { statusCode: 403, error: 'invalid_grant', description: WRONG_PHONE_CODE },
  );
});

test('a code cannot be used twice', async () => {
  const email = freshEmail();
  const { client } = authClient();
  const code = await sendEmailCode(client, email);

  const first = await client.passwordless.loginWithEmail({ email, code, scope: OTP_GRANT_SCOPE });
  assertTokens(first.data);
  await assertAuthApiError(
    client.passwordless.loginWithEmail({ email, code, scope: OTP_GRANT_SCOPE }),
    { statusCode: 403, error: 'invalid_grant', description: WRONG_EMAIL_CODE },
  );
});

test('a wrong client secret is refused with 401', async () => {
  const { client } = authClient({ clientSecret: 'not-the-secret-0123456789' });
  await assertAuthApiError(client.passwordless.sendEmail({ email: freshEmail(), send: 'code' }), {
    statusCode: 401,
    error: 'invalid_client',
  });
});

test('a custom connection name that does not exist is bad.connection', async () => {
  const { client } = authClient();
  await assertAuthApiError(
    client.passwordless.sendEmail({ email: freshEmail(), send: 'code', connection: 'no-such-connection' }),
    { statusCode: 400, error: 'bad.connection', description: 'Connection does not exist' },
  );
});

test('a malformed email is bad.email', async () => {
  const { client } = authClient();
  await assertAuthApiError(client.passwordless.sendEmail({ email: 'not-an-email', send: 'code' }), {
    statusCode: 400,
    error: 'bad.email',
    description: 'error in email - email format validation failed: not-an-email',
  });
});

test('login without a scope returns no id_token (nothing for the SDK to validate)', async () => {
  const email = freshEmail();
  const { client, agent } = authClient();
  const code = await sendEmailCode(client, email);
  const res = await client.passwordless.loginWithEmail({ email, code });
  assert.equal(typeof res.data.access_token, 'string');
  assert.equal(res.data.id_token, undefined);
  assert.equal(agent.connections, 0);
});
