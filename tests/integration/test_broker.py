#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Runs the C integration test of common/io/broker.c (tests/integration/test-broker.c) against
an isolated rabbitmq-server of its own and passes its TAP output through unchanged.

The C program stops, starts, freezes and thaws that broker through `world.py broker-ctl`,
so this test never attaches to a shared broker (BATON_TEST_BROKER_JSON is ignored)."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# Stopping or freezing a broker other tests share would break them: always our own.
os.environ.pop('BATON_TEST_BROKER_JSON', None)

from world import BUILD_DIR, SOURCE_DIR, World  # noqa: E402

TIMEOUT = 600


def main() -> int:
    exe = os.path.join(BUILD_DIR, 'tests', 'integration', 'test-broker')
    if not os.access(exe, os.X_OK):
        print(f'Bail out! {exe} is not built (BATON_BUILD_DIR={BUILD_DIR})', flush=True)
        return 1
    with World('broker') as w:
        b = w.start_broker()
        env = dict(os.environ,
                   BATON_TEST_AMQP_URL=b.url,
                   BATON_TEST_BROKER_DIR=b.dir,
                   BATON_SOURCE_DIR=SOURCE_DIR)
        sys.stdout.flush()
        # stdout is inherited: the TAP stream reaches meson untouched.
        p = subprocess.Popen([exe], env=env, stdin=subprocess.DEVNULL)
        try:
            rc = p.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            print(f'Bail out! test-broker did not finish within {TIMEOUT} s', flush=True)
            return 1
        except BaseException:
            p.kill()
            p.wait()
            raise
        if rc < 0:
            print(f'Bail out! test-broker killed by signal {-rc}', flush=True)
            return 1
        return rc


if __name__ == '__main__':
    sys.exit(main())
