"""Sesame's Management API (users) driven by auth0-python 6.8.0.

The token comes from the SDK's own `GetToken.client_credentials` (JSON body, client_secret in
it, `"organization": null`), and every Management API call goes through the SDK's
`auth0.management.ManagementClient` (Fern-generated since auth0-python 5): `users.get / update /
delete / create / list / list_users_by_email` and `users.logs.list`, with the SDK's pydantic
models and error classes.

`ManagementClient(domain=..., token=...)` builds `https://{domain}/api/v2` and has no protocol
option; its documented `httpx_client=` takes a client whose transport sends the same requests over
plain http (`PlainHttpTransport`). Logins, refresh and revocation use the authentication classes
with their `protocol="http"`, as in test_auth0_python.py.

Every test makes its own users; nothing depends on how many users the server holds.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import urllib.parse
from datetime import datetime

import httpx
import jwt
import pytest
from auth0.authentication import GetToken, Passwordless, RevokeToken, Users
from auth0.authentication.exceptions import Auth0Error
from auth0.management import ManagementClient
from auth0.management.core.api_error import ApiError
from auth0.management.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    UnauthorizedError,
)

from support import WEB_CLIENT_ID, WEB_CLIENT_SECRET, code_of, mailbox, wait_for_message

M2M_CLIENT_ID = "sdk-m2m"
M2M_CLIENT_SECRET = "sdk-m2m-secret-0123456789"
READONLY_CLIENT_ID = "sdk-m2m-readonly"
READONLY_CLIENT_SECRET = "sdk-m2m-readonly-secret-0123"
M2M_SCOPES = {
    "read:users",
    "update:users",
    "delete:users",
    "create:users",
    "read:users_app_metadata",
    "update:users_app_metadata",
    "read:logs",
}
UNKNOWN_USER_ID = "email|000000000000000000000000"
LOGGED_OUT_URL = "http://localhost:3000/logged-out"
LOGIN_SCOPE = "openid offline_access"
# Auth0's 404 for a user id it does not know.
USER_NOT_FOUND = {
    "statusCode": 404,
    "error": "Not Found",
    "message": "The user does not exist.",
    "errorCode": "inexistent_user",
}
# What Auth0 writes: 2024-01-02T03:04:05.678Z.
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


# --- clients -------------------------------------------------------------------------------


class PlainHttpTransport(httpx.HTTPTransport):
    """Sends the SDK's https://{domain}/... requests to the same host and port over plain http."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http")
        return super().handle_request(request)


def management(server, token: str) -> ManagementClient:
    return ManagementClient(
        domain=server.domain,
        token=token,
        httpx_client=httpx.Client(transport=PlainHttpTransport(), timeout=10.0),
    )


def client_credentials(server, client_id=M2M_CLIENT_ID, client_secret=M2M_CLIENT_SECRET, **kw):
    token = GetToken(server.domain, client_id, client_secret=client_secret, protocol="http")
    return token.client_credentials(**kw)


def audience(server) -> str:
    return f"{server.issuer}api/v2/"


@pytest.fixture(scope="module")
def m2m_token(server) -> str:
    return client_credentials(server, audience=audience(server))["access_token"]


@pytest.fixture(scope="module")
def mgmt(server, m2m_token) -> ManagementClient:
    return management(server, m2m_token)


@pytest.fixture(scope="module")
def readonly(server) -> ManagementClient:
    tokens = client_credentials(
        server, READONLY_CLIENT_ID, READONLY_CLIENT_SECRET, audience=audience(server)
    )
    return management(server, tokens["access_token"])


def fresh_email() -> str:
    return f"mgmt-py-{secrets.token_hex(6)}@example.com"


# --- logins --------------------------------------------------------------------------------


