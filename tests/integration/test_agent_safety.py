# SPDX-License-Identifier: MIT
"""The agent's safety under stress (issue 10, points 6, 9 and 10), against a real
rabbitmq-server and real systemd user managers: manage_units covers a template only when
the template itself is allowed; a unit systemd has from another directory is foreign and
left alone; the state is saved (intent first, directories synced) before anything runs,
and a state_dir that cannot be written holds the Placement instead of starting what the
state would not know; a Restart waits for a Placement that removes its unit; allocation
failures (an LD_PRELOAD shim) lead to retries, never to refusals or stuck deliveries; and a
workload rewriting STATUS= in a tight loop does not starve heartbeats."""

import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
import world as worldmod  # noqa: E402

EPOCH = 3
CHATTY_TOTAL = 50000
ALLOWED = ('app-*.service foo@1.service vend-*.service slow-*.service chat@*.service '
           'boot-*.service')
suite = Suite('agent-safety')
S = {}

CHATTY_PY = r'''
import os, socket, sys, time
addr = os.environ['NOTIFY_SOCKET']
if addr.startswith('@'):
    addr = '\0' + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(addr)
s.send(b'READY=1\nSTATUS=ready=0-3')
out, per_second, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 0
while n < total:
    n += 1
    s.send(('STATUS=ready=0-%d connecting=%d n=%d' % (2 + n % 2, 3 - n % 2, n)).encode())
    # Thousands a second, in bursts; not so many that systemd itself stops
    # answering D-Bus (it serves notifications first).
    if n % (per_second // 100) == 0:
        time.sleep(0.01)
    if n % 500 == 0:
        with open(out + '.tmp', 'w') as f:
            f.write(str(n))
        os.replace(out + '.tmp', out)
s.send(('STATUS=ready=0-3 done n=%d' % n).encode())
while True:
    time.sleep(3600)
'''


# ---- helpers -------------------------------------------------------------------------------


def sleeper(name, extra='', pre=''):
    """A unit that records each start in a file and then sleeps."""
    starts = os.path.join(S['dir'], f'{name}.starts')
    return {'name': name, 'service': name.split('@')[0].split('.')[0], 'running': True,
            'unit_text': '[Unit]\nDescription=test %s\n[Service]\n%s'
                         "ExecStart=/bin/sh -c 'echo $$$$ >> %s; exec sleep infinity'\n%s"
                         % (name, pre, starts, extra)}


def unit_file_text(name):
    starts = os.path.join(S['dir'], f'{name}.starts')
    return ('[Unit]\nDescription=vendor %s\n[Service]\n'
            f"ExecStart=/bin/sh -c 'echo $$$$ >> {starts}; exec sleep infinity'\n"
            '[Install]\nWantedBy=default.target\n' % name)


def starts(name):
    try:
        with open(os.path.join(S['dir'], f'{name}.starts')) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def main_pid(host, unit):
    return int(host.unit_property(unit, 'MainPID') or 0)


def place(host, units, generation, epoch=EPOCH):
    S['world'].send_placement(host.name, units, epoch=epoch, generation=generation)


def result_for(host, generation, since, timeout=30, pred=None):
    return S['status'].wait_for(
        lambda m: m['type'] == 'baton.v1.CommandResult' and m['body']['host'] == host.name
        and int(m['body'].get('generation', -1)) == generation
        and (pred is None or pred(m['body'])), timeout,
        what=f'CommandResult from {host.name} for generation {generation}', since=since)['body']


def restart_result(host, rid, since, timeout=30):
    return S['status'].wait_for(
        lambda m: m['type'] == 'baton.v1.CommandResult' and m['body']['host'] == host.name
        and m['body'].get('restart_id') == rid, timeout,
        what=f'CommandResult for restart {rid}', since=since)['body']


def heartbeat(host, since=0, timeout=20, pred=None):
    return S['status'].wait_for(
        lambda m: m['type'] == 'baton.v1.Heartbeat' and m['body']['host'] == host.name
        and (pred is None or pred(m['body'])), timeout,
        what=f'heartbeat from {host.name}', since=since)['body']


def outcome(res, unit):
    found = [u for u in res.get('units', []) if u['unit'] == unit]
    assert found, f'no outcome for {unit} in {res}'
    return found[0]


def mark():
    return len(S['status'].messages())


def dead_bodies():
    return [m for m in S['dead'].messages()]


