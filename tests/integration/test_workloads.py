# SPDX-License-Identifier: MIT
"""The test workloads as real services on a real `systemd --user` manager: what baton's agent
and the demo will rely on.

A sharded gateway (template gw@.service, Type=notify) is active as soon as it sends READY=1,
then reports its shards connecting → ready in StatusText, identifying them no faster than one
per bucket per interval (checked on its identify log); failed shards show as failed= without
failing the unit; SIGHUP identifies everything again within the same limit; a bad environment
is refused with exit status 2; SIGTERM stops it cleanly. The generic service reports its name
and uptime, crashes on request, and is restarted by systemd (NRestarts grows)."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path  # noqa: E402

HOST = 'h1'
SHARDS = '0-4'
SHARD_COUNT = 5
EPOCH = 7
CONCURRENCY = 2
INTERVAL_MS = 250  # long enough that `systemctl show` sees the shards still connecting
IDENTIFY_MS = 100
CRASH_AFTER_MS = 400

suite = Suite('workloads')
state = {}

LOG_LINE = re.compile(r'^(\d+) (\S+)@(\S+) shard=(\d+) bucket=(\d+) epoch=(\d+) host=(\S+)$')


def unit_escape(s: str) -> str:
    """A literal string inside a unit file: no specifier or variable expansion."""
    return s.replace('%', '%%').replace('$', '$$')


def environment(**env) -> str:
    return 'Environment=' + ' '.join(f'"{k}={unit_escape(str(v))}"' for k, v in env.items())


def rangelist(text: str) -> set[int]:
    out = set()
    for item in filter(None, text.split(',')):
        lo, _, hi = item.partition('-')
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def shard_tokens(status: str) -> dict[str, set[int]]:
    """{ready, connecting, failed} → shard sets, from a StatusText (missing tokens: empty)."""
    out = {'ready': set(), 'connecting': set(), 'failed': set()}
    for word in status.split():
        key, sep, value = word.partition('=')
        if sep and key in out:
            out[key] |= rangelist(value)
    return out


def binary(name: str) -> str:
    path = build_path('tests', 'workloads', name)
    if not os.access(path, os.X_OK):
        raise AssertionError(f'{path} is not built')
    return path


def identify_log(world) -> list[dict]:
    """Every line of the shared identify log; a line that does not parse fails the test, so
    concurrent writers must never interleave within a line."""
    try:
        with open(state['identify_log']) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    assert text == '' or text.endswith('\n'), f'identify log ends mid-line: {text[-80:]!r}'
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        assert m, f'malformed identify log line: {line!r}'
        out.append({'usec': int(m[1]), 'service': m[2], 'instance': m[3], 'shard': int(m[4]),
                    'bucket': int(m[5]), 'epoch': int(m[6]), 'host': m[7]})
    return out


def check_pacing(lines: list[dict], what: str) -> None:
    """One identify per bucket per interval, in the log's own timestamps."""
    last = {}
    for e in sorted(lines, key=lambda e: e['usec']):
        assert e['bucket'] == e['shard'] % CONCURRENCY, f'{what}: wrong bucket in {e}'
        prev = last.get(e['bucket'])
        if prev is not None:
            gap = e['usec'] - prev['usec']
            assert gap >= INTERVAL_MS * 1000, \
                f'{what}: bucket {e["bucket"]} identified shard {e["shard"]} only {gap} µs ' \
                f'after shard {prev["shard"]} (interval {INTERVAL_MS} ms)'
        last[e['bucket']] = e


def status(h, unit: str) -> str:
    return h.unit_property(unit, 'StatusText')


def props(h, unit: str, *names: str) -> dict[str, str]:
    r = h.systemctl('show', unit, *[f'-p{n}' for n in names])
    assert r.returncode == 0, f'systemctl show {unit}: {r.stderr}'
    return dict(line.split('=', 1) for line in r.stdout.splitlines() if '=' in line)


def write_dropin(h, unit: str, name: str, text: str) -> None:
    os.makedirs(os.path.join(h.unit_dir, f'{unit}.d'), exist_ok=True)
    h.write_unit(f'{unit}.d/{name}', text)


