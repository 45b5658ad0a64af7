#!/usr/bin/env bash
# Real-browser test of the magic-link login: headless Debian Chromium, driven by playwright-core,
# opens the emailed link, clicks "Sign in" and reads what the app's callback page sees.
#
#   bash tests/browser/run.sh <path-to-sesame-binary>
#
# - Installs Debian's `chromium` (apt-get update + install) only when /usr/bin/chromium is missing.
# - Installs playwright-core with `npm ci` from the committed package-lock.json, skipped when
#   node_modules already matches the lock. playwright-core never downloads a browser.
# - Starts `sesame serve` on a free loopback port with a temporary TOML config (in-memory store,
#   dev mailbox, one public client `browser-app` whose callback is a tiny node http server on a
#   second free port, started by the test itself), runs magic-link.test.mjs, and stops sesame on
#   exit. Screenshots go to tests/browser/screenshots/ (gitignored).
# - Exit status is non-zero if anything fails; the last line is `N passed, N failed`.
#
# Needs: root (or sudo) for apt-get on a fresh machine, node 20 + npm. Network only for Debian's
# packages and the npm registry, on the first run.

set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash tests/browser/run.sh <path-to-sesame-binary>" >&2
  exit 2
fi

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$1"
if [[ "$BIN" != /* ]]; then BIN="$PWD/$BIN"; fi
if [[ ! -x "$BIN" ]]; then
  echo "run.sh: $BIN is not an executable sesame binary" >&2
  exit 2
fi

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

log() { printf '\n==> %s\n' "$*"; }

# --- Chromium from Debian ----------------------------------------------------------------------

install_chromium() {
  if [[ -x "$CHROMIUM" ]]; then
    echo "chromium: present ($CHROMIUM)"
    return
  fi
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
  log "installing Debian chromium (apt-get)"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  if [[ ! -x "$CHROMIUM" ]]; then
    echo "run.sh: apt-get installed chromium but $CHROMIUM is missing" >&2
    exit 1
  fi
}

# --- playwright-core from the committed lock file ----------------------------------------------

install_node() {
  local lock="$DIR/package-lock.json"
  local stamp="$DIR/node_modules/.sesame-lock.sha256"
  local want
  want="$(sha256sum "$lock" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$DIR/node_modules/playwright-core/package.json" ]]; then
    echo "node deps: up to date ($DIR/node_modules)"
    return
  fi
  log "installing node deps (npm ci) in $DIR"
  # Belt and braces: playwright-core has no install script, but never let anything fetch a browser.
  (cd "$DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
}

install_chromium
install_node
"$CHROMIUM" --version 2>/dev/null || true

# --- sesame on a free port ---------------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sesame-browser.XXXXXX")"
SESAME_PID=""
cleanup() {
  local rc=$?
  if [[ -n "$SESAME_PID" ]] && kill -0 "$SESAME_PID" 2>/dev/null; then
    kill "$SESAME_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SESAME_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SESAME_PID" 2>/dev/null || true
    wait "$SESAME_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Two distinct free loopback ports, held open together so they differ, then released.
read -r PORT CB_PORT < <(node -e '
  const net = require("net");
  const a = net.createServer().listen(0, "127.0.0.1", () => {
    const b = net.createServer().listen(0, "127.0.0.1", () => {
      console.log(a.address().port, b.address().port);
      a.close(); b.close();
    });
  });')

if [[ -z "${PORT:-}" || -z "${CB_PORT:-}" ]]; then
  echo "run.sh: could not find free loopback ports" >&2
  exit 1
fi

ISSUER="http://127.0.0.1:$PORT/"
CALLBACK="http://127.0.0.1:$CB_PORT/callback"
cat >"$WORK/sesame.toml" <<EOF
issuer = "$ISSUER"
listen = "127.0.0.1:$PORT"
server_secret = "0123456789abcdef0123456789abcdef-browser"

[limits]
start_per_ip = { limit = 1000, window_secs = 3600 }

[[clients]]
client_id = "browser-app"
name = "Browser test app"
app_type = "native"
auth_method = "none"
callbacks = ["$CALLBACK"]
allowed_origins = ["http://127.0.0.1:$CB_PORT"]
grant_types = ["http://auth0.com/oauth/grant-type/passwordless/otp", "authorization_code", "implicit", "refresh_token"]
EOF

log "starting sesame on 127.0.0.1:$PORT (callback server will take 127.0.0.1:$CB_PORT)"
"$BIN" --config "$WORK/sesame.toml" serve >"$WORK/sesame.log" 2>&1 &
SESAME_PID=$!

up=""
for _ in $(seq 1 100); do
  if ! kill -0 "$SESAME_PID" 2>/dev/null; then break; fi
  if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "${ISSUER}health"; then
    up=1
    break
  fi
  sleep 0.1
done
if [[ -z "$up" ]]; then
  echo "run.sh: sesame did not become healthy at ${ISSUER}health; its log:" >&2
  cat "$WORK/sesame.log" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
fi
echo "sesame: up ($ISSUER)"

log "running tests/browser/magic-link.test.mjs"
set +e
SESAME_ISSUER="$ISSUER" CALLBACK_PORT="$CB_PORT" CLIENT_ID="browser-app" CHROMIUM="$CHROMIUM" \
  SCREENSHOT_DIR="$DIR/screenshots" SUMMARY_FILE="$WORK/summary" node "$DIR/magic-link.test.mjs"
rc=$?
set -e
if [[ $rc -ne 0 ]]; then
  {
    echo "--- sesame log (last 40 lines) ---"
    tail -n 40 "$WORK/sesame.log" || true
    echo "---"
  } >&2
  # Keep `N passed, N failed` the last line of the output.
  if [[ -s "$WORK/summary" ]]; then cat "$WORK/summary"; else echo "0 passed, 1 failed"; fi
  exit "$rc"
fi
