# SPDX-License-Identifier: MIT
"""Sharded services end to end on three real hosts: a gateway fleet of 6
instances × 96 shards (baton-test-gateway, IdentifyConcurrency=1) starts
through the start gate; a reshard to 7 instances and a reshard to 128 shards
keep every shard served throughout (the shard map sampled all along) and
never exceed the identify rate (the gateways' own identify logs); a rolling
restart, a rolling update and a one-instance restart replace each copy
make-before-break, leaving no shard without a ready owner as the gateways
themselves publish it (sampled every 100 ms on every host); a host with no
room for the replacement refuses it with the reason and --in-place restarts
in place; `batonctl shards`/`reshard` answer and refuse as documented."""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path, run  # noqa: E402
from events import Alerts  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
INTERVAL_MS = 60
suite = Suite('shards')
S = {}
LOG_LINE = re.compile(r'^(\d+) (\S+)@(\S+) shard=(\d+) bucket=(\d+) epoch=(\d+) host=(\S+)$')


def unit_escape(s):
    return s.replace('%', '%%').replace('$', '$$')


def gateway_spec(log):
    return '\n'.join([
        '[Unit]',
        'Description=test gateway %i',
        '[Service]',
        'Type=notify',
        # A stop that hangs (seen once under ASan) must not hold the agent's job queue.
        'TimeoutStopSec=10s',
        f'ExecStart="{unit_escape(build_path("tests", "workloads", "baton-test-gateway"))}"',
        f'Environment="GATEWAY_IDENTIFY_INTERVAL_MS={INTERVAL_MS}" '
        f'"GATEWAY_IDENTIFY_CONCURRENCY=1" "GATEWAY_IDENTIFY_MS=5" '
        f'"GATEWAY_IDENTIFY_LOG={unit_escape(log)}"',
        '[X-Baton]',
        'Kind=sharded',
        'Instances=6',
        'Shards=96',
        'MinReplicas=1',
        'MaxReplicas=12',
        'MaxPerHost=4',
        'MaxUnavailable=1',
        'HealthyFor=300ms',
        'HealthTimeout=60s',
        'IdentifyConcurrency=1',
        f'IdentifyInterval={INTERVAL_MS}ms',
        'DailyStartBudget=2000',
        '',
    ])


