#!/usr/bin/env bash
# Real-browser tests: headless Debian Chromium, driven by playwright-core.
# - magic-link.test.mjs opens the emailed link, clicks "Sign in" and reads what the app's callback
#   page sees.
# - hosted-login.test.mjs logs in through the hosted page behind GET /authorize: a code (a wrong
#   one first), a magic link in a second tab (the waiting tab continues), a magic link in another
#   browser context (it asks first, naming the browser), and an expired code (a 60 s connection).
# - auth0js.test.mjs runs auth0.js (npm auth0-js, dist/auth0.min.js) in a page on a second origin
#   (real CORS preflights): passwordlessStart, passwordlessLogin (/co/authenticate + /authorize
#   with a login_ticket), passwordlessVerify (/passwordless/verify + /passwordless/verify_redirect),
#   parseHash validating the id_token, and the SDK's error for a wrong code.
#
#   bash tests/browser/run.sh <path-to-sesame-binary>
#
# - Installs Debian's `chromium` (apt-get update + install) only when /usr/bin/chromium is missing.
# - Installs playwright-core and auth0-js with `npm ci` from the committed package-lock.json,
#   skipped when node_modules already matches the lock. playwright-core never downloads a browser.
# - Starts two `sesame serve` on free loopback ports with temporary TOML configs (in-memory store,
#   dev mailbox, two public native clients: `browser-app` whose callback is a tiny node http server
#   on a third free port, and `auth0js-app` whose origin and callback are the auth0.js app server
#   on a fourth; each test file starts its own server). The first sesame has the default
#   `[magic_link] confirm = true`; the second has `confirm = false` (GET verify_redirect completes
#   at once, as Auth0 does), which auth0.js's passwordlessVerify needs. Runs both test files and
#   stops the sesames on exit. Screenshots go to tests/browser/screenshots/ (gitignored).
# - Exit status is non-zero if anything fails; the last line is `N passed, N failed` over both
#   files.
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
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$DIR/node_modules/playwright-core/package.json" \
        && -f "$DIR/node_modules/auth0-js/dist/auth0.min.js" ]]; then
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

