# SPDX-License-Identifier: MIT
"""batonctl as an operator and a script use it: for every verb, the --json document has
the fields README documents and the exit code is 0 on success, and a failure gives the
exit code docs/DESIGN.md §9 gives it (2 usage, 3 unreachable or timeout, 4 refused, 1 failed)
with a message on stderr and nothing on stdout a script could mistake for an answer. The
tables people read name the hosts and states. `backup` writes a copy a new controller
starts from."""

import json
import os
import re
import shutil
import sqlite3
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path, free_ports, url_for  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
suite = Suite('batonctl')
S = {}

VERBS = ['apply', 'plan', 'delete', 'status', 'hosts', 'restart', 'scale', 'drain',
         'undrain', 'rollout', 'alerts', 'watch', 'audit', 'backup', 'ping']

# The controller answers "no service 'X'" (and "no host", "has no instance") with
# STATUS_FAILED today, so batonctl exits 1; docs/DESIGN.md §9 reads these as refusals (4).
# See the issue note: one place to change when the controller does.
NO_SUCH = 4

WEB = """[Unit]
Description=batonctl test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=4
MinReplicas=2
MaxReplicas=6
MaxPerHost=2
MaxUnavailable=1
HealthyFor=2s
HealthTimeout=60s
"""

# A singleton no host can take: plan shows the problem, apply raises placement-impossible.
NOWHERE = """[Unit]
Description=needs a label no host has

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Kind=singleton
RequireLabels=role=nowhere
"""

HOST_FIELDS = {'host', 'state', 'last_seen_us', 'last_seen', 'state_since_us', 'boot_id',
               'agent_version', 'systemd_version', 'system_state', 'cores',
               'memory_total_bytes', 'memory_available_bytes', 'load1', 'units_total',
               'units_active', 'applied_generation', 'max_epoch_seen', 'labels'}
PLACEMENT_FIELDS = {'service', 'instance', 'unit', 'host', 'change', 'from'}
INSTANCE_FIELDS = {'instance', 'unit', 'host', 'active_state', 'sub_state', 'n_restarts',
                   'healthy'}
ROLLOUT_FIELDS = {'service', 'id', 'state', 'reason', 'max_unavailable', 'items'}
ALERT_FIELDS = {'id', 'kind', 'severity', 'service', 'host', 'summary', 'raised_at_us'}
AUDIT_FIELDS = {'seq', 'at_us', 'user', 'verb', 'request', 'outcome'}


def ctl(world, *args, **kw):
    return world.batonctl(*args, **kw)


def ok_json(world, *args, **kw):
    r = world.batonctl('--json', *args, **kw)
    assert r.returncode == 0, f'batonctl --json {" ".join(args)}: {r.returncode}\n{r.stderr}'
    try:
        return json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f'batonctl --json {" ".join(args)}: not one JSON document:\n'
                             f'{r.stdout}') from None


def fails(world, code, *args, says=None, json_doc=False, **kw):
    """batonctl --json ARGS exits `code`, says `says` on stderr (each word, when a list) and
    prints nothing on stdout (or a JSON document, when json_doc)."""
    r = world.batonctl('--json', *args, **kw)
    assert r.returncode == code, \
        f'batonctl {" ".join(args)}: exit {r.returncode}, expected {code}\n{r.stderr}'
    assert r.stderr.startswith('batonctl'), r.stderr
    for word in [says] if isinstance(says, str) else says or []:
        assert word in r.stderr, f'{word!r} not in: {r.stderr}'
    if json_doc:
        json.loads(r.stdout)
    else:
        assert r.stdout == '', f'stdout on failure: {r.stdout!r}'
    return r


def has(doc, **fields):
    """doc has these fields with these values (and maybe more: fields may be added)."""
    return all(k in doc and doc[k] == v for k, v in fields.items())


def spec_file(world, name, text):
    path = os.path.join(world.dir, 'specs', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    return path


def active(world, pattern='web@*'):
    """{host: [active units]} from the managers themselves."""
    out = {}
    for name, h in S['hosts'].items():
        r = h.systemctl('list-units', '--state=active', '--plain', '--no-legend', pattern)
        out[name] = sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())
    return out


def n_active(world):
    return sum(len(v) for v in active(world).values())


def controller_config():
    return {'controller': {'host_timeout': '10s'},
            'security': {'signing_key': S['secret'], 'operators': 'guest'}}