def login(server, email: str) -> dict:
    """A passwordless email login with sdk-web asking for a refresh token; the tokens plus `sub`."""
    before = len(mailbox(server, email))
    Passwordless(
        server.domain, WEB_CLIENT_ID, client_secret=WEB_CLIENT_SECRET, protocol="http"
    ).email(email, send="code")
    code = code_of(wait_for_message(server, email, count=before + 1))
    tokens = web_token(server).passwordless_login(
        username=email, otp=code, realm="email", scope=LOGIN_SCOPE, audience=None
    )
    assert isinstance(tokens.get("refresh_token"), str), f"offline_access gave no refresh token: {tokens}"
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    return {**tokens, "sub": claims["sub"]}


def web_token(server) -> GetToken:
    return GetToken(server.domain, WEB_CLIENT_ID, client_secret=WEB_CLIENT_SECRET, protocol="http")


def refresh(server, refresh_token: str) -> str:
    """The refresh token grant (the SDK sends "scope": ""); the refresh token to use next."""
    tokens = web_token(server).refresh_token(refresh_token)
    assert isinstance(tokens["access_token"], str), tokens
    return tokens.get("refresh_token", refresh_token)


def refresh_refused(server, refresh_token: str) -> Auth0Error:
    with pytest.raises(Auth0Error) as excinfo:
        web_token(server).refresh_token(refresh_token)
    return excinfo.value


# --- raw HTTP, for what the SDK hides ------------------------------------------------------


def raw(server, path: str, token: str | None = None, method: str = "GET"):
    """(status, headers, parsed JSON or text) of one plain request, redirects not followed."""
    parsed = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return resp.status, dict(resp.getheaders()), body
    finally:
        conn.close()


# --- assertions ----------------------------------------------------------------------------


def assert_api_error(excinfo, cls, status, *, error=None, message=None, error_code=None):
    """The SDK's error class and status, and Auth0's error body as the SDK parsed it."""
    err = excinfo.value
    assert isinstance(err, cls), repr(err)
    assert err.status_code == status, str(err)
    assert isinstance(err.body, dict), f"the error body was not JSON: {err.body!r}"
    assert err.body.get("statusCode") == status, err.body
    if error is not None:
        assert err.body.get("error") == error, err.body
    if error_code is not None:
        assert err.body.get("errorCode") == error_code, err.body
    if isinstance(message, re.Pattern):
        assert message.match(err.body.get("message", "")), err.body
    elif message is not None:
        assert err.body.get("message") == message, err.body


def assert_user_not_found(excinfo):
    assert_api_error(
        excinfo,
        NotFoundError,
        404,
        error=USER_NOT_FOUND["error"],
        message=USER_NOT_FOUND["message"],
        error_code=USER_NOT_FOUND["errorCode"],
    )


def local_id(user_id: str) -> str:
    assert user_id.startswith("email|"), user_id
    return user_id[len("email|") :]


def assert_email_user(user, email: str, user_id: str | None = None) -> None:
    """Auth0's shape of a passwordless email user, read through the SDK's model."""
    assert user.user_id.startswith("email|"), user.user_id
    if user_id is not None:
        assert user.user_id == user_id
    assert user.email == email
    assert user.email_verified is True
    assert len(user.identities) == 1, user.identities
    identity = user.identities[0]
    assert identity.connection == "email"
    assert identity.provider == "email"
    assert identity.user_id == local_id(user.user_id)
    assert identity.is_social is False
    assert isinstance(user.created_at, datetime)
    assert isinstance(user.updated_at, datetime)


def assert_fresh_logged_in_user(user, email: str, user_id: str) -> None:
    """A user right after their first login, nothing changed by the Management API yet."""
    assert_email_user(user, email, user_id)
    assert user.logins_count == 1
    assert isinstance(user.last_login, datetime)
    assert user.created_at <= user.last_login
    assert user.user_metadata == {}
    assert user.app_metadata == {}
    assert user.blocked is False
    # Auth0's defaults for a passwordless email user.
    assert user.name == email
    assert user.nickname == email.split("@")[0]


def assert_iso_date(value, what: str) -> None:
    assert isinstance(value, str), f"{what} is {value!r}"
    assert ISO_DATE.fullmatch(value), f"{what} is {value!r}"


# --- client_credentials --------------------------------------------------------------------


