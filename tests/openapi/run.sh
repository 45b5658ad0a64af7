#!/usr/bin/env bash
# The OpenAPI document against the server it describes: schemathesis (PyPI) generates requests
# for every operation of a running `sesame serve`'s GET /openapi.json and checks each answer:
# no 5xx, every status, content type, header and body as documented.
#
#   bash tests/openapi/run.sh <path-to-sesame-binary>
#
# schemathesis is installed into tests/openapi/.venv from requirements.txt (skipped when already
# done for the same file). The server is the embedded default on a free loopback port with the
# per-IP and per-client limits opened wide (all requests come from 127.0.0.1; a 429 is a
# documented answer too, but would hide the paths behind it); it is stopped on exit. Exit status
# is non-zero if the server fails to start or any check fails. OPENAPI_KEEP=file.har keeps a HAR of
# every request and answer; OPENAPI_MAX_EXAMPLES sets the cases per operation (default 40).
# After the checks, statuses.py fails if an error status the document names for an operation never
# came back in the run, unless unreachable.txt excuses it and names the test that produces it.

set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/openapi/run.sh <path-to-sesame-binary>" >&2
  exit 2
fi

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$1"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
if [[ ! -x "$BIN" ]]; then
  echo "run.sh: $BIN is not an executable sesame binary" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
VENV="$DIR/.venv"

hash_of() { "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

stamp="$VENV/.sesame-requirements.sha256"
want="$(hash_of "$DIR/requirements.txt")"
if [[ -x "$VENV/bin/st" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "schemathesis: up to date ($VENV)"
else
  echo "==> installing schemathesis into $VENV"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/requirements.txt"
  echo "$want" >"$stamp"
fi

WORK="$(mktemp -d)"
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$WORK/sesame.toml" <<TOML
issuer = "http://127.0.0.1:$PORT/"
listen = "127.0.0.1:$PORT"

[limits]
start_per_ip = { limit = 1000000, window_secs = 60 }
exchange_per_ip = { limit = 1000000, window_secs = 60 }

# The embedded default's client, and a confidential one for the examples that fail its
# authentication (401 and 403).
[[clients]]
client_id = "sesame-dev"
name = "Sesame development client"
callbacks = ["http://localhost:3000/callback"]
allowed_origins = ["http://localhost:3000"]

[[clients]]
client_id = "st-web"
name = "Schemathesis web app"
app_type = "regular_web"
auth_method = "client_secret_post"
client_secret = "st-web-secret-0123456789abcdef"
callbacks = ["http://localhost:3000/callback"]

# A backend with every Management API scope: schemathesis calls /api/v2/ with its token.
[[clients]]
client_id = "st-backend"
name = "Schemathesis backend"
app_type = "non_interactive"
auth_method = "client_secret_post"
client_secret = "st-backend-secret-0123456789"
grant_types = ["client_credentials"]
api_scopes = { "http://127.0.0.1:$PORT/api/v2/" = ["read:users", "update:users", "delete:users", "create:users", "read:logs"] }
TOML

"$BIN" --config "$WORK/sesame.toml" serve >"$WORK/sesame.log" 2>&1 &
PID=$!
cleanup() {
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  if [[ -n "${OPENAPI_KEEP:-}" ]]; then cp "$WORK/run.har" "$OPENAPI_KEEP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  if "$PYTHON" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "run.sh: sesame exited at start:" >&2
    cat "$WORK/sesame.log" >&2
    exit 1
  fi
  sleep 0.1
done

# The backend's token, for the operations whose security is the `management` bearer scheme
# (schemathesis reads schemathesis.toml from the directory it runs in).
MGMT_TOKEN="$("$PYTHON" - "$PORT" <<'PY'
import json, sys, urllib.request
port = sys.argv[1]
body = json.dumps({"grant_type": "client_credentials", "client_id": "st-backend",
                   "client_secret": "st-backend-secret-0123456789",
                   "audience": f"http://127.0.0.1:{port}/api/v2/"}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/oauth/token", body, {"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=5))["access_token"])
PY
)"
printf '[auth.openapi.management]\nbearer = "%s"\n' "$MGMT_TOKEN" >"$WORK/schemathesis.toml"

echo "==> schemathesis against http://127.0.0.1:$PORT/openapi.json"
status=0
# From the work dir: schemathesis and hypothesis keep their caches in the current directory.
cd "$WORK"
"$VENV/bin/st" run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${OPENAPI_MAX_EXAMPLES:-40}" \
  --seed 1 \
  --workers 2 \
  --request-timeout 10 \
  --generation-database none \
  --report har --report-har-path "$WORK/run.har" \
  --no-color || status=$?
if [[ $status -eq 0 ]]; then
  # Every error status the document names was produced (or is excused, with the test that does).
  "$PYTHON" -c "import urllib.request; open('$WORK/openapi.json','wb').write(urllib.request.urlopen('http://127.0.0.1:$PORT/openapi.json').read())"
  "$PYTHON" "$DIR/statuses.py" "$WORK/openapi.json" "$WORK/run.har" "$DIR/unreachable.txt" || status=$?
fi
if [[ $status -ne 0 ]]; then
  echo "run.sh: schemathesis found failures (exit $status); the server's log:" >&2
  tail -n 50 "$WORK/sesame.log" >&2
fi
exit $status