def viewer(world):
    """A broker user who is not an operator."""
    if 'viewer' not in S:
        S['viewer'] = world.broker.add_user('viewer', 'viewerpw')
    return S['viewer']


@suite.setup
def setup(world):
    world.start_broker()
    S['secret'], public = world.keygen()
    S['controller'] = world.start_controller(config=controller_config())
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    S['hosts'] = {n: world.add_host(n) for n in HOSTS}
    S['agents'] = []
    for i, n in enumerate(HOSTS):
        S['agents'].append(world.start_agent(S['hosts'][n], config={
            'agent': {'manage_units': 'web@*.service nowhere.service',
                      'labels': f'rack=r{i}', 'heartbeat_interval': '1s'},
            'security': {'controller_public_key': public}}))
    world.wait_for(lambda: [h['state'] for h in ok_json(world, 'hosts')['hosts']] ==
                   ['up'] * 3, 30, what='three hosts up')


@suite.case
def help_exits_0_for_every_verb_without_a_broker(world):
    env = {'BATON_BROKER': None, 'BATONCTL_CONFIG': None}
    r = ctl(world, '--help', broker=None, env=env)
    assert r.returncode == 0, r
    for verb in VERBS:
        assert f'\n  {verb}' in r.stdout, f'{verb} missing from batonctl --help:\n{r.stdout}'
        h = ctl(world, verb, '--help', broker=None, env=env)
        assert h.returncode == 0, f'{verb} --help: {h.returncode} {h.stderr}'
        assert h.stdout.startswith(f'Usage: batonctl [OPTIONS] {verb}'), h.stdout
    r = ctl(world, 'backup', '--help', broker=None, env=env)
    assert '4080 KiB' in r.stdout and '--force' in r.stdout, r.stdout
    # Without --help the same call needs a broker and says where it looked.
    r = ctl(world, 'ping', broker=None, env=env)
    assert r.returncode == 2 and 'no broker given' in r.stderr, r
    r = ctl(world, 'frobnicate')
    assert r.returncode == 2 and "unknown command 'frobnicate'" in r.stderr, r
    r = ctl(world, '--timeout', 'soon', 'ping')
    assert r.returncode == 2 and '--timeout' in r.stderr, r


@suite.case
def ping(world):
    doc = ok_json(world, 'ping')
    assert set(doc) >= {'controller', 'version', 'epoch', 'started_at_us', 'uptime_us',
                        'hosts_up', 'hosts_total', 'round_trip_us', 'user', 'counters'}, doc
    assert doc['user'] == 'guest' and doc['hosts_up'] == 3 and doc['hosts_total'] == 3, doc
    assert doc['epoch'] >= 1 and doc['round_trip_us'] > 0, doc
    assert isinstance(doc['counters'], dict) and 'refused_total' in doc['counters'], doc
    S['epoch'] = doc['epoch']
    r = ctl(world, 'ping')
    assert r.returncode == 0 and f'epoch {doc["epoch"]}' in r.stdout \
        and 'hosts 3/3 up' in r.stdout, r.stdout
    fails(world, 2, 'ping', 'extra', says="unexpected argument 'extra'")
    # A broker nobody listens on: exit 3 at once, saying so.
    port = free_ports(1)[0]
    t0 = time.monotonic()
    fails(world, 3, 'ping', says=['cannot reach the broker', 'connection refused'],
          broker=url_for(port, world.broker.vhost))
    assert time.monotonic() - t0 < 5
    # A broker that refuses the login: exit 3 too, naming the reason.
    fails(world, 3, 'ping', says='ACCESS_REFUSED',
          broker=url_for(world.broker.port, world.broker.vhost, 'guest', 'wrong'))
    # A vhost where no controller ever ran: said at once, not after the timeout.
    empty = world.broker.vhost + '-empty'
    world.broker.add_vhost(empty)
    try:
        t0 = time.monotonic()
        fails(world, 3, 'ping', says=['exchange baton.requests does not exist', 'baton-controller'],
              broker=url_for(world.broker.port, empty))
        assert time.monotonic() - t0 < 5
    finally:
        world.broker.ctl('delete_vhost', empty)


