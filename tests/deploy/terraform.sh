#!/usr/bin/env bash
# Static checks of deploy/terraform (the module and examples/complete), with what this machine
# has: no provider can be downloaded here, so nothing is planned or applied.
#
#   1. every .tf file parses (python-hcl2), and a few properties hold in the parsed HCL
#      (health check on /readyz, Redis TLS, RDS encryption, SMS type, no wildcard IAM action);
#   2. checkov (framework terraform) finds no failed check; each skip is a
#      `#checkov:skip=CKV_…:reason` comment inside the resource it concerns, and is used;
#   3. `terraform fmt -check -recursive` when a terraform or tofu binary is on PATH (fmt needs
#      no provider); `terraform validate` only with TF_VALIDATE=1, where `terraform init` can
#      get the aws and random providers (a registry or a mirror), which it cannot here.
#
# checkov and python-hcl2 are installed into tests/deploy/.venv-terraform from
# tests/deploy/requirements-terraform.txt (reinstalled when that file changes).
#
#   bash tests/deploy/terraform.sh

set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
TF_DIR="$ROOT/deploy/terraform"
PYTHON="${PYTHON:-python3}"
VENV="$DIR/.venv-terraform"
HCL2_LIB="$VENV/python-hcl2"
REQUIREMENTS="$DIR/requirements-terraform.txt"

# --- install ---------------------------------------------------------------------------------

