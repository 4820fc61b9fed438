#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The sd-bus <-> libuv bridge against a real `systemd --user` manager: runs the C TAP program
tests/integration/test-bus on one simulated host, passes its TAP through and exits with its
code. The program stops the manager itself in its last case (BATON_TEST_MANAGER_PID); the
world then has nothing left to stop but still removes the host's cgroups."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from world import BUILD_DIR, World  # noqa: E402

TIMEOUT = 300


def main() -> int:
    exe = os.path.join(BUILD_DIR, 'tests', 'integration', 'test-bus')
    if not os.access(exe, os.X_OK):
        print(f'1..0 # SKIP {exe} is not built')
        return 0
    with World('bus') as w:
        h = w.add_host('bus1')
        env = dict(h.env)
        env['BATON_TEST_BUS_ADDRESS'] = h.bus_address
        env['BATON_TEST_MANAGER_PID'] = str(h.manager_pid)
        sys.stdout.flush()
        try:
            r = subprocess.run([exe], env=env, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f'not ok - test-bus did not finish in {TIMEOUT}s')
            return 1
        sys.stdout.flush()
        if r.returncode < 0:
            print(f'# test-bus killed by signal {-r.returncode}')
            return 1
        return r.returncode


if __name__ == '__main__':
    sys.exit(main())
