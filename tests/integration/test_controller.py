# SPDX-License-Identifier: MIT
"""The controller end to end: specs applied with batonctl become units on real
systemd managers on three simulated hosts, placed within their constraints; a
lost host's instances are re-placed elsewhere with a host-down alert seen by a
plain AMQP consumer, and when it returns it runs nothing twice; bad specs are
refused with file:line and change nothing; scale, drain, status, alerts and the
audit log work as an operator expects."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from events import Alerts  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
HOST_TIMEOUT = 5.0
suite = Suite('controller')
S = {}

WEB = """[Unit]
Description=test web node %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=4
MaxPerHost=2
MaxReplicas=6
MinReplicas=1
"""


def spec_file(world, name, text):
    path = os.path.join(world.dir, 'specs', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def ctl_json(world, *args):
    r = world.batonctl('--json', *args)
    assert r.returncode == 0, f'batonctl {" ".join(args)}: {r.returncode}\n{r.stderr}'
    return json.loads(r.stdout)


def active_web(world):
    """{host: [active web@N units]} from the managers themselves."""
    out = {}
    for name, h in S['hosts'].items():
        if not h.alive():
            continue
        r = h.systemctl('list-units', '--state=active', '--plain', '--no-legend', 'web@*')
        out[name] = sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())
    return out


def start_agent(world, name):
    return world.start_agent(S['hosts'][name], config={
        'agent': {'manage_units': 'web@*.service roll@*.service flap@*.service',
                  'heartbeat_interval': '1s'},
        'security': {'controller_public_key': S['public']}})


@suite.setup
def setup(world):
    broker = world.start_broker()
    secret, S['public'] = world.keygen()
    S['controller'] = world.start_controller(config={
        'controller': {'host_timeout': f'{HOST_TIMEOUT:g}s'},
        'security': {'signing_key': secret, 'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    S['alerts'] = Alerts(broker)
    S['hosts'] = {n: world.add_host(n) for n in HOSTS}
    S['agents'] = {n: start_agent(world, n) for n in HOSTS}
    world.wait_for(lambda: len([h for h in ctl_json(world, 'hosts')['hosts']
                                if h['state'] == 'up']) == 3, 20, what='three hosts up')


@suite.case
def apply_places_four_instances_within_constraints(world):
    path = spec_file(world, 'web@.service', WEB)
    plan = ctl_json(world, 'plan', path)
    assert plan['dry_run'] and not plan['applied'], plan
    assert [p['change'] for p in plan['placements']].count('add') == 4, plan
    assert active_web(world) == {n: [] for n in HOSTS}, 'plan changed something'

    res = ctl_json(world, 'apply', path)
    assert res['applied'] and res['services'][0]['action'] == 'create', res
    placed = world.wait_for(
        lambda: (a := active_web(world)) and sum(len(v) for v in a.values()) == 4 and a, 30,
        what='four web instances active')
    assert all(len(v) <= 2 for v in placed.values()), placed   # MaxPerHost=2
    units = sorted(u for v in placed.values() for u in v)
    assert units == [f'web@{i}.service' for i in range(4)], units
    st = ctl_json(world, 'status', 'web')['services'][0]
    assert st['count'] == 4, st
    world.wait_for(lambda: ctl_json(world, 'status', 'web')['services'][0]['healthy'] == 4, 10,
                   what='status shows 4 healthy')
    for inst in ctl_json(world, 'status', 'web')['services'][0]['instances']:
        assert inst['unit'] in placed[inst['host']], (inst, placed)


@suite.case
def bad_specs_are_refused_with_file_and_line(world):
    before = ctl_json(world, 'status')
    cases = [
        ('api@.service', WEB.replace('Replicas=4', 'Replicas=4\nReplicass=2'), 'Replicass'),
        ('api@.service', WEB.replace('MaxPerHost=2', 'HealthyFor=10x'), 'HealthyFor'),
        ('api@.service', WEB.replace('Replicas=4', 'Replicas=9'), 'MaxReplicas'),
    ]
    good = spec_file(world, 'good@.service', WEB)
    for name, text, word in cases:
        path = spec_file(world, name, text)
        r = world.batonctl('apply', good, path)
        assert r.returncode == 4, (r.returncode, r.stderr)
        assert f'{name}:' in r.stderr and word in r.stderr, r.stderr
    line = next(i for i, l in enumerate(cases[0][1].splitlines(), 1) if 'Replicass' in l)
    r = world.batonctl('apply', spec_file(world, cases[0][0], cases[0][1]))
    assert f'api@.service:{line}:' in r.stderr, r.stderr
    # All files or none: good@.service was not applied either.
    assert ctl_json(world, 'status') == before


@suite.case
def scale_respects_bounds(world):
    r = world.batonctl('scale', 'web', '9')
    assert r.returncode == 4 and 'MaxReplicas=6' in r.stderr, r
    res = ctl_json(world, 'scale', 'web', '5')
    assert res['count'] == 5 and res['previous'] == 4, res
    world.wait_for(lambda: sum(len(v) for v in active_web(world).values()) == 5, 30,
                   what='five instances')
    ctl_json(world, 'scale', 'web', '4')
    world.wait_for(lambda: sum(len(v) for v in active_web(world).values()) == 4, 30,
                   what='back to four')


def web_pids(world):
    out = {}
    for name, h in S['hosts'].items():
        for unit in active_web(world).get(name, []):
            out[unit] = h.unit_property(unit, 'MainPID')
    return out


@suite.case
def changing_only_x_baton_restarts_nothing(world):
    before = web_pids(world)
    assert len(before) == 4, before
    doc = ctl_json(world, 'apply', spec_file(world, 'web@.service',
                                             WEB.replace('MaxReplicas=6', 'MaxReplicas=7')))
    assert doc['services'][0]['action'] == 'update' and 'rollout' not in doc['services'][0], doc
    assert all(p['change'] == 'keep' for p in doc['placements']), doc['placements']
    time.sleep(3)
    assert web_pids(world) == before, 'a change of [X-Baton] alone restarted units'
    ctl_json(world, 'apply', spec_file(world, 'web@.service', WEB))


@suite.case
def lost_host_is_replaced_and_returns_without_duplicates(world):
    placed = active_web(world)
    victim = next(n for n in HOSTS if placed[n])
    moved = placed[victim]
    S['agents'][victim].stop()
    S['hosts'][victim].stop()
    lost = time.monotonic()
    after = world.wait_for(
        lambda: (a := active_web(world)) and sum(len(v) for v in a.values()) == 4 and a,
        HOST_TIMEOUT + 2 + 10, interval=0.2, what='instances re-placed on the other hosts')
    took = time.monotonic() - lost
    assert took <= HOST_TIMEOUT + 2 + 3, f're-placed after {took:.1f}s'
    assert all(len(v) <= 2 for v in after.values()), after
    assert sorted(u for v in after.values() for u in v) == \
        [f'web@{i}.service' for i in range(4)], after
    world.wait_for(lambda: S['alerts'].find('host-down', victim), 5,
                   what='host-down alert on baton.events')

    # Back: it reports in and runs nothing that now runs elsewhere.
    S['hosts'][victim].start()
    S['agents'][victim] = start_agent(world, victim)
    world.wait_for(lambda: S['alerts'].find('host-down', victim, resolved='true'), 20,
                   what='host-down resolved')
    world.wait_for(lambda: S['alerts'].find('host-up', victim), 5, what='host-up alert')
    world.wait_for(lambda: (a := active_web(world)) and sum(len(v) for v in a.values()) == 4,
                   20, what='exactly four instances once the host is back')
    time.sleep(2)
    final = active_web(world)
    units = sorted(u for v in final.values() for u in v)
    assert units == [f'web@{i}.service' for i in range(4)], final
    assert not set(final[victim]) & set(moved), final


def instances_down_at_worst(messages, prefix, instances, placed):
    """The most instances of a service that had no active copy on any host at
    one time, replaying the agents' UnitEvents in arrival order from the
    {host: [active units]} seen before."""
    state = {(h, u): 'active' for h, units in placed.items() for u in units}
    worst = 0
    for m in messages:
        u = m['body']['unit']
        if not u['name'].startswith(prefix):
            continue
        state[(m['routing_key'].split('.')[0], u['name'])] = u['active_state']
        up = {name for (_, name), st in state.items() if st == 'active'}
        worst = max(worst, instances - len(up))
    return worst, state


@suite.case
def drain_moves_instances_off_one_at_a_time_and_undrain_allows_back(world):
    placed = active_web(world)
    host = max(HOSTS, key=lambda n: len(placed[n]))
    assert len(placed[host]) == 2, placed
    status = world.listen('baton.status:*.unit')
    res = ctl_json(world, 'drain', host)
    assert res['state'] == 'drained', res
    world.wait_for(lambda: not active_web(world)[host], 30, what=f'{host} emptied')
    world.wait_for(lambda: sum(len(v) for v in active_web(world).values()) == 4, 30,
                   what='its instances running elsewhere')
    hosts = {h['host']: h['state'] for h in ctl_json(world, 'hosts')['hosts']}
    assert hosts[host] == 'drained', hosts
    # MaxUnavailable=1 (the default): the two moved one after the other.
    time.sleep(1)
    worst, seen = instances_down_at_worst(status.messages(), 'web@', 4, placed)
    assert len(seen) > 4, 'no unit events seen'
    assert worst <= 1, f'{worst} web instances were down at once during the drain'
    res = ctl_json(world, 'undrain', host)
    assert res['state'] == 'up', res


@suite.case
def refused_placement_is_alerted_and_resolved(world):
    path = spec_file(world, 'other@.service', WEB.replace('Replicas=4', 'Replicas=1'))
    ctl_json(world, 'apply', path)
    alert = world.wait_for(lambda: next((a for a in S['alerts'].poll()
                                         if a.get('kind') == 'command-refused'
                                         and a.get('resolved') == 'false'), None), 20,
                           what='command-refused alert')
    assert 'other@0.service' in alert['summary'] and 'manage_units' in alert['summary'], alert
    assert any(a['kind'] == 'command-refused' for a in ctl_json(world, 'alerts')['alerts'])
    assert ctl_json(world, 'delete', 'other')['removed_instances'] == 1
    world.wait_for(lambda: any(a.get('kind') == 'command-refused' and a.get('resolved') == 'true'
                               for a in S['alerts'].poll()), 20, what='command-refused resolved')


FLAP = """[Unit]
Description=flapping %i
StartLimitIntervalSec=0