hash_of() { "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
stamp="$VENV/.sesame-requirements.sha256"
want="$(hash_of "$REQUIREMENTS")"
if [[ -x "$VENV/bin/checkov" && -d "$HCL2_LIB/hcl2" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "checkov, python-hcl2: up to date ($VENV)"
else
  echo "==> installing checkov and python-hcl2 into $VENV"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  # The venv is not the project's: keep it out of git (as Python 3.13's venv does by itself).
  printf '*\n' >"$VENV/.gitignore"
  rm -f "$stamp"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # checkov's fork of the HCL parser is also imported as `hcl2`: python-hcl2 goes into a folder
  # of its own (requirements-terraform.txt says why).
  grep -Ev '^[[:space:]]*python-hcl2([^A-Za-z0-9_.-]|$)' "$REQUIREMENTS" >"$tmp/venv.txt"
  grep -E '^[[:space:]]*python-hcl2([^A-Za-z0-9_.-]|$)' "$REQUIREMENTS" >"$tmp/hcl2.txt"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$tmp/venv.txt"
  rm -rf "$HCL2_LIB"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --target "$HCL2_LIB" -r "$tmp/hcl2.txt"
  echo "$want" >"$stamp"
  rm -rf "$tmp"
  trap - EXIT
fi

mapfile -t TF_FILES < <(find "$TF_DIR" -name '.terraform' -prune -o -type f -name '*.tf' -print | sort)
if [[ ${#TF_FILES[@]} -eq 0 ]]; then
  echo "no .tf file under $TF_DIR" >&2
  exit 1
fi

# --- 1. parse and structural assertions ------------------------------------------------------

echo "==> python-hcl2: parsing ${#TF_FILES[@]} files, structural assertions"
PYTHONPATH="$HCL2_LIB" "$VENV/bin/python" - "$TF_DIR" "${TF_FILES[@]}" <<'PY'
import json
import os
import re
import sys

import hcl2

tf_dir, files = sys.argv[1], sys.argv[2:]
lib = os.environ["PYTHONPATH"]
assert os.path.realpath(hcl2.__file__).startswith(os.path.realpath(lib)), (
    f"hcl2 imported from {hcl2.__file__}, not python-hcl2 in {lib}"
)

failures = []


def fail(msg):
    failures.append(msg)


def unq(v):
    """python-hcl2 8 keeps the quotes of string literals (and of block labels)."""
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return json.loads(v)
    return v


def blocks(doc, kind):
    """(type, name, body) of every `resource` / `data` block of a parsed file."""
    for entry in doc.get(kind, []):
        for typ, named in entry.items():
            for name, body in named.items():
                yield unq(typ), unq(name), body


def as_list(v):
    return v if isinstance(v, list) else [v]


parsed = {}
for path in files:
    rel = os.path.relpath(path, tf_dir)
    try:
        with open(path, encoding="utf-8") as f:
            parsed[rel] = hcl2.load(f)
    except Exception as e:  # any parse error fails the run
        fail(f"{rel}: does not parse: {type(e).__name__}: {e}")

module = {rel: d for rel, d in parsed.items() if os.sep not in rel}
resources = [(rel, t, n, b) for rel, d in module.items() for t, n, b in blocks(d, "resource")]
datas = [(rel, t, n, b) for rel, d in parsed.items() for t, n, b in blocks(d, "data")]
all_blocks = [(rel, t, n, b) for rel, d in parsed.items() for kind in ("resource", "data") for t, n, b in blocks(d, kind)]


def only(typ):
    found = [(rel, n, b) for rel, t, n, b in resources if t == typ]
    if len(found) != 1:
        fail(f"expected one {typ} in the module, found {len(found)}")
        return None
    return found[0][2]


tg = only("aws_lb_target_group")
if tg is not None:
    hc = as_list(tg.get("health_check", [{}]))[0]
    if unq(hc.get("path")) != "/readyz":
        fail(f"aws_lb_target_group health_check path is {unq(hc.get('path'))!r}, want '/readyz'")
    if tg.get("port") != 8080:
        fail(f"aws_lb_target_group port is {tg.get('port')!r}, want 8080")

redis = only("aws_elasticache_replication_group")
if redis is not None:
    for key in ("transit_encryption_enabled", "at_rest_encryption_enabled"):
        if redis.get(key) is not True:
            fail(f"aws_elasticache_replication_group {key} is {redis.get(key)!r}, want true")
    if "auth_token" not in redis:
        fail("aws_elasticache_replication_group has no auth_token")

db = only("aws_db_instance")
if db is not None:
    if db.get("storage_encrypted") is not True:
        fail(f"aws_db_instance storage_encrypted is {db.get('storage_encrypted')!r}, want true")
    if unq(db.get("ca_cert_identifier")) != "rds-ca-rsa2048-g1":
        fail("aws_db_instance ca_cert_identifier must be rds-ca-rsa2048-g1")

pg = only("aws_db_parameter_group")
if pg is not None:
    params = {unq(p.get("name")): unq(p.get("value")) for p in as_list(pg.get("parameter", []))}
    if params.get("rds.force_ssl") != "1":
        fail("aws_db_parameter_group must set rds.force_ssl = 1")

sms = only("aws_sns_sms_preferences")
if sms is not None and unq(sms.get("default_sms_type")) != "Transactional":
    fail(f"aws_sns_sms_preferences default_sms_type is {unq(sms.get('default_sms_type'))!r}, want Transactional")

# No IAM statement grants every action, or every action of SES or SNS.
BROAD = {"*", "ses:*", "sns:*"}
statements = 0
for rel, typ, name, body in datas:
    if typ != "aws_iam_policy_document":
        continue
    for st in as_list(body.get("statement", [])):
        statements += 1
        actions = [unq(a) for a in as_list(st.get("actions", []))]
        broad = BROAD.intersection(actions)
        if broad:
            fail(f"{rel}: aws_iam_policy_document.{name} statement {unq(st.get('sid'))!r} allows {sorted(broad)}")
        if "not_actions" in st:
            fail(f"{rel}: aws_iam_policy_document.{name} uses not_actions")
# Policies must be written as aws_iam_policy_document (checked above), not as inline JSON.
for rel, d in parsed.items():
    for typ, name, body in blocks(d, "resource"):
        for key in ("policy", "assume_role_policy"):
            value = body.get(key)
            if isinstance(value, str) and "jsonencode" in value:
                fail(f"{rel}: {typ}.{name}.{key} is inline JSON; use an aws_iam_policy_document")
if statements == 0:
    fail("no aws_iam_policy_document statement found")

# Every skip is `checkov:skip=CKV_…:reason` inside a block, with a real reason.
SKIP = re.compile(r"^checkov:skip=(CKV2?_[A-Z0-9]+_[0-9]+):(.+)$")
in_blocks = 0
for rel, typ, name, body in all_blocks:
    for c in body.get("__comments__", []):
        text = c.get("value", "").strip()
        if "checkov:skip" not in text:
            continue
        in_blocks += 1
        m = SKIP.match(text)
        if not m or len(m.group(2).strip()) < 20:
            fail(f"{rel}: {typ}.{name}: malformed skip or reason too short: {text!r}")
raw = 0
for path in files:
    with open(path, encoding="utf-8") as f:
        raw += sum(1 for line in f if "checkov:skip" in line)
if raw != in_blocks:
    fail(f"{raw} checkov:skip comments in the files, {in_blocks} inside resource/data blocks: every skip goes inside its block")

for msg in failures:
    print(f"  FAIL {msg}", file=sys.stderr)
if failures:
    sys.exit(1)
print(f"  {len(parsed)} files parsed; {len(resources)} module resources; {statements} IAM statements; {in_blocks} skip comments; assertions hold")
PY

# --- 2. checkov ------------------------------------------------------------------------------

for cfg in "$ROOT/.checkov.yml" "$ROOT/.checkov.yaml" "$TF_DIR/.checkov.yml" "$TF_DIR/.checkov.yaml"; do
  if [[ -e "$cfg" ]]; then
    echo "$cfg: checkov's skips belong in comments next to their resources, not in a config file" >&2
    exit 1
  fi
done

echo "==> checkov -d deploy/terraform --framework terraform (module and examples/complete)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# --skip-download: no Prisma Cloud look-ups (this machine has no network but the registries).
ckv=("$VENV/bin/checkov" -d "$TF_DIR" --framework terraform --skip-download)
(cd "$ROOT" && "${ckv[@]}" --quiet --compact -o cli -o json --output-file-path "console,$out/quiet.json") || true
# The same scan again without --quiet, to a file only, for the list of skips and their reasons.
(cd "$ROOT" && "${ckv[@]}" --compact -o json >"$out/full.json" 2>"$out/full.err") || true

"$VENV/bin/python" - "$out/quiet.json" "$out/full.json" "$TF_DIR" <<'PY'
import json
import os
import re
import sys

quiet_path, full_path, tf_dir = sys.argv[1:]


def reports(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, list) else [data]


def summary(reps):
    total = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
    for r in reps:
        if r.get("check_type") != "terraform":
            sys.exit(f"unexpected checkov report type {r.get('check_type')!r}")
        for k in total:
            total[k] += r["summary"].get(k, 0)
    return total


quiet, full = reports(quiet_path), reports(full_path)
q, f = summary(quiet), summary(full)
if q != f:
    sys.exit(f"the two checkov runs disagree: {q} vs {f}")

skipped = [c for r in full for c in r["results"].get("skipped_checks", [])]
used = set()
print("  skipped checks:")
for c in sorted(skipped, key=lambda c: (c["check_id"], c["resource"])):
    reason = (c["check_result"].get("suppress_comment") or "").strip()
    print(f"    {c['check_id']} {c['resource']} ({c['file_path'].lstrip('/')}): {reason}")
    if len(reason) < 20:
        sys.exit(f"skip of {c['check_id']} on {c['resource']} has no written reason")
    used.add((c["check_id"], os.path.normpath(c["file_abs_path"])))

# A skip comment checkov did not apply is stale (the check passes, or never ran there).
stale = []
for dirpath, dirnames, filenames in os.walk(tf_dir):
    dirnames[:] = [d for d in dirnames if d != ".terraform"]
    for name in filenames:
        if not name.endswith(".tf"):
            continue
        path = os.path.normpath(os.path.join(dirpath, name))
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                m = re.search(r"checkov:skip=(CKV2?_[A-Z0-9]+_[0-9]+)", line)
                if m and (m.group(1), path) not in used:
                    stale.append(f"{os.path.relpath(path, tf_dir)}:{n}: {m.group(1)}")
if stale:
    sys.exit("skip comments that checkov did not use (remove them):\n  " + "\n  ".join(stale))

if f["parsing_errors"]:
    sys.exit(f"checkov could not parse {f['parsing_errors']} file(s)")
print(f"checkov: {f['passed']} passed, {f['failed']} failed, {f['skipped']} skipped")
if f["failed"]:
    sys.exit(1)
PY

# --- 3. terraform fmt / validate -------------------------------------------------------------

tf_bin=""
for candidate in terraform tofu; do
  if command -v "$candidate" >/dev/null 2>&1; then
    tf_bin="$(command -v "$candidate")"
    break
  fi
done

if [[ -z "$tf_bin" ]]; then
  echo "terraform fmt: NOT RUN: no terraform or tofu binary on PATH (Debian, PyPI and npm ship no official build of either)"
  echo "terraform validate: NOT RUN: no terraform or tofu binary on PATH, and the aws and random providers cannot be downloaded here"
  exit 0
fi

# No update check (checkpoint), and a missing CLI configuration file is no warning.
export CHECKPOINT_DISABLE=1
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi

echo "==> $("$tf_bin" version | head -n 1): fmt -check -recursive deploy/terraform"
if ! "$tf_bin" fmt -check -recursive -diff "$TF_DIR"; then
  echo "deploy/terraform: not formatted: run \`$(basename "$tf_bin") fmt -recursive deploy/terraform\`" >&2
  exit 1
fi
echo "terraform fmt: ok"

if [[ "${TF_VALIDATE:-0}" != "1" ]]; then
  echo "terraform validate: NOT RUN: it needs the hashicorp/aws and hashicorp/random providers (terraform init), which cannot be downloaded here (no registry.terraform.io, and no package registry ships them); TF_VALIDATE=1 runs it where they can be"
  exit 0
fi

# Validate the example root module (it calls the module with source = "../..") in a copy, so
# that no .terraform folder or lock file lands in the work tree.
work="$(mktemp -d)"
trap 'rm -rf "$out" "$work"' EXIT
cp -R "$TF_DIR" "$work/terraform"
for root in "$work/terraform" "$work/terraform/examples/complete"; do
  echo "==> $(basename "$tf_bin") init -backend=false && validate: ${root#"$work/"}"
  (cd "$root" && "$tf_bin" init -backend=false -input=false -no-color >/dev/null && "$tf_bin" validate -no-color)
done
echo "terraform validate: ok"