# --- two sesames on free ports ----------------------------------------------------------------

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sesame-browser.XXXXXX")"
SESAME_PIDS=()
cleanup() {
  local rc=$?
  local pid
  for pid in "${SESAME_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Four distinct free loopback ports, held open together so they differ, then released.
read -r PORT CB_PORT PORT2 APP_PORT < <(node -e '
  const net = require("net");
  const open = (n, acc) => {
    if (n === 0) {
      console.log(acc.map((s) => s.address().port).join(" "));
      for (const s of acc) s.close();
      return;
    }
    const s = net.createServer().listen(0, "127.0.0.1", () => open(n - 1, [...acc, s]));
  };
  open(4, []);')

if [[ -z "${PORT:-}" || -z "${CB_PORT:-}" || -z "${PORT2:-}" || -z "${APP_PORT:-}" ]]; then
  echo "run.sh: could not find free loopback ports" >&2
  exit 1
fi

ISSUER="http://127.0.0.1:$PORT/"
ISSUER2="http://127.0.0.1:$PORT2/"
CALLBACK="http://127.0.0.1:$CB_PORT/callback"
APP_ORIGIN="http://127.0.0.1:$APP_PORT"

# write_config <file> <port> <magic_link.confirm>
write_config() {
  cat >"$1" <<EOF
issuer = "http://127.0.0.1:$2/"
listen = "127.0.0.1:$2"
server_secret = "0123456789abcdef0123456789abcdef-browser"

[magic_link]
confirm = $3

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

[[connections]]
name = "email"
strategy = "email"

[[connections]]
name = "sms"
strategy = "sms"

[[connections]]
name = "quick-email"
strategy = "email"
code_lifetime_secs = 60

[[clients]]
client_id = "hosted-quick"
name = "Hosted quick-code app"
app_type = "native"
auth_method = "none"
connections = ["quick-email"]
callbacks = ["$CALLBACK"]
grant_types = ["authorization_code"]

[[clients]]
client_id = "auth0js-app"
name = "auth0.js test app"
app_type = "native"
auth_method = "none"
callbacks = ["$APP_ORIGIN/callback"]
allowed_origins = ["$APP_ORIGIN"]
grant_types = ["http://auth0.com/oauth/grant-type/passwordless/otp", "implicit"]
EOF
}

# start_sesame <name> <config> <issuer>
start_sesame() {
  "$BIN" --config "$2" serve >"$WORK/$1.log" 2>&1 &
  local pid=$!
  SESAME_PIDS+=("$pid")
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    if node -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "${3}health"; then
      echo "sesame ($1): up ($3)"
      return 0
    fi
    sleep 0.1
  done
  echo "run.sh: sesame ($1) did not become healthy at ${3}health; its log:" >&2
  cat "$WORK/$1.log" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
}

write_config "$WORK/sesame.toml" "$PORT" true
write_config "$WORK/sesame-noconfirm.toml" "$PORT2" false
log "starting sesame on 127.0.0.1:$PORT (magic_link.confirm = true) and 127.0.0.1:$PORT2 (confirm = false)"
echo "callback server will take 127.0.0.1:$CB_PORT, the auth0.js app server 127.0.0.1:$APP_PORT"
start_sesame sesame "$WORK/sesame.toml" "$ISSUER"
start_sesame sesame-noconfirm "$WORK/sesame-noconfirm.toml" "$ISSUER2"

TOTAL_PASSED=0
TOTAL_FAILED=0
# tally <summary-file> <exit status>: adds one file's `N passed, N failed` to the totals.
tally() {
  local line p f
  line="$(tail -n 1 "$1" 2>/dev/null || true)"
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    p="${BASH_REMATCH[1]}"
    f="${BASH_REMATCH[2]}"
    # A non-zero exit after a clean summary still counts as a failure.
    if [[ "$2" -ne 0 && "$f" -eq 0 ]]; then f=1; fi
  else
    p=0
    f=1
  fi
  TOTAL_PASSED=$((TOTAL_PASSED + p))
  TOTAL_FAILED=$((TOTAL_FAILED + f))
}

set +e
log "running tests/browser/magic-link.test.mjs (sesame with confirm = true)"
SESAME_ISSUER="$ISSUER" CALLBACK_PORT="$CB_PORT" CLIENT_ID="browser-app" CHROMIUM="$CHROMIUM" \
  SCREENSHOT_DIR="$DIR/screenshots" SUMMARY_FILE="$WORK/summary-magic-link" node "$DIR/magic-link.test.mjs"
rc_magic=$?
tally "$WORK/summary-magic-link" "$rc_magic"

log "running tests/browser/hosted-login.test.mjs (the hosted login page behind /authorize)"
SESAME_ISSUER="$ISSUER" CALLBACK_PORT="$CB_PORT" CLIENT_ID="browser-app" QUICK_CLIENT_ID="hosted-quick" \
  CHROMIUM="$CHROMIUM" SCREENSHOT_DIR="$DIR/screenshots" SUMMARY_FILE="$WORK/summary-hosted" \
  node "$DIR/hosted-login.test.mjs"
rc_hosted=$?
tally "$WORK/summary-hosted" "$rc_hosted"

log "running tests/browser/auth0js.test.mjs"
SESAME_ISSUER="$ISSUER" SESAME_NOCONFIRM_ISSUER="$ISSUER2" APP_PORT="$APP_PORT" CLIENT_ID="auth0js-app" \
  CHROMIUM="$CHROMIUM" SCREENSHOT_DIR="$DIR/screenshots" SUMMARY_FILE="$WORK/summary-auth0js" \
  node "$DIR/auth0js.test.mjs"
rc_auth0js=$?
tally "$WORK/summary-auth0js" "$rc_auth0js"
set -e

if [[ $rc_magic -ne 0 || $rc_hosted -ne 0 || $rc_auth0js -ne 0 || $TOTAL_FAILED -ne 0 ]]; then
  {
    for name in sesame sesame-noconfirm; do
      echo "--- $name log (last 40 lines) ---"
      tail -n 40 "$WORK/$name.log" || true
    done
    echo "---"
  } >&2
  if [[ $TOTAL_FAILED -eq 0 ]]; then TOTAL_FAILED=1; fi
fi
# The last line: the totals over all files.
echo
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
if [[ $TOTAL_FAILED -ne 0 ]]; then exit 1; fi
