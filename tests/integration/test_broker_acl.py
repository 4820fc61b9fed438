# SPDX-License-Identifier: MIT
"""packaging/baton-broker-setup against a real rabbitmq-server, proven with the
users it makes: an agent's credentials cannot publish commands, read or bind
another host's queue, nor report under another host's routing key; the real
agent runs with those credentials (declare_topology = no), receives a
Placement signed with a key from packaging/baton-keygen, and the controller,
with its own user, sees its host up; an operator drives batonctl; a viewer
watches baton.events and can send nothing. The broker runs the recommended
settings of packaging/rabbitmq/."""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import world as worldmod  # noqa: E402
from tap import Suite  # noqa: E402

SRC = worldmod.SOURCE_DIR
SETUP = os.path.join(SRC, 'packaging', 'baton-broker-setup')
KEYGEN = os.path.join(SRC, 'packaging', 'baton-keygen')
RECOMMENDED = os.path.join(SRC, 'packaging', 'rabbitmq', '50-baton.conf')

suite = Suite('broker-acl')
S = {}

WEB = """[Unit]
Description=acl test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=2
MaxPerHost=1
"""


def conf_keys(text):
    return {line.split('=', 1)[0].strip() for line in text.splitlines()
            if '=' in line and not line.lstrip().startswith('#')}


def start_broker(world):
    """The world's broker, on an isolated node: with packaging/rabbitmq/50-baton.conf added
    to its configuration (the test node's own lines for the same keys dropped), so the
    recommended settings are proven to be accepted by this rabbitmq-server."""
    if os.environ.get('BATON_TEST_BROKER_JSON'):
        S['recommended'] = False
        return world.start_broker()
    with open(RECOMMENDED) as f:
        recommended = f.read()
    dir = os.path.join(world.dir, 'broker')
    worldmod.Broker.create(dir)
    conf = os.path.join(dir, 'rabbitmq.conf')
    with open(conf) as f:
        base = f.read()
    ours = conf_keys(recommended)
    with open(conf, 'w') as f:
        for line in base.splitlines():
            if not ('=' in line and line.split('=', 1)[0].strip() in ours):
                f.write(line + '\n')
        f.write(recommended)
    b = worldmod.Broker(dir, world=world)
    world.broker = b
    world.objects.append(b)
    world.save_state()
    b.start()
    S['recommended'] = True
    return b


def setup_script(world, *args, input=None, show=True):
    b = world.broker
    argv = [SETUP, '--rabbitmqctl', worldmod.RABBITMQCTL, '-n', b.node, '--vhost', b.vhost,
            '--password-dir', S['pwdir'], *args]
    r = subprocess.run(argv, env=b.env, input=input, capture_output=True, text=True,
                       timeout=180, stdin=None if input is not None else subprocess.DEVNULL)
    if show:  # not from setup(): its stdout is the TAP stream itself
        print(f'$ baton-broker-setup {" ".join(args)} -> {r.returncode}\n{r.stdout}{r.stderr}')
    return r


def password(user):
    with open(os.path.join(S['pwdir'], user)) as f:
        return f.readline().strip()


def url(world, user):
    return worldmod.url_for(world.broker.port, world.broker.vhost, user, password(user))


def pika_as(world, user):
    import pika
    params = pika.URLParameters(url(world, user))
    return pika.BlockingConnection(params)


def attempt(world, user, fn):
    """Runs fn(channel) on a fresh connection as user (publisher confirms on): None when it
    worked, else the broker's refusal text."""
    import pika
    conn = pika_as(world, user)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        fn(ch)
        return None
    except pika.exceptions.AMQPChannelError as e:
        return str(e)
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closed by the broker already
            pass


def refused(world, user, fn, *words):
    err = attempt(world, user, fn)
    assert err is not None, f'{user} was allowed to do it'
    assert '403' in err and 'ACCESS_REFUSED' in err, err
    for w in words:
        assert w in err, (w, err)
    return err


def allowed(world, user, fn):
    err = attempt(world, user, fn)
    assert err is None, f'{user} was refused: {err}'


def publish(exchange, key, body=b'not a baton message'):
    return lambda ch: ch.basic_publish(exchange, key, body)


def ctl(world, user, *args, timeout=20):
    return world.batonctl(*args, broker=url(world, user), timeout=timeout)


def ctl_json(world, user, *args):
    r = ctl(world, user, '--json', *args)
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    return json.loads(r.stdout)


