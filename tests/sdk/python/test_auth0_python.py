"""Sesame driven by Auth0's own Python SDK (auth0-python 6.8.0).

Every call to the server goes through the SDK's classes and transport: `Passwordless` for
`/passwordless/start`, `GetToken.passwordless_login` for `/oauth/token`, `Users.userinfo` for
`/userinfo`, and the SDK's `TokenVerifier` + `AsymmetricSignatureVerifier` (which fetches the JWKS
itself) for the id_token. Only the dev mailbox is read directly.

The private_key_jwt clients (`sdk-pkjwt`, RSA; `sdk-pkjwt-ec`, P-256) authenticate with the SDK's
own `client_assertion_signing_key=` / `client_assertion_signing_alg=`: a fresh PyJWT assertion per
call (iss = sub = client_id, aud = https://{domain}/, exp = iat + 180 s, uuid4 jti, no kid).
"""

from __future__ import annotations

import datetime
import re
import uuid

import jwt
import pytest
from auth0.authentication import GetToken, Passwordless, Users
from auth0.authentication.token_verifier import (
    AsymmetricSignatureVerifier,
    TokenVerifier,
)
from auth0.authentication.exceptions import Auth0Error

from support import (
    CLIENT_ASSERTION_TYPE,
    NATIVE_CLIENT_ID,
    PKJWT_EC_CLIENT_ID,
    PKJWT_RSA_CLIENT_ID,
    WEB_CLIENT_ID,
    WEB_CLIENT_SECRET,
    WRONG_EMAIL_CODE,
    WRONG_PHONE_CODE,
    code_of,
    other_code,
    wait_for_message,
)

FULL_SCOPE = "openid profile email"


# --- helpers -------------------------------------------------------------------------------


def passwordless(server, client_id=NATIVE_CLIENT_ID, client_secret=None) -> Passwordless:
    return Passwordless(server.domain, client_id, client_secret=client_secret, protocol="http")


def get_token(server, client_id=NATIVE_CLIENT_ID, client_secret=None) -> GetToken:
    return GetToken(server.domain, client_id, client_secret=client_secret, protocol="http")


def verify_id_token(server, id_token: str, client_id: str) -> dict:
    """Verifies the id_token exactly as an auth0-python app would: RS256 signature against the
    JWKS (looked up by kid), iss == https://{domain}/, aud == client_id, exp/iat integers."""
    verifier = TokenVerifier(
        signature_verifier=AsymmetricSignatureVerifier(server.jwks_url),
        issuer=server.issuer,
        audience=client_id,
        leeway=60,
    )
    return verifier.verify(id_token)


def start_email_and_get_code(server, client: Passwordless, email: str) -> str:
    resp = client.email(email, send="code")
    assert isinstance(resp, dict), resp
    assert resp["email"] == email
    assert resp["email_verified"] is False
    assert isinstance(resp["_id"], str) and resp["_id"], resp
    message = wait_for_message(server, email)
    assert message["to"] == email
    assert message["channel"] == "email"
    return code_of(message)


def start_sms_and_get_code(server, client: Passwordless, phone: str) -> str:
    resp = client.sms(phone)
    assert isinstance(resp, dict), resp
    assert resp["phone_number"] == phone
    assert resp["phone_verified"] is False
    assert "request_language" in resp, resp
    assert isinstance(resp["_id"], str) and resp["_id"], resp
    message = wait_for_message(server, phone)
    assert message["to"] == phone
    assert message["channel"] == "sms"
    return code_of(message)


def assert_token_response(tokens: dict, *, id_token: bool) -> None:
    assert isinstance(tokens, dict), tokens
    assert isinstance(tokens["access_token"], str) and tokens["access_token"]
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["expires_in"] == 86400  # Auth0's default for the OTP exchange (spec 11.2)
    if id_token:
        assert isinstance(tokens.get("id_token"), str), tokens
    else:
        assert "id_token" not in tokens, tokens