def test_client_credentials_token_is_a_jwt_for_the_client_with_its_scopes(server):
    aud = audience(server)
    tokens = client_credentials(server, audience=aud)
    assert tokens["token_type"] == "Bearer"
    assert isinstance(tokens["expires_in"], int) and tokens["expires_in"] > 0, tokens
    assert "id_token" not in tokens and "refresh_token" not in tokens, tokens

    access_token = tokens["access_token"]
    assert jwt.get_unverified_header(access_token)["alg"] == "RS256"
    key = jwt.PyJWKClient(server.jwks_url).get_signing_key_from_jwt(access_token).key
    # Signature, exp, iss and aud, checked by PyJWT.
    claims = jwt.decode(access_token, key, algorithms=["RS256"], audience=aud, issuer=server.issuer)
    assert claims["sub"] == f"{M2M_CLIENT_ID}@clients"
    assert claims["gty"] == "client-credentials"
    assert claims["aud"] == aud or claims["aud"] == [aud]
    # No scope asked: the token carries all the client was granted for this API.
    assert set(claims["scope"].split()) == M2M_SCOPES
    assert claims["exp"] - claims["iat"] == tokens["expires_in"]


def test_client_credentials_for_an_unregistered_audience_is_access_denied(server):
    with pytest.raises(Auth0Error) as excinfo:
        client_credentials(server, audience="https://api.unregistered.example/")
    assert excinfo.value.status_code == 403, str(excinfo.value)
    assert excinfo.value.error_code == "access_denied"


def test_scopes_not_granted_are_dropped(server):
    # GetToken.client_credentials has no scope argument; authenticated_post is its own transport.
    token = GetToken(
        server.domain, READONLY_CLIENT_ID, client_secret=READONLY_CLIENT_SECRET, protocol="http"
    )
    tokens = token.authenticated_post(
        f"http://{server.domain}/oauth/token",
        data={
            "client_id": READONLY_CLIENT_ID,
            "audience": audience(server),
            "grant_type": "client_credentials",
            "scope": "read:users delete:users",
        },
    )
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == f"{READONLY_CLIENT_ID}@clients"
    assert claims["scope"] == "read:users"
    if "scope" in tokens:
        assert tokens["scope"] == "read:users"


# --- reading users -------------------------------------------------------------------------


def test_users_by_email_finds_a_user_who_logged_in(server, mgmt, m2m_token):
    email = fresh_email()
    sub = login(server, email)["sub"]
    assert sub.startswith("email|"), sub

    users = mgmt.users.list_users_by_email(email=email)
    assert len(users) == 1, users
    assert_fresh_logged_in_user(users[0], email, sub)

    # The JSON itself: dates as ISO strings, the identity's `isSocial` spelled Auth0's way.
    query = urllib.parse.urlencode({"email": email})
    status, _, body = raw(server, f"/api/v2/users-by-email?{query}", m2m_token)
    assert status == 200, body
    assert isinstance(body, list) and len(body) == 1, body
    user = body[0]
    for field in ("created_at", "updated_at", "last_login"):
        assert_iso_date(user[field], field)
    assert user["identities"] == [
        {"connection": "email", "provider": "email", "user_id": local_id(sub), "isSocial": False}
    ]
    assert user["user_metadata"] == {} and user["app_metadata"] == {}
    assert user["blocked"] is False


def test_users_get_gives_the_same_user_and_404_for_an_unknown_id(server, mgmt):
    email = fresh_email()
    sub = login(server, email)["sub"]

    [by_email] = mgmt.users.list_users_by_email(email=email)
    user = mgmt.users.get(sub)
    assert_fresh_logged_in_user(user, email, sub)
    assert user.dict() == by_email.dict()

    with pytest.raises(NotFoundError) as excinfo:
        mgmt.users.get(UNKNOWN_USER_ID)
    assert_user_not_found(excinfo)


# --- updating users ------------------------------------------------------------------------


