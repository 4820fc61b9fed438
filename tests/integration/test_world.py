#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The harness tests itself against a real rabbitmq-server and real systemd user managers:
the broker works and survives a restart on the same port, hosts are isolated from each other,
and nothing a world started outlives it, not even when its test process is SIGKILLed."""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pika  # noqa: E402

import world as W  # noqa: E402
from tap import Suite  # noqa: E402

WORLD_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'world.py')
SLEEPER = '[Unit]\nDescription=baton test sleeper\n\n[Service]\nExecStart=/bin/sleep infinity\n'

suite = Suite('world')


def unit_main_pid(host, unit) -> int:
    return int(host.unit_property(unit, 'MainPID'))


def cgroup_of(pid: int) -> str:
    with open(f'/proc/{pid}/cgroup') as f:
        return f.read()


def broker_ctl(broker, action: str) -> None:
    """The same CLI the C tests use through BATON_TEST_BROKER_DIR."""
    r = subprocess.run([W.PYTHON, WORLD_PY, 'broker-ctl', broker.dir, action],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f'broker-ctl {action}: {r.returncode} {r.stderr}'


def recorded_pids(world) -> list[tuple[str, int, int]]:
    """(what, pid, start) of every process world.json and broker.json record."""
    state = W.read_json(world.state_path)
    out = []
    for o in state['objects']:
        if o['kind'] == 'proc':
            out.append((o['name'], o['pid'], o['start']))
        elif o['kind'] == 'host':
            out.append((f'manager {o["name"]}', o['manager_pid'], o['manager_start']))
        elif o['kind'] == 'broker' and not o['attached']:
            b = W.read_json(os.path.join(o['dir'], 'broker.json'))
            for k in ('wrapper', 'beam', 'epmd'):
                out.append((f'broker {k}', b[f'{k}_pid'], b[f'{k}_start']))
    return [(what, pid, start) for what, pid, start in out if pid]


@suite.setup
def setup(world):
    world.start_broker()


@suite.case
def broker_roundtrip_with_pika(world):
    b = world.broker
    assert b.url == (f'amqp://guest:guest@127.0.0.1:{b.port}/' +
                     urllib.parse.quote(b.vhost, safe='')), b.url
    assert b.vhost.startswith('/baton')
    conn = b.pika_connection()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare('world.roundtrip', durable=True)
        ch.basic_publish('', 'world.roundtrip', b'hello',
                         pika.BasicProperties(delivery_mode=2), mandatory=True)
        assert b.list_queues().get('world.roundtrip') == 1, b.list_queues()
        assert b.connection_count() == 1
        method, _, body = ch.basic_get('world.roundtrip', auto_ack=True)
        assert method is not None and body == b'hello', (method, body)
    finally:
        conn.close()
    world.wait_for(lambda: b.connection_count() == 0, 10, 0.5, 'the connection to close')

    # A user limited to one queue name: may declare it, may not declare another.
    url = b.add_user('world-ops', 's3cret', configure='^ops\\.', write='^ops\\.', read='^ops\\.')
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        conn.channel().queue_declare('ops.q')
        try:
            conn.channel().queue_declare('other.q')
            raise AssertionError('declaring other.q should be refused')
        except pika.exceptions.ChannelClosedByBroker as e:
            assert e.reply_code == 403, e
    finally:
        conn.close()


@suite.case
def same_unit_on_two_hosts_is_isolated(world):
    a, b = world.add_host('a'), world.add_host('b')
    assert a.bus_address == f'unix:path={a.dir}/runtime/systemd/private'
    assert oct(os.stat(a.env['XDG_RUNTIME_DIR']).st_mode & 0o777) == '0o700'
    for h in (a, b):
        h.write_unit('sleeper.service', SLEEPER)
        r = h.systemctl('start', 'sleeper.service')
        assert r.returncode == 0, r.stderr
        assert h.is_active('sleeper.service')
    pid_a, pid_b = unit_main_pid(a, 'sleeper.service'), unit_main_pid(b, 'sleeper.service')
    assert pid_a > 0 and pid_b > 0 and pid_a != pid_b
    assert f'/{a.cgroup}/' in cgroup_of(pid_a), cgroup_of(pid_a)
    assert f'/{b.cgroup}/' in cgroup_of(pid_b), cgroup_of(pid_b)

    r = a.systemctl('stop', 'sleeper.service')
    assert r.returncode == 0, r.stderr
    assert not a.is_active('sleeper.service')
    assert a.unit_property('sleeper.service', 'ActiveState') == 'inactive'
    assert b.is_active('sleeper.service'), 'stopping the unit on a stopped it on b'
    assert unit_main_pid(b, 'sleeper.service') == pid_b
    assert W.pid_alive(pid_b, None) and not W.pid_alive(pid_a, None)

    # A host can be restarted on the same directories: the unit file is still there.
    b.stop()
    assert not W.pid_alive(pid_b, None), 'stopping the manager left its unit running'
    assert not any(os.path.exists(d) for d in b.cgroup_dirs)
    b.start()
    assert b.unit_property('sleeper.service', 'LoadState') == 'loaded'
    assert b.systemctl('start', 'sleeper.service').returncode == 0
    assert b.is_active('sleeper.service')


@suite.case
def broker_restart_keeps_port_and_vhost(world):
    b = world.broker
    port, url, old_pid = b.port, b.url, b.pid
    assert old_pid and W.port_open(port)
    conn = b.pika_connection()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare('world.durable', durable=True)
        ch.basic_publish('', 'world.durable', b'kept', pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()

    b.stop()
    assert b.pid is None and not W.pid_alive(old_pid, None)
    assert not W.port_open(port)
    # Started again from another process, as a C test would: the World must follow.
    broker_ctl(b, 'start')
    assert b.pid and b.pid != old_pid
    assert b.port == port and b.url == url
    conn = b.pika_connection()
    try:
        q = conn.channel().queue_declare('world.durable', durable=True, passive=True)
        assert q.method.message_count == 1, 'durable message lost: not the same data dir'
    finally:
        conn.close()

    broker_ctl(b, 'pause')
    assert W.proc_stat(b.pid)[0] == 'T'
    try:
        params = pika.URLParameters(url)
        params.socket_timeout = params.blocked_connection_timeout = 1
        params.connection_attempts = 1
        params.stack_timeout = 2
        try:
            pika.BlockingConnection(params).close()
            accepted = True
        except Exception:  # pika raises several unrelated types for a handshake timeout
            accepted = False
        assert not accepted, 'a paused broker completed an AMQP handshake'
    finally:
        broker_ctl(b, 'resume')
    assert W.proc_stat(b.pid)[0] != 'T'
    b.pika_connection().close()


@suite.case
def shared_broker_gives_each_world_a_vhost(world):
    dir = tempfile.mkdtemp(prefix='shared-broker-', dir=world.dir)
    W.Broker.create(dir)
    shared = world.track_broker(dir)  # stopped by our close()/reaper whatever happens
    r = subprocess.run([W.PYTHON, WORLD_PY, 'broker-up', dir], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)['url'].endswith('/%2Fbaton')
    pid = shared.pid
    assert pid

    old = os.environ.get('BATON_TEST_BROKER_JSON')
    os.environ['BATON_TEST_BROKER_JSON'] = os.path.join(dir, 'broker.json')
    try:
        with W.World('shared-user') as w:
            b = w.start_broker()
            assert b.attached and b.pid == pid and b.port == shared.port
            assert b.vhost.startswith('/baton-') and b.url.endswith(
                urllib.parse.quote(b.vhost, safe=''))
            b.add_user('shared-ops', 'pw')
            conn = b.pika_connection()
            ch = conn.channel()
            ch.queue_declare('shared.q')
            ch.basic_publish('', 'shared.q', b'x')
            assert b.list_queues() == {'shared.q': 1}, b.list_queues()
            conn.close()
            vhost = b.vhost
    finally:
        if old is None:
            del os.environ['BATON_TEST_BROKER_JSON']
        else:
            os.environ['BATON_TEST_BROKER_JSON'] = old
    assert shared.pid == pid, 'closing an attached world stopped the shared broker'
    vhosts = shared.ctl('list_vhosts', '--silent').stdout.split()
    assert vhost not in vhosts, vhosts
    users = shared.ctl('list_users', '--silent').stdout
    assert 'shared-ops' not in users, users

    epmd = shared.state['epmd_pid']
    r = subprocess.run([W.PYTHON, WORLD_PY, 'broker-down', dir], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert not W.pid_alive(pid, None) and not W.pid_alive(epmd, None)


CHILD = r'''
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import world as W
w = W.World('reaper-child')
h = w.add_host('h')
h.write_unit('sleeper.service', sys.argv[2])
assert h.systemctl('start', 'sleeper.service').returncode == 0
p = w.spawn('sleep', ['sh', '-c', 'sleep 1000 & sleep 1000'])
time.sleep(0.3)
with open(f'/proc/{p.pid}/task/{p.pid}/children') as f:
    kids = [int(x) for x in f.read().split()]
state = W.read_json(w.state_path)
print(json.dumps({'dir': w.dir, 'reaper': state['reaper_pid'],
                  'pids': [h.manager_pid, p.pid, int(h.unit_property('sleeper.service', 'MainPID'))]
                          + kids,
                  'cgroups': h.cgroup_dirs}), flush=True)
time.sleep(1000)
'''


def run_child_and(world, sig):
    child = subprocess.Popen([W.PYTHON, '-c', CHILD, os.path.dirname(WORLD_PY), SLEEPER],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        line = child.stdout.readline() if ready else ''
        assert line, f'child world did not come up: {child.stderr.read() if not ready else ""}'
        info = json.loads(line)
        starts = {pid: W.proc_start_time(pid) for pid in info['pids'] + [info['reaper']]}
        assert all(starts.values()), starts
        assert all(os.path.isdir(d) for d in info['cgroups'])
        child.send_signal(sig)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()

    def all_gone():
        alive = [pid for pid, start in starts.items() if W.pid_alive(pid, start)]
        cgroups = [d for d in info['cgroups'] if os.path.exists(d)]
        return not alive and not cgroups and not os.path.exists(info['dir'])

    t0 = time.monotonic()
    world.wait_for(all_gone, 20, 0.1, f'the world of a child killed by {signal.strsignal(sig)} '
                   f'to be cleaned up: {info}')
    print(f'cleaned up {time.monotonic() - t0:.1f}s after {signal.Signals(sig).name}')


@suite.case
def reaper_cleans_up_after_sigkill(world):
    run_child_and(world, signal.SIGKILL)


@suite.case
def sigterm_runs_close(world):
    run_child_and(world, signal.SIGTERM)


@suite.case
def close_leaves_nothing(world):
    """Last case: closes the suite's world itself and checks by recorded PIDs."""
    sleeper = world.spawn('sleeper', ['sleep', '1000'])
    shell = world.spawn('shell', ['sh', '-c', 'sleep 1000 & sleep 1000'])
    world.wait_for(lambda: open(f'/proc/{shell.pid}/task/{shell.pid}/children').read().split(),
                   5, what='the shell to fork')
    with open(f'/proc/{shell.pid}/task/{shell.pid}/children') as f:
        extra = [('shell child', int(p), W.proc_start_time(int(p))) for p in f.read().split()]
    for h in world.hosts.values():
        if h.is_active('sleeper.service'):
            pid = unit_main_pid(h, 'sleeper.service')
            extra.append((f'sleeper on {h.name}', pid, W.proc_start_time(pid)))
    pids = recorded_pids(world) + extra
    assert any(what == 'manager a' for what, _, _ in pids), pids
    assert sleeper.alive() and shell.alive()
    cgroups = [d for h in world.hosts.values() for d in h.cgroup_dirs]
    assert cgroups and all(os.path.isdir(d) for d in cgroups)
    b = world.broker
    attached, vhost = b.attached, b.vhost

    t0 = time.monotonic()
    world.close()
    print(f'close took {time.monotonic() - t0:.1f}s')
    alive = [(what, pid) for what, pid, start in pids if W.pid_alive(pid, start)]
    assert not alive, f'still running after close: {alive}'
    left = [d for d in cgroups if os.path.exists(d)]
    assert not left, f'cgroups left: {left}'
    assert sleeper.returncode is not None and shell.returncode is not None
    if os.environ.get('BATON_KEEP_WORLD') != '1':
        assert not os.path.exists(world.dir)
    if attached:
        assert b.running(), 'closing an attached world stopped the shared broker'
        assert vhost not in b.ctl('list_vhosts', '--silent').stdout.split()
    world.close()  # idempotent


if __name__ == '__main__':
    suite.run()