def permissions(world):
    r = world.broker.ctl('list_permissions', '-p', world.broker.vhost, '--silent')
    assert r.returncode == 0, r.stderr
    rows = sorted(r.stdout.splitlines())
    r = world.broker.ctl('list_topic_permissions', '-p', world.broker.vhost, '--silent')
    assert r.returncode == 0, r.stderr
    return rows + sorted(r.stdout.splitlines())


def start_agent(world, name, user, **agent):
    return world.start_agent(world.hosts[name], config={
        'broker': {'url': url(world, user)},
        'agent': {'declare_topology': 'no', 'manage_units': 'web@*.service', **agent},
        'security': {'controller_public_key': S['public_file']}},
        name=f'agent-{name}-{user}')


@suite.setup
def setup(world):
    b = start_broker(world)
    shared = bool(os.environ.get('BATON_TEST_BROKER_JSON'))
    # On a shared node user names must not collide with another world's.
    sfx = f'-{world.id}' if shared else ''
    S.update(alpha=f'alpha{sfx}', bravo=f'bravo{sfx}', controller=f'controller{sfx}',
             operator=f'alice{sfx}', viewer=f'victor{sfx}')
    S['pwdir'] = os.path.join(world.dir, 'passwords')
    os.makedirs(S['pwdir'], mode=0o700)
    users = [S['controller'], f'agent-{S["alpha"]}', f'agent-{S["bravo"]}', S['operator'],
             S['viewer']]
    b.users += users  # an attached node deletes them at teardown
    world.save_state()
    S['setup_args'] = ['--controller', S['controller'], '--agent', S['alpha'],
                       '--agent', S['bravo'], '--operator', S['operator'],
                       '--viewer', S['viewer']]
    r = setup_script(world, *S['setup_args'], show=False)
    assert r.returncode == 0, r.stdout + r.stderr
    for u in users:
        mode = os.stat(os.path.join(S['pwdir'], u)).st_mode & 0o777
        assert mode == 0o600, (u, oct(mode))

    keys = os.path.join(world.dir, 'keys')
    os.makedirs(keys, exist_ok=True)
    S['secret_file'] = os.path.join(keys, 'controller.key')
    S['public_file'] = os.path.join(keys, 'controller.pub')
    r = worldmod.run([KEYGEN, S['secret_file'], S['public_file']])
    assert r.returncode == 0, r.stderr

    S['ctrl'] = world.start_controller(config={
        'broker': {'url': url(world, S['controller'])},
        'security': {'signing_key': S['secret_file'], 'operators': S['operator']}})
    world.wait_for(lambda: ctl(world, S['operator'], 'ping', timeout=10).returncode == 0, 30,
                   what='the controller answering the operator')
    for h in ('alpha', 'bravo'):
        world.add_host(S[h])
    S['agents'] = {h: start_agent(world, S[h], f'agent-{S[h]}') for h in ('alpha', 'bravo')}


@suite.case
def recommended_broker_settings_are_accepted(world):
    if not S['recommended']:
        suite.skip('shared broker (BATON_TEST_BROKER_JSON): its configuration is not ours')
    r = world.broker.ctl('eval', 'application:get_env(rabbit, heartbeat).')
    assert r.returncode == 0 and '{ok,10}' in r.stdout, r.stdout + r.stderr
    r = world.broker.ctl('eval', 'application:get_env(rabbit, tcp_listen_options).')
    assert r.returncode == 0 and '{sndbuf,32768}' in r.stdout.replace(' ', ''), r.stdout
    # Nothing larger than baton's codec accepts reaches a consumer at all.
    r = world.broker.ctl('eval', 'application:get_env(rabbit, max_message_size).')
    assert r.returncode == 0 and '{ok,4194304}' in r.stdout, r.stdout + r.stderr


@suite.case
def agent_cannot_publish_commands(world):
    a = f'agent-{S["alpha"]}'
    refused(world, a, publish('baton.cmd', S['bravo']), "exchange 'baton.cmd'")
    refused(world, a, publish('baton.cmd', S['alpha']), "exchange 'baton.cmd'")
    # Nor around the exchange, straight into the other host's queue.
    refused(world, a, publish('', f'baton.agent.{S["bravo"]}'), "exchange 'amq.default'")