@suite.case
def hosts(world):
    doc = ok_json(world, 'hosts')
    assert sorted(h['host'] for h in doc['hosts']) == HOSTS, doc
    for h in doc['hosts']:
        assert set(h) >= HOST_FIELDS, set(h) ^ HOST_FIELDS
        assert h['state'] == 'up' and h['cores'] >= 1 and h['memory_total_bytes'] > 0, h
        assert h['max_epoch_seen'] == S['epoch'], h
        assert h['labels'] == {'rack': f'r{HOSTS.index(h["host"])}'}, h
    r = ctl(world, 'hosts')
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ['HOST', 'STATE'], r.stdout
    for n in HOSTS:
        assert any(line.split()[:2] == [n, 'up'] for line in lines), r.stdout
    fails(world, 2, 'hosts', 'alpha', says="unexpected argument 'alpha'")


@suite.case
def plan_and_apply_dry_run_change_nothing(world):
    web = spec_file(world, 'web@.service', WEB)
    for args in (['plan', web], ['apply', '--dry-run', web]):
        doc = ok_json(world, *args)
        assert doc['dry_run'] is True and doc['applied'] is False, doc
        assert len(doc['services']) == 1 and has(doc['services'][0], service='web',
                                                 action='create', kind='stateless',
                                                 count=4), doc
        assert len(doc['placements']) == 4 and doc['problems'] == [], doc
        for p in doc['placements']:
            assert set(p) >= PLACEMENT_FIELDS, p
            assert p['change'] == 'add' and p['host'] in HOSTS and p['from'] is None, p
        assert sorted(p['unit'] for p in doc['placements']) == \
            [f'web@{i}.service' for i in range(4)], doc
    # The table shows each unit that would be added, where, and that nothing changed.
    r = ctl(world, 'plan', web)
    assert r.returncode == 0, r
    for p in doc['placements']:
        assert any(line.split() == [p['unit'], 'add', p['host'], '-']
                   for line in r.stdout.splitlines()), r.stdout
    assert 'Dry run: nothing was changed.' in r.stdout, r.stdout
    assert ok_json(world, 'status')['services'] == []
    time.sleep(1)
    assert n_active(world) == 0, active(world)

    # What cannot be placed is a problem in the plan, not a failure.
    doc = ok_json(world, 'plan', spec_file(world, 'nowhere.service', NOWHERE))
    assert [(p['service'], p['instance']) for p in doc['problems']] == [('nowhere', 0)], doc
    assert set(doc['problems'][0]) >= {'service', 'instance', 'reason'}, doc
    r = ctl(world, 'plan', spec_file(world, 'nowhere.service', NOWHERE))
    assert 'Problems:\n  nowhere.service: no schedulable host has label role=nowhere' \
        in r.stdout, r.stdout

    fails(world, 2, 'plan', says='no spec file given')
    fails(world, 2, 'apply', '--dry-rn', web, says="unknown option '--dry-rn'")
    fails(world, 1, 'plan', os.path.join(world.dir, 'missing@.service'),
          says='cannot read')
    bad = spec_file(world, 'bad@.service', WEB.replace('Replicas=4', 'Replicas=4\nReplicaz=2'))
    line = WEB.replace('Replicas=4', 'Replicas=4\nReplicaz=2').splitlines().index('Replicaz=2')
    fails(world, 4, 'plan', bad, says=[f'bad@.service:{line + 1}:', 'Replicaz'])
    # Anyone may plan; only an operator may apply, even a dry run is fine for anyone.
    assert ctl(world, '--json', 'plan', web, broker=viewer(world)).returncode == 0
    assert ctl(world, '--json', 'apply', '--dry-run', web, broker=viewer(world)).returncode == 0
    fails(world, 4, 'apply', web, says='not an operator', broker=viewer(world))


@suite.case
def apply(world):
    web = spec_file(world, 'web@.service', WEB)
    doc = ok_json(world, 'apply', web)
    assert doc['dry_run'] is False and doc['applied'] is True, doc
    assert doc['services'][0]['action'] == 'create', doc
    S['placed'] = {p['unit']: p['host'] for p in doc['placements']}
    world.wait_for(lambda: n_active(world) == 4, 30, what='four web instances active')
    placed = active(world)
    for unit, host in S['placed'].items():
        assert unit in placed[host], (unit, host, placed)
    # Applying the same file again changes nothing, and says so.
    r = ctl(world, 'apply', web)
    assert r.returncode == 0 and r.stdout == 'No changes.\n', r.stdout
    doc = ok_json(world, 'apply', web)
    assert doc['services'][0]['action'] == 'unchanged', doc
    assert {p['change'] for p in doc['placements']} == {'keep'}, doc
    # All files or none: a bad file beside a good one refuses both.
    bad = spec_file(world, 'bad@.service', WEB.replace('MaxPerHost=2', 'MaxPerHost=two'))
    fails(world, 4, 'apply', spec_file(world, 'other@.service', WEB), bad,
          says=['bad@.service:', 'MaxPerHost'])
    assert [s['service'] for s in ok_json(world, 'status')['services']] == ['web']