def test_update_merges_metadata_at_the_root_and_userinfo_shows_it(server, mgmt):
    email = fresh_email()
    session = login(server, email)
    sub = session["sub"]

    user = mgmt.users.update(sub, user_metadata={"a": 1, "nested": {"x": 1}})
    assert user.user_metadata == {"a": 1, "nested": {"x": 1}}
    # A root-level key merges in; a nested object is replaced whole.
    user = mgmt.users.update(sub, user_metadata={"b": 2, "nested": {"y": 2}})
    assert user.user_metadata == {"a": 1, "b": 2, "nested": {"y": 2}}
    user = mgmt.users.update(sub, user_metadata={"a": None})
    assert user.user_metadata == {"b": 2, "nested": {"y": 2}}

    user = mgmt.users.update(sub, app_metadata={"plan": "pro"})
    assert user.app_metadata == {"plan": "pro"}
    user = mgmt.users.update(sub, app_metadata={"tier": 2})
    assert user.app_metadata == {"plan": "pro", "tier": 2}
    user = mgmt.users.update(sub, app_metadata={"plan": None})
    assert user.app_metadata == {"tier": 2}
    assert user.user_metadata == {"b": 2, "nested": {"y": 2}}, "app_metadata changed user_metadata"

    user = mgmt.users.update(sub, name="Jane", nickname="jj", picture="https://example.com/p.png")
    assert (user.name, user.nickname, user.picture) == ("Jane", "jj", "https://example.com/p.png")
    assert user.email == email
    assert user.user_metadata == {"b": 2, "nested": {"y": 2}}, "a profile change touched metadata"

    # What PATCH answered is what is stored.
    stored = mgmt.users.get(sub)
    assert (stored.name, stored.nickname, stored.picture) == ("Jane", "jj", "https://example.com/p.png")
    assert stored.user_metadata == {"b": 2, "nested": {"y": 2}}
    assert stored.app_metadata == {"tier": 2}
    assert stored.updated_at >= stored.created_at

    # The user's own token from the login sees the current metadata at /userinfo.
    profile = Users(server.domain, protocol="http").userinfo(session["access_token"])
    assert profile["sub"] == sub
    assert profile["user_metadata"] == {"b": 2, "nested": {"y": 2}}
    assert profile["app_metadata"] == {"tier": 2}


def test_blocked_user_cannot_start_nor_refresh_and_logs_in_again_once_unblocked(server, mgmt):
    email = fresh_email()
    first = login(server, email)
    # The refresh token works before the block, so its refusal below is the block's doing.
    refresh_token = refresh(server, first["refresh_token"])

    assert mgmt.users.update(first["sub"], blocked=True).blocked is True
    assert mgmt.users.get(first["sub"]).blocked is True

    with pytest.raises(Auth0Error) as excinfo:
        Passwordless(
            server.domain, WEB_CLIENT_ID, client_secret=WEB_CLIENT_SECRET, protocol="http"
        ).email(email, send="code")
    err = excinfo.value
    assert (err.status_code, err.error_code, err.message) == (401, "unauthorized", "user is blocked")

    # Auth0 answers 403 invalid_grant or 401 unauthorized "user is blocked"; either way it fails.
    assert refresh_refused(server, refresh_token).status_code in (401, 403)

    assert mgmt.users.update(first["sub"], blocked=False).blocked is False
    again = login(server, email)
    assert again["sub"] == first["sub"]
    # The refused start sent nothing: one code per successful start.
    assert len(mailbox(server, email)) == 2


# --- creating and listing users ------------------------------------------------------------


def test_create_makes_an_email_user_whose_login_keeps_its_id_and_a_second_create_is_409(
    server, mgmt
):
    email = fresh_email()
    response = mgmt.users.with_raw_response.create(
        connection="email", email=email, email_verified=True
    )
    assert response.status_code == 201
    created = response.data
    assert_email_user(created, email)
    assert [u.user_id for u in mgmt.users.list_users_by_email(email=email)] == [created.user_id]

    # The SDK retries a 409 twice (about 3 s) before raising it, as an app would see it.
    with pytest.raises(ConflictError) as excinfo:
        mgmt.users.create(connection="email", email=email, email_verified=True)
    assert_api_error(excinfo, ConflictError, 409)
    assert len(mgmt.users.list_users_by_email(email=email)) == 1

    sub = login(server, email)["sub"]
    assert sub == created.user_id
    assert mgmt.users.get(sub).logins_count == 1


