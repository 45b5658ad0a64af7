#!/usr/bin/env bash
# Compatibility tests: drive a running `sesame serve` with Auth0's own SDKs.
#
#   bash tests/sdk/run.sh <path-to-sesame-binary>
#
# - Python: auth0-python (tests/sdk/python, pytest), installed in tests/sdk/.venv, and authlib
#   (test_oidc_rp.py: an ALB's authenticate-oidc flow and a standard OIDC relying party through
#   the hosted login page).
# - Node:   npm `auth0` 7.1.0: AuthenticationClient from 'auth0/legacy', and the v7 ManagementClient
#           for the Management API (tests/sdk/node, node --test), installed with `npm ci` from the
#           committed package-lock.json.
# Installs are skipped when already done for the same requirements / lock file.
#
# The server gets a free loopback port, a temporary TOML config whose issuer is
# https://127.0.0.1:<port>/ (the SDKs require iss == https://{domain}/ even over plain http), and
# is stopped on exit. Exit status is non-zero if the server fails to start or any test fails.
#
# Each run also makes fresh key pairs for the private_key_jwt clients (an RSA 2048 key for
# `sdk-pkjwt`, a P-256 key for `sdk-pkjwt-ec`) in the temporary work dir: the public keys go into
# the config, the PKCS#8 PEM private keys' paths are exported as SESAME_PKJWT_RSA_KEY and
# SESAME_PKJWT_EC_KEY. With `openssl` when it is on the PATH, else with the `cryptography` package
# of the test venv (an auth0-python dependency).
#
# With SDK_STORE=postgres the server runs on a fresh Postgres database (created on
# 127.0.0.1:5432 as user postgres, `sesame migrate`d, dropped on exit) instead of the embedded
# store: the same suites prove both stores.
#
# Needs: python3 (3.11, with venv + pip) and node 20 + npm. Network only for the package registries
# (PyPI, npm) on the first run.

set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/sdk/run.sh <path-to-sesame-binary>" >&2
  exit 2
fi

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$1"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
if [[ ! -x "$BIN" ]]; then
  echo "run.sh: $BIN is not an executable sesame binary" >&2
  exit 2
fi

PYTHON="${PYTHON:-python3}"
VENV="$SDK_DIR/.venv"
NODE_DIR="$SDK_DIR/node"

log() { printf '\n==> %s\n' "$*"; }

hash_of() { "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

# --- Python: venv + auth0-python + pytest -------------------------------------------------------

install_python() {
  local req="$SDK_DIR/python/requirements.txt"
  local stamp="$VENV/.sesame-requirements.sha256"
  local want
  want="$(hash_of "$req")"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]] &&
    "$VENV/bin/python" -c 'import auth0.authentication, pytest, authlib, requests' 2>/dev/null; then
    echo "python deps: up to date ($VENV)"
    return
  fi
  log "installing python deps into $VENV"
  if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
  echo "$want" >"$stamp"
}

# --- Node: npm ci from the committed lock file --------------------------------------------------

