# SPDX-License-Identifier: MIT
"""The walking skeleton end to end: a real rabbitmq-server, three real systemd
user managers with an agent each, the controller and batonctl.

What a user would see: hosts appear in `batonctl hosts`, a stopped agent's
host goes down after the timeout with a host-down alert on baton.events, a
restarted broker is survived without help, and malformed messages end in
baton.dead, counted, while the controller keeps serving."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from events import Alerts  # noqa: E402
from tap import Suite  # noqa: E402

HEARTBEAT = 1.0     # agent heartbeat_interval, seconds
HOST_TIMEOUT = 5.0  # controller host_timeout, seconds
HOSTS = ['alpha', 'bravo', 'charlie']

suite = Suite('skeleton')
state = {}


def hosts_json(world):
    r = world.batonctl('--json', 'hosts', check=True)
    return {h['host']: h for h in json.loads(r.stdout)['hosts']}


def ping_json(world):
    r = world.batonctl('--json', 'ping', check=True)
    return json.loads(r.stdout)


def all_up(world, names=HOSTS):
    hosts = hosts_json(world)
    return all(n in hosts and hosts[n]['state'] == 'up' for n in names) and hosts


@suite.setup
def setup(world):
    broker = world.start_broker()
    state['controller'] = world.start_controller(
        config={'controller': {'host_timeout': f'{HOST_TIMEOUT:g}s'}})
    # The controller declares baton.events; wait until it answers.
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering ping')
    state['alerts'] = Alerts(broker)
    state['hosts'] = {n: world.add_host(n) for n in HOSTS}
    state['started'] = time.monotonic()
    state['agents'] = {
        n: world.start_agent(h, config={'agent': {'heartbeat_interval': f'{HEARTBEAT:g}s',
                                                  'labels': f'zone=eu rack=r{i}'}})
        for i, (n, h) in enumerate(state['hosts'].items())}


@suite.case
def three_hosts_appear_within_two_heartbeats(world):
    hosts = world.wait_for(lambda: all_up(world), 10, interval=0.05, what='three hosts up')
    elapsed = time.monotonic() - state['started']
    assert elapsed <= 2 * HEARTBEAT + 1.0, f'hosts took {elapsed:.2f}s to appear'
    for i, n in enumerate(HOSTS):
        h = hosts[n]
        assert h['labels'] == {'zone': 'eu', 'rack': f'r{i}'}, h
        assert h['systemd_version'].startswith('252'), h  # read over sd-bus from the manager
        assert h['system_state'] in ('running', 'degraded'), h
        assert h['cores'] >= 1 and h['memory_total_bytes'] > 0, h
        assert h['agent_version'] and len(h['boot_id']) == 36, h
    for n in HOSTS:
        assert state['alerts'].find('host-up', n), f'no host-up alert for {n}'


@suite.case
def ping_reports_epoch_and_hosts(world):
    p = ping_json(world)
    assert p['epoch'] >= 1, p
    assert p['hosts_up'] == 3 and p['hosts_total'] == 3, p
    assert p['user'] == 'guest', p  # the broker-validated user_id
    assert p['counters']['heartbeats'] >= 3, p
    r = world.batonctl('ping', check=True)
    assert 'epoch' in r.stdout and 'hosts 3/3 up' in r.stdout, r.stdout


@suite.case
def hosts_table_for_people(world):
    r = world.batonctl('hosts', check=True)
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ['HOST', 'STATE', 'LAST'], lines[0]
    assert len(lines) == 4, r.stdout
    for n, line in zip(HOSTS, lines[1:]):
        assert line.split()[0] == n and line.split()[1] == 'up', line
        assert 'zone=eu' in line, line


def dead_count(world):
    return world.broker.list_queues().get('baton.dead', 0)


def publish_raw(world, exchange, key, body, **props):
    import pika
    conn = world.broker.pika_connection()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, pika.BasicProperties(**props))
    finally:
        conn.close()


@suite.case
def malformed_status_is_dead_lettered_and_counted(world):
    before_dead = dead_count(world)
    before = ping_json(world)['counters']
    publish_raw(world, 'baton.status', 'alpha.heartbeat', b'\xff\x00garbage',
                type='baton.v1.Heartbeat', content_type='application/x-protobuf')
    publish_raw(world, 'baton.status', 'alpha.heartbeat', b'',
                type='baton.v1.Heartbeat')
    publish_raw(world, 'baton.status', 'alpha.heartbeat', b'\x0a' * (5 * 1024 * 1024),
                type='baton.v1.Heartbeat')
    world.wait_for(lambda: dead_count(world) >= before_dead + 3, 10,
                   what='three refused status messages in baton.dead')
    after = world.wait_for(
        lambda: (c := ping_json(world)['counters'])['refused.malformed']
        >= before['refused.malformed'] + 3 and c, 10, what='refusals counted')
    assert after['refused_total'] >= before['refused_total'] + 3, after
    log = state['controller'].log()
    assert 'Refusing message' in log and 'dead-lettered' in log, log[-2000:]
    # The controller keeps serving: it answers and still takes heartbeats.
    hb = after['heartbeats']
    world.wait_for(lambda: ping_json(world)['counters']['heartbeats'] > hb + 2, 10,
                   what='heartbeats still processed')
    assert state['controller'].alive()


@suite.case
def malformed_rpc_is_dead_lettered_and_answered(world):
    import pika
    before_dead = dead_count(world)
    before = ping_json(world)['counters']['refused.malformed']
    conn = world.broker.pika_connection()
    try:
        ch = conn.channel()
        replies = []
        ch.basic_consume('amq.rabbitmq.reply-to', lambda c, m, p, b: replies.append((p, b)),
                         auto_ack=True)
        ch.basic_publish('baton.requests', 'baton.rpc', b'not a protobuf',
                         pika.BasicProperties(reply_to='amq.rabbitmq.reply-to',
                                              correlation_id='bad-1',
                                              type='baton.v1.Request'))
        deadline = time.monotonic() + 10
        while not replies and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
        assert replies, 'no error reply to a malformed request'
        props, _ = replies[0]
        assert props.correlation_id == 'bad-1' and props.type == 'baton.v1.Response', props
    finally:
        conn.close()
    world.wait_for(lambda: dead_count(world) >= before_dead + 1, 10,
                   what='malformed request in baton.dead')
    assert ping_json(world)['counters']['refused.malformed'] == before + 1
    assert world.batonctl('hosts').returncode == 0


@suite.case
def batonctl_usage_and_unreachable_exit_codes(world):
    r = world.batonctl('frobnicate')
    assert r.returncode == 2 and 'unknown command' in r.stderr, r
    r = world.batonctl('--timeout', 'soon', 'ping')
    assert r.returncode == 2 and '--timeout' in r.stderr, r
    r = world.batonctl('ping', 'extra')
    assert r.returncode == 2 and 'unexpected argument' in r.stderr, r
    r = world.batonctl('backup')
    assert r.returncode == 2 and 'FILE' in r.stderr, r
    r = world.batonctl('ping', broker=None, env={'BATON_BROKER': ''})
    assert r.returncode == 2 and 'no broker given' in r.stderr, r
    r = world.batonctl('ping', broker='amqp://guest:guest@127.0.0.1:1/%2Fbaton')
    assert r.returncode == 3 and 'cannot reach the broker' in r.stderr, r
    # Found through the environment as well.
    r = world.batonctl('ping', broker=None, env={'BATON_BROKER': world.broker.url})
    assert r.returncode == 0, r


@suite.case
def check_config_names_file_and_line(world):
    good = os.path.join(world.dir, 'controller.conf')
    bad = os.path.join(world.dir, 'bad.conf')
    with open(good) as f:
        text = f.read()
    with open(bad, 'w') as f:
        f.write(text.replace('host_timeout', 'host_timout'))
    binary = os.path.join(os.environ['BATON_BUILD_DIR'], 'controller', 'baton-controller')
    import subprocess
    ok = subprocess.run([binary, '--config', good, '--check-config'], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and 'configuration is valid' in ok.stdout, ok
    assert 'guest' not in ok.stdout, 'the broker URL (a secret) was printed'
    r = subprocess.run([binary, '--config', bad, '--check-config'], capture_output=True,
                       text=True)
    assert r.returncode == 1, r
    line = next(i for i, l in enumerate(text.splitlines(), 1) if 'host_timeout' in l)
    assert f'{bad}:{line}' in r.stderr and 'host_timout' in r.stderr, r.stderr


@suite.case
def stopped_agent_host_goes_down_after_timeout(world):
    agent = state['agents']['charlie']
    assert agent.stop() == 0, 'agent did not exit cleanly on SIGTERM'
    stopped = time.monotonic()
    # Still up well inside the timeout: one missed heartbeat is not death.
    time.sleep(HOST_TIMEOUT / 2)
    assert hosts_json(world)['charlie']['state'] == 'up'
    world.wait_for(lambda: hosts_json(world)['charlie']['state'] == 'down',
                   HOST_TIMEOUT + 2 * HEARTBEAT + 2, interval=0.1, what='charlie down')
    # The last heartbeat left up to one interval before the stop.
    elapsed = time.monotonic() - stopped
    assert elapsed >= HOST_TIMEOUT - HEARTBEAT - 0.1, \
        f'down {elapsed:.1f}s after the stop, before the timeout'
    alerts = world.wait_for(lambda: state['alerts'].find('host-down', 'charlie'), 5,
                            what='host-down alert on baton.events')
    a = alerts[0]
    assert a['key'] == 'alert.critical.host-down' and a['severity'] == 'critical', a
    assert 'charlie' in a['summary'] and a['type'] == 'baton.v1.Alert', a
    others = hosts_json(world)
    assert others['alpha']['state'] == 'up' and others['bravo']['state'] == 'up'

    # Back: the alert resolves once and host-up is announced.
    state['agents']['charlie'] = world.start_agent(
        state['hosts']['charlie'], config={'agent': {'heartbeat_interval': f'{HEARTBEAT:g}s'}})
    world.wait_for(lambda: all_up(world), 10, what='charlie up again')
    world.wait_for(lambda: state['alerts'].find('host-down', 'charlie', resolved='true'), 5,
                   what='host-down resolved')
    time.sleep(1)
    assert len(state['alerts'].find('host-down', 'charlie')) == 1, 'host-down raised twice'
    assert len(state['alerts'].find('host-down', 'charlie', resolved='true')) == 1


@suite.case
def broker_restart_is_survived_without_help(world):
    broker = world.broker
    epoch = ping_json(world)['epoch']
    broker.stop()
    time.sleep(HOST_TIMEOUT + 1)  # longer than the host timeout, on purpose
    for n, agent in state['agents'].items():
        assert 'Lost the broker' in agent.log(), f'agent {n} did not notice the broker stop'
    broker.start()

    def reconnected(proc):
        return 'Connected to the broker' in proc.log().split('Lost the broker')[-1]

    procs = [state['controller'], *state['agents'].values()]
    world.wait_for(lambda: all(reconnected(p) for p in procs), 60, interval=0.5,
                   what='controller and agents reconnected by themselves')
    before = ping_json(world)['counters']['heartbeats']
    world.wait_for(lambda: ping_json(world)['counters']['heartbeats'] >= before + 3, 10,
                   what='heartbeats from every agent again')
    world.wait_for(lambda: all_up(world), 10, interval=0.5,
                   what='all hosts up after the broker restart')
    # Every process reconnected by itself; none restarted.
    for n, agent in state['agents'].items():
        assert agent.alive(), f'agent {n} died'
    assert state['controller'].alive()
    assert ping_json(world)['epoch'] == epoch, 'the controller restarted'
    # The controller's own blindness is not evidence that hosts died.
    state['alerts'].reopen()
    time.sleep(HEARTBEAT * 2)
    assert not any(a['kind'] == 'host-down' and a['resolved'] == 'false'
                   and a['host'] != 'charlie' for a in state['alerts'].poll()), \
        state['alerts'].seen


@suite.case
def controller_gone_means_exit_3(world):
    assert state['controller'].stop() == 0, 'controller did not exit cleanly on SIGTERM'
    r = world.batonctl('--timeout', '1500ms', 'ping')
    assert r.returncode == 3, r
    assert 'did not answer within 1s 500ms' in r.stderr, r.stderr
    # Agents keep running without a controller.
    time.sleep(2 * HEARTBEAT)
    assert all(a.alive() for a in state['agents'].values())
    # A restarted controller raises its epoch and knows the hosts at once.
    state['controller'] = world.start_controller(
        config={'controller': {'host_timeout': f'{HOST_TIMEOUT:g}s'}})
    p = world.wait_for(lambda: ping_json(world), 20, what='controller back')
    assert p['hosts_total'] == 3, p
    world.wait_for(lambda: all_up(world), 10, what='hosts up under the new controller')


if __name__ == '__main__':
    suite.run()
