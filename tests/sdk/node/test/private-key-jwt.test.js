'use strict';
// private_key_jwt with Auth0's node SDK: `AuthenticationClient` from `require('auth0/legacy')`
// (npm auth0 7.1.0) given `clientAssertionSigningKey` (PKCS#8 PEM) instead of a secret. The SDK
// signs a fresh assertion per request (header {"alg":"RS256"} by default, iss = sub = client_id,
// aud = https://{domain}/, exp = iat + 120 s, uuid v4 jti) and validates the id_token itself.

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  ISSUER,
  PKJWT_EC_CLIENT_ID,
  PKJWT_RSA_CLIENT_ID,
  codeOf,
  decodeJwt,
  freshEmail,
  pkjwtPrivateKey,
  privateKeyJwtAuthClient,
  userInfoClient,
  waitForMessage,
} = require('../support.js');

const OTP_GRANT_SCOPE = 'openid profile email';

async function emailLogin({ clientId, signingKey, signingAlg }) {
  const email = freshEmail();
  const { client, agent } = privateKeyJwtAuthClient({ clientId, signingKey, signingAlg });

  await client.passwordless.sendEmail({ email, send: 'code' });
  const message = await waitForMessage(email);
  assert.equal(message.to, email);
  assert.equal(message.channel, 'email');
  const code = codeOf(message);

  const res = await client.passwordless.loginWithEmail({ email, code, scope: OTP_GRANT_SCOPE });
  assert.equal(typeof res.data.access_token, 'string');
  assert.ok(res.data.access_token.length > 0);
  assert.equal(res.data.token_type.toLowerCase(), 'bearer');
  assert.equal(res.data.expires_in, 86400);
  assert.equal(typeof res.data.id_token, 'string');
  // The SDK validated the id_token, which needs the JWKS, fetched through our agent.
  assert.ok(agent.connections >= 1, 'the SDK never fetched the JWKS');

  const { header, payload } = decodeJwt(res.data.id_token);
  assert.equal(header.alg, 'RS256');
  assert.equal(payload.iss, ISSUER);
  assert.deepEqual([payload.aud].flat(), [clientId]);
  assert.ok(payload.sub.startsWith('email|'), payload.sub);
  assert.equal(payload.email, email);
  assert.equal(payload.email_verified, true);

  const info = await userInfoClient().getUserInfo(res.data.access_token);
  assert.equal(info.data.sub, payload.sub);
  assert.equal(info.data.email, email);
}

test('private_key_jwt (RS256, the default): email code login, the SDK validates the id_token', async () => {
  await emailLogin({ clientId: PKJWT_RSA_CLIENT_ID, signingKey: pkjwtPrivateKey('rsa') });
});

test('private_key_jwt with clientAssertionSigningAlg ES256: email code login', async () => {
  await emailLogin({
    clientId: PKJWT_EC_CLIENT_ID,
    signingKey: pkjwtPrivateKey('ec'),
    signingAlg: 'ES256',
  });
});