install_node() {
  local lock="$NODE_DIR/package-lock.json"
  local stamp="$NODE_DIR/node_modules/.sesame-lock.sha256"
  local want
  want="$(hash_of "$lock")"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$NODE_DIR/node_modules/auth0/package.json" ]]; then
    echo "node deps: up to date ($NODE_DIR/node_modules)"
    return
  fi
  log "installing node deps (npm ci) in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

install_python
install_node

"$VENV/bin/python" - <<'EOF'
import importlib.metadata as m
print(f"auth0-python {m.version('auth0-python')}, pytest {m.version('pytest')}")
EOF
(cd "$NODE_DIR" && node -e '
  const v = require("auth0/package.json").version;
  const legacy = require("./node_modules/auth0-legacy/package.json").version;
  console.log(`node ${process.version}, npm auth0 ${v} (auth0/legacy = auth0@${legacy})`);')

# --- Server -----------------------------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sesame-sdk-tests.XXXXXX")"
SERVER_PID=""
STORE="${SDK_STORE:-memory}"
DATABASE=""
PSQL=(psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q)

cleanup() {
  local status=$?
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$DATABASE" ]]; then
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" || true
  fi
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Settings come from the file only: drop any SESAME__* overrides from the caller's environment.
while IFS= read -r name; do unset "$name"; done < <(env | sed -n 's/^\(SESAME__[A-Za-z0-9_]*\)=.*/\1/p')
unset SESAME_CONFIG || true

# --- private_key_jwt key pairs (fresh per run) --------------------------------------------------

RSA_KEY="$WORK/pkjwt-rsa.key.pem"
RSA_PUB="$WORK/pkjwt-rsa.pub.pem"
EC_KEY="$WORK/pkjwt-ec.key.pem"
EC_PUB="$WORK/pkjwt-ec.pub.pem"

gen_keys_openssl() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$RSA_KEY" &&
    openssl pkey -in "$RSA_KEY" -pubout -out "$RSA_PUB" &&
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$EC_KEY" &&
    openssl pkey -in "$EC_KEY" -pubout -out "$EC_PUB"
}

gen_keys_python() {
  "$VENV/bin/python" - "$RSA_KEY" "$RSA_PUB" "$EC_KEY" "$EC_PUB" <<'EOF'
import sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

def write(key, private_path, public_path):
    with open(private_path, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    with open(public_path, "wb") as f:
        f.write(key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        ))

rsa_key, rsa_pub, ec_key, ec_pub = sys.argv[1:]
write(rsa.generate_private_key(public_exponent=65537, key_size=2048), rsa_key, rsa_pub)
write(ec.generate_private_key(ec.SECP256R1()), ec_key, ec_pub)
EOF
}

if command -v openssl >/dev/null 2>&1 && gen_keys_openssl 2>"$WORK/openssl.log"; then
  echo "private_key_jwt keys: RSA 2048 + P-256 (openssl)"
else
  if command -v openssl >/dev/null 2>&1; then
    echo "openssl failed, falling back to python cryptography:" >&2
    cat "$WORK/openssl.log" >&2 || true
  fi
  gen_keys_python
  echo "private_key_jwt keys: RSA 2048 + P-256 (python cryptography)"
fi
chmod 600 "$RSA_KEY" "$EC_KEY"

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

store_config() {
  if [[ "$STORE" == postgres ]]; then
    printf 'store = "postgres"\n[database]\nurl = "postgres://postgres@127.0.0.1:5432/%s"\n' "$DATABASE"
  fi
}

if [[ "$STORE" == postgres ]]; then
  DATABASE="sesame_sdk_$$"
  "${PSQL[@]}" -c "CREATE DATABASE $DATABASE" || {
    echo "run.sh: SDK_STORE=postgres needs Postgres on 127.0.0.1:5432 (user postgres, trust auth)" >&2
    exit 1
  }
  echo "store: postgres (database $DATABASE)"
elif [[ "$STORE" != memory ]]; then
  echo "run.sh: SDK_STORE is memory or postgres, not $STORE" >&2
  exit 2
fi

write_config() {
  cat >"$WORK/sesame.toml" <<EOF
issuer = "https://127.0.0.1:$1/"
listen = "127.0.0.1:$1"
server_secret = "0123456789abcdef0123456789abcdef-sdk-tests"
dev_mailbox = true
email = "mailbox"
sms = "mailbox"
$(store_config)

# Every SDK test calls from 127.0.0.1: lift the per-IP limits above what the suite sends.
[limits]
start_per_ip = { limit = 10000, window_secs = 3600 }
exchange_per_ip = { limit = 10000, window_secs = 60 }

[[clients]]
client_id = "sdk-native"
name = "SDK native"
app_type = "native"
auth_method = "none"

[[clients]]
client_id = "sdk-web"
name = "SDK web"
app_type = "regular_web"
auth_method = "client_secret_post"
client_secret = "sdk-web-secret-0123456789"
callbacks = ["http://localhost:3000/callback"]
allowed_logout_urls = ["http://localhost:3000/logged-out"]

# Relying parties of the hosted login page (test_oidc_rp.py): an ALB's authenticate-oidc action
# (a confidential client, its secret in the body or in Basic auth) and an authlib app (public,
# PKCE).
[[clients]]
client_id = "rp-alb-post"
name = "ALB (client_secret_post)"
app_type = "regular_web"
auth_method = "client_secret_post"
client_secret = "rp-alb-post-secret-0123456789"
callbacks = ["https://alb.example.com/oauth2/idpresponse"]
grant_types = ["authorization_code"]

[[clients]]
client_id = "rp-alb-basic"
name = "ALB (client_secret_basic)"
app_type = "regular_web"
auth_method = "client_secret_basic"
client_secret = "rp-alb-basic-secret-0123456789"
callbacks = ["https://alb.example.com/oauth2/idpresponse"]
grant_types = ["authorization_code"]

[[clients]]
client_id = "rp-authlib"
name = "authlib app"
app_type = "native"
auth_method = "none"
callbacks = ["http://127.0.0.1:5000/auth/callback"]
allowed_logout_urls = ["http://127.0.0.1:5000/"]
grant_types = ["authorization_code", "refresh_token"]

[[clients]]
client_id = "sdk-pkjwt"
name = "SDK private key JWT"
app_type = "regular_web"
auth_method = "private_key_jwt"
public_keys = ["""
$(cat "$RSA_PUB")
"""]

[[clients]]
client_id = "sdk-pkjwt-ec"
name = "SDK private key JWT (EC)"
app_type = "regular_web"
auth_method = "private_key_jwt"
public_keys = ["""
$(cat "$EC_PUB")
"""]

# Machine-to-machine clients of the Management API (management.test.js, test_management.py).
# node-auth0 and auth0-python both send client_credentials with client_secret in the body.
[[clients]]
client_id = "sdk-m2m"
name = "SDK backend"
app_type = "non_interactive"
auth_method = "client_secret_post"
client_secret = "sdk-m2m-secret-0123456789"
grant_types = ["client_credentials"]
api_scopes = { "https://127.0.0.1:$1/api/v2/" = ["read:users", "update:users", "delete:users", "create:users", "read:users_app_metadata", "update:users_app_metadata", "read:logs"] }

[[clients]]
client_id = "sdk-m2m-readonly"
name = "SDK backend, read only"
app_type = "non_interactive"
auth_method = "client_secret_post"
client_secret = "sdk-m2m-readonly-secret-0123"
grant_types = ["client_credentials"]
api_scopes = { "https://127.0.0.1:$1/api/v2/" = ["read:users"] }
EOF
}

# 0 = healthy, 1 = server exited, 2 = timed out.
wait_healthy() {
  local url="$1" deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then return 1; fi
    if "$PYTHON" - "$url" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
    sleep 0.1
  done
  return 2
}

started=""
for attempt in 1 2 3; do
  PORT="$(free_port)"
  write_config "$PORT"
  if [[ "$STORE" == postgres ]]; then
    "$BIN" --config "$WORK/sesame.toml" migrate >"$WORK/migrate.log" 2>&1 || {
      cat "$WORK/migrate.log" >&2
      exit 1
    }
  fi
  log "starting $BIN on 127.0.0.1:$PORT (attempt $attempt)"
  "$BIN" --config "$WORK/sesame.toml" serve --listen "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  if wait_healthy "http://127.0.0.1:$PORT/health"; then
    started=yes
    break
  fi
  echo "sesame did not become healthy; server log:" >&2
  tail -n 40 "$WORK/server.log" >&2 || true
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
done
if [[ -z "$started" ]]; then
  echo "run.sh: could not start sesame" >&2
  exit 1
fi
echo "sesame is up: GET /health -> 200"

export SESAME_URL="http://127.0.0.1:$PORT"
export SESAME_DOMAIN="127.0.0.1:$PORT"
export SESAME_ISSUER="https://127.0.0.1:$PORT/"
export SESAME_PKJWT_RSA_KEY="$RSA_KEY"
export SESAME_PKJWT_EC_KEY="$EC_KEY"

# --- Tests ------------------------------------------------------------------------------------

set +e
log "python: auth0-python (pytest)"
(cd "$SDK_DIR/python" && "$VENV/bin/python" -m pytest -v)
py_status=$?

log "node: auth0 ManagementClient / auth0/legacy AuthenticationClient (node --test)"
(cd "$NODE_DIR" && node --test --test-reporter=spec)
node_status=$?
set -e

if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  echo "run.sh: the server died during the tests; log:" >&2
  tail -n 60 "$WORK/server.log" >&2 || true
  exit 1
fi

if ((py_status != 0 || node_status != 0)); then
  echo >&2
  echo "server log (last 60 lines):" >&2
  tail -n 60 "$WORK/server.log" >&2 || true
fi

log "summary: python exit $py_status, node exit $node_status"
if ((py_status != 0 || node_status != 0)); then
  exit 1
fi