def queue_counts(host):
    """(ready, unacknowledged) of the host's command queue."""
    r = S['world'].broker.ctl('list_queues', '-p', S['world'].broker.vhost, '--silent',
                              '--no-table-headers', 'name', 'messages_ready',
                              'messages_unacknowledged')
    for line in r.stdout.splitlines():
        parts = line.split('\t')
        if len(parts) == 3 and parts[0] == f'baton.agent.{host.name}':
            return int(parts[1]), int(parts[2])
    raise AssertionError(f'no queue for {host.name}: {r.stdout} {r.stderr}')


def agent_config(state_dir=None):
    conf = {'agent': {'manage_units': ALLOWED, 'heartbeat_interval': '1s'},
            'security': {'controller_public_key': S['public']}}
    if state_dir:
        conf['agent']['state_dir'] = state_dir
    return conf


def sanitized(pid):
    with open(f'/proc/{pid}/maps') as f:
        return 'libasan' in f.read()


def run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f'{" ".join(argv)}: {r.returncode} {r.stderr.strip()}')
    return r


# ---- set-up --------------------------------------------------------------------------------


@suite.setup
def setup(world):
    S['world'] = world
    S['dir'] = world.dir
    world.start_broker()
    _, S['public'] = world.keygen()
    S['status'] = world.listen('baton.status:#')
    S['dead'] = world.listen('baton.dlx:#')
    S['h1'] = world.add_host('h1')
    S['agent'] = world.start_agent(S['h1'], config=agent_config())
    heartbeat(S['h1'])
    with open(os.path.join(world.dir, 'chatty.py'), 'w') as f:
        f.write(CHATTY_PY)


# ---- point 6: manage_units ---------------------------------------------------------------


@suite.case
def instance_glob_does_not_allow_its_template(world):
    h = S['h1']
    m = mark()
    foo = {**sleeper('foo@1.service'), 'template_name': 'foo@.service', 'instance': 1}
    place(h, [foo, sleeper('app-a.service')], generation=1)
    res = result_for(h, 1, m)
    assert not res['ok'], res
    o = outcome(res, 'foo@1.service')
    assert o['action'] == 'refused' and not o['ok'], o
    assert 'template foo@.service is not allowed by manage_units' in o['result'], o
    assert outcome(res, 'app-a.service')['ok'], res
    # Nothing of foo was written: the template would change every foo@ instance.
    assert not os.path.exists(os.path.join(h.unit_dir, 'foo@.service'))
    assert not os.path.exists(os.path.join(h.unit_dir, 'foo@1.service.d'))
    assert not h.is_active('foo@1.service')
    world.wait_for(lambda: h.is_active('app-a.service'), 10, what='app-a active')


@suite.case
def units_systemd_has_from_elsewhere_are_foreign(world):
    h = S['h1']
    # A vendor unit (the user manager's $XDG_DATA_HOME/systemd/user, like
    # /usr/lib/systemd/user) and a runtime one ($XDG_RUNTIME_DIR/systemd/user, like /run).
    vendor_dir = os.path.join(h.xdg['XDG_DATA_HOME'], 'systemd', 'user')
    runtime_dir = os.path.join(h.runtime_dir, 'systemd', 'user')
    os.makedirs(vendor_dir, exist_ok=True)
    os.makedirs(runtime_dir, exist_ok=True)
    with open(os.path.join(vendor_dir, 'vend-a.service'), 'w') as f:
        f.write(unit_file_text('vend-a.service'))
    with open(os.path.join(runtime_dir, 'vend-r.service'), 'w') as f:
        f.write(unit_file_text('vend-r.service'))
    for args in (('daemon-reload',), ('enable', 'vend-a.service'),
                 ('start', 'vend-a.service', 'vend-r.service')):
        r = h.systemctl(*args)
        assert r.returncode == 0, (args, r.stderr)
    wants = os.path.join(h.unit_dir, 'default.target.wants', 'vend-a.service')
    assert os.path.islink(wants)
    pids = {u: main_pid(h, u) for u in ('vend-a.service', 'vend-r.service')}
    assert all(pids.values()), pids

    m = mark()
    place(h, [sleeper('app-a.service'), sleeper('vend-a.service'), sleeper('vend-r.service')],
          generation=2)
    res = result_for(h, 2, m)
    assert not res['ok'], res
    for unit, where in (('vend-a.service', vendor_dir), ('vend-r.service', runtime_dir)):
        o = outcome(res, unit)
        assert o['action'] == 'refused', o
        assert os.path.join(where, unit) in o['result'] and 'take it over' in o['result'], o
        assert not os.path.exists(os.path.join(h.unit_dir, unit)), unit
        assert not os.path.exists(os.path.join(h.unit_dir, unit + '.d')), unit
    assert 'Refusing unit vend-a.service' in S['agent'].log()

    # The Placement that named them is replaced by one that does not: still not ours.
    m = mark()
    place(h, [sleeper('app-a.service')], generation=3)
    assert result_for(h, 3, m)['ok']
    hb = heartbeat(h, since=m, pred=lambda b: int(b['applied_generation']) == 3)
    assert not {u['name'] for u in hb['units']} & set(pids), hb['units']
    time.sleep(1)
    for unit, pid in pids.items():
        assert h.is_active(unit) and main_pid(h, unit) == pid, f'{unit} was touched'
        assert starts(unit) == 1, unit
    assert os.path.islink(wants), 'the vendor unit was disabled'