[Service]
ExecStart=/bin/sh -c 'sleep 0.2; exit 1'
Restart=always
RestartSec=100ms

[X-Baton]
Replicas=1
"""


@suite.case
def flapping_unit_is_alerted_once_and_resolved_when_removed(world):
    ctl_json(world, 'apply', spec_file(world, 'flap@.service', FLAP))
    world.wait_for(lambda: any(a.get('kind') == 'unit-flapping' and a.get('resolved') == 'false'
                               and 'flap@0.service' in a.get('summary', '')
                               for a in S['alerts'].poll()), 30, what='unit-flapping alert')
    time.sleep(3)
    raised = [a for a in S['alerts'].poll()
              if a.get('kind') == 'unit-flapping' and a.get('resolved') == 'false']
    assert len(raised) == 1, f'raised {len(raised)} times: {raised}'
    ctl_json(world, 'delete', 'flap')
    world.wait_for(lambda: any(a.get('kind') == 'unit-flapping' and a.get('resolved') == 'true'
                               for a in S['alerts'].poll()), 30, what='unit-flapping resolved')


@suite.case
def audit_records_every_change_with_its_user(world):
    entries = ctl_json(world, 'audit')['entries']
    verbs = [e['verb'] for e in entries]
    for v in ('apply', 'scale', 'drain', 'undrain', 'delete'):
        assert v in verbs, verbs
    assert all(e['user'] == 'guest' for e in entries), entries
    refused = [e for e in entries if e['verb'] == 'scale' and e['outcome'] != 'ok']
    assert refused and 'MaxReplicas' in refused[-1]['outcome'], entries


@suite.case
def unauthorized_user_is_refused(world):
    url = world.broker.add_user('viewer', 'viewerpw')
    r = world.batonctl('scale', 'web', '3', broker=url)
    assert r.returncode == 4 and 'not an operator' in r.stderr, r
    r = world.batonctl('--json', 'status', broker=url)
    assert r.returncode == 0, r


ROLL = """[Unit]
Description=rolling test %i