@suite.setup
def setup(world):
    h = world.add_host(HOST)
    state['host'] = h
    state['identify_log'] = os.path.join(world.dir, 'identify.log')
    state['service_log'] = os.path.join(world.dir, 'service.log')
    gateway, service = binary('baton-test-gateway'), binary('baton-test-service')
    # As an agent would install them: the template carries what every instance shares, a
    # drop-in what one instance differs in.
    h.write_unit('gw@.service', '\n'.join([
        '[Unit]',
        'Description=baton test gateway %i',
        '[Service]',
        'Type=notify',
        f'ExecStart="{unit_escape(gateway)}"',
        environment(BATON_SERVICE='gw', BATON_HOST=HOST, BATON_SHARDS=SHARDS,
                    BATON_SHARD_COUNT=SHARD_COUNT, BATON_SHARD_EPOCH=EPOCH,
                    GATEWAY_IDENTIFY_CONCURRENCY=CONCURRENCY,
                    GATEWAY_IDENTIFY_INTERVAL_MS=INTERVAL_MS, GATEWAY_IDENTIFY_MS=IDENTIFY_MS,
                    GATEWAY_IDENTIFY_LOG=state['identify_log']),
        'Environment=BATON_INSTANCE=%i',
        '',
    ]))
    common = [
        'Type=notify',
        f'ExecStart="{unit_escape(service)}"',
        environment(BATON_HOST=HOST, SERVICE_LOG=state['service_log']),
    ]
    h.write_unit('svc@.service', '\n'.join([
        '[Unit]',
        'Description=baton test service %i',
        # Crash loops are the point here: no start limit.
        'StartLimitIntervalSec=0',
        '[Service]',
        *common,
        environment(BATON_SERVICE='svc', SERVICE_EXIT_AFTER_MS=CRASH_AFTER_MS),
        'Environment=BATON_INSTANCE=%i',
        'Restart=on-failure',
        'RestartSec=200ms',
        '',
    ]))
    h.write_unit('core.service', '\n'.join([
        '[Unit]',
        'Description=baton test singleton',
        '[Service]',
        *common,
        environment(BATON_SERVICE='core'),
        '',
    ]))


@suite.case
def gateway_ready_shard_by_shard(world):
    h = state['host']
    r = h.systemctl('start', 'gw@0.service')
    assert r.returncode == 0, f'start gw@0: {r.stderr}'
    # Type=notify: active from READY=1 on, while the shards are still connecting.
    first = status(h, 'gw@0.service')
    assert h.unit_property('gw@0.service', 'ActiveState') == 'active'
    tokens = shard_tokens(first)
    assert tokens['connecting'], f'no shard connecting right after start: {first!r}'
    assert tokens['ready'] | tokens['connecting'] == rangelist(SHARDS), first

    seen = [first]

    def settled():
        s = status(h, 'gw@0.service')
        if s != seen[-1]:
            seen.append(s)
        return s == 'ready=0-4'
    world.wait_for(settled, timeout=10, interval=0.02, what='gw@0 StatusText ready=0-4')
    print('statuses seen: ' + ' | '.join(seen))
    ready_before = set()
    for s in seen:
        t = shard_tokens(s)
        assert t['ready'] | t['connecting'] == rangelist(SHARDS) and not t['failed'], s
        assert ready_before <= t['ready'], f'a ready shard went back: {seen}'
        ready_before = t['ready']

    lines = [e for e in identify_log(world) if e['instance'] == '0']
    assert sorted(e['shard'] for e in lines) == sorted(rangelist(SHARDS)), lines
    for e in lines:
        assert (e['service'], e['epoch'], e['host']) == ('gw', EPOCH, HOST), e
    check_pacing(lines, 'gw@0')
    # The buckets run side by side: shards 0 and 1 did not wait for each other.
    t = {e['shard']: e['usec'] for e in lines}
    assert abs(t[0] - t[1]) < INTERVAL_MS * 1000, f'buckets 0 and 1 serialised: {lines}'