def spec_file(world, name, text):
    path = os.path.join(world.dir, 'specs', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def ctl_json(world, *args, timeout=20):
    r = world.batonctl('--json', *args, timeout=timeout)
    assert r.returncode == 0, f'batonctl {" ".join(args)}: {r.returncode}\n{r.stderr}'
    return json.loads(r.stdout)


def identifies(world):
    try:
        with open(S['log']) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        assert m, f'malformed identify log line: {line!r}'
        out.append({'usec': int(m[1]), 'service': m[2], 'instance': m[3], 'shard': int(m[4]),
                    'epoch': int(m[6]), 'host': m[7]})
    return out


def check_rate(lines, what):
    """IdentifyConcurrency=1: one bucket, so one identify per interval fleet-wide."""
    lines = sorted(lines, key=lambda e: e['usec'])
    for a, b in zip(lines, lines[1:]):
        gap = b['usec'] - a['usec']
        assert gap >= INTERVAL_MS * 1000, \
            f'{what}: shard {b["shard"]} ({b["instance"]}) identified {gap} µs after shard ' \
            f'{a["shard"]} ({a["instance"]}); the interval is {INTERVAL_MS} ms'


def check_one_at_a_time(lines, what):
    """Each instance's identifies end before the next instance's begin."""
    spans = {}
    for e in lines:
        lo, hi = spans.get(e['instance'], (e['usec'], e['usec']))
        spans[e['instance']] = (min(lo, e['usec']), max(hi, e['usec']))
    ordered = sorted(spans.values())
    for (a_lo, a_hi), (b_lo, b_hi) in zip(ordered, ordered[1:]):
        assert b_lo > a_hi, f'{what}: two instances identified at once: {ordered}'


def restart_through_the_gate(world, unit):
    """`batonctl restart --in-place gateway@N`, retried while the start gate is still
    closed (it opens one interval after the last start was seen ready)."""
    def attempt():
        r = world.batonctl('--json', 'restart', '--in-place', unit)
        assert r.returncode in (0, 4), r
        assert r.returncode == 0 or 'start gate' in r.stderr, r
        return r.returncode == 0 and json.loads(r.stdout)
    return world.wait_for(attempt, 30, interval=0.1, what=f'{unit} restarted')


def shards_answer(world, service, instances_max):
    """The controller's answer to `shards SERVICE` with instances_max, as sent (batonctl
    asks for at most 200, more than this fleet has)."""
    body = {'verb': 'shards', 'service': {'service': service, 'instance': -1,
                                          'instances_max': instances_max}}
    r = run([build_path('tests', 'tools', 'baton-probe'), 'send', '--broker',
                   world.broker.url, '--type', 'baton.v1.Request', '--exchange',
                   'baton.requests', '--routing-key', 'baton.rpc', '--user-id', 'guest',
                   '--sender', 'batonctl:guest', '--json', json.dumps(body), '--timeout', '10s',
                   '--no-declare', '--await-reply'], timeout=30)
    assert r.returncode == 0, f'no answer to {body}: {r.stderr}'
    resp = json.loads(r.stdout.splitlines()[-1])['body']
    assert resp.get('status', 'STATUS_OK') == 'STATUS_OK', resp
    return json.loads(resp['json'])


def settled(copy, copies_of_instance):
    return (copies_of_instance == 1 and copy['running'] and copy['active_state'] == 'active'
            and copy['ready'] == copy['shards'])


def all_ready(world, total):
    m = ctl_json(world, 'shards', 'gw')
    return m['ready'] == total and m['shard_count'] == total and m['reshard'] is None and m


def rangelist(text):
    out = set()
    for item in filter(None, text.split(',')):
        lo, _, hi = item.partition('-')
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


class WorkloadSampler:
    """Samples what the gateway processes themselves publish, every 100 ms, on every
    host (systemd's StatusText of each active copy, read with systemctl, not through
    baton): the shards without a ready owner in each sample, summed to shard-seconds."""

    def __init__(self, world, total, pattern='gw@*.service'):
        self.world, self.total, self.pattern = world, total, pattern
        self.samples, self.dark, self.worst, self.stop = 0, 0.0, set(), False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        # The first sample is taken before the operation starts.
        deadline = time.monotonic() + 15
        while self.samples == 0 and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.samples > 0, 'the workload sampler took no first sample'

    def ready_now(self):
        ready = set()
        for host in S['hosts'].values():
            r = host.systemctl('show', '-p', 'Id,ActiveState,StatusText', self.pattern,
                               timeout=10)
            assert r.returncode == 0, r.stderr
            for block in r.stdout.split('\n\n'):
                props = dict(line.partition('=')[::2] for line in block.splitlines() if line)
                if props.get('ActiveState') != 'active':
                    continue
                for word in props.get('StatusText', '').split():
                    if word.startswith('ready='):
                        ready |= rangelist(word[len('ready='):])
        return ready

    def run(self):
        last = time.monotonic()
        while not self.stop:
            missing = set(range(self.total)) - self.ready_now()
            now = time.monotonic()
            self.samples += 1
            self.dark += len(missing) * (now - last)
            if len(missing) > len(self.worst):
                self.worst = missing
            last = now
            time.sleep(max(0.0, 0.1 - (time.monotonic() - now)))

    def finish(self):
        self.stop = True
        self.thread.join(15)
        return self.samples, self.dark, sorted(self.worst)


class Sampler:
    """Samples the shard map in the background; records every sample in
    which a shard of the serving epoch had no ready owner."""

    def __init__(self, world):
        self.world, self.samples, self.gaps, self.stop = world, 0, [], False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            r = self.world.batonctl('--json', 'shards', 'gw', timeout=10)
            if r.returncode == 0:
                m = json.loads(r.stdout)
                self.samples += 1
                if m['unowned'] or m['ready'] != m['shard_count']:
                    self.gaps.append((m['epoch'], m['ready'], m['shard_count'], m['unowned']))
            time.sleep(0.1)

    def finish(self):
        self.stop = True
        self.thread.join(15)
        return self.samples, self.gaps


@suite.setup
def setup(world):
    broker = world.start_broker()
    secret, public = world.keygen()
    S['config'] = {'controller': {'host_timeout': '5s', 'shard_unowned_after': '2s'},
                   'security': {'signing_key': secret, 'operators': 'guest'}}
    S['controller'] = world.start_controller(config=S['config'])
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    S['alerts'] = Alerts(broker)
    S['events'] = world.listen('baton.events:event.#')
    S['hosts'] = {n: world.add_host(n) for n in HOSTS}
    S['agent_config'] = {
        'agent': {'manage_units': 'gw@*.service gw4@*.service gwr@*.service',
                  'heartbeat_interval': '1s'},
        'security': {'controller_public_key': public}}
    S['agents'] = {n: world.start_agent(S['hosts'][n], config=S['agent_config'])
                   for n in HOSTS}
    world.wait_for(lambda: len([h for h in ctl_json(world, 'hosts')['hosts']
                                if h['state'] == 'up']) == 3, 20, what='three hosts up')
    S['log'] = os.path.join(world.dir, 'identify.log')


@suite.case
def gateway_fleet_starts_through_the_gate(world):
    path = spec_file(world, 'gw@.service', gateway_spec(S['log']))
    plan = ctl_json(world, 'plan', path)['services'][0]
    # 6 instances one after another, 16 shards each in one bucket: 16 intervals
    # each, and one interval between an instance ready and the next start.
    assert plan['identifies'] == 96, plan
    assert plan['estimated_duration_us'] == (96 + 5) * INTERVAL_MS * 1000, plan
    r = world.batonctl('plan', path)
    assert r.returncode == 0 and 'IDENTIFIES' in r.stdout and '96' in r.stdout, r.stdout
    ctl_json(world, 'apply', path)
    m = world.wait_for(lambda: all_ready(world, 96), 90, interval=0.5,
                       what='96 shards ready')
    assert m['epoch'] == 1 and m['instances'] == 6, m
    assert len(m['copies']) == 6 and all(c['role'] == 'live' for c in m['copies']), m
    assert len(m['shards']) == 96 and all(s['state'] == 'ready' for s in m['shards']), m
    log = identifies(world)
    assert sorted(e['shard'] for e in log) == list(range(96)), 'each shard identified once'
    check_rate(log, 'initial start')
    st = ctl_json(world, 'status', 'gw')['services'][0]
    assert st['healthy'] == 6 and st['shards']['ready'] == 96, st
    r = world.batonctl('status')
    assert r.returncode == 0 and '96/96 ready' in r.stdout, r.stdout
    r = world.batonctl('shards', 'gw')
    assert r.returncode == 0 and '96/96 shards ready in epoch 1' in r.stdout, r.stdout


@suite.case
def shards_and_reshard_refuse_bad_requests(world):
    r = world.batonctl('--json', 'shards', 'nosuch')
    assert r.returncode == 4 and 'nosuch' in r.stderr, r
    r = world.batonctl('reshard', 'gw', '--instances', '0')
    assert r.returncode == 2, r
    r = world.batonctl('reshard', 'gw')
    assert r.returncode == 2, r
    r = world.batonctl('reshard', 'gw', '--instances', '13')
    assert r.returncode == 4 and 'MaxReplicas' in r.stderr, r
    r = world.batonctl('reshard', 'gw', '--instances', '6')
    assert r.returncode == 4 and 'already' in r.stderr, r
    plan = ctl_json(world, 'reshard', 'gw', '--instances', '7', '--dry-run')
    assert plan['dry_run'] and plan['to']['instances'] == 7 and plan['shards_moving'] == 13, plan
    assert plan['identifies'] == 96 and plan['estimated_duration_us'] > 0, plan
    assert plan['resumes'] == 0 and plan['surge_copies'] == 1 and \
        plan['dark_shard_seconds'] == 0, plan
    assert ctl_json(world, 'shards', 'gw')['instances'] == 6, 'a dry run changes nothing'
    # Over budget: the plan's numbers are in the refusal.
    small = gateway_spec(S['log']).replace('Description=test gateway',
                                           'Description=small gateway')
    small = small.replace('DailyStartBudget=2000', 'DailyStartBudget=150').replace(
        'Instances=6', 'Instances=2').replace('Shards=96', 'Shards=8')
    ctl_json(world, 'apply', spec_file(world, 'gw2@.service', small))
    r = world.batonctl('reshard', 'gw2', '--shards', '145')
    assert r.returncode == 4 and 'budget' in r.stderr and '150' in r.stderr \
        and '145' in r.stderr, r
    ctl_json(world, 'delete', 'gw2')


@suite.case
def reshard_to_seven_instances_keeps_every_shard_served(world):
    before = len(identifies(world))
    sampler = Sampler(world)
    r = world.batonctl('reshard', 'gw', '--instances', '7', '--wait', timeout=240)
    samples, gaps = sampler.finish()
    assert r.returncode == 0, f'{r.returncode}\n{r.stdout}\n{r.stderr}'
    m = all_ready(world, 96)
    assert m and m['instances'] == 7 and m['epoch'] == 1, m
    assert samples >= 10, f'only {samples} samples of the map'
    assert not gaps, f'shards without a ready owner during the reshard: {gaps[:5]}'
    log = identifies(world)
    check_rate(log, 'reshard to 7 instances')
    assert len(log) - before == 96, f'{len(log) - before} identifies, planned 96'
    owners = {}
    for c in m['copies']:
        assert c['role'] == 'live', c
        owners[c['instance']] = c['shards']
    assert len(owners) == 7, owners


@suite.case
def reshard_to_128_shards_brings_the_new_set_up_first(world):
    before = len(identifies(world))
    sampler = Sampler(world)
    r = world.batonctl('reshard', 'gw', '--shards', '128', '--wait', timeout=300)
    samples, gaps = sampler.finish()
    assert r.returncode == 0, f'{r.returncode}\n{r.stdout}\n{r.stderr}'
    m = all_ready(world, 128)
    assert m and m['epoch'] == 2 and m['instances'] == 7, m
    assert not gaps, f'shards without a ready owner during the reshard: {gaps[:5]}'
    new = identifies(world)[before:]
    check_rate(identifies(world), 'reshard to 128 shards')
    assert sorted(e['shard'] for e in new) == list(range(128)), 'the new set identified once'
    assert all(e['epoch'] == 2 for e in new), 'new copies run under epoch 2'


def host_state(world, host):
    return next(h['state'] for h in ctl_json(world, 'hosts')['hosts'] if h['host'] == host)


def busiest_host(world):
    """The host with the most gw copies (at least two), and the shards they own."""
    where = {}
    for c in ctl_json(world, 'status', 'gw')['services'][0]['instances']:
        where.setdefault(c['host'], []).append(c['instance'])
    host = max(where, key=lambda h: len(where[h]))
    assert len(where[host]) >= 2, where
    return host, set(x['shard'] for x in ctl_json(world, 'shards', 'gw')['shards']
                     if x['instance'] in where[host])


def moved_off(world, host):
    """No gw instance is placed on host, none runs there, every shard is ready and no
    move runs."""
    left = [c for c in ctl_json(world, 'status', 'gw')['services'][0]['instances']
            if c['host'] == host]
    return not left and replaced(world) and not S['hosts'][host].systemctl(
        'list-units', '--state=active', '--no-legend', 'gw@*.service').stdout.strip()


def replaced(world):
    """The make-before-break restart is over: no reshard (restart) runs, every shard
    ready."""
    return not ctl_json(world, 'rollout', 'status', 'gw')['reshards'] and all_ready(world, 128)


def spent(world):
    return ctl_json(world, 'shards', 'gw')['budget']['spent_24h']


def check_charged(world, spent_before, identified, what):
    """The daily ledger is charged exactly the identifies the gateways logged."""
    charged = spent(world) - spent_before
    assert charged == identified, f'{what}: {charged} charged, {identified} identified'


def check_never_dark(workloads, what):
    samples, dark, worst = workloads.finish()
    print(f'{what}: {dark:.2f} shard-seconds without a ready owner over {samples} samples')
    # At least the one before the operation started, one during, one after.
    assert samples >= 3, f'{what}: only {samples} samples of the workloads'
    assert dark == 0, f'{what}: {dark:.2f} shard-seconds without a ready owner (e.g. {worst[:8]})'


@suite.case
def rolling_restart_replaces_each_copy_before_stopping_it(world):
    """Each copy's replacement starts beside it (the other slot), identifies through the
    gate and takes over; the old copy stops only then: no shard is ever without a ready
    owner, as the gateways themselves publish it. And `shards` above instances_max lists
    only the copies that need a look."""
    # What it will do, first: a read-only verb, nothing starts.
    plan = ctl_json(world, 'restart', '--dry-run', 'gw')
    assert plan['dry_run'] and plan['make_before_break'] and plan['instances'] == 7, plan
    assert plan['identifies'] == 128 and plan['resumes'] == 0 and plan['surge_copies'] == 1, plan
    assert plan['dark_shard_seconds'] == 0 and plan['estimated_duration_us'] > 0, plan
    assert plan['budget']['allowed'], plan
    assert not ctl_json(world, 'rollout', 'status', 'gw')['reshards']
    r = world.batonctl('restart', '--dry-run', 'gw')
    assert r.returncode == 0 and 'Would restart gw make-before-break (7 copies)' in r.stdout \
        and '128 identifies, 0 resumes, 1 surge copy at a time, 0.0 shard-seconds' in r.stdout, \
        r.stdout
    before, charged = len(identifies(world)), spent(world)
    workloads = WorkloadSampler(world, 128)
    res = ctl_json(world, 'restart', 'gw')
    assert res['instances'] == 7 and res['make_before_break'] is True and res['rollout'], res
    summaries = []

    texts = []

    def restart_done():
        summaries.append(shards_answer(world, 'gw', 4))
        if len(texts) < 5:
            texts.append(world.batonctl('shards', 'gw').stdout +
                         world.batonctl('status').stdout)
        return replaced(world)

    world.wait_for(restart_done, 240, interval=0.2, what='rolling restart done')
    check_never_dark(workloads, 'rolling restart')
    assert any('Restart running (make-before-break):' in t and 'copies replaced.' in t and
               '/128 ready, restarting' in t for t in texts), texts
    new = identifies(world)[before:]
    assert len(new) == 128, f'{len(new)} identifies'
    check_charged(world, charged, len(new), 'rolling restart')
    check_rate(identifies(world), 'rolling restart')
    check_one_at_a_time(new, 'rolling restart')
    # While it rolled: the copies listed are the ones of the instance being replaced (a
    # second copy, or one not yet ready), never more than asked, never a settled one; the
    # per-shard list is left out (128 shards > 4), the ranges stay.
    listed = [d['copies'] for d in summaries if d['copies']]
    assert listed, 'no summary caught an instance being replaced'
    assert any(len(c) == 2 and c[0]['instance'] == c[1]['instance'] for c in listed), listed
    for d in summaries:
        assert d['copies_listed'] is False and d['copies_total'] >= 7, d
        assert d['shards_listed'] is False and 'shards' not in d, d
        assert len(d['copies']) <= 4 and d['shard_count'] == 128, d
        for cp in d['copies']:
            n = sum(c['instance'] == cp['instance'] for c in d['copies'])
            assert not settled(cp, n), (cp, d)
    # At rest: every copy settled, none listed; --all and a larger max list everything.
    rest = shards_answer(world, 'gw', 4)
    assert rest['copies'] == [] and rest['copies_total'] == 7 and rest['ready'] == 128, rest
    r = world.batonctl('shards', 'gw')
    assert r.returncode == 0 and 'gw@6' in r.stdout, r.stdout
    full = shards_answer(world, 'gw', 0)
    assert full['copies_listed'] and len(full['copies']) == 7, full
    assert full['shards_listed'] and len(full['shards']) == 128, full


@suite.case
def changed_unit_rolls_out_without_a_dark_shard(world):
    before, charged = len(identifies(world)), spent(world)
    workloads = WorkloadSampler(world, 128)
    text = gateway_spec(S['log']).replace('"GATEWAY_IDENTIFY_MS=5"', '"GATEWAY_IDENTIFY_MS=6"')
    doc = ctl_json(world, 'apply', spec_file(world, 'gw@.service', text))
    svc = doc['services'][0]
    assert svc['action'] == 'update' and svc['rollout'], svc
    world.wait_for(lambda: replaced(world), 240, interval=0.5, what='rolling update done')
    check_never_dark(workloads, 'rolling update')
    new = identifies(world)[before:]
    assert len(new) == 128, f'{len(new)} identifies: the agents must not restart by themselves'
    check_charged(world, charged, len(new), 'rolling update')
    check_rate(identifies(world), 'rolling update')
    check_one_at_a_time(new, 'rolling update')
    # Every copy runs the new unit: each was replaced by one started from it.
    for host in S['hosts'].values():
        r = host.systemctl('show', '-p', 'Environment', 'gw@*.service')
        assert 'GATEWAY_IDENTIFY_MS=5' not in r.stdout, r.stdout


@suite.case
def one_instance_restart_goes_through_the_gate(world):
    before, charged = len(identifies(world)), spent(world)
    owned = sum(1 for x in ctl_json(world, 'shards', 'gw')['shards'] if x['instance'] == 0)
    workloads = WorkloadSampler(world, 128)
    res = ctl_json(world, 'restart', 'gw@0')
    assert res['make_before_break'] is True and res['instances'] == 1, res
    # gw@0 is being replaced: another restart waits until it is done.
    r = world.batonctl('restart', 'gw@1')
    assert r.returncode == 4 and 'restart' in r.stderr and 'of gw is under way' in r.stderr, r
    world.wait_for(lambda: len(identifies(world)) - before == owned and replaced(world), 60,
                   interval=0.3, what='gw@0 replaced and ready')
    check_never_dark(workloads, 'one instance restart')
    check_charged(world, charged, owned, 'one instance restart')
    check_rate(identifies(world), 'one instance restart')


@suite.case
def a_full_host_refuses_make_before_break_unless_in_place(world):
    """MaxPerHost=3 with 3 copies on a host leaves no room for a replacement beside them:
    the restart is refused up front with the reason; --in-place restarts in place."""
    hosts = {}
    for c in ctl_json(world, 'status', 'gw')['services'][0]['instances']:
        hosts[c['host']] = hosts.get(c['host'], 0) + 1
    assert max(hosts.values()) == 3, hosts
    # A changed unit: no rolling update, and the answer says why.
    text = gateway_spec(S['log']).replace('"GATEWAY_IDENTIFY_MS=5"', '"GATEWAY_IDENTIFY_MS=7"')
    doc = ctl_json(world, 'apply', spec_file(world, 'gw@.service',
                                             text.replace('MaxPerHost=4', 'MaxPerHost=3')))
    svc = doc['services'][0]
    assert svc['action'] == 'update' and not svc.get('rollout'), svc
    assert 'no rolling update' in svc['rollout_error'] and 'MaxPerHost=3' in \
        svc['rollout_error'], svc
    for dry in ([], ['--dry-run']):
        r = world.batonctl('restart', *dry, 'gw')
        assert r.returncode == 4, r
        assert 'no room to restart gw make-before-break' in r.stderr and \
            'MaxPerHost=3' in r.stderr and '--in-place' in r.stderr, r.stderr
    before = len(identifies(world))
    owned = sum(1 for x in ctl_json(world, 'shards', 'gw')['shards'] if x['instance'] == 3)
    # In place, the plan says its shards go dark: one interval each, one after another in
    # their one bucket.
    plan = ctl_json(world, 'restart', '--dry-run', '--in-place', 'gw@3')
    assert not plan['make_before_break'] and plan['identifies'] == owned, plan
    assert plan['surge_copies'] == 0, plan
    want = INTERVAL_MS / 1000 * owned * (owned + 1) / 2
    assert abs(plan['dark_shard_seconds'] - want) < 1e-6, (plan, want)
    workloads = WorkloadSampler(world, 128)
    restart_through_the_gate(world, 'gw@3')
    world.wait_for(lambda: len(identifies(world)) - before == owned and all_ready(world, 128), 60,
                   interval=0.3, what='gw@3 restarted in place')
    # In place, its shards were dark while they identified: the sampler sees it.
    samples, dark, worst = workloads.finish()
    print(f'in place: {dark:.2f} shard-seconds without a ready owner over {samples} samples')
    assert dark > 0 and set(worst) <= set(x['shard'] for x in ctl_json(world, 'shards', 'gw')
                                          ['shards'] if x['instance'] == 3), (dark, worst)
    check_rate(identifies(world), 'in-place restart')
    # Room again: make-before-break restarts are accepted.
    ctl_json(world, 'apply', spec_file(world, 'gw@.service', text))


@suite.case
def a_restarted_controller_keeps_the_gate_closed_until_ready(world):
    before = len(identifies(world))
    owned = sum(1 for x in ctl_json(world, 'shards', 'gw')['shards'] if x['instance'] == 1)
    restart_through_the_gate(world, 'gw@1')
    # kill -9 while gw@1 identifies: the new controller cannot know how far it got.
    world.wait_for(lambda: len(identifies(world)) > before, 30, interval=0.02,
                   what='gw@1 identifying')
    S['controller'].kill()
    S['controller'] = world.start_controller(config=S['config'])
    world.wait_for(lambda: world.batonctl('ping', timeout=5).returncode == 0, 30,
                   what='controller back')
    if len(identifies(world)) - before < owned:
        r = world.batonctl('restart', '--in-place', 'gw@2')
        assert r.returncode == 4 and 'start gate' in r.stderr, r
    world.wait_for(lambda: len(identifies(world)) - before == owned and all_ready(world, 128),
                   60, interval=0.3, what='gw@1 ready again')
    restart_through_the_gate(world, 'gw@2')
    world.wait_for(lambda: all_ready(world, 128) and
                   len(identifies(world)) - before > owned + 10, 60, interval=0.3,
                   what='gw@2 restarted')
    world.wait_for(lambda: all_ready(world, 128), 60, interval=0.3, what='all ready')
    check_rate(identifies(world), 'across a controller restart')


@suite.case
def drain_of_the_busiest_host_moves_copies_make_before_break(world):
    """Draining the host with the most gateway copies moves each to another host: the
    new copy starts there through the gate while the old one keeps serving on the
    drained host, which stops it only once every shard is ready at the new one."""
    busiest, owned = busiest_host(world)
    owned = len(owned)
    before, charged = len(identifies(world)), spent(world)
    workloads = WorkloadSampler(world, 128)
    doc = ctl_json(world, 'drain', busiest)
    # One copy at a time (MaxSurge=1): the others follow as each move completes.
    assert doc['state'] == 'drained' and doc['moved'] >= 1, doc
    texts = []

    def moved():
        if len(texts) < 5:
            texts.append(world.batonctl('shards', 'gw').stdout +
                         world.batonctl('status').stdout)
        return moved_off(world, busiest)

    world.wait_for(moved, 240, interval=0.3, what=f'gw copies moved off {busiest}')
    check_never_dark(workloads, f'drain of {busiest}')
    # While it moved, `shards` named the copies still serving where they were.
    assert any('Move running (make-before-break):' in t and f' off {busiest}' in t and
               '/128 ready, moving copies' in t for t in texts), texts
    new = identifies(world)[before:]
    assert len(new) == owned, f'{len(new)} identifies for {owned} shards moved'
    assert all(e['host'] != busiest for e in new), new
    check_charged(world, charged, len(new), 'drain')
    check_rate(identifies(world), 'drain')
    check_one_at_a_time(new, 'drain')
    ctl_json(world, 'undrain', busiest)


@suite.case
def a_silent_host_serves_until_its_copies_are_replaced(world):
    """The agent of the host with the most gateway copies is killed; systemd keeps its
    gateways running. Once the controller takes the host for down it starts their
    replacements elsewhere through the gate, shows their shards as unknown (not without
    an owner) and raises no shard-unowned alert; the agent returns before every
    replacement is ready, and each old copy serves until its replacement does."""
    silent, owned = busiest_host(world)
    before, charged = len(identifies(world)), spent(world)
    seen = len(S['alerts'].poll())
    workloads = WorkloadSampler(world, 128)
    S['agents'][silent].kill()
    world.wait_for(lambda: host_state(world, silent) == 'down', 30, interval=0.1,
                   what=f'{silent} down')
    doc = ctl_json(world, 'shards', 'gw')
    text = world.batonctl('shards', 'gw').stdout
    # What the controller last heard from the silent host: its shards may still be
    # served, so they are unknown, not without an owner.
    assert rangelist(doc['unknown']) and rangelist(doc['unknown']) <= owned, doc
    assert not rangelist(doc['unowned']), doc
    assert 'Unknown (last owner on a silent host' in text, text
    S['agents'][silent] = world.start_agent(S['hosts'][silent], config=S['agent_config'])
    world.wait_for(lambda: host_state(world, silent) == 'up', 30, interval=0.2,
                   what=f'{silent} back')
    world.wait_for(lambda: moved_off(world, silent), 240, interval=0.3,
                   what=f'gw copies moved off {silent}')
    check_never_dark(workloads, f'silent {silent}')
    unowned = [a for a in S['alerts'].poll()[seen:] if a.get('kind') == 'shard-unowned' and
               a.get('service') == 'gw' and a.get('resolved') == 'false']
    assert not unowned, unowned
    new = identifies(world)[before:]
    assert len(new) == len(owned), f'{len(new)} identifies for {len(owned)} shards moved'
    assert all(e['host'] != silent for e in new), new
    check_charged(world, charged, len(new), 'moves off a silent host')
    check_rate(identifies(world), 'moves off a silent host')


def main_pids(pattern):
    """{unit: MainPID} of the active units matching pattern, on every host."""
    pids = {}
    for host in S['hosts'].values():
        r = host.systemctl('show', '-p', 'Id,ActiveState,MainPID', pattern, timeout=10)
        assert r.returncode == 0, r.stderr
        for block in r.stdout.split('\n\n'):
            props = dict(line.partition('=')[::2] for line in block.splitlines() if line)
            if props.get('ActiveState') == 'active':
                pids[props['Id']] = int(props['MainPID'])
    return pids


@suite.case
def live_reshard_identifies_only_the_shards_that_change_owner(world):
    """ShardChange=reload: a reshard 6 → 7 changes each copy's shards in its running
    process (the agent rewrites $BATON_SHARDS_FILE and reloads the unit): the new
    instance identifies its share, the others only drop shards, no process restarts and
    no shard goes dark."""
    text = gateway_spec(S['log']).replace('Shards=96', 'Shards=48').replace(
        '[X-Baton]', 'ExecReload=/bin/kill -HUP $MAINPID\n[X-Baton]\nShardChange=reload')
    ctl_json(world, 'apply', spec_file(world, 'gwr@.service', text))

    def up():
        m = ctl_json(world, 'shards', 'gwr')
        return m['ready'] == 48 and m['reshard'] is None and len(main_pids('gwr@*.service')) == 6

    world.wait_for(up, 120, interval=0.3, what='gwr up')
    # The copies read their shards from the file; nothing else tells them.
    for host in S['hosts'].values():
        r = host.systemctl('show', '-p', 'Environment', 'gwr@*.service')
        assert 'BATON_SHARDS_FILE=' in r.stdout and 'BATON_SHARDS=' not in r.stdout, r.stdout
    plan = ctl_json(world, 'reshard', '--dry-run', 'gwr', '--instances', '7')
    assert plan['reshard']['live'] is True and plan['surge_copies'] == 0, plan
    moving = plan['shards_moving']
    assert 0 < moving < 48 and plan['identifies'] == moving, plan
    r = world.batonctl('reshard', '--dry-run', 'gwr', '--instances', '7')
    assert r.returncode == 0 and f'{moving} shard(s) change owner, live (ShardChange=reload)' \
        in r.stdout and f'spending {moving} identifies' in r.stdout, r.stdout
    pids = main_pids('gwr@*.service')
    before = len(identifies(world))
    charged = ctl_json(world, 'shards', 'gwr')['budget']['spent_24h']
    workloads = WorkloadSampler(world, 48, 'gwr@*.service')
    res = ctl_json(world, 'reshard', 'gwr', '--instances', '7')
    assert res['identifies'] == moving, res

    def done():
        m = ctl_json(world, 'shards', 'gwr')
        return m['ready'] == 48 and m['reshard'] is None and m['instances'] == 7

    world.wait_for(done, 120, interval=0.3, what='live reshard done')
    check_never_dark(workloads, 'live reshard')
    # The losers dropped what they gave away: no shard has two owners.
    m = ctl_json(world, 'shards', 'gwr')
    assert m['owned_twice'] == '' and m['unowned'] == '', m
    new = [e for e in identifies(world)[before:] if e['service'] == 'gwr']
    assert len(new) == moving, f'{len(new)} identifies for {moving} shards changing owner'
    assert {e['instance'] for e in new} == {'6'}, new
    check_rate(new, 'live reshard')
    spent_now = ctl_json(world, 'shards', 'gwr')['budget']['spent_24h']
    assert spent_now - charged == moving, (spent_now, charged, moving)
    # No gateway process was restarted: every old copy has the PID it had.
    after = main_pids('gwr@*.service')
    assert all(after.get(unit) == pid for unit, pid in pids.items()), (pids, after)
    assert len(after) == 7, after
    ctl_json(world, 'delete', 'gwr')


def alert(kind, resolved):
    return next((a for a in S['alerts'].poll() if a.get('kind') == kind and
                 a.get('service') == 'gw4' and a.get('resolved') == resolved), None)


@suite.case
def shard_alerts_and_map_events(world):
    events = [m for m in S['events'].messages() if m['headers'].get('kind') == 'shard-map' and
              m['headers'].get('service') == 'gw']
    assert events, 'no shard-map event for gw'
    detail = json.loads(events[-1]['body']['detail_json'])
    assert detail['service'] == 'gw' and detail['copies'], detail
    # A small fleet: shard 3 fails to identify; 16 of 20 identifies a day is low.
    text = gateway_spec(S['log']).replace('Instances=6', 'Instances=2').replace(
        'Shards=96', 'Shards=8').replace('DailyStartBudget=2000', 'DailyStartBudget=20').replace(
        '"GATEWAY_IDENTIFY_MS=5"', '"GATEWAY_IDENTIFY_MS=5" "GATEWAY_FAIL_SHARDS=3"')
    ctl_json(world, 'apply', spec_file(world, 'gw4@.service', text))
    a = world.wait_for(lambda: alert('shard-failed', 'false'), 30, what='shard-failed alert')
    assert a['summary'].endswith(': 3'), a
    a = world.wait_for(lambda: alert('budget-low', 'false'), 30, what='budget-low alert')
    assert '20' in a['summary'], a
    # Shard 3 has no ready owner: after shard_unowned_after (2 s) it is alerted.
    a = world.wait_for(lambda: alert('shard-unowned', 'false'), 30, what='shard-unowned alert')
    assert a['summary'].endswith(': 3'), a
    kinds = {x['kind'] for x in ctl_json(world, 'alerts')['alerts'] if x['service'] == 'gw4'}
    assert {'shard-failed', 'budget-low', 'shard-unowned'} <= kinds, kinds
    ctl_json(world, 'delete', 'gw4')
    for kind in ('shard-failed', 'budget-low', 'shard-unowned'):
        world.wait_for(lambda: alert(kind, 'true'), 20, what=f'{kind} resolved')


if __name__ == '__main__':
    suite.run()
