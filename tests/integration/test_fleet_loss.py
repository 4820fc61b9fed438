# SPDX-License-Identifier: MIT
"""Issue 17: losing part of the fleet never takes down the rest. A simulated fleet
(baton-bench-agents: many agents in one process, each heartbeating and applying its signed
Placement as the agent does) against the real controller, batonctl and broker:

- the controller held with SIGSTOP for twice host_timeout while every agent keeps sending:
  after SIGCONT no host is declared down (a queued heartbeat proves its host alive);
- a controller starved of CPU (a cgroup with a small cpu quota) with many hosts on a short
  timeout: no host that keeps sending is declared down, and one that really stops still is;
- more than half of the hosts stop at once: mass-host-loss is raised, `hosts`, `status` and
  `plan` show what is held, no instance moves and the hosts that kept running stop and start
  nothing until an operator confirms (`batonctl hosts confirm-down`); then the instances run
  on the others and the alert is resolved;
- a loss below the threshold is re-placed at once, as before."""

import concurrent.futures
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path  # noqa: E402

suite = Suite('fleet-loss')
S = {}

HOST_TIMEOUT = 4.0
KEEP, LOSE = 16, 24  # 24 of 40 is more than half
CROWD = 300
REPLICAS = 20

SPEC = f"""[Unit]
Description=fleet-loss test service %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas={REPLICAS}
MaxPerHost=2
MaxUnavailable={REPLICAS}
"""


def ok_json(world, *args, **kw):
    r = world.batonctl('--json', *args, **kw)
    assert r.returncode == 0, f'batonctl --json {" ".join(args)}: {r.returncode}\n{r.stderr}'
    return json.loads(r.stdout)


class Alerts:
    """Every alert on baton.events, by kind (a plain AMQP consumer, as operators run)."""

    def __init__(self, broker):
        self.conn = broker.pika_connection()
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare(queue='', exclusive=True).method.queue
        self.ch.queue_bind(queue=self.queue, exchange='baton.events', routing_key='alert.#')
        self.seen = []

    def poll(self):
        while True:
            method, props, _ = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.seen
            h = props.headers or {}
            self.seen.append({k: (v.decode() if isinstance(v, bytes) else v)
                              for k, v in h.items()})

    def raised(self, kind):
        return [a for a in self.poll() if a.get('kind') == kind and a.get('resolved') == 'false']

    def resolved(self, kind):
        return [a for a in self.poll() if a.get('kind') == kind and a.get('resolved') == 'true']


def start_fleet(world, name, prefix, n, first=0):
    """n simulated hosts <prefix>-<first>… in one process; their counters in <name>.json."""
    stats = os.path.join(world.dir, f'{name}.json')
    p = world.spawn(name, [S['sim'], '--broker', world.broker.url, '--prefix', prefix,
                           '--hosts', str(n), '--first', str(first), '--connections', '2',
                           '--heartbeat-interval', '1s',
                           '--controller-public-key', world.keygen()[1], '--stats', stats])
    return p, stats