def test_list_with_per_page_2_and_totals_pages_through_every_user_once(server, mgmt, m2m_token):
    created = [
        mgmt.users.create(connection="email", email=fresh_email(), email_verified=True)
        for _ in range(3)
    ]
    ids = {u.user_id for u in created}

    pager = mgmt.users.list(page=0, per_page=2, include_totals=True)
    first = pager.response
    assert (first.start, first.limit) == (0, 2)
    assert first.total >= len(created), first

    listed: list[str] = []
    for index, page in enumerate(pager.iter_pages()):
        assert index < 10000, "the pages never end"
        r = page.response
        assert (r.start, r.limit, r.length) == (index * 2, 2, len(page.items)), r
        assert len(page.items) <= 2
        assert r.total == first.total, "the total changed while paging"
        listed.extend(user.user_id for user in page.items)
    assert {user_id: listed.count(user_id) for user_id in ids} == {user_id: 1 for user_id in ids}
    # pytest runs one test at a time and the node suite runs after this one, so nobody else
    # creates users meanwhile: the pages hold every user exactly once.
    assert len(listed) == len(set(listed)), "a user was listed twice"
    assert len(listed) == first.total

    # Without include_totals Auth0 answers a bare array.
    status, _, body = raw(server, "/api/v2/users?per_page=1", m2m_token)
    assert status == 200, body
    assert isinstance(body, list) and len(body) <= 1, body


def test_list_with_an_email_query_finds_exactly_that_user(server, mgmt):
    created = [
        mgmt.users.create(connection="email", email=fresh_email(), email_verified=True)
        for _ in range(2)
    ]
    target = created[1]

    pager = mgmt.users.list(q=f'email:"{target.email}"', search_engine="v3")
    assert [u.user_id for u in pager.items] == [target.user_id]
    assert pager.items[0].email == target.email
    assert pager.response.total == 1

    nobody = mgmt.users.list(q=f'email:"{fresh_email()}"', search_engine="v3")
    assert nobody.items == []


# --- logs ----------------------------------------------------------------------------------


def test_user_logs_have_the_logins_newest_first(server, mgmt, m2m_token):
    email = fresh_email()
    sub = login(server, email)["sub"]
    login(server, email)

    pager = mgmt.users.logs.list(sub)
    assert isinstance(pager.response.logs, list), pager.response
    logs = pager.items
    for entry in logs:
        assert_iso_date(entry.date, "date")
        assert isinstance(entry.type, str)
        assert isinstance(entry.client_id, str)
        assert entry.user_id == sub
    logins = [entry for entry in logs if entry.type == "s"]
    assert len(logins) >= 2, logs
    assert all(entry.client_id == WEB_CLIENT_ID for entry in logins), logins
    dates = [datetime.fromisoformat(entry.date) for entry in logs]
    assert dates == sorted(dates, reverse=True), "not newest first"

    # Without include_totals (Auth0's default), the same logs as a bare array.
    status, _, body = raw(server, f"/api/v2/users/{urllib.parse.quote(sub, safe='')}/logs", m2m_token)
    assert status == 200, body
    assert isinstance(body, list), body
    assert len([entry for entry in body if entry["type"] == "s"]) == len(logins)


# --- deleting users ------------------------------------------------------------------------


def test_delete_then_404_dead_refresh_token_and_a_new_user_on_next_login(server, mgmt):
    email = fresh_email()
    first = login(server, email)
    refresh_token = refresh(server, first["refresh_token"])

    assert mgmt.users.with_raw_response.delete(first["sub"]).status_code == 204

    with pytest.raises(NotFoundError) as excinfo:
        mgmt.users.get(first["sub"])
    assert_user_not_found(excinfo)
    err = refresh_refused(server, refresh_token)
    assert (err.status_code, err.error_code) == (403, "invalid_grant")
    assert mgmt.users.list_users_by_email(email=email) == []

    again = login(server, email)
    assert again["sub"] != first["sub"]
    assert_fresh_logged_in_user(mgmt.users.get(again["sub"]), email, again["sub"])


