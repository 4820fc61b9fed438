#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# baton-test-gateway with a shards file (ShardChange=reload), run by hand
# without a service manager (it then prints what it would send to systemd):
# on SIGHUP it reads the file again, drops the shards no longer in it at once,
# identifies the new ones at the pacer's pace and logs them as at start, and
# never takes a kept shard out of ready=. A bad file keeps the set; a missing
# file or both BATON_SHARDS forms at once refuse the start.
#
#   check-gateway-reload.py PATH-TO-baton-test-gateway
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

GATEWAY = sys.argv[1]
INTERVAL_MS = 100
TIMEOUT = 20.0
LOG_LINE = re.compile(r'^(\d+) gw@3 shard=(\d+) bucket=(\d+) epoch=2 host=h$')


def fail(msg):
    print(f'FAIL: {msg}')
    sys.exit(1)


def parse_list(text):
    out = set()
    for item in filter(None, text.split(',')):
        lo, _, hi = item.partition('-')
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def parse_status(line):
    """'READY=1 STATUS=ready=0-3 connecting=5' -> {'ready': {...}, ...}"""
    body = line.split('STATUS=', 1)[1]
    tokens = {'ready': set(), 'connecting': set(), 'failed': set()}
    for word in body.split():
        key, _, value = word.partition('=')
        tokens[key] = parse_list(value)
    return tokens


class Gateway:
    def __init__(self, tmp, shards, concurrency, interval_ms=INTERVAL_MS):
        self.shards_file = os.path.join(tmp, 'shards')
        self.log = os.path.join(tmp, 'identify.log')
        self.write(shards)
        env = {k: v for k, v in os.environ.items() if k != 'NOTIFY_SOCKET'}
        env.update(BATON_SHARDS_FILE=self.shards_file, BATON_SHARD_COUNT='16',
                   BATON_SHARD_EPOCH='2', BATON_SERVICE='gw', BATON_INSTANCE='3',
                   BATON_HOST='h', GATEWAY_IDENTIFY_CONCURRENCY=str(concurrency),
                   GATEWAY_IDENTIFY_INTERVAL_MS=str(interval_ms), GATEWAY_IDENTIFY_MS='20',
                   GATEWAY_IDENTIFY_LOG=self.log)
        env.pop('BATON_SHARDS', None)
        self.proc = subprocess.Popen([GATEWAY], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append),
                         daemon=True).start()

    @staticmethod
    def _pump(f, put):
        for line in f:
            put(line.rstrip('\n'))

    def write(self, text):
        # as the agent does: a whole new file under the name at once
        tmp = self.shards_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.shards_file)

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def statuses_until(self, want_ready, want_connecting=frozenset()):
        """Every status line up to the first with exactly these sets."""
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                fail(f'no status ready={sorted(want_ready)} within {TIMEOUT}s; '
                     f'saw {seen[-3:]}; stderr {self.stderr}')
            if 'STATUS=' not in line:
                fail(f'unexpected output {line!r}')
            st = parse_status(line)
            seen.append(st)
            if st['ready'] == set(want_ready) and st['connecting'] == set(want_connecting):
                return seen

    def wait_stderr(self, needle):
        deadline = time.monotonic() + TIMEOUT
        while not any(needle in line for line in self.stderr):
            if time.monotonic() > deadline:
                fail(f'stderr never said {needle!r}: {self.stderr}')
            time.sleep(0.01)

    def identifies(self):
        out = []
        with open(self.log) as f:
            for line in f:
                m = LOG_LINE.match(line.rstrip('\n'))
                if not m:
                    fail(f'log line not in the start format: {line!r}')
                out.append((int(m[1]), int(m[2]), int(m[3])))
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=TIMEOUT)
        if rc != 0:
            fail(f'exit {rc} on SIGTERM; stderr {self.stderr}')


def check_pacing(ids, interval_ms=INTERVAL_MS):
    last = {}
    for stamp, shard, bucket in ids:
        if bucket in last and stamp - last[bucket] < interval_ms * 1000:
            fail(f'bucket {bucket}: shard {shard} {stamp - last[bucket]}us after the one before')
        last[bucket] = stamp