@suite.case
def status(world):
    world.wait_for(lambda: ok_json(world, 'status', 'web')['services'][0]['healthy'] == 4, 20,
                   what='status shows four healthy')
    doc = ok_json(world, 'status')
    assert len(doc['services']) == 1, doc
    s = doc['services'][0]
    assert set(s) >= {'service', 'kind', 'count', 'healthy', 'instances'}, s
    assert (s['service'], s['kind'], s['count'], s['healthy']) == ('web', 'stateless', 4, 4), s
    for inst in s['instances']:
        assert set(inst) >= INSTANCE_FIELDS, inst
        assert inst['host'] == S['placed'][inst['unit']], inst
        assert (inst['active_state'], inst['sub_state'], inst['healthy']) == \
            ('active', 'running', True), inst
    assert ok_json(world, 'status', 'web') == doc

    r = ctl(world, 'status')
    assert r.returncode == 0, r
    lines = [line.split() for line in r.stdout.splitlines()]
    assert ['web', 'stateless', '4/4', '-'] in lines, r.stdout
    for unit, host in S['placed'].items():
        assert [unit, host, 'active', '(running)', '0', 'yes'] in lines, r.stdout

    fails(world, NO_SUCH, 'status', 'nope', says="no service 'nope'")
    fails(world, 2, 'status', 'web', 'more', says="unexpected argument 'more'")


@suite.case
def scale(world):
    doc = ok_json(world, 'scale', 'web', '5')
    assert has(doc, service='web', count=5, previous=4), doc
    world.wait_for(lambda: n_active(world) == 5, 30, what='five instances')
    r = ctl(world, 'scale', 'web', '4')
    assert r.returncode == 0 and 'from 5 to 4' in r.stdout, r
    world.wait_for(lambda: n_active(world) == 4, 30, what='back to four')

    fails(world, 4, 'scale', 'web', '7', says='MaxReplicas=6')
    fails(world, 4, 'scale', 'web', '1', says='MinReplicas=2')
    fails(world, 2, 'scale', 'web', 'many', says='not a non-negative integer')
    fails(world, 2, 'scale', 'web', '-1', says='non-negative')
    fails(world, 2, 'scale', 'web', says='no count given')
    fails(world, NO_SUCH, 'scale', 'nope', '3', says="no service 'nope'")
    fails(world, 4, 'scale', 'web', '3', says='not an operator', broker=viewer(world))
    assert ok_json(world, 'status', 'web')['services'][0]['count'] == 4


def main_pid(host, unit):
    return S['hosts'][host].unit_property(unit, 'MainPID')


@suite.case
def restart_one_instance(world):
    host = S['placed']['web@1.service']
    before = main_pid(host, 'web@1.service')
    doc = ok_json(world, 'restart', 'web@1')
    assert set(doc) >= {'service', 'rollout', 'restart_id', 'host', 'instances'}, doc
    assert doc['service'] == 'web' and doc['rollout'] is None and doc['instances'] == 1, doc
    assert doc['host'] == host and len(doc['restart_id']) >= 16, doc
    world.wait_for(lambda: main_pid(host, 'web@1.service') not in (before, '0'), 20,
                   what='web@1 restarted with a new main PID')
    r = ctl(world, 'restart', 'web@2')
    assert r.returncode == 0 and f'Restarting web@2 on {S["placed"]["web@2.service"]}' \
        in r.stdout, r.stdout
    fails(world, 2, 'restart', 'web@x', says='SERVICE@N')
    fails(world, 2, 'restart', '@1', says='service name is empty')
    fails(world, 2, 'restart', says='no service given')
    fails(world, NO_SUCH, 'restart', 'web@9', says='no instance 9')
    fails(world, NO_SUCH, 'restart', 'nope', says="no service 'nope'")


def rollout_of(world, service='web'):
    return ok_json(world, 'rollout', 'status', service)['rollouts'][0]