def stats(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def placed_hosts(world):
    """{instance: host} of the service, as `batonctl status` shows it."""
    doc = ok_json(world, 'status', 'fl')
    return {i['instance']: i['host'] for i in doc['services'][0]['instances']}


def all_healthy(world):
    doc = ok_json(world, 'status', 'fl')
    return doc['services'][0]['healthy'] == REPLICAS


def start_controller(world, **controller):
    S['controller'] = world.start_controller(config={
        # Small parts and steps: large answers come in several messages, written over
        # several turns of the loop; a change of more than 3 hosts' Placements sends the
        # rest 3 a turn; an apply that places services of more than REPLICAS instances
        # (half the step) places the rest on the next turns.
        'controller': {'host_timeout': f'{HOST_TIMEOUT:g}s', 'answer_part_size': '16384',
                       'answer_step_time': '0', 'sync_step_hosts': '3',
                       'place_step_instances': str(2 * REPLICAS), **controller},
        'security': {'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')


@suite.setup
def setup(world):
    world.start_broker()
    S['sim'] = world._need_binary(build_path('tests', 'bench', 'baton-bench-agents'))
    start_controller(world)
    S['alerts'] = Alerts(world.broker)
    S['keep'], S['keep_stats'] = start_fleet(world, 'keep', 'keep', KEEP)
    S['lose'], S['lose_stats'] = start_fleet(world, 'lose', 'lose', LOSE)
    world.wait_for(lambda: ok_json(world, 'ping')['hosts_up'] == KEEP + LOSE, 60,
                   what=f'{KEEP + LOSE} hosts up')
    spec = os.path.join(world.dir, 'fl@.service')
    with open(spec, 'w') as f:
        f.write(SPEC)
    ok_json(world, 'apply', spec)
    world.wait_for(lambda: all_healthy(world), 60, what='every instance healthy')
    # The 20 instances went to more than 3 hosts: the rest of the Placements went out in
    # passes of their own, and none is left waiting.
    counters = ok_json(world, 'ping')['counters']
    assert counters['placements_deferred'] > 0, counters
    world.wait_for(lambda: ok_json(world, 'ping')['counters']['placements_waiting'] == 0, 10,
                   what='no Placement waiting')


@suite.case
def a_stopped_controller_declares_no_host_down(world):
    """SIGSTOP for twice host_timeout while the agents keep sending, then SIGCONT: the
    backlog proves every host alive; none is declared down and nothing moves."""
    before = placed_hosts(world)
    S['controller'].signal(signal.SIGSTOP)
    try:
        time.sleep(2 * HOST_TIMEOUT + 1)
    finally:
        S['controller'].signal(signal.SIGCONT)
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering again')
    time.sleep(2 * HOST_TIMEOUT)
    assert S['alerts'].raised('host-down') == [], S['alerts'].raised('host-down')[:3]
    hosts = ok_json(world, 'hosts')['hosts']
    assert [h['host'] for h in hosts if h['state'] != 'up'] == []
    assert placed_hosts(world) == before


@suite.case
def more_than_half_lost_holds_everything_until_confirmed(world):
    """24 of 40 hosts stop at once: mass-host-loss; what is held shows in hosts, status and
    plan; nothing moves and the other hosts stop and start nothing until confirm-down."""
    before = placed_hosts(world)
    on_lost = sorted(i for i, h in before.items() if h.startswith('lose-'))
    assert on_lost, f'nothing placed on the hosts to be lost: {before}'
    keep_before = stats(S['keep_stats'])
    S['lose'].kill()

    alert = world.wait_for(lambda: S['alerts'].raised('mass-host-loss'), 3 * HOST_TIMEOUT + 10,
                           what='mass-host-loss alert')[0]
    assert alert['severity'] == 'critical', alert
    assert f'{LOSE} of {KEEP + LOSE} hosts' in alert['summary'], alert
    time.sleep(2 * HOST_TIMEOUT)  # time enough to have moved everything, were it not held

    assert placed_hosts(world) == before, 'instances moved while the loss was held'
    keep_now = stats(S['keep_stats'])
    assert keep_now['units_started'] == keep_before['units_started'], (keep_before, keep_now)
    assert keep_now['units_stopped'] == keep_before['units_stopped'], (keep_before, keep_now)

    hosts = {h['host']: h for h in ok_json(world, 'hosts')['hosts']}
    lost = [h for h in hosts.values() if h['host'].startswith('lose-')]
    assert all(h['state'] == 'down' for h in lost), lost[:3]
    assert sum(h['held_instances'] for h in lost) == len(on_lost), lost
    text = world.batonctl('hosts').stdout
    assert 'A mass-host-loss is held' in text and '(held: 1)' in text, text

    status = ok_json(world, 'status', 'fl')
    assert status['mass_host_loss']['held_instances'] == len(on_lost), status['mass_host_loss']
    held = sorted(i['instance'] for i in status['services'][0]['instances'] if i['held'])
    assert held == on_lost, (held, on_lost)
    assert 'A mass-host-loss is held' in world.batonctl('status').stdout
    plan = ok_json(world, 'plan', os.path.join(world.dir, 'fl@.service'))
    assert plan['mass_host_loss']['held_instances'] == len(on_lost), plan

    r = world.batonctl('hosts', 'confirm-down', '--all')
    assert r.returncode == 0, r.stderr
    assert f'{len(on_lost)} instance' in r.stdout, r.stdout
    world.wait_for(lambda: all_healthy(world), 30, what='every instance healthy again')
    after = placed_hosts(world)
    assert all(h.startswith('keep-') for h in after.values()), after
    # What was on the hosts that kept running stayed there.
    assert all(after[i] == h for i, h in before.items() if h.startswith('keep-'))
    # The simulated agents write their counters every 200 ms.
    keep_after = world.wait_for(
        lambda: (lambda st: st if st.get('units_started') ==
                 keep_before['units_started'] + len(on_lost) else None)(stats(S['keep_stats'])),
        5, what=f'{len(on_lost)} units started on the hosts that kept running')
    assert keep_after['units_stopped'] == keep_before['units_stopped'], keep_after
    world.wait_for(lambda: S['alerts'].resolved('mass-host-loss'), 10,
                   what='mass-host-loss resolved')
    assert world.batonctl('hosts', 'confirm-down', '--all').returncode != 0


SOLO = """[Unit]
Description=fleet-loss singleton

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Kind=singleton
RequireLabels=rack=r24
"""


@suite.case
def a_small_loss_is_replaced_at_once(world):
    """The lost hosts return; then one host of 42 stops: host-down, and its singleton runs
    on the other host it may run on after host_timeout, with no mass-host-loss."""
    S['lose'], S['lose_stats'] = start_fleet(world, 'lose2', 'lose', LOSE)
    world.wait_for(lambda: ok_json(world, 'ping')['hosts_up'] == KEEP + LOSE, 60,
                   what='the lost hosts back')
    n_mass = len(S['alerts'].raised('mass-host-loss'))
    # Simulated host n is in rack r(n % 25): 24 and 49 are the only hosts in rack r24.
    procs = {'one-0024': start_fleet(world, 'one', 'one', 1, first=24)[0],
             'two-0049': start_fleet(world, 'two', 'two', 1, first=49)[0]}
    world.wait_for(lambda: ok_json(world, 'ping')['hosts_up'] == KEEP + LOSE + 2, 30,
                   what='two more hosts up')
    spec = os.path.join(world.dir, 'solo.service')
    with open(spec, 'w') as f:
        f.write(SOLO)
    ok_json(world, 'apply', spec)

    def solo_host():
        doc = ok_json(world, 'status', 'solo')
        inst = doc['services'][0]['instances'][0]
        return inst['host'] if inst['healthy'] else None

    first = world.wait_for(solo_host, 30, what='the singleton running')
    procs[first].kill()
    world.wait_for(lambda: [a for a in S['alerts'].raised('host-down') if a.get('host') == first],
                   3 * HOST_TIMEOUT + 10, what=f'host-down of {first}')
    second = world.wait_for(lambda: (solo_host() or first) != first and solo_host(), 10,
                            what='the singleton placed on the other host')
    assert second in procs and second != first, second
    assert len(S['alerts'].raised('mass-host-loss')) == n_mass


CPU_ROOT = '/sys/fs/cgroup/cpu'


@suite.case
def a_starved_controller_declares_no_host_down(world):
    """A controller held to 0.3 % of a core (a cgroup cpu quota), far less than 340 hosts
    heartbeating every second on a 4 s timeout need, held back for longer than twice the
    timeout, while batonctl keeps asking for everything: no host is declared down."""
    if not os.access(os.path.join(CPU_ROOT, 'cgroup.procs'), os.W_OK):
        suite.skip('no writable cgroup v1 cpu controller here')
    up = ok_json(world, 'ping')['hosts_up']
    n_down = len(S['alerts'].raised('host-down'))
    start_fleet(world, 'crowd', 'crowd', CROWD)
    world.wait_for(lambda: ok_json(world, 'ping')['hosts_up'] == up + CROWD, 60,
                   what=f'{CROWD} more hosts up')
    group = os.path.join(CPU_ROOT, f'baton-test-{os.getpid()}')
    os.mkdir(group)
    pid = S['controller'].pid
    try:
        with open(os.path.join(group, 'cpu.cfs_period_us'), 'w') as f:
            f.write('1000000')
        with open(os.path.join(group, 'cpu.cfs_quota_us'), 'w') as f:
            f.write('3000')  # 0.3 % of a core
        with open(os.path.join(group, 'cgroup.procs'), 'w') as f:
            f.write(str(pid))
        # Starved (held back, in all, for longer than a host's silence may last: what a
        # controller judging hosts by its own pace would take for silence), while
        # batonctl keeps asking.
        def throttled_s():
            with open(os.path.join(group, 'cpu.stat')) as f:
                return int(dict(line.split() for line in f)['throttled_time']) / 1e9

        deadline = time.monotonic() + 4 * HOST_TIMEOUT
        while time.monotonic() < deadline or (throttled_s() <= 2 * HOST_TIMEOUT and
                                              time.monotonic() < deadline + 60):
            # Reads that cost the starved controller more of its little CPU.
            world.batonctl('--timeout', '8s', 'status', timeout=30)
            world.batonctl('--timeout', '8s', '--json', 'ping', timeout=30)
        assert throttled_s() > 2 * HOST_TIMEOUT, \
            f'the controller was held back only {throttled_s():.1f}s'
    finally:
        with open(os.path.join(CPU_ROOT, 'cgroup.procs'), 'w') as f:
            f.write(str(pid))
        os.rmdir(group)
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 60,
                   what='controller answering again')
    time.sleep(HOST_TIMEOUT)
    assert S['alerts'].raised('host-down')[n_down:] == [], S['alerts'].raised('host-down')[n_down:]
    assert ok_json(world, 'ping')['hosts_up'] == up + CROWD


@suite.case
def large_answers_come_in_parts(world):
    """With answer_part_size = 16 KiB the answers about 342 hosts take several messages:
    batonctl joins them, in text and JSON, and a mutating verb's large answer exits 0."""
    mark = len(S['controller'].log())
    doc = ok_json(world, 'hosts', '--all')
    assert len(doc['hosts']) == KEEP + LOSE + 2 + CROWD, len(doc['hosts'])
    assert doc['hosts_listed'] is True and doc['hosts_total'] == len(doc['hosts']), doc['states']
    assert re.search(r'Answered \S+ in [2-9] parts', S['controller'].log()[mark:]), \
        'the answer did not come in parts'
    down = [h['host'] for h in doc['hosts'] if h['state'] != 'up']
    assert down, 'no host is down: the summary would list nothing'
    # Without --all the controller sends a summary: counts by state and the hosts that are
    # not up, in one message.
    mark = len(S['controller'].log())
    summary = ok_json(world, 'hosts')
    assert summary['hosts_listed'] is False and summary['hosts_total'] == len(doc['hosts'])
    assert sorted(h['host'] for h in summary['hosts']) == sorted(down), summary['hosts']
    assert sum(summary['states'].values()) == len(doc['hosts']), summary['states']
    assert summary['states']['up'] == len(doc['hosts']) - len(down), summary['states']
    assert not re.search(r'Answered \S+ in [2-9] parts', S['controller'].log()[mark:])
    # In text, the same summary.
    text = world.batonctl('hosts')
    assert text.returncode == 0 and f'{len(doc["hosts"])} hosts: ' \
        f'{len(doc["hosts"]) - len(down)} up, {len(down)} not (listed)' in text.stdout, \
        text.stdout
    assert all(h in text.stdout for h in down) and 'crowd-0001' not in text.stdout, text.stdout
    # A change whose answer is large: an instance for every host that is up.
    up = ok_json(world, 'ping')['hosts_up']
    spec = os.path.join(world.dir, 'wide@.service')
    with open(spec, 'w') as f:
        f.write(SPEC.replace('fleet-loss test service', 'wide').replace(
            f'Replicas={REPLICAS}', f'Replicas={up}'))
    mark = len(S['controller'].log())
    applied = ok_json(world, 'apply', '--all', spec)
    adds = [p for p in applied['placements'] if p['service'] == 'wide' and p['change'] == 'add']
    assert applied['applied'] and len(adds) == up, (len(adds), up)
    assert applied['placements_listed'] is True and applied['changes']['add'] == up, \
        applied['changes']
    assert re.search(r'Answered \S+ in [2-9] parts', S['controller'].log()[mark:])
    # In text, a summary: what changes by kind, how many instances in all.
    wide2 = os.path.join(world.dir, 'wide2@.service')
    with open(wide2, 'w') as f:
        f.write(SPEC.replace(f'Replicas={REPLICAS}', f'Replicas={up}'))
    r = world.batonctl('plan', wide2)
    assert r.returncode == 0 and f'{up} placements change: {up} add.' in r.stdout, r.stdout
    # Without --all the controller sends counts, not the placements: one message.
    mark = len(S['controller'].log())
    planned = ok_json(world, 'plan', wide2)
    assert planned['placements_listed'] is False and 'placements' not in planned, planned
    assert planned['changes']['add'] == up and planned['changes']['keep'] > 200, planned
    assert not re.search(r'Answered \S+ in [2-9] parts', S['controller'].log()[mark:])
    mark = len(S['controller'].log())
    listed = ok_json(world, 'plan', '--all', wide2)
    assert sum(p['change'] == 'add' for p in listed['placements']) == up
    assert len(listed['placements']) == sum(planned['changes'].values())
    assert listed['changes'] == planned['changes'] and listed['placements_listed'], listed
    # Every placement listed: written over several turns of the loop, like status --all.
    assert "Answered 'plan' in steps" in S['controller'].log()[mark:]
    assert world.batonctl('plan', '--all', wide2).returncode == 0
    r = world.batonctl('status')
    assert r.returncode == 0 and re.search(r'\d+ instances in all', r.stdout), r.stdout
    assert 'wide@0.service' not in r.stdout
    assert 'wide@0.service' in world.batonctl('status', 'wide').stdout
    # The summary is what the controller sends, not only what batonctl shows:
    # one message, counts per service, no instance; --all lists every one.
    mark = len(S['controller'].log())
    summary = ok_json(world, 'status')
    total = sum(s['count'] for s in summary['services'])
    assert total > 200 and summary['instances_total'] == total, summary
    assert summary['instances_listed'] is False, summary
    assert all('instances' not in s and s['healthy'] <= s['count']
               for s in summary['services']), summary
    wide = next(s for s in summary['services'] if s['service'] == 'wide')
    assert wide['count'] == up, wide
    assert not re.search(r'Answered \S+ in [2-9] parts', S['controller'].log()[mark:])
    mark = len(S['controller'].log())
    every = ok_json(world, 'status', '--all')
    assert every['instances_listed'] is True, every
    assert sum(len(s['instances']) for s in every['services']) == total
    assert [(s['service'], s['count']) for s in every['services']] == \
        [(s['service'], s['count']) for s in summary['services']]
    # Written over several turns of the loop (256 instances a turn here).
    assert "Answered 'status' in steps" in S['controller'].log()[mark:]
    healthy = {s['service']: s['healthy'] for s in every['services']}
    assert all(healthy[s['service']] == sum(i['healthy'] for i in s['instances'])
               for s in every['services']), healthy
    # Many at once, and requests in between: each its own whole answer, or (more than 8
    # waiting) refused at once with a reason; none left to time out.
    def units(d):
        return [(s['service'], s['count'], [i['unit'] for i in s['instances']])
                for s in d['services']]

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        alls = [pool.submit(world.batonctl, '--json', 'status', '--all', timeout=60)
                for _ in range(10)]
        one = pool.submit(ok_json, world, 'status', 'wide')
        ping = pool.submit(ok_json, world, 'ping')
        assert ping.result()['hosts_total'] == len(doc['hosts'])
        assert len(one.result()['services'][0]['instances']) == up
        answered = 0
        for f in alls:
            r = f.result()
            if r.returncode == 0:
                assert units(json.loads(r.stdout)) == units(every)
                answered += 1
            else:
                assert 'large answers already; try again shortly' in r.stderr, r.stderr
        # At most 8 wait, 'status wide' possibly among them.
        assert answered >= 7, f'{answered} of 10 answered'



@suite.case
def a_large_change_is_placed_in_steps(world):
    """Two new services of REPLICAS instances each in one apply: the controller places the
    first in the apply's own pass and the second in a pass of its own on a later turn (an
    apply places at most REPLICAS instances here, half the step); the answer says so and
    both end up running in full. A service larger than that is placed wholly on a later turn."""
    counters = ok_json(world, 'ping')['counters']
    paths = []
    for name in ('step1', 'step2'):
        paths.append(os.path.join(world.dir, f'{name}@.service'))
        with open(paths[-1], 'w') as f:
            f.write(SPEC.replace('fleet-loss test service', name))
    applied = ok_json(world, 'apply', *paths)
    assert [s['action'] for s in applied['services']] == ['create', 'create'], applied
    assert applied['placed_later'] == ['step2'], applied['placed_later']
    assert applied['changes']['add'] == REPLICAS, applied['changes']

    def running(name, replicas=REPLICAS):
        d = ok_json(world, 'status', name)['services'][0]
        return d['count'] == replicas and d['healthy'] == replicas

    world.wait_for(lambda: running('step1') and running('step2'), 30,
                   what='both services running in full')
    after = ok_json(world, 'ping')['counters']
    assert after['services_deferred'] > counters['services_deferred'], after
    assert after['services_waiting'] == 0, after
    # In text, what goes in the next steps; a plan (nothing changes) places everything.
    for name in ('step3', 'step4'):
        paths.append(os.path.join(world.dir, f'{name}@.service'))
        with open(paths[-1], 'w') as f:
            f.write(SPEC.replace('fleet-loss test service', name))
    planned = ok_json(world, 'plan', *paths[2:])
    assert planned['placed_later'] == [] and planned['changes']['add'] == 2 * REPLICAS, planned
    r = world.batonctl('apply', *paths[2:])
    assert r.returncode == 0, r.stderr
    assert 'Placing 1 more service in the next steps: step4' in r.stdout, r.stdout
    world.wait_for(lambda: running('step3') and running('step4'), 30,
                   what='the next two running in full')
    # One service larger than a step: the apply's turn stores and answers, a turn of its own
    # places it.
    paths.append(os.path.join(world.dir, 'step5@.service'))
    with open(paths[-1], 'w') as f:
        f.write(SPEC.replace('fleet-loss test service', 'step5').replace(
            f'Replicas={REPLICAS}', f'Replicas={REPLICAS + 1}'))
    applied = ok_json(world, 'apply', paths[-1])
    assert applied['placed_later'] == ['step5'], applied
    assert applied['changes'].get('add', 0) == 0, applied['changes']
    world.wait_for(lambda: running('step5', REPLICAS + 1), 30, what='step5 running in full')


if __name__ == '__main__':
    suite.run()
