"""Fixtures for driving a running `sesame serve` with auth0-python.

tests/sdk/run.sh starts the server and exports SESAME_URL (http://127.0.0.1:<port>),
SESAME_DOMAIN (127.0.0.1:<port>) and SESAME_ISSUER (https://127.0.0.1:<port>/).
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