@suite.case
def rolling_restart_and_rollout_verbs(world):
    world.wait_for(lambda: ok_json(world, 'status', 'web')['services'][0]['healthy'] == 4, 30,
                   what='four healthy before the rollout')
    doc = ok_json(world, 'restart', 'web')
    assert doc['service'] == 'web' and isinstance(doc['rollout'], int), doc
    assert doc['restart_id'] is None and doc['instances'] == 4, doc
    rid = doc['rollout']
    paused = ok_json(world, 'rollout', 'pause', 'web')['rollouts']
    assert [(r['id'], r['state']) for r in paused] == [(rid, 'paused')], paused
    ro = rollout_of(world)
    assert set(ro) >= ROLLOUT_FIELDS, ro
    assert ro['max_unavailable'] == 1 and len(ro['items']) == 4, ro
    for item in ro['items']:
        assert set(item) >= {'instance', 'state', 'started_at_us', 'attempts'}, item
    r = ctl(world, 'rollout', 'status')
    assert r.returncode == 0, r
    assert any(line.split()[:3] == ['web', str(rid), 'paused'] for line in
               r.stdout.splitlines()), r.stdout
    # Nothing left to pause: refused.
    fails(world, 4, 'rollout', 'pause', 'web', says='no rollout of web can be paused')
    fails(world, 4, 'restart', 'web', says='already has a rollout')

    resumed = ok_json(world, 'rollout', 'resume', 'web')['rollouts'][0]
    assert resumed['state'] == 'running', resumed
    aborted = ok_json(world, 'rollout', 'abort', 'web')['rollouts'][0]
    assert aborted['state'] == 'aborted', aborted
    fails(world, 4, 'rollout', 'resume', 'web', says='can be resumed')
    fails(world, 2, 'rollout', 'rewind', says="unknown action 'rewind'")
    fails(world, 2, 'rollout', says='no action given')
    fails(world, 2, 'rollout', 'pause', '--follow', says='--follow goes with status only')
    fails(world, 4, 'rollout', 'abort', says='not an operator', broker=viewer(world))
    assert ok_json(world, 'rollout', 'status', broker=viewer(world))['rollouts']

    # A whole rolling restart, followed to its end: the last document says done.
    world.wait_for(lambda: ok_json(world, 'status', 'web')['services'][0]['healthy'] == 4, 30,
                   what='four healthy after the abort')
    rid2 = ok_json(world, 'restart', 'web')['rollout']
    assert rid2 > rid
    r = ctl(world, '--json', 'rollout', 'status', '--follow', 'web', timeout=90)
    assert r.returncode == 0, r
    done = json.loads(r.stdout)['rollouts'][0]
    assert (done['id'], done['state']) == (rid2, 'done'), done
    assert [i['state'] for i in done['items']] == ['done'] * 4, done


@suite.case
def drain_and_undrain(world):
    host = max(HOSTS, key=lambda n: len(active(world)[n]))
    n = len(active(world)[host])
    assert n > 0
    doc = ok_json(world, 'drain', host)
    assert (doc['host'], doc['state']) == (host, 'drained') and 0 <= doc['moved'] <= n, doc
    assert set(doc) >= {'host', 'state', 'moved'}, doc
    world.wait_for(lambda: not active(world)[host] and n_active(world) == 4, 30,
                   what=f'{host} emptied, its instances elsewhere')
    hosts = {h['host']: h['state'] for h in ok_json(world, 'hosts')['hosts']}
    assert hosts[host] == 'drained', hosts
    r = ctl(world, 'hosts')
    assert any(line.split()[:2] == [host, 'drained'] for line in r.stdout.splitlines()), r.stdout
    doc = ok_json(world, 'undrain', host)
    assert has(doc, host=host, state='up', moved=0), doc
    r = ctl(world, 'drain', host)
    assert r.returncode == 0 and r.stdout.startswith(f'{host} is drained'), r.stdout
    r = ctl(world, 'undrain', host)
    assert r.returncode == 0 and r.stdout.startswith(f'{host} is up'), r.stdout

    fails(world, 2, 'drain', 'not a host!', says='is not a host id')
    fails(world, 2, 'undrain', says='no host given')
    fails(world, NO_SUCH, 'drain', 'delta', says="no host 'delta'")
    fails(world, 4, 'drain', host, says='not an operator', broker=viewer(world))
    S['placed'] = {i['unit']: i['host']
                   for i in ok_json(world, 'status', 'web')['services'][0]['instances']}


