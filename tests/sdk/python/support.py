"""Constants and helpers shared by the auth0-python tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass

NATIVE_CLIENT_ID = "sdk-native"
WEB_CLIENT_ID = "sdk-web"
WEB_CLIENT_SECRET = "sdk-web-secret-0123456789"
# private_key_jwt clients; run.sh makes their key pairs per run (SESAME_PKJWT_RSA_KEY / _EC_KEY).
PKJWT_RSA_CLIENT_ID = "sdk-pkjwt"
PKJWT_EC_CLIENT_ID = "sdk-pkjwt-ec"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

# Auth0's exact strings (spec 5.3); the mobile SDKs compare them byte for byte.
WRONG_EMAIL_CODE = "Wrong email or verification code."
WRONG_PHONE_CODE = "Wrong phone number or verification code."


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:<port>, where the server really listens
    domain: str  # 127.0.0.1:<port>, the SDKs' "domain"
    issuer: str  # https://127.0.0.1:<port>/, the iss the SDKs expect

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"


def mailbox(server: Server, to: str) -> list[dict]:
    query = urllib.parse.urlencode({"to": to})
    with urllib.request.urlopen(f"{server.url}/dev/mailbox?{query}", timeout=5) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def wait_for_message(server: Server, to: str, count: int = 1, timeout: float = 8.0) -> dict:
    """Polls the dev mailbox until `to` has at least `count` messages; returns the newest.

    Delivery goes through an asynchronous outbox, so a message shows up a little after the
    start call returns.
    """
    deadline = time.monotonic() + timeout
    while True:
        messages = mailbox(server, to)
        if len(messages) >= count:
            return messages[0]
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no message #{count} for {to!r} in the dev mailbox after {timeout}s "
                f"(have {len(messages)}: {messages!r})"
            )
        time.sleep(0.1)


def code_of(message: dict) -> str:
    """The one-time code of a delivered message, read from its text and cross-checked with the
    mailbox's own `code` field."""
    found = re.findall(r"(?<!\d)\d{6}(?!\d)", message["text"])
    assert found, f"no 6-digit code in the message text: {message['text']!r}"
    assert message.get("code") == found[0], message
    return found[0]


def other_code(code: str) -> str:
    """A code of the same shape that is certainly not `code`."""
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