# --- who may call --------------------------------------------------------------------------


FORBIDDEN = dict(error="Forbidden", message=re.compile(r"Insufficient scope"), error_code="insufficient_scope")


def test_read_only_token_reads_but_cannot_change(server, mgmt, readonly):
    email = fresh_email()
    created = mgmt.users.create(connection="email", email=email, email_verified=True)

    assert readonly.users.get(created.user_id).email == email
    assert len(readonly.users.list_users_by_email(email=email)) == 1

    with pytest.raises(ForbiddenError) as excinfo:
        readonly.users.update(created.user_id, user_metadata={"x": 1})
    assert_api_error(excinfo, ForbiddenError, 403, **FORBIDDEN)
    with pytest.raises(ForbiddenError) as excinfo:
        readonly.users.delete(created.user_id)
    assert_api_error(excinfo, ForbiddenError, 403, **FORBIDDEN)
    with pytest.raises(ForbiddenError) as excinfo:
        readonly.users.create(connection="email", email=fresh_email(), email_verified=True)
    assert_api_error(excinfo, ForbiddenError, 403, **FORBIDDEN)
    # User logs need read:logs, as at Auth0.
    with pytest.raises(ForbiddenError) as excinfo:
        readonly.users.logs.list(created.user_id)
    assert_api_error(excinfo, ForbiddenError, 403, **FORBIDDEN)

    # Nothing the refused calls asked for happened.
    assert (mgmt.users.get(created.user_id).user_metadata or {}) == {}


def test_missing_garbage_tampered_or_user_tokens_are_401(server, m2m_token):
    status, _, body = raw(server, "/api/v2/users")
    assert status == 401, body
    assert isinstance(body, dict), body
    assert body["statusCode"] == 401
    assert body["error"] == "Unauthorized"
    assert isinstance(body.get("message"), str)

    def refused(token: str) -> None:
        with pytest.raises(ApiError) as excinfo:
            management(server, token).users.get(UNKNOWN_USER_ID)
        assert_api_error(excinfo, UnauthorizedError, 401, error="Unauthorized")

    refused("garbage")

    # One character of the signature changed: the server must check it, not just decode.
    header, payload, signature = m2m_token.split(".")
    middle = len(signature) // 2
    flipped = "B" if signature[middle] == "A" else "A"
    refused(f"{header}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1:]}")

    # A user's own access token (from a login, for /userinfo) is no Management API token.
    refused(login(server, fresh_email())["access_token"])


# --- refresh token revocation and logout ---------------------------------------------------


def test_revoked_refresh_token_is_refused(server):
    refresh_token = refresh(server, login(server, fresh_email())["refresh_token"])

    # The SDK raises for any error status; a 2xx comes back as its (empty) content.
    RevokeToken(
        server.domain, WEB_CLIENT_ID, client_secret=WEB_CLIENT_SECRET, protocol="http"
    ).revoke_refresh_token(refresh_token)
    err = refresh_refused(server, refresh_token)
    assert (err.status_code, err.error_code) == (403, "invalid_grant")


def test_logout_redirects_only_to_an_allowed_return_to(server):
    def logout(**params):
        return raw(server, f"/v2/logout?{urllib.parse.urlencode(params)}")

    status, headers, _ = logout(client_id=WEB_CLIENT_ID, returnTo=LOGGED_OUT_URL)
    assert status == 302
    assert {k.lower(): v for k, v in headers.items()}.get("location") == LOGGED_OUT_URL

    status, headers, _ = logout(client_id=WEB_CLIENT_ID, returnTo="https://evil.example/")
    assert status == 400
    assert "location" not in {k.lower() for k in headers}

    status, _, _ = logout(client_id=WEB_CLIENT_ID)
    assert status == 200