@suite.case
def gateway_reports_failed_shards(world):
    h = state['host']
    write_dropin(h, 'gw@1.service', '50-fail.conf',
                 '[Service]\nEnvironment=GATEWAY_FAIL_SHARDS=4\n')
    r = h.systemctl('start', 'gw@1.service')
    assert r.returncode == 0, f'start gw@1: {r.stderr}'
    world.wait_for(lambda: status(h, 'gw@1.service') == 'ready=0-3 failed=4', timeout=10,
                   interval=0.05, what='gw@1 StatusText ready=0-3 failed=4')
    # A failed shard is the service's report, not a failed unit.
    p = props(h, 'gw@1.service', 'ActiveState', 'SubState', 'NRestarts')
    assert p == {'ActiveState': 'active', 'SubState': 'running', 'NRestarts': '0'}, p
    lines = [e for e in identify_log(world) if e['instance'] == '1']
    assert sorted(e['shard'] for e in lines) == [0, 1, 2, 3, 4], lines
    check_pacing(lines, 'gw@1')


@suite.case
def gateway_sighup_identifies_again_within_the_limit(world):
    h = state['host']
    before = len(identify_log(world))
    pids = {u: h.unit_property(u, 'MainPID') for u in ('gw@0.service', 'gw@1.service')}
    # Both at once: two writers on one log, each line must stay whole.
    r = h.systemctl('kill', '--signal=HUP', 'gw@0.service', 'gw@1.service')
    assert r.returncode == 0, f'kill -HUP: {r.stderr}'

    def redone():
        lines = identify_log(world)[before:]
        return len(lines) == 10 and lines
    again = world.wait_for(redone, timeout=10, interval=0.05, what='10 more identifies')
    world.wait_for(lambda: status(h, 'gw@0.service') == 'ready=0-4' and
                   status(h, 'gw@1.service') == 'ready=0-3 failed=4',
                   timeout=10, interval=0.05, what='both gateways settled again')
    for inst in ('0', '1'):
        mine = [e for e in again if e['instance'] == inst]
        assert sorted(e['shard'] for e in mine) == [0, 1, 2, 3, 4], mine
        # Across both rounds: a re-identify right after the last one still waits.
        check_pacing([e for e in identify_log(world) if e['instance'] == inst], f'gw@{inst}')
    assert {u: h.unit_property(u, 'MainPID') for u in pids} == pids, 'a gateway restarted'


@suite.case
def gateway_rapid_sighup_keeps_the_limit(world):
    """A second re-identify 50 ms into the first: its first identifies must wait for the
    interval of the ones just made, not start at once."""
    h = state['host']
    pid = int(h.unit_property('gw@0.service', 'MainPID'))
    before = len(identify_log(world))
    os.kill(pid, signal.SIGHUP)
    time.sleep(0.05)
    os.kill(pid, signal.SIGHUP)

    # Usually the first round gets one or two identifies in before the second SIGHUP; if
    # the two signals merged there is a single round, and the limit must hold all the same.
    def second_round_done():
        mine = [e['shard'] for e in identify_log(world)[before:] if e['instance'] == '0']
        return (len(mine) >= 5 and sorted(mine[-5:]) == [0, 1, 2, 3, 4] and
                status(h, 'gw@0.service') == 'ready=0-4' and mine)
    mine = world.wait_for(second_round_done, timeout=10, interval=0.05,
                          what='gw@0 through a cut-short round and a full one')
    print(f'identifies after the two SIGHUPs: {mine}')
    check_pacing([e for e in identify_log(world) if e['instance'] == '0'], 'gw@0')


