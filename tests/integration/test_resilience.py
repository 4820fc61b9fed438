# SPDX-License-Identifier: MIT
"""Issue 10's failures and hostile loads, performed for real against the real controller,
agents, broker and systemd managers:

- a hostile host floods the controller (huge heartbeats, a storm of unit events, shard
  reports with enormous range lists, an oversized message): the other hosts' heartbeats are
  still processed on time (none is declared down) and batonctl keeps answering;
- the database becomes unwritable (another process holds its write lock): every mutating
  verb answers with the real outcome, nothing changes, and all works again afterwards;
- a Placement too large for a message raises an alert naming host and size;
- a restored backup rises above the epoch agents have seen (after one restart since the
  backup, and after two) and every host converges to the restored state."""

import json
import os
import re
import shutil
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from events import Alerts  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
suite = Suite('resilience')
S = {}

WEB = """[Unit]
Description=resilience test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=2
MinReplicas=1
MaxReplicas=6
MaxPerHost=1
MaxUnavailable=1
HealthyFor=30s
HealthTimeout=10min
"""

GATEWAY = """[Unit]
Description=a sharded test service

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Kind=sharded
Instances=2
Shards=8
MinReplicas=1
MaxReplicas=4
MaxPerHost=2
IdentifyConcurrency=8
IdentifyInterval=100ms
DailyStartBudget=100000
"""


def ok_json(world, *args, **kw):
    r = world.batonctl('--json', *args, **kw)
    assert r.returncode == 0, f'batonctl --json {" ".join(args)}: {r.returncode}\n{r.stderr}'
    return json.loads(r.stdout)