def assert_auth0_error(excinfo, status: int, code: str, message: str | None = None) -> None:
    err = excinfo.value
    assert err.status_code == status, f"{err.status_code} {err.error_code} {err.message!r}"
    assert err.error_code == code, f"{err.status_code} {err.error_code} {err.message!r}"
    if message is not None:
        assert err.message == message


# --- email ---------------------------------------------------------------------------------


def test_email_code_login_public_client(server, email):
    code = start_email_and_get_code(server, passwordless(server), email)

    tokens = get_token(server).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)

    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "RS256"
    assert header.get("kid"), header

    claims = verify_id_token(server, tokens["id_token"], NATIVE_CLIENT_ID)
    assert claims["iss"] == server.issuer
    assert claims["aud"] == NATIVE_CLIENT_ID or claims["aud"] == [NATIVE_CLIENT_ID]
    assert claims["sub"].startswith("email|"), claims["sub"]
    assert claims["email"] == email
    assert claims["email_verified"] is True  # the code proved the address
    assert claims["exp"] - claims["iat"] == 36000  # Auth0's default id_token lifetime
    assert "nonce" not in claims

    # The opaque access token works at /userinfo, through the SDK's Users client.
    profile = Users(server.domain, protocol="http").userinfo(tokens["access_token"])
    assert profile["sub"] == claims["sub"]
    assert profile["email"] == email
    assert profile["email_verified"] is True


def test_same_email_logs_in_as_same_user(server, email):
    subs = []
    for n in (1, 2):
        client = passwordless(server)
        client.email(email, send="code")
        code = code_of(wait_for_message(server, email, count=n))
        tokens = get_token(server).passwordless_login(
            username=email, otp=code, realm="email", scope="openid", audience=None
        )
        subs.append(verify_id_token(server, tokens["id_token"], NATIVE_CLIENT_ID)["sub"])
    assert subs[0] == subs[1]


def test_login_without_scope_sends_nulls_and_gets_no_id_token(server, email):
    # auth0-python sends "scope": null and "audience": null; the server must read them as absent.
    code = start_email_and_get_code(server, passwordless(server), email)
    tokens = get_token(server).passwordless_login(
        username=email, otp=code, realm="email", scope=None, audience=None
    )
    assert_token_response(tokens, id_token=False)


def test_unknown_access_token_is_refused_at_userinfo(server):
    with pytest.raises(Auth0Error) as excinfo:
        Users(server.domain, protocol="http").userinfo("not-a-real-token")
    assert excinfo.value.status_code == 401


# --- sms -----------------------------------------------------------------------------------


def test_sms_code_login_public_client(server, phone):
    code = start_sms_and_get_code(server, passwordless(server), phone)

    tokens = get_token(server).passwordless_login(
        username=phone, otp=code, realm="sms", scope="openid profile phone", audience=None
    )
    assert_token_response(tokens, id_token=True)

    claims = verify_id_token(server, tokens["id_token"], NATIVE_CLIENT_ID)
    assert claims["iss"] == server.issuer
    assert claims["sub"].startswith("sms|"), claims["sub"]
    assert claims["phone_number"] == phone
    assert "email" not in claims

    profile = Users(server.domain, protocol="http").userinfo(tokens["access_token"])
    assert profile["sub"] == claims["sub"]
    assert profile["phone_number"] == phone


# --- confidential client -------------------------------------------------------------------


def test_confidential_client_email_login_with_secret(server, email):
    start = passwordless(server, WEB_CLIENT_ID, WEB_CLIENT_SECRET)
    code = start_email_and_get_code(server, start, email)

    tokens = get_token(server, WEB_CLIENT_ID, WEB_CLIENT_SECRET).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)
    claims = verify_id_token(server, tokens["id_token"], WEB_CLIENT_ID)
    assert claims["aud"] == WEB_CLIENT_ID or claims["aud"] == [WEB_CLIENT_ID]
    assert claims["sub"].startswith("email|")
    assert claims["email"] == email