# ---- point 9: crash safety -------------------------------------------------------------------


def strace_lines(path):
    with open(path) as f:
        return [line.rstrip('\n') for line in f]


@suite.case
def state_and_unit_files_are_synced_with_their_directory(world):
    h = S['h1']
    state_dir = os.path.join(h.dir, 'agent-state')
    out = os.path.join(world.dir, 'strace.out')
    tracer = world.spawn('strace', ['strace', '-f', '-qq', '-y', '-o', out,
                                    '-e', 'trace=openat,rename,renameat,renameat2,fsync,fdatasync',
                                    '-p', str(S['agent'].pid)])
    world.wait_for(lambda: open(f'/proc/{S["agent"].pid}/status').read().count(
        f'TracerPid:\t{tracer.pid}'), 10, what='strace attached')
    m = mark()
    place(h, [sleeper('app-a.service'), sleeper('app-b.service')], generation=4)
    assert result_for(h, 4, m)['ok']
    time.sleep(0.5)
    tracer.signal(signal.SIGINT)
    tracer.wait(10)
    lines = strace_lines(out)

    def synced_after_rename(target, directory):
        renames = [i for i, line in enumerate(lines)
                   if re.search(r'rename\w*\(.*"%s"\) = 0' % re.escape(target), line)]
        assert renames, f'no rename to {target} in {out}:\n' + '\n'.join(lines[-40:])
        i = renames[-1]
        before = '\n'.join(lines[max(0, i - 20):i])
        after = '\n'.join(lines[i:i + 20])
        assert re.search(r'fsync\(\d+<%s\.tmp\.\d+>\) = 0' % re.escape(target), before), \
            f'{target}: file not synced before the rename:\n{before}'
        assert re.search(r'fsync\(\d+<%s>\) = 0' % re.escape(directory), after), \
            f'{target}: directory {directory} not synced after the rename:\n{after}'

    synced_after_rename(os.path.join(state_dir, 'state'), state_dir)
    synced_after_rename(os.path.join(h.unit_dir, 'app-b.service'), h.unit_dir)


def state_text(state_dir):
    with open(os.path.join(state_dir, 'state')) as f:
        return f.read()


@suite.case
def intent_is_recorded_before_a_unit_starts_and_survives_a_crash(world):
    h = S['h1']
    state_dir = os.path.join(h.dir, 'agent-state')
    slow = sleeper('boot-k.service', pre='ExecStartPre=/bin/sleep 4\n')
    m = mark()
    place(h, [sleeper('app-a.service'), sleeper('app-b.service'), slow], generation=5)
    # While its start job runs, the state file already knows the unit.
    world.wait_for(lambda: h.unit_property('boot-k.service', 'ActiveState') == 'activating',
                   15, what='boot-k starting')
    text = state_text(state_dir)
    assert re.search(r'^unit boot-k\.service boot-k\.service \S+ 1 pending$', text, re.M), text
    # A crash now: the Placement was not acked, so it comes again and is finished.
    S['agent'].kill()
    S['agent'] = world.start_agent(h, config=agent_config())
    res = result_for(h, 5, m, timeout=40, pred=lambda b: b['ok'])
    assert outcome(res, 'boot-k.service')['ok'], res
    world.wait_for(lambda: h.is_active('boot-k.service'), 20, what='boot-k active')
    text = state_text(state_dir)
    assert re.search(r'^unit boot-k\.service boot-k\.service \S+ 1$', text, re.M), text
    assert 'applied 3 5' in text, text

    # A crash right after the intent was saved leaves a record of a unit that was never
    # written: the next Placement that drops it cleans it up like any other.
    assert S['agent'].stop() == 0
    with open(os.path.join(state_dir, 'state'), 'a') as f:
        f.write('unit app-ghost.service app-ghost.service 0123456789abcdef 1 pending\n')
    S['agent'] = world.start_agent(h, config=agent_config())
    m = mark()
    hb = heartbeat(h, since=m)
    ghost = [u for u in hb['units'] if u['name'] == 'app-ghost.service']
    assert ghost and not ghost[0].get('config_hash'), hb['units']
    place(h, [sleeper('app-a.service'), sleeper('app-b.service'), slow], generation=6)
    res = result_for(h, 6, m)
    assert res['ok'], res
    assert outcome(res, 'app-ghost.service')['ok'], res
    assert 'app-ghost' not in state_text(state_dir)