def spec_file(world, name, text):
    path = os.path.join(world.dir, 'specs', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def active(pattern):
    out = []
    for name, h in S['hosts'].items():
        r = h.systemctl('list-units', '--state=active', '--plain', '--no-legend', pattern)
        out += [(name, line.split()[0]) for line in r.stdout.splitlines() if line.strip()]
    return sorted(out)


def counters(world):
    return ok_json(world, 'ping')['counters']


def start_controller(world, **controller):
    S['controller'] = world.start_controller(config={
        'controller': {'host_timeout': '5s', **controller},
        'security': {'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')


@suite.setup
def setup(world):
    world.start_broker()
    start_controller(world)
    S['hosts'] = {n: world.add_host(n) for n in HOSTS}
    S['agents'] = {n: world.start_agent(S['hosts'][n], config={
        'agent': {'manage_units': 'web@*.service gateway@*.service big@*.service',
                  'labels': f'name={n}'}}) for n in HOSTS}
    world.wait_for(lambda: [h['state'] for h in ok_json(world, 'hosts')['hosts']] ==
                   ['up'] * 3, 30, what='three hosts up')
    ok_json(world, 'apply', spec_file(world, 'web@.service', WEB),
            spec_file(world, 'gateway@.service', GATEWAY))
    world.wait_for(lambda: len(active('web@*')) == 2 and len(active('gateway@*')) == 2, 60,
                   what='web and gateway running')
    S['alerts'] = Alerts(world.broker)


@suite.case
def a_hostile_host_does_not_starve_the_others(world):
    """mallory floods; alpha, bravo and charlie keep being heard on time."""
    world.send('baton.v1.Heartbeat', {'host': 'mallory', 'interval_us': 1000000},
               exchange='baton.status', routing_key='mallory.heartbeat', key=False,
               sender='mallory')
    world.wait_for(lambda: 'mallory' in [h['host'] for h in ok_json(world, 'hosts')['hosts']],
                   10, what='mallory known')
    before = counters(world)
    # Sized for cost, not volume: 20,000 units was seconds of CPU a heartbeat when the
    # controller searched them linearly, and a range list in descending order seconds a
    # report when it inserted in front. (Volume through one queue on loopback is slow
    # with the recommended 32 KiB socket buffers, and is not what is tested here.)
    units = [{'name': f'u{i:05d}.service', 'active_state': 'a', 'sub_state': 'r',
              'n_restarts': i % 7} for i in range(20000)]
    big_hb = {'host': 'mallory', 'units': units, 'interval_us': 1000000}
    ranges = ','.join(str(i) for i in range(99999, 0, -2))
    report = {'host': 'mallory', 'instances': [
        {'unit': 'gateway@0.service', 'service': 'gateway', 'instance': 0, 'assigned': ranges,
         'ready': ranges, 'shard_count': 100000, 'shard_epoch': 1, 'active_state': 'active',
         'has_tokens': True}]}
    event = {'host': 'mallory', 'unit': {'name': 'x.service', 'active_state': 'failed',
                                         'sub_state': 'failed', 'result': 'x' * 200}}
    floods = [
        ('baton.v1.Heartbeat', big_hb, 'mallory.heartbeat', 6),
        ('baton.v1.ShardReport', report, 'mallory.shard', 6),
        ('baton.v1.UnitEvent', event, 'mallory.unit', 20000),
    ]
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            t0 = time.monotonic()
            r = world.batonctl('--json', 'hosts', timeout=30)
            took = time.monotonic() - t0
            if r.returncode == 0:
                seen = {h['host']: h for h in json.loads(r.stdout)['hosts']}
                now = time.time() * 1e6
                samples.append((took, {n: (now - seen[n]['last_seen_us']) / 1e6
                                       for n in HOSTS}))
            else:
                samples.append((took, None))
            time.sleep(0.5)

    t = threading.Thread(target=sample)
    t.start()
    try:
        for type, body, key, n in floods:
            world.send(type, body, exchange='baton.status', routing_key=key, key=False,
                       sender='mallory', repeat=n, timeout='120s')
        # And one message far above what any consumer accepts.
        world.send('baton.v1.Heartbeat', raw_body=b'\x0a' * (8 * 1024 * 1024),
                   exchange='baton.status', routing_key='mallory.heartbeat')
        time.sleep(8)
    finally:
        stop.set()
        t.join()
    after = counters(world)
    assert after['refused.rate-limited'] > before['refused.rate-limited'] + 10000, after
    assert after['refused.malformed'] >= before['refused.malformed'] + 1, after  # 8 MiB
    assert 'exceeds the limit' in S['controller'].log()
    # Nobody honest was declared down, and every sample saw them heard within the timeout.
    down = [a for n in HOSTS for a in S['alerts'].find('host-down', n)]
    assert not down, down
    assert all(lag is not None for _, lag in samples), samples
    worst = max(max(lag.values()) for _, lag in samples)
    assert worst < 5, f'an honest host was not heard for {worst:.1f}s: {samples}'
    assert [h['state'] for h in ok_json(world, 'hosts')['hosts'] if h['host'] in HOSTS] == \
        ['up'] * 3
    assert len(active('web@*')) == 2 and len(active('gateway@*')) == 2


class Locked:
    """Another process holds the controller database's write lock (an operator's sqlite3
    shell in a transaction, a stuck backup tool): every write of the controller fails."""

    def __init__(self, world):
        self.db = sqlite3.connect(os.path.join(world.dir, 'controller.db'),
                                  isolation_level=None, timeout=10)

    def __enter__(self):
        self.db.execute('BEGIN IMMEDIATE')
        return self

    def __exit__(self, *exc):
        self.db.execute('ROLLBACK')
        self.db.close()


@suite.case
def an_unwritable_database_fails_every_mutating_verb_honestly(world):
    web3 = spec_file(world, 'web3/web@.service', WEB.replace('Replicas=2', 'Replicas=3'))
    # A rolling restart that stays under way (HealthyFor=30s) for the pause below.
    ok_json(world, 'restart', 'web')
    status_before = ok_json(world, 'status', 'web')['services'][0]
    units_before = active('web@*')
    with Locked(world):
        attempts = [
            (('apply', web3), 'cannot store the services and their placement'),
            (('delete', 'web'), 'cannot delete web'),
            (('scale', 'web', '3'), 'cannot scale web'),
            (('drain', 'alpha'), 'cannot drain alpha'),
            (('reshard', 'gateway', '--instances', '3'), 'cannot store the reshard'),
            (('rollout', 'pause', 'web'), 'cannot store the rollout'),
        ]
        for args, says in attempts:
            r = world.batonctl(*args)
            assert r.returncode == 1, f'batonctl {" ".join(args)}: {r.returncode} {r.stderr}'
            assert says in r.stderr and 'nothing changed' in r.stderr, r.stderr
            assert 'database is locked' in r.stderr, r.stderr
        r = world.batonctl('backup', os.path.join(world.dir, 'locked.db'))
        assert r.returncode == 1 and 'audit log cannot be written' in r.stderr, r
        assert not os.path.exists(os.path.join(world.dir, 'locked.db'))
        # Nothing changed, in what batonctl shows or on the hosts.
        s = ok_json(world, 'status', 'web')['services'][0]
        assert s['count'] == status_before['count'] == 2, s
        assert [h['state'] for h in ok_json(world, 'hosts')['hosts']
                if h['host'] in HOSTS] == ['up'] * 3
        ro = ok_json(world, 'rollout', 'status', 'web')['rollouts'][0]
        assert ro['state'] == 'running', ro
        shards = ok_json(world, 'shards', 'gateway')
        assert shards['instances'] == 2 and shards['reshard'] is None, shards
        time.sleep(2)
        assert active('web@*') == units_before
    assert counters(world)['store_errors'] > 0
    # Writable again: the same verbs work.
    ok_json(world, 'rollout', 'pause', 'web')
    ok_json(world, 'scale', 'web', '3')
    world.wait_for(lambda: len(active('web@*')) == 3, 30, what='three web instances')
    ok_json(world, 'scale', 'web', '2')
    world.wait_for(lambda: len(active('web@*')) == 2, 30, what='two web instances')
    ok_json(world, 'rollout', 'abort', 'web')


@suite.case
def a_placement_too_large_is_alerted(world):
    filler = '# ' + 'x' * 120 + '\n'
    big = ('[Unit]\nDescription=big %i\n\n[Service]\nExecStart=/bin/sleep infinity\n\n'
           '[X-Baton]\nReplicas=24\nMaxPerHost=24\nRequireLabels=name=alpha\n' +
           filler * (200 * 1024 // len(filler)))
    ok_json(world, 'apply', spec_file(world, 'big@.service', big))
    alert = world.wait_for(lambda: [a for a in ok_json(world, 'alerts')['alerts']
                                    if a['kind'] == 'placement-too-large'], 20,
                           what='placement-too-large raised')[0]
    assert alert['host'] == 'alpha' and alert['severity'] == 'critical', alert
    size = re.search(r'\((\d+) units, (\d+) bytes\)', alert['summary'])
    assert size and int(size.group(1)) >= 24 and int(size.group(2)) > 4194304, alert
    assert 'larger than a message may be (4194304 bytes)' in alert['summary'], alert
    # alpha keeps what it runs; the others are not affected.
    assert len(active('web@*')) == 2
    ok_json(world, 'delete', 'big')
    world.wait_for(lambda: not [a for a in ok_json(world, 'alerts')['alerts']
                                if a['kind'] == 'placement-too-large'], 20,
                   what='placement-too-large resolved once it fits again')


def restore(world, path):
    assert S['controller'].stop() == 0
    db = os.path.join(world.dir, 'controller.db')
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    shutil.copyfile(path, db)
    start_controller(world)


def restart_controller(world):
    assert S['controller'].stop() == 0
    start_controller(world)
    # The agents saw this run's epoch (its Placements reached them).
    epoch = ok_json(world, 'ping')['epoch']
    world.wait_for(lambda: all(h['max_epoch_seen'] == epoch
                               for h in ok_json(world, 'hosts')['hosts']
                               if h['host'] in HOSTS), 30, what='agents on the new epoch')


def backup_change_restart_restore(world, restarts):
    path = os.path.join(world.dir, f'backup-{restarts}.db')
    ok_json(world, 'backup', path)
    ok_json(world, 'scale', 'web', '1')
    world.wait_for(lambda: len(active('web@*')) == 1, 30, what='one web instance')
    for _ in range(restarts):
        restart_controller(world)
    seen = max(h['max_epoch_seen'] for h in ok_json(world, 'hosts')['hosts'])
    restore(world, path)
    # The restored state (two instances) reaches every host, under an epoch above theirs.
    world.wait_for(lambda: len(active('web@*')) == 2, 60,
                   what=f'two web instances again after a restore ({restarts} restart(s))')
    epoch = ok_json(world, 'ping')['epoch']
    assert epoch > seen, (epoch, seen)
    world.wait_for(lambda: all(h['max_epoch_seen'] == epoch
                               for h in ok_json(world, 'hosts')['hosts']
                               if h['host'] in HOSTS), 30, what='agents on the raised epoch')
    assert 'this database was restored or reused' in S['controller'].log()
    assert not [a for a in ok_json(world, 'alerts')['alerts']
                if a['kind'] == 'command-refused'], 'hosts still refuse the controller'


@suite.case
def a_restore_after_two_restarts_converges(world):
    backup_change_restart_restore(world, 2)


@suite.case
def a_restore_after_one_restart_converges(world):
    backup_change_restart_restore(world, 1)


if __name__ == '__main__':
    suite.run()
