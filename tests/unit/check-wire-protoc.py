#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Wire compatibility: what baton's codec writes decodes with Google's protoc.

Usage: check-wire-protoc.py PROTOC WIRE_DUMP PROTO_DIR

Runs WIRE_DUMP into a temporary directory, then decodes every file it wrote
with `protoc --decode=TYPE` against the .proto that declares TYPE, and checks
that protoc prints every expected line from the manifest. Also checks that
every message declared in PROTO_DIR has a sample. Prints TAP.
"""

import os
import re
import subprocess
import sys
import tempfile


def proto_types(proto_dir):
    """Maps each fully qualified message name to the .proto declaring it."""
    types = {}
    for name in sorted(os.listdir(proto_dir)):
        if not name.endswith(".proto"):
            continue
        with open(os.path.join(proto_dir, name), encoding="utf-8") as f:
            text = f.read()
        pkg = re.search(r"^\s*package\s+([\w.]+)\s*;", text, re.M)
        prefix = pkg.group(1) + "." if pkg else ""
        for m in re.finditer(r"^message\s+(\w+)", text, re.M):
            types[prefix + m.group(1)] = name
    return types


def main():
    if len(sys.argv) != 4:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    protoc, wire_dump, proto_dir = sys.argv[1:4]
    types = proto_types(proto_dir)
    results = []  # (ok, name, diagnostics)

    with tempfile.TemporaryDirectory(prefix="baton-wire-") as tmp:
        try:
            run = subprocess.run([wire_dump, tmp], capture_output=True, text=True)
            output, failed = run.stdout + run.stderr, run.returncode != 0
        except OSError as e:
            output, failed = str(e), True
        if failed:
            print("1..1")
            print("not ok 1 - wire-dump ran")
            for line in output.splitlines():
                print("# " + line)
            return 1

        with open(os.path.join(tmp, "manifest.tsv"), encoding="utf-8") as f:
            entries = [line.rstrip("\n").split("\t") for line in f if line.strip()]

        covered = set()
        for entry in entries:
            file, full_type, expect = entry[0], entry[1], entry[2:]
            name = "%s decodes as %s" % (file, full_type)
            proto = types.get(full_type)
            if proto is None:
                results.append((False, name, ["no .proto in %s declares %s" % (proto_dir, full_type)]))
                continue
            covered.add(full_type)
            with open(os.path.join(tmp, file), "rb") as data:
                dec = subprocess.run(
                    [protoc, "--proto_path=" + proto_dir, "--decode=" + full_type, proto],
                    stdin=data, capture_output=True)
            out = dec.stdout.decode("utf-8", "replace")
            diag = []
            if dec.returncode != 0:
                diag.append("protoc exited with %d" % dec.returncode)
                diag += dec.stderr.decode("utf-8", "replace").splitlines()
            lines = {line.strip() for line in out.splitlines()}
            for e in expect:
                if e not in lines:
                    diag.append("missing line: %s" % e)
            if diag:
                diag.append("protoc printed:")
                diag += ["  " + line for line in out.splitlines()]
            results.append((not diag, name, diag))

        missing = sorted(set(types) - covered)
        results.append((not missing, "every message type has a sample",
                        ["no sample for " + t for t in missing]))

    print("TAP version 13")
    print("1..%d" % len(results))
    failed = 0
    for i, (ok, name, diag) in enumerate(results, 1):
        print("%s %d - %s" % ("ok" if ok else "not ok", i, name))
        for line in diag:
            print("# " + line)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