@suite.case
def plan_shows_moves_and_removals(world):
    # Only the rack of a host web@0 is not on: web@0 has to move there, and with two
    # replicas web@2 and web@3 go away.
    here = S['placed']['web@0.service']
    there = next(h for h in HOSTS if h != here)
    text = WEB.replace('Replicas=4', 'Replicas=2').replace(
        'MaxPerHost=2', f'MaxPerHost=2\nRequireLabels=rack=r{HOSTS.index(there)}')
    path = spec_file(world, 'moved/web@.service', text)
    doc = ok_json(world, 'plan', path)
    assert has(doc['services'][0], service='web', action='update', count=2), doc
    changes = {p['unit']: (p['change'], p['host'], p['from']) for p in doc['placements']}
    assert changes['web@0.service'] == ('move', there, here), changes
    assert changes['web@2.service'] == ('remove', None, S['placed']['web@2.service']), changes
    assert changes['web@3.service'] == ('remove', None, S['placed']['web@3.service']), changes
    r = ctl(world, 'plan', path)
    lines = [line.split() for line in r.stdout.splitlines()]
    assert ['web@0.service', 'move', there, here] in lines, r.stdout
    assert ['web@2.service', 'remove', '-', S['placed']['web@2.service']] in lines, r.stdout
    assert 'Dry run: nothing was changed.' in r.stdout, r.stdout
    assert ok_json(world, 'status', 'web')['services'][0]['count'] == 4


def watch_lines(proc):
    return [json.loads(line) for line in proc.log().splitlines() if line.startswith('{')]


@suite.case
def watch_alerts_and_delete(world):
    argv = [build_path('controller', 'ctl', 'batonctl'), '--broker', world.broker.url, '--json',
            'watch', 'alert.#']
    w = world.spawn('watch', argv)
    try:
        world.wait_for(lambda: 'watching baton.events' in w.log(), 10, what='watch connected')
        ok_json(world, 'apply', spec_file(world, 'nowhere.service', NOWHERE))
        line = world.wait_for(lambda: next((m for m in watch_lines(w)
                                            if m.get('kind') == 'placement-impossible'), None),
                              20, what='placement-impossible streamed by watch')
        assert line['routing_key'].startswith('alert.') and \
            line['routing_key'].endswith('.placement-impossible'), line
        assert line['type'] == 'baton.v1.Alert' and line['service'] == 'nowhere', line

        alerts = ok_json(world, 'alerts')['alerts']
        mine = [a for a in alerts if a['kind'] == 'placement-impossible']
        assert len(mine) == 1 and set(mine[0]) >= ALERT_FIELDS, alerts
        assert mine[0]['service'] == 'nowhere' and mine[0]['raised_at_us'] > 0, mine
        r = ctl(world, 'alerts')
        assert r.returncode == 0, r
        assert any('placement-impossible' in line and 'nowhere' in line
                   for line in r.stdout.splitlines()), r.stdout

        # A label a host has: placed, and the alert is resolved.
        ok_json(world, 'apply', spec_file(world, 'nowhere.service',
                                          NOWHERE.replace('role=nowhere', 'rack=r0')))
        world.wait_for(lambda: any(m.get('kind') == 'placement-impossible' and m.get('resolved')
                                   for m in watch_lines(w)), 20,
                       what='the resolution streamed by watch')
        assert not [a for a in ok_json(world, 'alerts')['alerts']
                    if a['kind'] == 'placement-impossible'], 'alert still open'
        world.wait_for(lambda: active(world, 'nowhere.service')['alpha'], 20,
                       what='nowhere.service running on alpha')
        doc = ok_json(world, 'delete', 'nowhere')
        assert has(doc, service='nowhere', removed_instances=1), doc
        world.wait_for(lambda: not any(active(world, 'nowhere.service').values()), 20,
                       what='nowhere.service stopped')
    finally:
        code = w.stop()
    assert code == 0, f'watch exited {code} on SIGTERM:\n{w.log()}'

    r = ctl(world, 'watch', '--count', '1', '--for', '300ms')
    assert r.returncode == 0 and r.stdout == '', r
    fails(world, 2, 'watch', '--count', '0', says='--count')
    fails(world, 2, 'watch', '--for', 'ever', says='--for')
    fails(world, 3, 'watch', says='cannot watch baton.events',
          broker=url_for(free_ports(1)[0], '/baton'))
    fails(world, 2, 'alerts', 'now', says="unexpected argument 'now'")
    fails(world, NO_SUCH, 'delete', 'nowhere', says="no service 'nowhere'")
    fails(world, 2, 'delete', says='no service given')
    fails(world, 4, 'delete', 'web', says='not an operator', broker=viewer(world))


