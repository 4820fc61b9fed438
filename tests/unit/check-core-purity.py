#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# The pure cores must not call into an I/O library. The poison include
# directory stops an #include at compile time; this checks the link side:
# no undefined symbol of libuv, rabbitmq-c, SQLite, sd-bus/sd-journal,
# libsodium, jansson or inih in any core archive.
import subprocess
import sys

FORBIDDEN = ("uv_", "amqp_", "sqlite3_", "sd_", "sodium_", "crypto_", "json_", "ini_parse")

nm, archives = sys.argv[1], sys.argv[2:]
print("TAP version 13")
print(f"1..{len(archives)}")
failed = 0
for i, archive in enumerate(archives, 1):
    out = subprocess.run([nm, "--undefined-only", "--format=posix", archive],
                         capture_output=True, text=True, check=True).stdout
    bad = sorted({line.split()[0] for line in out.splitlines()
                  if line.split() and line.split()[0].startswith(FORBIDDEN)})
    name = archive.rsplit("/", 1)[-1]
    if bad:
        failed += 1
        print(f"not ok {i} - {name} calls I/O libraries")
        for sym in bad:
            print(f"#   undefined: {sym}")
    else:
        print(f"ok {i} - {name} is pure")
sys.exit(1 if failed else 0)