def settled_reload(tmp):
    """All four shards ready, then a new set: 2-3 kept, 0-1 dropped, 4-5 and 9 added."""
    g = Gateway(tmp, '0-3\n', 2)
    g.statuses_until({0, 1, 2, 3})
    g.write('9,2-5\n')
    g.hup()
    after = g.statuses_until({2, 3, 4, 5, 9})
    g.wait_stderr('reload: +3 -2 shards')
    for st in after:
        every = st['ready'] | st['connecting'] | st['failed']
        if not {2, 3} <= st['ready']:
            fail(f'a kept shard left ready=: {st}')
        if every & {0, 1}:
            fail(f'a dropped shard is still reported: {st}')
        if not every <= {2, 3, 4, 5, 9}:
            fail(f'a shard out of the set is reported: {st}')
    ids = g.identifies()
    shards = [s for _, s, _ in ids]
    if sorted(shards) != [0, 1, 2, 3, 4, 5, 9]:
        fail(f'identifies {shards}: want each of 0-5 and 9 once')
    if shards[:4] != [0, 1, 2, 3] or not all(b == s % 2 for _, s, b in ids):
        fail(f'identifies {ids}')
    check_pacing(ids)

    # A file that does not parse changes nothing; an empty set drops all.
    g.write('2-x\n')
    g.hup()
    g.wait_stderr('keeping the shards it has')
    g.write('\n')
    g.hup()
    g.statuses_until(set())
    g.wait_stderr('reload: +0 -5 shards')
    if len(g.identifies()) != 7:
        fail(f'identifies after the empty set: {g.identifies()}')
    g.stop()


def reload_while_identifying(tmp):
    """One bucket, eight shards; after the first identify the set changes:
    queued shards that go are never identified, kept ones still are, new ones
    join the queue. The interval leaves this script time to send the signal
    before shard 2's turn (shard 1 may begin first)."""
    interval_ms = 300
    g = Gateway(tmp, '0-7\n', 1, interval_ms)
    g.statuses_until({0}, {1, 2, 3, 4, 5, 6, 7})
    g.write('0,6-9\n')
    g.hup()
    seen = g.statuses_until({0, 6, 7, 8, 9})
    g.wait_stderr('reload: +2 -5 shards')
    # from the first status after the reload on (5 is connecting until then)
    after = seen[next(i for i, st in enumerate(seen) if 5 not in st['connecting']):]
    for st in after:
        every = st['ready'] | st['connecting'] | st['failed']
        if 0 not in st['ready'] or every & {1, 2, 3, 4, 5}:
            fail(f'after the reload: {st}')
    ids = g.identifies()
    shards = [s for _, s, _ in ids]
    # shard 1 may have started identifying before the signal was handled
    if shards[0] != 0 or sorted(s for s in shards if s != 1) != [0, 6, 7, 8, 9] or \
            len(set(shards)) != len(shards) or set(shards) & {2, 3, 4, 5}:
        fail(f'identifies {shards}')
    check_pacing(ids, interval_ms)
    g.stop()


def refusals(tmp):
    base = {k: v for k, v in os.environ.items() if k != 'NOTIFY_SOCKET'}
    base.update(BATON_SHARD_COUNT='16')
    cases = [
        ({'BATON_SHARDS_FILE': os.path.join(tmp, 'missing')}, 'No such file'),
        ({'BATON_SHARDS_FILE': os.path.join(tmp, 'shards'), 'BATON_SHARDS': '0-3'},
         'both set'),
    ]
    with open(os.path.join(tmp, 'shards'), 'w') as f:
        f.write('0-3\n')
    with open(os.path.join(tmp, 'big'), 'w') as f:
        f.write('0-16\n')
    cases.append(({'BATON_SHARDS_FILE': os.path.join(tmp, 'big')}, 'not below'))
    for extra, needle in cases:
        env = dict(base, **extra)
        if 'BATON_SHARDS' not in extra:
            env.pop('BATON_SHARDS', None)
        r = subprocess.run([GATEWAY, '--self-test'], env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
        if r.returncode != 2 or needle not in r.stderr:
            fail(f'{extra}: exit {r.returncode}, stderr {r.stderr!r}; want 2 and {needle!r}')


for case in (settled_reload, reload_while_identifying, refusals):
    with tempfile.TemporaryDirectory() as tmp:
        case(tmp)
    print(f'ok {case.__name__}')
