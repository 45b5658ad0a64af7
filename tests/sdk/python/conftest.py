"""Fixtures for driving a running `sesame serve` with auth0-python.

tests/sdk/run.sh starts the server and exports SESAME_URL (http://127.0.0.1:<port>),
SESAME_DOMAIN (127.0.0.1:<port>) and SESAME_ISSUER (https://127.0.0.1:<port>/), plus the paths
of the private_key_jwt clients' PKCS#8 PEM private keys: SESAME_PKJWT_RSA_KEY (RSA 2048, client
`sdk-pkjwt`) and SESAME_PKJWT_EC_KEY (P-256, client `sdk-pkjwt-ec`).
"""

from __future__ import annotations

import os
import secrets

import pytest

from support import Server


@pytest.fixture(scope="session")
def server() -> Server:
    try:
        return Server(
            url=os.environ["SESAME_URL"].rstrip("/"),
            domain=os.environ["SESAME_DOMAIN"],
            issuer=os.environ["SESAME_ISSUER"],
        )
    except KeyError as missing:
        pytest.exit(f"{missing} is not set: run these tests through tests/sdk/run.sh", 2)


@pytest.fixture
def email() -> str:
    """A fresh address per test, so that tests never see each other's codes."""
    return f"sdk-py-{secrets.token_hex(6)}@example.com"


@pytest.fixture
def phone() -> str:
    """A fresh, libphonenumber-valid French mobile number per test: +33 61 followed by 7 random
    digits (06 1x xx xx xx is an allocated mobile range; some 06 ranges, e.g. 069x, are not)."""
    return "+3361" + "".join(str(secrets.randbelow(10)) for _ in range(7))


def _private_key(var: str) -> str:
    path = os.environ.get(var)
    if not path:
        pytest.exit(f"{var} is not set: run these tests through tests/sdk/run.sh", 2)
    with open(path, encoding="ascii") as f:
        return f.read()


@pytest.fixture(scope="session")
def rsa_private_key() -> str:
    """PKCS#8 PEM private key of the `sdk-pkjwt` client (RSA 2048), fresh per run.sh run."""
    return _private_key("SESAME_PKJWT_RSA_KEY")


@pytest.fixture(scope="session")
def ec_private_key() -> str:
    """PKCS#8 PEM private key of the `sdk-pkjwt-ec` client (P-256), fresh per run.sh run."""
    return _private_key("SESAME_PKJWT_EC_KEY")