def test_confidential_client_sms_login_with_secret(server, phone):
    start = passwordless(server, WEB_CLIENT_ID, WEB_CLIENT_SECRET)
    code = start_sms_and_get_code(server, start, phone)
    tokens = get_token(server, WEB_CLIENT_ID, WEB_CLIENT_SECRET).passwordless_login(
        username=phone, otp=code, realm="sms", scope="openid phone", audience=None
    )
    claims = verify_id_token(server, tokens["id_token"], WEB_CLIENT_ID)
    assert claims["sub"].startswith("sms|")
    assert claims["phone_number"] == phone


def test_confidential_client_without_secret_is_refused(server, email):
    with pytest.raises(Auth0Error) as excinfo:
        passwordless(server, WEB_CLIENT_ID).email(email, send="code")
    # spec 4.5 (observed on Auth0): 403 unauthorized_client "Client authentication is required"
    assert_auth0_error(excinfo, 403, "unauthorized_client", "Client authentication is required")


def test_confidential_client_with_wrong_secret_is_refused(server, email):
    with pytest.raises(Auth0Error) as excinfo:
        passwordless(server, WEB_CLIENT_ID, "not-the-secret-0123456789").email(email, send="code")
    assert excinfo.value.status_code == 401

    # The token endpoint refuses the wrong secret before looking at the code.
    code = start_email_and_get_code(
        server, passwordless(server, WEB_CLIENT_ID, WEB_CLIENT_SECRET), email
    )
    with pytest.raises(Auth0Error) as excinfo:
        get_token(server, WEB_CLIENT_ID, "not-the-secret-0123456789").passwordless_login(
            username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
        )
    assert_auth0_error(excinfo, 401, "invalid_client")


# --- wrong / reused codes ------------------------------------------------------------------


def test_wrong_email_code_is_invalid_grant(server, email):
    code = start_email_and_get_code(server, passwordless(server), email)
    with pytest.raises(Auth0Error) as excinfo:
        get_token(server).passwordless_login(
            username=email, otp=other_code(code), realm="email", scope=FULL_SCOPE, audience=None
        )
    assert_auth0_error(excinfo, 403, "invalid_grant", WRONG_EMAIL_CODE)
    assert str(excinfo.value) == f"403: {WRONG_EMAIL_CODE}"

    # One wrong try does not burn the code (Auth0 allows 3 attempts).
    tokens = get_token(server).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)


def test_wrong_sms_code_is_invalid_grant(server, phone):
    code = start_sms_and_get_code(server, passwordless(server), phone)
    with pytest.raises(Auth0Error) as excinfo:
        get_token(server).passwordless_login(
            username=phone, otp=other_code(code), realm="sms", scope="openid", audience=None
        )
    assert_auth0_error(excinfo, 403, "invalid_grant", WRONG_PHONE_CODE)


def test_code_for_another_email_is_invalid_grant(server, email):
    code = start_email_and_get_code(server, passwordless(server), email)
    with pytest.raises(Auth0Error) as excinfo:
        get_token(server).passwordless_login(
            username="someone-else-" + email, otp=code, realm="email", scope="openid", audience=None
        )
    assert_auth0_error(excinfo, 403, "invalid_grant", WRONG_EMAIL_CODE)


def test_reused_code_is_rejected(server, email):
    code = start_email_and_get_code(server, passwordless(server), email)
    first = get_token(server).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(first, id_token=True)

    with pytest.raises(Auth0Error) as excinfo:
        get_token(server).passwordless_login(
            username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
        )
    assert_auth0_error(excinfo, 403, "invalid_grant", WRONG_EMAIL_CODE)


def test_new_start_invalidates_the_previous_code(server, email):
    client = passwordless(server)
    client.email(email, send="code")
    old = code_of(wait_for_message(server, email, count=1))
    new = old
    sent = 1
    while new == old and sent < 4:  # two random codes can collide (1 in 10^6): ask again
        client.email(email, send="code")
        sent += 1
        new = code_of(wait_for_message(server, email, count=sent))
    assert new != old

    with pytest.raises(Auth0Error) as excinfo:
        get_token(server).passwordless_login(
            username=email, otp=old, realm="email", scope="openid", audience=None
        )
    assert_auth0_error(excinfo, 403, "invalid_grant", WRONG_EMAIL_CODE)

    tokens = get_token(server).passwordless_login(
        username=email, otp=new, realm="email", scope="openid", audience=None
    )
    assert_token_response(tokens, id_token=True)


