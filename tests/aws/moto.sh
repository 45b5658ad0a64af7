#!/usr/bin/env bash
# The local AWS emulator (moto server) for the SES and SNS adapter tests.
#
#   bash tests/aws/moto.sh install        # creates .venv-moto (idempotent; quick when present)
#   bash tests/aws/moto.sh start <port>   # starts moto on 127.0.0.1:<port>, prints its PID
#
# Only the plain `moto` package plus flask is installed: SES and SNS need no service extras, and
# `moto[server]` would pull cfn-lint, sympy and docker (2 minutes, twice the disk).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv-moto"
MOTO_VERSION="5.2.5"

usage() {
    echo "usage: $0 install | start <port>" >&2
    exit 2
}

install() {
    if [[ -x "$VENV/bin/moto_server" ]] \
        && "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('moto') != '$MOTO_VERSION')" 2>/dev/null; then
        echo "moto $MOTO_VERSION already installed in $VENV"
        return 0
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "moto==$MOTO_VERSION" flask flask-cors
    echo "moto $MOTO_VERSION installed in $VENV"
}

start() {
    local port="${1:-}"
    [[ "$port" =~ ^[0-9]+$ ]] || usage
    if [[ ! -x "$VENV/bin/moto_server" ]]; then
        echo "moto is not installed: run 'bash tests/aws/moto.sh install' first" >&2
        exit 1
    fi
    local log="${MOTO_LOG:-$ROOT/target/moto-$port.log}"
    mkdir -p "$(dirname "$log")"
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    local pid=$!
    # moto answers after about 1.5 s; give a loaded CI machine 30 s.
    for _ in $(seq 1 600); do
        if curl -sf -o /dev/null "http://127.0.0.1:$port/moto-api/data.json"; then
            echo "$pid"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "moto exited during startup; log: $log" >&2
            tail -n 20 "$log" >&2 || true
            exit 1
        fi
        sleep 0.05
    done
    echo "moto did not answer on port $port within 30 s; log: $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    *) usage ;;
esac