def mount(*args):
    run('mount', *args)


@suite.case
def unsaved_state_holds_the_placement_and_starts_nothing(world):
    h = world.add_host('h2')
    mnt = os.path.join(h.dir, 'state-mnt')
    os.makedirs(mnt)
    mount('-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mnt)
    agent = None
    try:
        agent = world.start_agent(h, config=agent_config(state_dir=mnt), name='agent-h2')
        heartbeat(h)
        m = mark()
        place(h, [sleeper('app-s.service')], generation=1)
        assert result_for(h, 1, m)['ok']

        # Before anything is done: the intent cannot be written.
        mount('-o', 'remount,ro', mnt)
        m, dead = mark(), len(dead_bodies())
        place(h, [sleeper('app-s.service'), sleeper('app-t.service')], generation=2)
        res = result_for(h, 2, m)
        assert not res['ok'] and 'nothing was changed' in res['error'], res
        time.sleep(2)
        assert not h.is_active('app-t.service'), 'started a unit the state does not know'
        assert not os.path.exists(os.path.join(h.unit_dir, 'app-t.service'))
        assert queue_counts(h) == (0, 1), 'the Placement should be held, unacked'
        assert len(dead_bodies()) == dead, 'the Placement was dead-lettered'

        mount('-o', 'remount,rw', mnt)
        res = result_for(h, 2, m, pred=lambda b: b['ok'])
        world.wait_for(lambda: h.is_active('app-t.service'), 15, what='app-t active')

        # After everything is done: only the final save fails. Nothing is lost.
        slow = sleeper('app-u.service', pre='ExecStartPre=/bin/sleep 3\n')
        m = mark()
        place(h, [sleeper('app-s.service'), sleeper('app-t.service'), slow], generation=3)
        world.wait_for(lambda: 'app-u.service' in state_text(mnt), 15, what='intent saved')
        mount('-o', 'remount,ro', mnt)
        res = result_for(h, 3, m, timeout=30)
        assert not res['ok'] and 'could not be saved' in res['error'], res
        assert queue_counts(h)[1] == 1, 'acked before the state was saved'
        assert h.is_active('app-u.service')
        mount('-o', 'remount,rw', mnt)
        result_for(h, 3, m, pred=lambda b: b['ok'])
        world.wait_for(lambda: queue_counts(h) == (0, 0), 15, what='Placement acked')

        # A restarted agent knows every unit it started.
        assert agent.stop() == 0
        agent = world.start_agent(h, config=agent_config(state_dir=mnt), name='agent-h2')
        m = mark()
        hb = heartbeat(h, since=m)
        names = {u['name'] for u in hb['units']}
        assert {'app-s.service', 'app-t.service', 'app-u.service'} <= names, names
        assert int(hb['applied_generation']) == 3, hb
        place(h, [], generation=4)
        assert result_for(h, 4, m)['ok']
        for u in ('app-s.service', 'app-t.service', 'app-u.service'):
            world.wait_for(lambda u=u: not h.is_active(u), 15, what=f'{u} stopped')
    finally:
        if agent is not None:
            agent.stop()
        subprocess.run(['mount', '-o', 'remount,rw', mnt], capture_output=True)
        if subprocess.run(['umount', mnt], capture_output=True).returncode != 0:
            subprocess.run(['umount', '-l', mnt], capture_output=True)


@suite.case
def restart_waits_for_the_placement_that_removes_its_unit(world):
    h = S['h1']
    slow = sleeper('slow-x.service', extra='ExecStop=/bin/sleep 3\nTimeoutStopSec=30\n')
    m = mark()
    place(h, [sleeper('app-a.service'), slow], generation=7)
    assert result_for(h, 7, m)['ok']
    world.wait_for(lambda: h.is_active('slow-x.service'), 10, what='slow-x active')
    n = starts('slow-x.service')

    m, dead = mark(), len(dead_bodies())
    place(h, [sleeper('app-a.service')], generation=8)
    world.wait_for(lambda: h.unit_property('slow-x.service', 'ActiveState') == 'deactivating',
                   10, what='slow-x stopping')
    world.send_restart(h.name, 'slow-x.service', id='r-during-1', epoch=EPOCH)
    res = restart_result(h, 'r-during-1', m)
    assert not res['ok'] and 'not managed' in res['error'], res
    assert result_for(h, 8, m)['ok']
    S['dead'].wait_for(lambda msg: len(dead_bodies()) > dead, 10, what='restart dead-lettered')
    time.sleep(2)
    assert not h.is_active('slow-x.service'), 'the restart brought it back'
    assert starts('slow-x.service') == n, 'slow-x was started again'
    assert not os.path.exists(os.path.join(h.unit_dir, 'slow-x.service'))


# ---- point 9: out of memory ------------------------------------------------------------------


def shim_path():
    return os.environ.get('BATON_FAILALLOC') or worldmod.build_path(
        'tests', 'integration', 'baton-failalloc.so')


def arm(path, spec):
    with open(path, 'w') as f:
        f.write(spec + '\n')
    S['world'].wait_for(lambda: not os.path.exists(path), 10, what=f'shim armed: {spec}')


@suite.case
def allocation_failures_are_retried_not_refused(world):
    if sanitized(S['agent'].pid):
        suite.skip('the allocation-failure shim cannot be preloaded under ASan')
    h = world.add_host('h3')
    armfile = os.path.join(h.dir, 'failalloc.arm')
    agent = world.start_agent(h, config=agent_config(), name='agent-h3',
                              env={'LD_PRELOAD': shim_path(), 'BATON_FAILALLOC_ARM': armfile})
    try:
        heartbeat(h)
        m = mark()
        place(h, [sleeper('app-o.service')], generation=1)
        assert result_for(h, 1, m)['ok']
        world.wait_for(lambda: h.is_active('app-o.service'), 10, what='app-o active')
        dead = len(dead_bodies())

        # A Restart whose first allocation fails runs once, later.
        n = starts('app-o.service')
        arm(armfile, '1 apply_restart')
        m = mark()
        world.send_restart(h.name, 'app-o.service', id='r-oom-1', epoch=EPOCH)
        res = restart_result(h, 'r-oom-1', m)
        assert res['ok'] and res['units'][0]['action'] == 'restarted', res
        world.wait_for(lambda: starts('app-o.service') == n + 1, 10, what='one restart')
        assert 'failalloc: failing an allocation in apply_restart' in agent.log()

        # A Placement whose Apply cannot be allocated, then one whose units cannot be.
        for gen, spec in ((2, '1 apply_start apply_placement'), (3, '1 build_desired apply_plan')):
            arm(armfile, spec)
            m = mark()
            units = [sleeper('app-o.service')] + [sleeper(f'app-p{g}.service')
                                                  for g in range(2, gen + 1)]
            place(h, units, generation=gen)
            res = result_for(h, gen, m, pred=lambda b: b['ok'])
            world.wait_for(lambda gen=gen: h.is_active(f'app-p{gen}.service'), 10,
                           what=f'app-p{gen} active')
        log = agent.log()
        assert re.search(r'failalloc: failing an allocation in (apply_start|apply_placement)',
                         log), log[-2000:]
        assert re.search(r'failalloc: failing an allocation in (build_desired|apply_plan)',
                         log), log[-2000:]
        time.sleep(1)
        assert len(dead_bodies()) == dead, 'a command was dead-lettered'
        assert queue_counts(h) == (0, 0), 'a delivery is stuck'
        assert starts('app-o.service') == n + 1
        assert agent.alive()
    finally:
        agent.stop()


# ---- point 10: a chatty workload -----------------------------------------------------------


@suite.case
def chatty_status_does_not_starve_heartbeats(world):
    h = S['h1']
    count = os.path.join(world.dir, 'chat.count')
    chat = {'name': 'chat@0.service', 'template_name': 'chat@.service', 'service': 'chat',
            'instance': 0, 'running': True,
            'shards': {'shards': '0-3', 'shard_count': 4, 'shard_epoch': 1},
            'unit_text': '[Service]\nType=notify\nNotifyAccess=main\n'
                         f'ExecStart=/usr/bin/python3 {os.path.join(world.dir, "chatty.py")} '
                         f'{count} 1500 {CHATTY_TOTAL}\n'}
    m = mark()
    place(h, [sleeper('app-a.service'), chat], generation=9)
    assert result_for(h, 9, m)['ok']

    def changes():
        try:
            with open(count) as f:
                return int(f.read() or 0)
        except FileNotFoundError:
            return 0

    world.wait_for(lambda: changes() > 1500, 30, what='the workload chatting')
    # A broker that stalls for a while, as brokers do, while the workload chats on.
    m0 = mark()
    world.broker.pause()
    time.sleep(8)
    world.broker.resume()
    time.sleep(2)
    m, c0, t0 = mark(), changes(), time.monotonic()
    time.sleep(15)
    c1, msgs = changes(), S['status'].messages()[m:]
    elapsed = time.monotonic() - t0

    hbs = [x for x in msgs if x['type'] == 'baton.v1.Heartbeat' and x['body']['host'] == h.name]
    events = [x for x in msgs if x['type'] == 'baton.v1.UnitEvent'
              and x['body']['unit']['name'] == 'chat@0.service']
    reports = [x for x in msgs if x['type'] == 'baton.v1.ShardReport'
               and x['body']['host'] == h.name]
    arrivals = [x['received_at_us'] / 1e6 for x in hbs]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # From the last one before the stall: what was buffered meanwhile arrives after it
    # (perhaps twice, if it was re-sent on a new connection).
    ours = [int(x['body']['seq']) for x in S['status'].messages()
            if x['type'] == 'baton.v1.Heartbeat' and x['body']['host'] == h.name]
    before = [int(x['body']['seq']) for x in S['status'].messages()[:m0]
              if x['type'] == 'baton.v1.Heartbeat' and x['body']['host'] == h.name]
    seqs = sorted({q for q in ours if q >= max(before)})
    print(f'{c1 - c0} status changes in {elapsed:.1f}s; {len(events)} unit events, '
          f'{len(reports)} shard reports, {len(hbs)} heartbeats, max gap '
          f'{max(gaps) if gaps else 0:.2f}s, seqs {seqs[:3]}..{seqs[-3:]}')

    # None dropped during the stall, and back to the configured interval (1 s) after it.
    assert len(hbs) >= elapsed - 3, f'{len(hbs)} heartbeats in {elapsed:.1f}s'
    assert gaps and max(gaps) < 2.5, f'heartbeat gap of {max(gaps):.2f}s'
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f'heartbeats dropped: {seqs}'
    # The workload did chat; events were coalesced and shard reports paced.
    assert c1 - c0 > 5000, c1 - c0
    assert len(events) < (c1 - c0) / 2, (len(events), c1 - c0)
    assert len(reports) <= elapsed * 5 + 5, len(reports)
    counted = world.wait_for(lambda: re.findall(
        r'Coalesced (\d+) unit events and (\d+) shard reports', S['agent'].log()), 15,
        what='coalescing counted')
    assert int(counted[-1][0]) > 0 and int(counted[-1][1]) > 0, counted
    # The latest state always goes out.
    done = f'done n={CHATTY_TOTAL}'
    S['status'].wait_for(lambda x: x['type'] == 'baton.v1.UnitEvent'
                         and x['body']['unit']['name'] == 'chat@0.service'
                         and done in x['body']['unit']['status_text'], 90,
                         what='the last status in a UnitEvent', since=m)
    S['status'].wait_for(lambda x: x['type'] == 'baton.v1.ShardReport'
                         and x['body']['instances'][0]['ready'] == '0-3'
                         and x['body']['instances'][0]['connecting'] == '', 30,
                         what='the last readiness in a ShardReport',
                         since=len(S['status'].messages()) - 50)

    m = mark()
    place(h, [sleeper('app-a.service')], generation=10)
    res = result_for(h, 10, m)
    assert res['ok'], res
    world.wait_for(lambda: not h.is_active('chat@0.service'), 15, what='chat stopped')


if __name__ == '__main__':
    suite.run()