@suite.case
def audit(world):
    entries = ok_json(world, 'audit')['entries']
    for e in entries:
        assert set(e) >= AUDIT_FIELDS, e
    verbs = {e['verb'] for e in entries}
    assert verbs >= {'apply', 'scale', 'restart', 'rollout', 'drain', 'undrain', 'delete'}, verbs
    assert 'plan' not in verbs and 'status' not in verbs, verbs
    seqs = [e['seq'] for e in entries]
    assert seqs == sorted(seqs, reverse=True), seqs
    refused = [e for e in entries if e['verb'] == 'scale' and 'MaxReplicas' in e['outcome']]
    assert refused and refused[0]['request'] == 'web 7' and refused[0]['user'] == 'guest', \
        entries
    viewers = [e for e in entries if e['user'] == 'viewer']
    assert viewers and all('not an operator' in e['outcome'] for e in viewers), viewers
    assert len(ok_json(world, 'audit', '--limit', '2')['entries']) == 2
    r = ctl(world, 'audit', '--limit', '3')
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:4] == \
        ['SEQ', 'TIME', 'USER', 'VERB'] and len(r.stdout.splitlines()) == 4, r.stdout
    fails(world, 2, 'audit', '--limit', '0', says='--limit')
    fails(world, 2, 'audit', 'all', says="unexpected argument 'all'")


@suite.case
def backup_and_restore(world):
    path = os.path.join(world.dir, 'backups', 'controller.db')
    os.makedirs(os.path.dirname(path))
    doc = ok_json(world, 'backup', path)
    assert set(doc) >= {'file', 'bytes', 'schema_version', 'epoch'}, doc
    assert doc['file'] == path and doc['epoch'] == S['epoch'], (doc, S['epoch'])
    # What batonctl says the copy holds is what it holds.
    inspect = os.path.join(world.dir, 'inspect.db')
    shutil.copyfile(path, inspect)
    with sqlite3.connect(inspect) as db:
        assert db.execute('PRAGMA integrity_check').fetchone() == ('ok',)
        assert db.execute('PRAGMA user_version').fetchone()[0] == doc['schema_version'] >= 2
        assert db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone() == \
            (str(S['epoch']),)
        assert db.execute('SELECT name, count FROM services').fetchall() == [('web', 4)]
    db.close()
    st = os.stat(path)
    assert st.st_size == doc['bytes'] and stat.S_IMODE(st.st_mode) == 0o600, st
    with open(path, 'rb') as f:
        assert f.read(16) == b'SQLite format 3\0'
    assert os.listdir(os.path.dirname(path)) == ['controller.db'], 'temporary file left'
    saved = open(path, 'rb').read()

    fails(world, 4, 'backup', path, says=['exists', '--force'])
    assert open(path, 'rb').read() == saved, 'an existing backup was overwritten'
    r = ctl(world, 'backup', '--force', path)
    assert r.returncode == 0, r
    assert f'to {path}: schema {doc["schema_version"]}, controller epoch {S["epoch"]}.' \
        in r.stdout, r.stdout
    fails(world, 2, 'backup', says='no file given')
    fails(world, 2, 'backup', world.dir, says='is a directory')
    fails(world, 1, 'backup', os.path.join(world.dir, 'no-such-dir', 'x.db'),
          says='cannot create a file in')
    fails(world, 4, 'backup', path + '.viewer', says='not an operator', broker=viewer(world))
    assert not os.path.exists(path + '.viewer')
    entry = ok_json(world, 'audit', '--limit', '1')['entries'][0]
    assert (entry['verb'], entry['user']) == ('backup', 'viewer'), entry
    assert 'not an operator' in entry['outcome'], entry
    assert [e for e in ok_json(world, 'audit')['entries']
            if e['verb'] == 'backup' and e['outcome'] == 'ok'], 'backup not audited'

    # A change after the backup, which the restore takes back.
    ok_json(world, 'scale', 'web', '3')
    world.wait_for(lambda: n_active(world) == 3, 30, what='three instances')

    # Restore as an operator would: stop the controller, put the copy in place of its
    # database (and no -wal or -shm of the old one beside it), start it.
    assert S['controller'].stop() == 0
    # Meanwhile: --timeout is honoured, and says the controller did not answer.
    t0 = time.monotonic()
    fails(world, 3, '--timeout', '2s', 'status',
          says=['did not answer within 2s', 'baton-controller running'])
    took = time.monotonic() - t0
    assert 1.9 < took < 5, took
    fails(world, 3, '--timeout', '1s', 'backup', path + '.late', says='did not answer')
    assert not os.path.exists(path + '.late')
    db = os.path.join(world.dir, 'controller.db')
    for suffix in ('', '-wal', '-shm'):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    shutil.copyfile(path, db)
    S['controller'] = world.start_controller(config=controller_config())
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='restored controller answering')
    assert ok_json(world, 'ping')['epoch'] == S['epoch'] + 1
    s = ok_json(world, 'status', 'web')['services'][0]
    assert s['count'] == 4 and len(s['instances']) == 4, s
    assert {i['host'] for i in s['instances']} <= set(HOSTS), s
    # The agents take the restored controller's word (a higher epoch): four again.
    world.wait_for(lambda: n_active(world) == 4, 30, what='four instances after the restore')
    world.wait_for(lambda: ok_json(world, 'status', 'web')['services'][0]['healthy'] == 4, 20,
                   what='status shows four healthy after the restore')
    S['epoch'] += 1