@suite.case
def gateway_refuses_bad_environment(world):
    h = state['host']
    # By hand: the reason, on stderr.
    env = {k: v for k, v in os.environ.items() if not k.startswith(('BATON_', 'GATEWAY_'))}
    env.pop('NOTIFY_SOCKET', None)
    r = subprocess.run([binary('baton-test-gateway')], env={**env, 'BATON_SHARD_COUNT': '5'},
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert 'BATON_SHARDS is not set' in r.stderr, r.stderr
    # Under systemd: a shard beyond the count fails the start with exit status 2.
    write_dropin(h, 'gw@2.service', '50-shards.conf',
                 '[Service]\nEnvironment=BATON_SHARDS=0-9\n')
    r = h.systemctl('start', 'gw@2.service')
    assert r.returncode != 0, 'gw@2 started with shards beyond BATON_SHARD_COUNT'
    p = props(h, 'gw@2.service', 'ActiveState', 'Result', 'ExecMainStatus')
    assert p == {'ActiveState': 'failed', 'Result': 'exit-code', 'ExecMainStatus': '2'}, p
    h.systemctl('reset-failed', 'gw@2.service')


@suite.case
def gateway_stops_on_sigterm(world):
    h = state['host']
    t0 = time.monotonic()
    r = h.systemctl('stop', 'gw@0.service', 'gw@1.service')
    took = time.monotonic() - t0
    assert r.returncode == 0, f'stop: {r.stderr}'
    assert took < 5, f'stopping took {took:.1f}s'
    for u in ('gw@0.service', 'gw@1.service'):
        p = props(h, u, 'ActiveState', 'Result', 'ExecMainStatus')
        assert p == {'ActiveState': 'inactive', 'Result': 'success', 'ExecMainStatus': '0'}, \
            (u, p)


def service_log(instance: str) -> list[list[str]]:
    """Lines of the service log for one service name, split in words."""
    try:
        with open(state['service_log']) as f:
            return [line.split() for line in f if line.split()[1:2] == [instance]]
    except FileNotFoundError:
        return []


@suite.case
def service_crashes_and_restarts(world):
    h = state['host']
    r = h.systemctl('start', 'svc@0.service')
    assert r.returncode == 0, f'start svc@0: {r.stderr}'
    assert re.fullmatch(r'svc@0 up \d+s', status(h, 'svc@0.service')), \
        status(h, 'svc@0.service')
    # NRestarts counts a restart when systemd begins it: the third process may not have
    # logged yet, so wait for its line too.
    world.wait_for(lambda: int(h.unit_property('svc@0.service', 'NRestarts')) >= 2 and
                   [w[2] for w in service_log('svc@0')].count('start') >= 3,
                   timeout=15, interval=0.1, what='svc@0 NRestarts >= 2 and a third start')
    r = h.systemctl('stop', 'svc@0.service')
    assert r.returncode == 0, f'stop svc@0: {r.stderr}'

    lines = service_log('svc@0')
    events = [w[2] for w in lines]
    assert events.count('crash') >= 2, events
    assert events.count('start') >= 3, events
    # Every start is a new process: systemd restarted it, the program did not loop.
    assert len({w[3] for w in lines if w[2] == 'start'}) == events.count('start'), lines
    for w in lines:
        if w[2] == 'crash':
            uptime = int(w[5].split('=')[1])
            assert uptime >= CRASH_AFTER_MS, w
    p = props(h, 'svc@0.service', 'ActiveState')
    assert p['ActiveState'] in ('inactive', 'failed'), p


@suite.case
def service_reports_uptime_and_stops_cleanly(world):
    h = state['host']
    r = h.systemctl('start', 'core.service')
    assert r.returncode == 0, f'start core: {r.stderr}'
    assert h.unit_property('core.service', 'ActiveState') == 'active'
    # The singleton has no instance: its status is its service name and uptime.
    world.wait_for(lambda: re.fullmatch(r'core up [1-9]\d*s', status(h, 'core.service')),
                   timeout=5, interval=0.1, what='core StatusText "core up Ns", N >= 1')
    r = h.systemctl('stop', 'core.service')
    assert r.returncode == 0, f'stop core: {r.stderr}'
    p = props(h, 'core.service', 'ActiveState', 'Result', 'ExecMainStatus', 'NRestarts')
    assert p == {'ActiveState': 'inactive', 'Result': 'success', 'ExecMainStatus': '0',
                 'NRestarts': '0'}, p
    events = [w[2] for w in service_log('core')]
    assert events[0] == 'start' and events[-1] == 'stop', events
    assert 'signal=TERM' in service_log('core')[-1], service_log('core')[-1]


if __name__ == '__main__':
    suite.run()