@suite.case
def agent_cannot_read_or_bind_another_hosts_queue(world):
    a, other = f'agent-{S["alpha"]}', f'baton.agent.{S["bravo"]}'
    refused(world, a, lambda ch: ch.basic_consume(other, lambda *x: None), f"queue '{other}'")
    refused(world, a, lambda ch: ch.basic_get(other), f"queue '{other}'")
    # Binding its own queue with another host's key would read that host's commands.
    refused(world, a, lambda ch: ch.queue_bind(f'baton.agent.{S["alpha"]}', 'baton.cmd',
                                               S['bravo']))
    # Nor a queue of its own to bind.
    refused(world, a, lambda ch: ch.queue_declare('', exclusive=True))
    # What it may do: check its own queue exists (the agent does just that).
    allowed(world, a, lambda ch: ch.queue_declare(f'baton.agent.{S["alpha"]}', passive=True))
    r = world.broker.ctl('list_bindings', '-p', world.broker.vhost, '--silent', 'source_name',
                         'destination_name', 'routing_key')
    cmd = sorted(line for line in r.stdout.splitlines() if line.startswith('baton.cmd\t'))
    assert cmd == sorted(f'baton.cmd\tbaton.agent.{S[h]}\t{S[h]}' for h in ('alpha', 'bravo')), cmd


@suite.case
def agent_reports_only_under_its_own_host(world):
    a = f'agent-{S["alpha"]}'
    refused(world, a, publish('baton.status', f'{S["bravo"]}.heartbeat'),
            f"topic '{S['bravo']}.heartbeat'")
    refused(world, a, publish('baton.status', 'x.heartbeat'))
    refused(world, a, publish('baton.events', 'alert.critical.host-down'))
    # Its own key is accepted by the broker (the controller then refuses the junk body).
    allowed(world, a, publish('baton.status', f'{S["alpha"]}.heartbeat'))


@suite.case
def restricted_agents_run_and_receive_signed_placements(world):
    op = S['operator']
    world.wait_for(lambda: sorted(h['host'] for h in ctl_json(world, op, 'hosts')['hosts']
                                  if h['state'] == 'up') == sorted([S['alpha'], S['bravo']]),
                   30, what='both restricted agents up at the controller')
    r = world.broker.ctl('list_connections', '--silent', 'user', 'vhost')
    users = {line.split('\t')[0] for line in r.stdout.splitlines()
             if line.endswith('\t' + world.broker.vhost)}
    assert {S['controller'], f'agent-{S["alpha"]}', f'agent-{S["bravo"]}'} <= users, users
    assert 'guest' not in users, users

    path = os.path.join(world.dir, 'web@.service')
    with open(path, 'w') as f:
        f.write(WEB)
    res = ctl_json(world, op, 'apply', path)
    assert res['applied'], res

    def placed():
        out = {}
        for h in ('alpha', 'bravo'):
            r = world.hosts[S[h]].systemctl('list-units', '--state=active', '--plain',
                                            '--no-legend', 'web@*')
            out[h] = [line.split()[0] for line in r.stdout.splitlines() if line.strip()]
        return out if sum(len(v) for v in out.values()) == 2 else None
    where = world.wait_for(placed, 30, what='two web instances active')
    assert all(len(v) == 1 for v in where.values()), where   # MaxPerHost=1: one on each
    # The agents verified the controller's signature: nothing was refused.
    assert not [a for a in ctl_json(world, op, 'alerts')['alerts']
                if a['kind'] == 'command-refused'], 'a Placement was refused'


@suite.case
def agent_with_declarations_on_is_refused_by_the_broker_and_says_why(world):
    # The same restricted user, but declaring as with a broad one: the broker says no,
    # and the agent's log names what and why.
    h = world.add_host('delta')
    p = world.start_agent(h, config={
        'broker': {'url': url(world, f'agent-{S["alpha"]}')},
        'agent': {'host': S['alpha'], 'declare_topology': 'yes'},
        'security': {'controller_public_key': S['public_file']}}, name='agent-declaring')
    world.wait_for(lambda: 'ACCESS_REFUSED' in p.log(), 20, what='access refused in the log')
    line = next(line for line in p.log().splitlines() if 'ACCESS_REFUSED' in line)
    assert 'declare' in line and 'baton.dlx' in line, line
    p.stop()
    h.stop()


