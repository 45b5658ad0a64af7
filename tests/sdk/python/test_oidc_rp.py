"""Relying parties of the hosted login page behind GET /authorize.

- The ALB's `authenticate-oidc` action, step by step as AWS documents it: the authorization code
  flow with a client secret (`client_secret_post` and `client_secret_basic`), `scope=openid`
  (and `openid email`), the token call, the userinfo call, and the claims the ALB forwards to the
  app (`x-amzn-oidc-identity` is userinfo's `sub`, `x-amzn-oidc-data` carries userinfo's claims).
- authlib (PyPI), a standard OIDC relying-party library nobody here wrote: discovery, the
  authorization code flow with PKCE, the token call, userinfo, and id_token verification against
  the JWKS (signature, iss, aud, exp, nonce, at_hash when present).

The person in the middle is played by `HostedPage`: it reads the page's forms and posts them as a
browser does, keeping the cookies itself (the issuer is https while the test server listens on
plain http, so a standard jar would drop the `Secure` cookies). TLS is terminated in front of
Sesame in production; here the discovery document's https endpoints are rewritten to the plain
http address the server listens on, as that proxy would.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
import urllib.parse

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken

from support import Server, mailbox, wait_for_message

ALB_CALLBACK = "https://alb.example.com/oauth2/idpresponse"
AUTHLIB_CALLBACK = "http://127.0.0.1:5000/auth/callback"


class HostedPage:
    """One browser on the hosted login page."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.http = requests.Session()

    def _keep(self, resp: requests.Response) -> None:
        for raw in resp.raw.headers.getlist("Set-Cookie"):
            pair, _, attrs = raw.partition(";")
            name, _, value = pair.partition("=")
            assert "HttpOnly" in attrs and "SameSite=Lax" in attrs, raw
            if "Max-Age=0" in attrs:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def _send(self, method: str, url: str, **kw) -> requests.Response:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        resp = self.http.request(method, url, headers=headers, allow_redirects=False, timeout=10, **kw)
        self._keep(resp)
        return resp

    @staticmethod
    def form(page: str, action: str) -> dict[str, str]:
        m = re.search(rf'<form method="post" action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
        assert m, f"no form for {action} in {page[:2000]}"
        fields = {}
        for inp in re.findall(r"<input[^>]*>", m.group(1)):
            name = re.search(r'name="([^"]*)"', inp)
            value = re.search(r'value="([^"]*)"', inp)
            if name and value:
                fields[html.unescape(name.group(1))] = html.unescape(value.group(1))
        return fields

    def login(self, authorize_url: str, email: str) -> str:
        """Follows `authorize_url` through the page with a code mailed to `email`; returns where
        the browser is sent back to (the relying party's callback, with `code` and `state`)."""
        local = authorize_url.replace(self.server.issuer, f"{self.server.url}/", 1)
        sent_before = len(mailbox(self.server, email))
        first = self._send("GET", local)
        assert first.status_code == 200, first.text
        start = self.form(first.text, "/u/start") | {"identifier": email}
        code_page = self._send("POST", f"{self.server.url}/u/start", data=start)
        assert code_page.status_code == 200, code_page.text
        # A link email: its random link may hold six digits in a row, so the code is the one the
        # mailbox read from the text's own line (not `code_of`, made for code-only messages).
        code = wait_for_message(self.server, email, count=sent_before + 1)["code"]
        assert code and code.isdigit(), code
        verify = self.form(code_page.text, "/u/verify") | {"code": code}
        done = self._send("POST", f"{self.server.url}/u/verify", data=verify)
        assert done.status_code == 302, done.text
        return done.headers["location"]


def local(server: Server, url: str) -> str:
    return url.replace(server.issuer, f"{server.url}/", 1)


@pytest.fixture(scope="module")
def discovery(server: Server) -> dict:
    doc = requests.get(f"{server.url}/.well-known/openid-configuration", timeout=5).json()
    assert doc["issuer"] == server.issuer
    return doc


@pytest.mark.parametrize("client_id,secret,auth", [
    ("rp-alb-post", "rp-alb-post-secret-0123456789", "client_secret_post"),
    ("rp-alb-basic", "rp-alb-basic-secret-0123456789", "client_secret_basic"),
])
@pytest.mark.parametrize("scope", ["openid", "openid email"])
def test_the_alb_authenticate_oidc_flow(server: Server, discovery: dict, email: str, client_id: str, secret: str,
                                        auth: str, scope: str) -> None:
    assert auth in discovery["token_endpoint_auth_methods_supported"]
    state = secrets.token_urlsafe(16)
    nonce = secrets.token_urlsafe(16)
    # The ALB's redirect: response_type=code, its client_id, its scope, state and nonce, its
    # /oauth2/idpresponse callback (no PKCE: a confidential client).
    query = urllib.parse.urlencode({
        "response_type": "code", "client_id": client_id, "scope": scope, "state": state, "nonce": nonce,
        "redirect_uri": ALB_CALLBACK,
    })
    back = HostedPage(server).login(f"{discovery['authorization_endpoint']}?{query}", email)
    assert back.startswith(ALB_CALLBACK + "?"), back
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
    assert params["state"] == state

    # The token call, with the secret where this client's setting puts it.
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": ALB_CALLBACK}
    if auth == "client_secret_post":
        token = requests.post(local(server, discovery["token_endpoint"]),
                              data=form | {"client_id": client_id, "client_secret": secret}, timeout=5)
    else:
        token = requests.post(local(server, discovery["token_endpoint"]), data=form, auth=(client_id, secret), timeout=5)
    assert token.status_code == 200, token.text
    tokens = token.json()
    assert tokens["token_type"] == "Bearer" and tokens["id_token"] and tokens["access_token"]
    claims = jwt.decode(tokens["id_token"], JsonWebKey.import_key_set(
        requests.get(local(server, discovery["jwks_uri"]), timeout=5).json()))
    claims.validate()
    assert claims["iss"] == server.issuer and claims["aud"] == client_id and claims["nonce"] == nonce

    # The userinfo call; what the ALB forwards: x-amzn-oidc-identity = sub, x-amzn-oidc-data =
    # userinfo's claims (signed by the ALB), x-amzn-oidc-accesstoken = the access token.
    info = requests.get(local(server, discovery["userinfo_endpoint"]),
                        headers={"authorization": f"Bearer {tokens['access_token']}"}, timeout=5)
    assert info.status_code == 200, info.text
    user = info.json()
    assert user["sub"] == claims["sub"]
    if "email" in scope.split():
        assert user["email"] == email and user["email_verified"] is True
    else:
        assert "email" not in user, user

    # A wrong secret is refused the way the ALB reports it (401 invalid_client).
    bad = requests.post(local(server, discovery["token_endpoint"]), data=form, auth=(client_id, "wrong-secret-0123456789"), timeout=5)
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client", bad.text


def test_authlib_discovery_pkce_token_userinfo_and_id_token_verification(server: Server, discovery: dict,
                                                                         email: str) -> None:
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
        assert discovery[key].startswith(server.issuer), key
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert "code" in discovery["response_types_supported"]
    client = OAuth2Session(
        client_id="rp-authlib",
        scope="openid email",
        redirect_uri=AUTHLIB_CALLBACK,
        token_endpoint_auth_method="none",
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(discovery["authorization_endpoint"], nonce=nonce,
                                                 code_verifier=verifier)
    assert "code_challenge=" in url and "code_challenge_method=S256" in url

    back = HostedPage(server).login(url, email)
    assert back.startswith(AUTHLIB_CALLBACK + "?"), back
    token = client.fetch_token(local(server, discovery["token_endpoint"]), authorization_response=back,
                               code_verifier=verifier, state=state)
    assert token["token_type"].lower() == "bearer"

    jwks = JsonWebKey.import_key_set(requests.get(local(server, discovery["jwks_uri"]), timeout=5).json())
    claims = jwt.decode(
        token["id_token"], jwks, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": discovery["issuer"]}},
        claims_params={"nonce": nonce, "client_id": "rp-authlib", "access_token": token["access_token"]},
    )
    claims.validate()
    assert claims["email"] == email

    info = client.get(local(server, discovery["userinfo_endpoint"])).json()
    assert info["sub"] == claims["sub"] and info["email"] == email

    # A wrong verifier is refused: the code is bound to the challenge.
    url, state = client.create_authorization_url(discovery["authorization_endpoint"], nonce=nonce,
                                                 code_verifier=verifier)
    back = HostedPage(server).login(url, email)
    wrong = requests.post(local(server, discovery["token_endpoint"]), data={
        "grant_type": "authorization_code", "client_id": "rp-authlib", "redirect_uri": AUTHLIB_CALLBACK,
        "code": dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))["code"],
        "code_verifier": base64.urlsafe_b64encode(secrets.token_bytes(40)).rstrip(b"=").decode(),
    }, timeout=5)
    assert wrong.status_code == 403 and wrong.json()["error"] == "invalid_grant", wrong.text