# --- start validation through the SDK's own transport --------------------------------------


def start_url(server) -> str:
    return f"http://{server.domain}/passwordless/start"


def test_start_without_email_is_bad_email(server):
    client = passwordless(server)
    with pytest.raises(Auth0Error) as excinfo:
        client.authenticated_post(
            start_url(server),
            data={"client_id": NATIVE_CLIENT_ID, "connection": "email", "send": "code"},
        )
    assert_auth0_error(excinfo, 400, "bad.email", "Missing required property: email")


def test_start_with_malformed_email_is_bad_email(server):
    with pytest.raises(Auth0Error) as excinfo:
        passwordless(server).email("not-an-email", send="code")
    assert_auth0_error(
        excinfo, 400, "bad.email", "error in email - email format validation failed: not-an-email"
    )


def test_start_with_unknown_connection_is_bad_connection(server, email):
    client = passwordless(server)
    with pytest.raises(Auth0Error) as excinfo:
        client.authenticated_post(
            start_url(server),
            data={
                "client_id": NATIVE_CLIENT_ID,
                "connection": "no-such-connection",
                "email": email,
                "send": "code",
            },
        )
    assert_auth0_error(excinfo, 400, "bad.connection", "Connection does not exist")


def test_start_with_malformed_phone_is_bad_phone_number(server):
    with pytest.raises(Auth0Error) as excinfo:
        passwordless(server).sms("0612345678")
    assert_auth0_error(
        excinfo, 400, "bad.phone_number", r"String does not match pattern: ^\+[0-9]{1,15}$"
    )


def test_start_with_unknown_property_is_bad_request(server, email):
    client = passwordless(server)
    with pytest.raises(Auth0Error) as excinfo:
        client.authenticated_post(
            start_url(server),
            data={
                "client_id": NATIVE_CLIENT_ID,
                "connection": "email",
                "email": email,
                "send": "code",
                "colour": "blue",
            },
        )
    assert_auth0_error(
        excinfo, 400, "bad.request", "the following properties are not allowed: colour"
    )


def test_email_start_with_auth_params_is_accepted(server, email):
    # auth_params go out as "authParams"; extra keys in it must be accepted (wire format 0.3).
    resp = passwordless(server).email(
        email,
        send="code",
        auth_params={"scope": "openid email", "state": "xyz", "foo": "bar"},
    )
    assert resp["email"] == email
    assert re.fullmatch(r"\d{6}", code_of(wait_for_message(server, email)))


# --- private_key_jwt -----------------------------------------------------------------------


def pkjwt_passwordless(server, client_id, key, alg=None) -> Passwordless:
    return Passwordless(
        server.domain,
        client_id,
        client_assertion_signing_key=key,
        client_assertion_signing_alg=alg,
        protocol="http",
    )


def pkjwt_get_token(server, client_id, key, alg=None) -> GetToken:
    return GetToken(
        server.domain,
        client_id,
        client_assertion_signing_key=key,
        client_assertion_signing_alg=alg,
        protocol="http",
    )


