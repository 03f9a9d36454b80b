#!/usr/bin/env python3
"""Judge the outputs of e2e/chart/check.sh's steps. Standard library only; exit 1 on a failure.

    verdict.py valid FILE...  < kubeconform.json
        kubeconform's `-output json -summary -verbose` report: every resource valid, none skipped,
        no error (a missing schema is an error), and every FILE holds at least one resource.

    verdict.py reject FILE... < kubeconform.json
        Every FILE must be rejected (statusInvalid) with a message containing the text on its
        first line, "# reject: <text>", so a file rejected for another reason does not pass.

    verdict.py rbac YAML2JSON FILE...
        No Role or ClusterRole rule of any rendering grants '*' (apiGroups, resources, verbs,
        resourceNames, nonResourceURLs), none aggregates other roles, and no binding grants the
        built-in cluster-admin, admin or edit roles.
"""
import collections
import json
import subprocess
import sys


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    return 1


def report():
    data = json.load(sys.stdin)
    return data.get("resources") or [], data["summary"]


def valid(files):
    resources, summary = report()
    bad = 0
    for r in resources:
        if r["status"] != "statusValid":
            where = f"{r['filename']}: {r['kind']} {r['name']}"
            errors = "; ".join(f"{e.get('path', '')}: {e['msg']}" for e in r.get("validationErrors") or [])
            bad += fail(f"{where}: {r['status']}: {errors or r.get('msg', '')}")
    if summary["skipped"]:
        bad += fail(f"{summary['skipped']} resources skipped (nothing may be skipped)")
    seen = collections.Counter(r["filename"] for r in resources)
    for f in files:
        if not seen[f]:
            bad += fail(f"{f}: no resource validated")
    if bad:
        return 1
    kinds = collections.Counter(f"{r['kind']} {r['version']}" for r in resources)
    print(f"{len(resources)} resources in {len(files)} files, all valid: "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    return 0


def reject(files):
    resources, _ = report()
    by_file = collections.defaultdict(list)
    for r in resources:
        by_file[r["filename"]].append(r)
    bad = 0
    for f in files:
        with open(f) as fh:
            first = fh.readline()
        if not first.startswith("# reject:"):
            bad += fail(f"{f}: first line must be '# reject: <text of the expected error>'")
            continue
        expected = first.split(":", 1)[1].strip()
        results = by_file.get(f, [])
        messages = [
            f"{e.get('path', '')}: {e['msg']}" for r in results for e in r.get("validationErrors") or []
        ] + [r.get("msg", "") for r in results]
        if not any(r["status"] == "statusInvalid" for r in results):
            bad += fail(f"{f}: accepted, but it must be rejected ({[r['status'] for r in results]} {messages})")
        elif not any(expected in m for m in messages):
            bad += fail(f"{f}: rejected, but not for '{expected}': {messages}")
        else:
            print(f"  rejected {f.rsplit('/', 1)[-1]}: {next(m for m in messages if expected in m)}")
    return 1 if bad else 0


def rbac(yaml2json, files):
    bad = rules = 0
    for path in files:
        out = subprocess.run([yaml2json, path], check=True, capture_output=True, text=True).stdout
        for doc in map(json.loads, out.splitlines()):
            kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
            if kind in ("ClusterRole", "Role"):
                if doc.get("aggregationRule"):
                    bad += fail(f"{path}: {kind} {name} aggregates other roles")
                for rule in doc.get("rules") or []:
                    rules += 1
                    for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                        if any("*" in v for v in rule.get(field) or []):
                            bad += fail(f"{path}: {kind} {name}: {field}={rule[field]}")
            elif kind in ("ClusterRoleBinding", "RoleBinding"):
                ref = doc.get("roleRef", {})
                if ref.get("kind") == "ClusterRole" and ref.get("name") in ("cluster-admin", "admin", "edit"):
                    bad += fail(f"{path}: {kind} {name} binds the built-in ClusterRole {ref['name']}")
    if rules == 0:
        bad += fail("no RBAC rule found in any rendering")
    if bad:
        return 1
    print(f"{rules} RBAC rules in {len(files)} renderings, none with '*'")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "valid":
        sys.exit(valid(sys.argv[2:]))
    if len(sys.argv) >= 3 and sys.argv[1] == "reject":
        sys.exit(reject(sys.argv[2:]))
    if len(sys.argv) >= 4 and sys.argv[1] == "rbac":
        sys.exit(rbac(sys.argv[2], sys.argv[3:]))
    sys.exit(__doc__)