[Service]
ExecStart=/bin/sh -c 'echo $$$$ >> {dir}/%i.starts; exec sleep infinity'

[X-Baton]
Replicas=4
MaxPerHost=2
MaxUnavailable=1
HealthyFor=1s
HealthTimeout=60s
"""


def roll_starts(world):
    out = {}
    for i in range(4):
        try:
            with open(os.path.join(world.dir, 'roll', f'{i}.starts')) as f:
                out[i] = len(f.read().split())
        except FileNotFoundError:
            out[i] = 0
    return out


def rollout(world):
    return ctl_json(world, 'rollout', 'status', 'roll')['rollouts'][0]


@suite.case
def rolling_restart_one_at_a_time_and_survives_controller_kill(world):
    os.makedirs(os.path.join(world.dir, 'roll'), exist_ok=True)
    ctl_json(world, 'apply', spec_file(world, 'roll@.service',
                                       ROLL.replace('{dir}', os.path.join(world.dir, 'roll'))))
    world.wait_for(lambda: all(v == 1 for v in roll_starts(world).values()), 30,
                   what='four roll instances started')
    world.wait_for(lambda: ctl_json(world, 'status', 'roll')['services'][0]['healthy'] == 4, 15,
                   what='all healthy')
    status = world.listen('baton.status:*.unit')

    res = ctl_json(world, 'restart', 'roll')
    assert res['rollout'] is not None and res['instances'] == 4, res
    # Kill -9 the controller once two instances have been restarted.
    world.wait_for(lambda: sum(v >= 2 for v in roll_starts(world).values()) >= 2, 60,
                   what='two instances restarted')
    S['controller'].kill()
    time.sleep(1)
    S['controller'] = world.start_controller(config={
        'controller': {'host_timeout': f'{HOST_TIMEOUT:g}s'},
        'security': {'signing_key': world.keygen()[0], 'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=5).returncode == 0, 30,
                   what='controller back')
    done = world.wait_for(lambda: (r := rollout(world))['state'] == 'done' and r, 120,
                          interval=0.5, what='rollout done after the controller restart')
    assert all(i['state'] == 'done' for i in done['items']), done
    time.sleep(1)
    assert roll_starts(world) == {0: 2, 1: 2, 2: 2, 3: 2}, \
        f'each instance must be restarted exactly once: {roll_starts(world)}'

    # Never more than one instance down at a time, from the agents' own events.
    state, worst = {}, 0
    for m in status.messages():
        u = m['body']['unit']
        if not u['name'].startswith('roll@'):
            continue
        state[u['name']] = u['active_state']
        worst = max(worst, sum(1 for v in state.values() if v != 'active'))
    assert state, 'no unit events seen'
    assert worst <= 1, f'{worst} instances were down at once'


if __name__ == '__main__':
    suite.run()