def client_assertion_like_the_sdk(server, client_id: str, key: str, alg: str = "RS256") -> str:
    """One client assertion built the way auth0-python's create_client_assertion_jwt does."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": f"https://{server.domain}/",
            "iat": now,
            "exp": now + datetime.timedelta(seconds=180),
            "jti": str(uuid.uuid4()),
        },
        key,
        alg,
    )


def test_private_key_jwt_rs256_email_login(server, email, rsa_private_key):
    start = pkjwt_passwordless(server, PKJWT_RSA_CLIENT_ID, rsa_private_key)
    code = start_email_and_get_code(server, start, email)

    tokens = pkjwt_get_token(server, PKJWT_RSA_CLIENT_ID, rsa_private_key).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)
    claims = verify_id_token(server, tokens["id_token"], PKJWT_RSA_CLIENT_ID)
    assert claims["iss"] == server.issuer
    assert claims["aud"] == PKJWT_RSA_CLIENT_ID or claims["aud"] == [PKJWT_RSA_CLIENT_ID]
    assert claims["sub"].startswith("email|"), claims["sub"]
    assert claims["email"] == email
    assert claims["email_verified"] is True

    profile = Users(server.domain, protocol="http").userinfo(tokens["access_token"])
    assert profile["sub"] == claims["sub"]
    assert profile["email"] == email


def test_private_key_jwt_es256_email_login(server, email, ec_private_key):
    start = pkjwt_passwordless(server, PKJWT_EC_CLIENT_ID, ec_private_key, "ES256")
    code = start_email_and_get_code(server, start, email)

    tokens = pkjwt_get_token(server, PKJWT_EC_CLIENT_ID, ec_private_key, "ES256").passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)
    claims = verify_id_token(server, tokens["id_token"], PKJWT_EC_CLIENT_ID)
    assert claims["aud"] == PKJWT_EC_CLIENT_ID or claims["aud"] == [PKJWT_EC_CLIENT_ID]
    assert claims["sub"].startswith("email|"), claims["sub"]
    assert claims["email"] == email


def test_private_key_jwt_replayed_assertion_is_refused(server, email, rsa_private_key):
    assertion = client_assertion_like_the_sdk(server, PKJWT_RSA_CLIENT_ID, rsa_private_key)
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": "RS256", "typ": "JWT"}  # what the SDK sends: no kid

    # No key given to the SDK object: authenticated_post sends the body as is, through the
    # SDK's own transport.
    client = Passwordless(server.domain, PKJWT_RSA_CLIENT_ID, protocol="http")
    body = {
        "client_id": PKJWT_RSA_CLIENT_ID,
        "connection": "email",
        "email": email,
        "send": "code",
        "client_assertion": assertion,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
    }
    first = client.authenticated_post(start_url(server), data=dict(body))
    assert first["email"] == email
    code = code_of(wait_for_message(server, email))

    with pytest.raises(Auth0Error) as excinfo:
        client.authenticated_post(start_url(server), data=dict(body))
    assert_auth0_error(excinfo, 401, "invalid_client", "Invalid client credentials")

    # Single use means single use: the token endpoint refuses the same assertion too.
    token_client = GetToken(server.domain, PKJWT_RSA_CLIENT_ID, protocol="http")
    with pytest.raises(Auth0Error) as excinfo:
        token_client.authenticated_post(
            f"http://{server.domain}/oauth/token",
            data={
                "client_id": PKJWT_RSA_CLIENT_ID,
                "username": email,
                "otp": code,
                "realm": "email",
                "scope": FULL_SCOPE,
                "audience": None,
                "grant_type": "http://auth0.com/oauth/grant-type/passwordless/otp",
                "client_assertion": assertion,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
            },
        )
    assert_auth0_error(excinfo, 401, "invalid_client", "Invalid client credentials")

    # The code was not spent by the refused exchange: a fresh SDK assertion still logs in.
    tokens = pkjwt_get_token(server, PKJWT_RSA_CLIENT_ID, rsa_private_key).passwordless_login(
        username=email, otp=code, realm="email", scope=FULL_SCOPE, audience=None
    )
    assert_token_response(tokens, id_token=True)


def test_private_key_jwt_client_without_assertion_is_refused(server, email):
    with pytest.raises(Auth0Error) as excinfo:
        Passwordless(server.domain, PKJWT_RSA_CLIENT_ID, protocol="http").email(email, send="code")
    assert_auth0_error(excinfo, 403, "unauthorized_client", "Client authentication is required")


def test_private_key_jwt_signed_with_another_key_is_refused(server, email, ec_private_key):
    # The RSA client's assertion signed with the EC client's key.
    with pytest.raises(Auth0Error) as excinfo:
        pkjwt_passwordless(server, PKJWT_RSA_CLIENT_ID, ec_private_key, "ES256").email(
            email, send="code"
        )
    assert_auth0_error(excinfo, 401, "invalid_client")
