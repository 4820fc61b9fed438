# SPDX-License-Identifier: MIT
"""A table of malformed and hostile inputs, on every way into baton: the wire to the
controller (status) and to an agent (commands), requests to the controller, service specs,
configuration files, the STATUS= a workload reports, and batonctl's command line. For each:
the error text a user sees (a log line, a reply, stderr), the counter that moves (a refusal
counter, an audit entry, an exit code), and that nothing is lost: a refused message lands in
baton.dead, the process keeps running, and nothing it manages changes."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path, run  # noqa: E402

suite = Suite('bad-input')
S = {}

GOOD_SPEC = """[Unit]
Description=bad-input test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=1
MaxReplicas=4
"""

ESC = '\x1b[2J'


def ok_json(world, *args, **kw):
    r = world.batonctl('--json', *args, **kw)
    assert r.returncode == 0, f'batonctl --json {" ".join(args)}: {r.returncode}\n{r.stderr}'
    return json.loads(r.stdout)


def counters(world):
    return ok_json(world, 'ping')['counters']


def agent_refused(world):
    hb = [m for m in S['status'].messages() if m.get('type') == 'baton.v1.Heartbeat'
          and m.get('routing_key') == 'alpha.heartbeat' and 'body' in m]
    return int(hb[-1]['body'].get('refused_total', 0)) if hb else 0


def envelope_bytes(**fields):
    """An Envelope by hand: field number → value (int, str or bytes)."""
    def varint(n):
        out = bytearray()
        while True:
            b, n = n & 0x7f, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    numbers = {'version': 1, 'sender': 2, 'sent_at_us': 3, 'epoch': 4, 'type': 5, 'body': 6,
               'signature': 7, 'key_id': 8}
    out = bytearray()
    for name, v in fields.items():
        f = numbers[name]
        if isinstance(v, int):
            out += varint(f << 3) + varint(v)
        else:
            v = v.encode() if isinstance(v, str) else v
            out += varint(f << 3 | 2) + varint(len(v)) + v
    return bytes(out)


def encode(type, body, **opts):
    argv = [build_path('tests', 'tools', 'baton-probe'), 'encode', '--type', type,
            '--json', json.dumps(body)]
    for k, v in opts.items():
        argv += [f'--{k.replace("_", "-")}', str(v)]
    r = run(argv)
    assert r.returncode == 0, r.stderr
    return bytes.fromhex(r.stdout.strip())


def hb(host='alpha', **extra):
    return {'host': host, 'interval_us': 1000000, **extra}


# -- the wire to the controller: (name, type, body or raw bytes, routing key, sender, counter,
#    text in the controller's log) -----------------------------------------------------------
STATUS = [
    ('garbage bytes', 'baton.v1.Heartbeat', b'\xff\x00garbage', 'alpha.heartbeat', None,
     'refused.malformed', 'malformed protobuf'),
    ('empty body', 'baton.v1.Heartbeat', b'', 'alpha.heartbeat', None,
     'refused.malformed', 'protocol version 0'),
    ('unknown protocol version', 'baton.v1.Heartbeat',
     envelope_bytes(version=9, sender='alpha', type='baton.v1.Heartbeat', body=b''),
     'alpha.heartbeat', None, 'refused.malformed', 'protocol version 9, expected 2'),
    ('a type nobody sends', 'baton.v1.Bogus',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.Bogus', body=b''),
     'alpha.heartbeat', None, 'refused.wrong-type', 'is not accepted here'),
    ('a command on the status exchange', 'baton.v1.Placement',
     {'host': 'alpha', 'epoch': 1, 'generation': 1}, 'alpha.heartbeat', 'alpha',
     'refused.wrong-type', 'baton.v1.Placement'),
    ('AMQP type disagrees with the envelope', 'baton.v1.UnitEvent',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.Heartbeat', body=b''),
     'alpha.heartbeat', None, 'refused.wrong-type', 'does not match the AMQP type'),
    ('body for another host than the key', 'baton.v1.Heartbeat', hb('bravo'),
     'alpha.heartbeat', 'alpha', 'refused.mismatch', "from host 'bravo'"),
    ('sender disagrees with the body', 'baton.v1.Heartbeat', hb(), 'alpha.heartbeat', 'bravo',
     'refused.mismatch', "sender 'bravo'"),
    ('kind disagrees with the key', 'baton.v1.Heartbeat', hb(), 'alpha.unit', 'alpha',
     'refused.mismatch', "routing key 'alpha.unit'"),
    ('invalid host id', 'baton.v1.Heartbeat', hb('bad.host'), 'bad.host.heartbeat', 'bad.host',
     'refused.malformed', 'invalid host id in body'),
    ('invalid UTF-8 in a string', 'baton.v1.Heartbeat',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.Heartbeat',
                    body=b'\x0a\x05alpha\x12\x02\xc3\x28'),
     'alpha.heartbeat', None, 'refused.malformed', 'boot_id: invalid UTF-8'),
    ('NUL inside a string', 'baton.v1.Heartbeat',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.Heartbeat',
                    body=b'\x0a\x07alpha\x00x'),
     'alpha.heartbeat', None, 'refused.malformed', 'NUL byte in string'),
    ('an out-of-range oneof', 'baton.v1.CommandResult',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.CommandResult',
                    body=b'\x0a\x05alpha\x18\x01\x20'),
     'alpha.result', None, 'refused.malformed', 'malformed'),
    ('over 4 MiB', 'baton.v1.Heartbeat', b'\x0a' * (5 * 1024 * 1024), 'alpha.heartbeat', None,
     'refused.malformed', 'exceeds the limit of 4194304 bytes'),
    ('truncated envelope', 'baton.v1.Heartbeat',
     envelope_bytes(version=2, sender='alpha', type='baton.v1.Heartbeat', body=b'')[:-3],
     'alpha.heartbeat', None, 'refused.malformed', 'malformed protobuf'),
]

# -- the wire to an agent: (name, type, body or raw, send options, text in the agent's log) --
EPOCH = 1 << 40
COMMANDS = [
    ('garbage', 'baton.v1.Placement', b'\x0a\xff\xffnot protobuf', {}, 'malformed'),
    ('unsigned Placement', 'baton.v1.Placement',
     {'host': 'alpha', 'epoch': EPOCH, 'generation': 1}, {'key': False},
     'unsigned, but a signature by key'),
    ('signed by another key', 'baton.v1.Placement',
     {'host': 'alpha', 'epoch': EPOCH, 'generation': 2}, {'key': 'intruder'}, 'signed by key'),
    ('a Placement for another host', 'baton.v1.Placement',
     {'host': 'bravo', 'epoch': EPOCH, 'generation': 3}, {}, "placement for host 'bravo'"),
    ('a stale epoch', 'baton.v1.Placement', {'host': 'alpha', 'epoch': 0, 'generation': 4}, {},
     'stale epoch 0'),
    ('sent an hour ago', 'baton.v1.Placement',
     {'host': 'alpha', 'epoch': EPOCH, 'generation': 5}, {'age': '1h'},
     'older than the 600s a command may be'),
    ('sent an hour from now', 'baton.v1.Placement',
     {'host': 'alpha', 'epoch': EPOCH, 'generation': 6}, {'future': '1h'}, 'in the future'),
    ('a status message to an agent', 'baton.v1.Heartbeat', {'host': 'alpha'}, {},
     'message type "baton.v1.Heartbeat" is not accepted here'),
    ('an expired Restart', 'baton.v1.Restart',
     {'id': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'host': 'alpha', 'epoch': EPOCH,
      'unit': 'web@0.service', 'not_after_us': 1}, {}, 'expired'),
    ('a Restart of an invalid unit name', 'baton.v1.Restart',
     {'id': 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'host': 'alpha', 'epoch': EPOCH,
      'unit': '../../etc/passwd'}, {}, 'invalid unit name'),
    ('a Restart outside manage_units', 'baton.v1.Restart',
     {'id': 'cccccccccccccccccccccccccccccccc', 'host': 'alpha', 'epoch': EPOCH,
      'unit': 'sshd.service'}, {}, 'is not allowed by manage_units'),
    ('a Restart with an invalid id', 'baton.v1.Restart',
     {'id': 'x y', 'host': 'alpha', 'epoch': EPOCH, 'unit': 'web@0.service'}, {},
     'invalid restart id'),
    ('a Restart with an unknown mode', 'baton.v1.Restart',
     {'id': 'dddddddddddddddddddddddddddddddd', 'host': 'alpha', 'epoch': EPOCH,
      'unit': 'web@0.service', 'mode': f'reboot{ESC}'}, {}, "unknown mode 'reboot"),
]

# -- requests: (name, request, status, text of the reply) ----------------------------------
RPC = [
    ('an unknown verb', {'verb': 'frobnicate'}, 'STATUS_USAGE', "unknown verb 'frobnicate'"),
    ('a verb with arguments not its own', {'verb': 'drain', 'service': {'service': 'x'}},
     'STATUS_USAGE', "'drain' takes arguments of kind host, not service"),
    ('apply without files', {'verb': 'apply', 'apply': {}}, 'STATUS_USAGE',
     'apply needs spec files'),
    ('scale beyond MaxReplicas', {'verb': 'scale', 'service': {'service': 'web', 'count': 99}},
     'STATUS_REFUSED', 'web: 99 is above MaxReplicas=4'),
    ('restart an instance that does not exist',
     {'verb': 'restart', 'service': {'service': 'web', 'instance': 41}}, 'STATUS_REFUSED',
     'has no instance 41'),
    ('drain an unknown host', {'verb': 'drain', 'host': {'host': 'nosuch'}}, 'STATUS_REFUSED',
     "no host 'nosuch'"),
    ('a rollout action that does not exist',
     {'verb': 'rollout', 'rollout': {'action': 'explode'}}, 'STATUS_USAGE',
     "unknown rollout action 'explode'"),
    ('reshard of a service that is not sharded',
     {'verb': 'reshard', 'service': {'service': 'web', 'instances': 3}}, 'STATUS_REFUSED',
     'not sharded'),
]

# -- service specs: (name, text, error on stderr) --------------------------------------------
SPEC_BASE = '[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n\n[X-Baton]\n'
SPECS = [
    ('an unknown key', SPEC_BASE + 'Replicas=1\nFrobnicate=yes\n',
     'web@.service:9: [X-Baton] Frobnicate: unknown key'),
    ('a key given twice', SPEC_BASE + 'Replicas=1\nReplicas=2\n',
     'web@.service:9: [X-Baton] Replicas: given twice (first at line 8)'),
    ('not a number', SPEC_BASE + 'Replicas=many\n',
     "web@.service:8: [X-Baton] Replicas: 'many' is not a number"),
    ('not a duration', SPEC_BASE + 'HealthyFor=soon\n',
     "web@.service:8: [X-Baton] HealthyFor: 'soon' is not a duration"),
    ('a kind that does not exist', SPEC_BASE + 'Kind=bogus\n', 'web@.service:8: [X-Baton] Kind'),
    ('more replicas than allowed', SPEC_BASE + 'Replicas=9\nMaxReplicas=3\n',
     'web@.service:9: [X-Baton] Replicas=9 is above MaxReplicas=3'),
    ('a label that is not KEY=VALUE', SPEC_BASE + 'RequireLabels=zone\n',
     "RequireLabels: 'zone' is not KEY=VALUE"),
    ('no [Service] section', '[Unit]\nDescription=x\n\n[X-Baton]\nReplicas=1\n',
     'web@.service: no [Service] section'),
    ('a line that is nothing', SPEC_BASE + 'Replicas=1\njust words\n',
     "web@.service:9: 'just words' is not KEY=VALUE"),
]

# -- configuration files: (name, program, text, error) --------------------------------------
CONFIGS = [
    ('an unknown section', 'agent', '[agnet]\nhost = a\n', "unknown section [agnet]"),
    ('an unknown key', 'agent', '[agent]\nhots = a\n', 'unknown key'),
    ('a key given twice', 'controller', '[controller]\nhost_timeout = 5s\nhost_timeout = 6s\n',
     ":3: duplicate key 'host_timeout' in section [controller] (first set on line 2)"),
    ('a bad duration', 'controller', '[controller]\nhost_timeout = soon\n', 'host_timeout'),
    ('a duration out of bounds', 'controller', '[controller]\nhost_timeout = 1ms\n',
     'host_timeout'),
    ('a host id that cannot be one', 'agent', '[agent]\nhost = bad.host\n',
     "'bad.host' is not a valid host id"),
    ('a bad unit pattern', 'agent', '[agent]\nmanage_units = ../x\n', 'bad unit pattern'),
    ('no controller key', 'agent', '[broker]\nurl = amqp://127.0.0.1/\n[agent]\nhost = a\n',
     '[security] controller_public_key is not set'),
    ('no signing key', 'controller', '[broker]\nurl = amqp://127.0.0.1/\n[controller]\nid = c\n',
     '[security] signing_key is not set'),
    ('no broker', 'agent', '[agent]\nhost = a\n', '[broker] url is required but not set'),
]

# -- batonctl's command line: (name, arguments, exit code, error) --------------------------
CLI = [
    ('an unknown command', ['frobnicate'], 2, "unknown command 'frobnicate'"),
    ('a timeout that is not a duration', ['--timeout', 'soon', 'ping'], 2, '--timeout'),
    ('scale to a word', ['scale', 'web', 'many'], 2, 'many'),
    ('reshard without saying what', ['reshard', 'web'], 2, '--instances N and/or --shards S'),
    ('a rollout action that does not exist', ['rollout', 'explode'], 2,
     "unknown action 'explode'"),
    ('a spec file that does not exist', ['apply', '/nonexistent/web@.service'], 1,
     'cannot read /nonexistent/web@.service: No such file or directory'),
]


@suite.setup
def setup(world):
    world.start_broker()
    S['controller'] = world.start_controller(config={'security': {'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    S['dead'] = world.listen('baton.dlx:#')
    S['status'] = world.listen('baton.status:alpha.*')
    S['host'] = world.add_host('alpha')
    S['agent'] = world.start_agent(S['host'], config={'agent': {'manage_units': 'web@*'}})
    world.wait_for(lambda: [h['state'] for h in ok_json(world, 'hosts')['hosts']] == ['up'],
                   30, what='alpha up')
    path = os.path.join(world.dir, 'web@.service')
    with open(path, 'w') as f:
        f.write(GOOD_SPEC)
    ok_json(world, 'apply', path)
    world.wait_for(lambda: S['host'].is_active('web@0.service'), 30, what='web@0 active')
    S['web_pid'] = S['host'].unit_property('web@0.service', 'MainPID')
    world.keygen('intruder')


def dead_since(mark):
    return len(S['dead'].messages()) - mark


@suite.case
def bad_status_messages(world):
    """Each refused, dead-lettered, logged with its reason and counted by reason."""
    for name, type, body, key, sender, counter, text in STATUS:
        before, mark = counters(world), len(S['dead'].messages())
        log_mark = len(S['controller'].log())
        if isinstance(body, bytes):
            world.send(type, raw_body=body, exchange='baton.status', routing_key=key)
        else:
            world.send(type, body, exchange='baton.status', routing_key=key, key=False,
                       sender=sender)
        world.wait_for(lambda: counters(world)[counter] == before[counter] + 1, 10,
                       what=f'{name}: {counter} counted')
        S['dead'].wait_for(lambda m: dead_since(mark) >= 1, 10, what=f'{name}: in baton.dead')
        log = S['controller'].log()[log_mark:]
        assert text in log, f'{name}: {text!r} not in the log:\n{log}'
    # Nothing lost: the controller still hears alpha and answers.
    hb = counters(world)['heartbeats']
    world.wait_for(lambda: counters(world)['heartbeats'] > hb + 1, 10,
                   what='heartbeats still processed')
    assert S['controller'].alive()


@suite.case
def bad_commands(world):
    """Each refused by the agent, dead-lettered, logged and counted; the unit untouched."""
    world.wait_for(lambda: agent_refused(world) is not None, 10)
    for name, type, body, opts, text in COMMANDS:
        before = agent_refused(world)
        mark, log_mark = len(S['dead'].messages()), len(S['agent'].log())
        opts = dict(opts)
        key = opts.pop('key', True)
        if key == 'intruder':
            key = world.keygen('intruder')[0]
        if isinstance(body, bytes):
            world.send(type, raw_body=body, routing_key='alpha')
        else:
            world.send(type, body, routing_key='alpha', key=key, **opts)
        S['dead'].wait_for(lambda m: dead_since(mark) >= 1, 10, what=f'{name}: in baton.dead')
        world.wait_for(lambda: agent_refused(world) >= before + 1, 10,
                       what=f'{name}: counted in the heartbeat')
        log = S['agent'].log()[log_mark:]
        assert text in log, f'{name}: {text!r} not in the agent log:\n{log}'
        assert ESC not in log, f'{name}: an escape sequence reached the log'
    assert S['agent'].alive()
    assert S['host'].unit_property('web@0.service', 'MainPID') == S['web_pid']


@suite.case
def bad_requests(world):
    """Each answered with a usage error or a refusal that says why; nothing changes."""
    status_before = ok_json(world, 'status')
    for name, req, status, text in RPC:
        r = run([build_path('tests', 'tools', 'baton-probe'), 'send', '--broker',
                 world.broker.url, '--type', 'baton.v1.Request', '--exchange', 'baton.requests',
                 '--routing-key', 'baton.rpc', '--user-id', 'guest', '--json', json.dumps(req),
                 '--await-reply', '--no-declare'], timeout=30)
        assert r.returncode == 0, f'{name}: no reply: {r.stderr}'
        body = json.loads(r.stdout.splitlines()[-1])['body']
        assert body.get('status', 'STATUS_OK') == status, f'{name}: {body}'
        assert text in body.get('error', ''), f'{name}: {text!r} not in {body}'
    assert ok_json(world, 'status') == status_before


@suite.case
def bad_specs(world):
    """Each refused (exit 4) with FILE:LINE and the reason, audited, nothing applied."""
    status_before = ok_json(world, 'status')
    for name, text, error in SPECS:
        path = os.path.join(world.dir, 'bad', 'web@.service')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)
        seq = ok_json(world, 'audit', '--limit', '1')['entries'][0]['seq']
        r = world.batonctl('apply', path)
        assert r.returncode == 4, f'{name}: exit {r.returncode}: {r.stderr}'
        assert error in r.stderr, f'{name}: {error!r} not in {r.stderr}'
        entry = ok_json(world, 'audit', '--limit', '1')['entries'][0]
        assert entry['seq'] == seq + 1 and entry['verb'] == 'apply' and \
            error in entry['outcome'], f'{name}: {entry}'
    assert ok_json(world, 'status') == status_before


@suite.case
def bad_configuration(world):
    """Each a configuration error naming file, line and key; the daemon does not start."""
    for name, program, text, error in CONFIGS:
        path = os.path.join(world.dir, f'bad-{program}.conf')
        with open(path, 'w') as f:
            f.write(text)
        binary = build_path(program, f'baton-{program}')
        r = run([binary, '--check-config', '--config', path])
        assert r.returncode != 0, f'{name}: accepted'
        assert error in r.stderr and path in r.stderr, f'{name}: {error!r}: {r.stderr}'


@suite.case
def bad_command_lines(world):
    """Each a usage error (exit 2) that says what is wrong, and nothing sent."""
    rpc = counters(world)['rpc_received']
    for name, args, code, error in CLI:
        r = world.batonctl(*args)
        assert r.returncode == code, f'{name}: exit {r.returncode}: {r.stderr}'
        assert error in r.stderr, f'{name}: {error!r} not in {r.stderr}'
        assert r.stdout == '', f'{name}: {r.stdout!r}'
    assert counters(world)['rpc_received'] == rpc + 1  # only this ping's own


@suite.case
def there_are_at_least_forty(world):
    n = len(STATUS) + len(COMMANDS) + len(RPC) + len(SPECS) + len(CONFIGS) + len(CLI)
    assert n >= 40, n


if __name__ == '__main__':
    suite.run()
