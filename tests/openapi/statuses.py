"""Every error status the OpenAPI document names for an operation was produced in the run.

    python3 statuses.py openapi.json run.har unreachable.txt

Reads the document and schemathesis' HAR of the run; for each operation, every documented status
of 400 or more (ranges such as 4XX are not statuses) must have come back at least once, unless
unreachable.txt lists it with the reason (and the test that produces it instead). Exit 1 with
the missing ones listed otherwise.
"""

import json
import re
import sys
import urllib.parse
from collections import defaultdict


def main(doc_path: str, har_path: str, unreachable_path: str) -> int:
    doc = json.load(open(doc_path, encoding="utf-8"))
    har = json.load(open(har_path, encoding="utf-8"))
    seen = defaultdict(set)
    for entry in har["log"]["entries"]:
        path = urllib.parse.urlparse(entry["request"]["url"]).path
        seen[(entry["request"]["method"].upper(), path)].add(str(entry["response"]["status"]))
    excused = {}
    for line in open(unreachable_path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        method, path, status, reason = line.split(None, 3)
        excused[(method, path, status)] = reason
    # A templated path (`/api/v2/users/{id}`) matches every concrete one of its shape.
    def produced(method: str, template: str) -> set:
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        out = set()
        for (m, p), statuses in seen.items():
            if m == method and pattern.match(p):
                out |= statuses
        return out

    missing, excused_used = [], 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in op.get("responses", {}):
                if not status.isdigit() or int(status) < 400:
                    continue
                key = (method.upper(), path, status)
                if status in produced(method.upper(), path):
                    continue
                if key in excused:
                    excused_used += 1
                    continue
                missing.append(" ".join(key))
    print(f"documented error statuses: produced or excused ({excused_used} excused in {unreachable_path})")
    if missing:
        print("never produced and not excused:\n  " + "\n  ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