@suite.case
def backup_too_large_is_refused_with_the_figures(world):
    # Services no host can take, with unit files near the 256 KiB spec limit, until the
    # database is past what one reply carries.
    filler = '# ' + 'x' * 120 + '\n'
    big = NOWHERE + filler * (240 * 1024 // len(filler))
    paths = [spec_file(world, f'big{i}.service', big) for i in range(18)]
    for chunk in (paths[:9], paths[9:]):
        ok_json(world, 'apply', *chunk)
    r = fails(world, 1, 'backup', os.path.join(world.dir, 'big.db'),
              says='a backup travels in one reply of at most 4177920 bytes')
    size = re.search(r'the database is (\d+) bytes', r.stderr)
    assert size and int(size.group(1)) > 4177920, r.stderr
    assert not os.path.exists(os.path.join(world.dir, 'big.db'))
    assert [n for n in os.listdir(world.dir) if n.startswith('.batonctl-backup')] == [], \
        'temporary file left'
    entry = ok_json(world, 'audit', '--limit', '1')['entries'][0]
    assert entry['verb'] == 'backup' and 'at most 4177920 bytes' in entry['outcome'], entry


def database_bytes(world):
    """The controller's database as it is on disk: the file and its write-ahead log."""
    out = {}
    for suffix in ('', '-wal'):
        path = os.path.join(world.dir, 'controller.db' + suffix)
        if os.path.exists(path):
            with open(path, 'rb') as f:
                out[suffix] = f.read()
    return out


@suite.case
def read_verbs_change_nothing_in_the_database(world):
    """With no status arriving (every agent stopped, every host down), the database is
    byte-identical around every read verb: reading changes nothing."""
    for a in S['agents']:
        a.stop()
    world.wait_for(lambda: all(h['state'] == 'down' for h in ok_json(world, 'hosts')['hosts']),
                   30, what='every host down')
    # Quiet first: what the hosts' loss decided is written, and nothing else is.
    world.wait_for(lambda: (lambda a: (time.sleep(3), a == database_bytes(world))[1])(
        database_bytes(world)), 60, interval=0, what='the database quiet')
    web = spec_file(world, 'web@.service', WEB)
    before = database_bytes(world)
    names = [x['service'] for x in ok_json(world, 'status')['services']]
    reads = [('ping',), ('hosts',), ('status',), *[('status', n) for n in names[:2]],
             ('plan', web),
             ('apply', '--dry-run', web), ('alerts',), ('audit',), ('rollout', 'status'),
             ('--json', 'status'), ('--json', 'plan', web), ('--json', 'hosts')]
    for args in reads:
        r = ctl(world, *args)
        assert r.returncode == 0, f'batonctl {" ".join(args)}: {r.returncode} {r.stderr}'
    time.sleep(3)  # a flush interval and more
    after = database_bytes(world)
    assert after.keys() == before.keys(), (before.keys(), after.keys())
    for k in before:
        assert after[k] == before[k], f'controller.db{k} changed ({len(before[k])} → ' \
                                      f'{len(after[k])} bytes)'


if __name__ == '__main__':
    suite.run()