@suite.case
def operator_runs_batonctl(world):
    op = S['operator']
    res = ctl_json(world, op, 'ping')
    assert res['user'] == op, res
    assert res['hosts_up'] == 2, res
    r = ctl(world, op, 'scale', 'web', '1')
    assert r.returncode == 0, r.stderr
    entries = ctl_json(world, op, 'audit')['entries']
    assert any(e['user'] == op and e['verb'] == 'scale' for e in entries), entries
    # An operator reaches the controller only: not the agents' exchange or queues.
    refused(world, op, publish('baton.cmd', S['alpha']), "exchange 'baton.cmd'")
    refused(world, op, lambda ch: ch.basic_consume(f'baton.agent.{S["alpha"]}',
                                                   lambda *x: None))
    refused(world, op, lambda ch: ch.basic_consume('baton.controller', lambda *x: None))
    # Requests go through baton.requests; the default exchange, which reaches every queue
    # by name (an agent's among them), is closed to operators.
    refused(world, op, publish('', f'baton.agent.{S["alpha"]}'), "exchange 'amq.default'")
    refused(world, op, publish('', 'baton.rpc'), "exchange 'amq.default'")


@suite.case
def viewer_watches_events_but_cannot_send(world):
    v = S['viewer']
    # Its own server-named queue on baton.events: allowed.
    def bind_events(ch):
        q = ch.queue_declare('', exclusive=True).method.queue
        ch.queue_bind(q, 'baton.events', 'alert.#')
    allowed(world, v, bind_events)
    refused(world, v, publish('', 'baton.rpc'), "exchange 'amq.default'")
    refused(world, v, publish('baton.events', 'alert.critical.host-down'))

    def bind_status(ch):
        q = ch.queue_declare('', exclusive=True).method.queue
        ch.queue_bind(q, 'baton.status', '#')
    refused(world, v, bind_status, "exchange 'baton.status'")
    refused(world, v, lambda ch: ch.basic_consume('baton.dead', lambda *x: None))
    # batonctl as a viewer: read-only verbs are answered, the controller refuses the rest...
    r = ctl(world, v, 'ping')
    assert r.returncode == 0, (r.returncode, r.stderr)
    r = ctl(world, v, 'scale', 'web', '2')
    assert r.returncode == 4 and f"user '{v}' is not an operator" in r.stderr, r.stderr
    # ...and watch works and shows a real alert: stop bravo's agent.
    argv = [worldmod.build_path('controller', 'batonctl'), '--broker', url(world, v),
            'watch', 'alert.#', '--count', '1', '--for', '60s']
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          stdin=subprocess.DEVNULL) as watch:
        try:
            time.sleep(1.0)  # its queue is bound before the host goes down
            S['agents']['bravo'].stop()
            out, err = watch.communicate(timeout=60)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.wait()
    assert watch.returncode == 0, (watch.returncode, err)
    assert 'host-down' in out and S['bravo'] in out, out


@suite.case
def setup_is_idempotent_and_checks_before_changing(world):
    before = permissions(world)
    r = setup_script(world, *S['setup_args'])
    assert r.returncode == 0, r.stderr
    assert re.search(rf'user agent-{S["alpha"]} \(agent {S["alpha"]}\): exists', r.stdout), \
        r.stdout
    assert permissions(world) == before
    # The running agent was not disturbed: still connected with its user.
    assert S['agents']['alpha'].alive()

    # A new host without a password (no --password-dir file and none on stdin): refused
    # before anything changes.
    b = world.broker
    argv = [SETUP, '--rabbitmqctl', worldmod.RABBITMQCTL, '-n', b.node, '--vhost', b.vhost,
            '--agent', 'echo9']
    r = subprocess.run(argv, env=b.env, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "no password for the new user 'agent-echo9'" in r.stderr, r.stderr
    assert 'baton.agent.echo9' not in b.list_queues(), b.list_queues()

    # Passwords from standard input are taken; none appears on a command line.
    b.users.append('agent-echo9')
    world.save_state()
    r = subprocess.run(argv + ['--passwords-from-stdin'], env=b.env, capture_output=True,
                       text=True, timeout=120, input='agent-echo9 s3cret word\n')
    assert r.returncode == 0, r.stderr
    r = b.ctl('authenticate_user', 'agent-echo9', 's3cret word')
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'baton.agent.echo9' in b.list_queues()

    # Bad input is a usage error naming it.
    r = subprocess.run([SETUP, '--agent', 'bad.host'], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "bad agent host id 'bad.host'" in r.stderr, r.stderr


if __name__ == '__main__':
    suite.run()
