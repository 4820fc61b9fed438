# SPDX-License-Identifier: MIT
"""Issue 10's attacks on authorization and trust, each performed for real against the real
controller, agents, broker and systemd managers, asserting what an operator would see:

- authority is decided by the verb: every verb with every argument block, sent by a broker
  user who is not an operator, is refused or answered as the verb's class says, and the
  database is never handed out (`backup` dressed up as a plan or a rollout status);
- neither daemon starts without its key unless told, loudly, that it is insecure;
- signatures cover the message type, sender, epoch and time: a signed reply re-labelled as
  a command, or a command with a changed epoch, is refused by the agent for its signature;
- a signed command older than the bound is refused (a dead-lettered Placement cannot be
  replayed), requests come only through baton.requests, replies go only to direct reply-to;
- a host is believed only about what the controller placed on it, and what agents report
  reaches batonctl's tables without terminal escapes;
- one broker user cannot flood the controller with requests; the audit log is bounded."""

import concurrent.futures
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tap import Suite  # noqa: E402
from world import build_path, run  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
suite = Suite('security')
S = {}

GATEWAY = """[Unit]
Description=a sharded test service that never gets ready

[Service]
Type=simple
NotifyAccess=all
ExecStart=/bin/sh -c 'systemd-notify --status="connecting=$BATON_SHARDS"; exec sleep infinity'

[X-Baton]
Kind=sharded
Instances=2
Shards=8
MaxPerHost=2
RequireLabels=role=gw
IdentifyConcurrency=8
IdentifyInterval=100ms
DailyStartBudget=100000
HealthTimeout=5min
"""

WEB = """[Unit]
Description=security test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=2
MaxPerHost=1
MaxUnavailable=1
"""

# Every verb of the controller's table, and one that is not.
READ_ONLY = {'ping', 'hosts', 'status', 'plan', 'shards', 'reshard-plan', 'restart-plan',
             'rollout-status', 'alerts', 'audit'}
MUTATING = {'apply', 'delete', 'restart', 'scale', 'reshard', 'drain', 'undrain', 'rollout'}
PRIVILEGED = {'backup'}
# The argument blocks a Request can carry, as baton-probe's JSON spells them.
BLOCKS = {
    'none': {},
    'ping': {'ping': {}},
    'hosts': {'hosts': {}},
    'apply': {'apply': {'files': [{'name': 'web@.service', 'text': WEB}], 'dry_run': True}},
    'service': {'service': {'service': 'web', 'instance': -1, 'count': 2}},
    'host': {'host': {'host': 'alpha'}},
    'rollout': {'rollout': {'action': 'status'}},
}
# Which blocks each read-only verb takes (rpc.c's table).
READ_ARGS = {'ping': {'none', 'ping'}, 'hosts': {'none', 'hosts'}, 'status': {'none', 'service'},
             'plan': {'apply'}, 'shards': {'service'}, 'reshard-plan': {'service'},
             'restart-plan': {'service'},
             'rollout-status': {'none', 'rollout'}, 'alerts': {'none'},
             'audit': {'none', 'service'}}


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


def request(world, body, user='guest', exchange='baton.requests', reply_to=None,
            await_reply=True, url=None):
    """One Request published as `user` (the AMQP user_id the broker checks); its Response
    as baton-probe decodes it (a dict with 'body'), or None when none is awaited."""
    argv = [build_path('tests', 'tools', 'baton-probe'), 'send', '--broker',
            url or S['urls'][user], '--type', 'baton.v1.Request', '--exchange', exchange,
            '--routing-key', 'baton.rpc', '--user-id', user, '--sender', f'batonctl:{user}',
            '--json', json.dumps(body), '--timeout', '10s', '--no-declare']
    if reply_to:
        argv += ['--reply-to', reply_to]
    if await_reply:
        argv.append('--await-reply')
    r = run(argv, timeout=30)
    if not await_reply:
        assert r.returncode == 0, r.stderr
        return None
    assert r.returncode == 0, f'no reply to {body}: {r.stderr}'
    return json.loads(r.stdout.splitlines()[-1])


def counters(world):
    return ok_json(world, 'ping')['counters']


def audit(world, n=200):
    return ok_json(world, 'audit', '--limit', str(n))['entries']


def agent_log(world, host):
    return S['agents'][host].log()


@suite.setup
def setup(world):
    world.start_broker()
    S['secret'], S['public'] = world.keygen()
    S['urls'] = {'guest': world.broker.url,
                 'eve': world.broker.add_user('eve', 'evepw')}
    S['controller'] = world.start_controller(config={
        'controller': {'host_timeout': '10s', 'rpc_rate_limit': '1000'},
        'security': {'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    S['hosts'] = {n: world.add_host(n) for n in HOSTS}
    S['agents'] = {}
    for n in HOSTS:
        S['agents'][n] = world.start_agent(S['hosts'][n], config={
            'agent': {'manage_units': 'web@*.service gateway@*.service',
                      'labels': 'role=gw' if n != 'charlie' else 'role=other'}})
    world.wait_for(lambda: [h['state'] for h in ok_json(world, 'hosts')['hosts']] ==
                   ['up'] * 3, 30, what='three hosts up')
    ok_json(world, 'apply', spec_file(world, 'web@.service', WEB),
            spec_file(world, 'gateway@.service', GATEWAY))
    world.wait_for(lambda: ok_json(world, 'status', 'web')['services'][0]['healthy'] == 2, 30,
                   what='web running')


@suite.case
def no_key_no_start_unless_insecure(world):
    """Fail closed: a missing key is a configuration error naming the key; the insecure
    setting starts the daemon and says so at every start."""
    conf = os.path.join(world.dir, 'nokey-agent.conf')
    with open(conf, 'w') as f:
        f.write('[broker]\nurl = amqp://guest:guest@127.0.0.1:1/\n'
                f'[agent]\nhost = nokey\nstate_dir = {world.dir}/nokey-state\n')
    r = run([build_path('agent', 'baton-agent'), '--check-config', '--config', conf])
    assert r.returncode != 0, r
    assert '[security] controller_public_key is not set' in r.stderr, r.stderr
    assert 'insecure_unsigned' in r.stderr, r.stderr
    r = run([build_path('agent', 'baton-agent'), '--config', conf], timeout=20)
    assert r.returncode != 0 and 'controller_public_key is not set' in r.stderr, r

    cconf = os.path.join(world.dir, 'nokey-controller.conf')
    with open(cconf, 'w') as f:
        f.write(f'[broker]\nurl = {world.broker.url}\n'
                f'[controller]\ndatabase = {world.dir}/nokey.db\n')
    r = run([build_path('controller', 'baton-controller'), '--check-config', '--config', cconf])
    assert r.returncode != 0 and '[security] signing_key is not set' in r.stderr, r
    r = run([build_path('controller', 'baton-controller'), '--config', cconf], timeout=20)
    assert r.returncode != 0 and 'signing_key is not set' in r.stderr, r
    assert not os.path.exists(f'{world.dir}/nokey.db'), 'a refused controller touched its db'

    # Told it is insecure, the agent starts (against a real user manager) and says so.
    h = world.add_host('insecure')
    p = world.start_agent(h, config={'security': {'controller_public_key': None,
                                                  'insecure_unsigned': True}},
                          name='agent-insecure')
    world.wait_for(lambda: 'INSECURE' in p.log(), 20, what='the agent saying it is insecure')
    assert p.alive(), p.log_tail()
    p.stop()
    with open(cconf, 'a') as f:
        f.write('[security]\ninsecure_unsigned = yes\n')
    r = run([build_path('controller', 'baton-controller'), '--check-config', '--config', cconf])
    assert r.returncode == 0, r


@suite.case
def authority_is_decided_by_the_verb(world):
    """Every verb × every argument block as eve, who is not an operator."""
    before = audit(world)
    n_refused = counters(world)['refused.unauthorized']
    expect_refused = 0
    for verb in sorted(READ_ONLY | MUTATING | PRIVILEGED | {'frobnicate'}):
        for block, args in BLOCKS.items():
            resp = request(world, {'verb': verb, **args}, user='eve')
            body = resp['body']
            status, error = body.get('status', 'STATUS_OK'), body.get('error', '')
            what = f'{verb} with {block}: {status} {error!r}'
            assert 'backup' not in body, f'{what}: the database was handed out'
            if verb in MUTATING | PRIVILEGED:
                expect_refused += 1
                assert status == 'STATUS_REFUSED', what
                assert "user 'eve' is not an operator" in error, what
                assert ('privileged' if verb in PRIVILEGED else 'mutating') in error, what
            elif verb in READ_ONLY and block not in READ_ARGS[verb]:
                assert status == 'STATUS_USAGE', what
                assert f"'{verb}' takes arguments of kind" in error and f'not {block}' in error, \
                    what
            elif verb in READ_ONLY:
                assert status in ('STATUS_OK', 'STATUS_REFUSED'), what
                assert 'not an operator' not in error, what
            else:
                assert status == 'STATUS_USAGE' and "unknown verb 'frobnicate'" in error, what
    assert counters(world)['refused.unauthorized'] - n_refused == expect_refused
    # Every privileged and mutating call is in the audit log, refused or not.
    new = [e for e in audit(world, 1000) if e['seq'] > (before[0]['seq'] if before else 0)]
    assert sum(1 for e in new if e['user'] == 'eve') == expect_refused, new[:5]
    backups = [e for e in new if e['verb'] == 'backup' and e['user'] == 'eve']
    assert len(backups) == len(BLOCKS) and all('not an operator' in e['outcome']
                                               for e in backups), backups


@suite.case
def an_operator_gets_the_database_only_by_asking_for_it(world):
    """The review's exploit, by an operator: backup with a plan's or a rollout status'
    arguments is a usage error, audited, and carries no data."""
    for block in ('apply', 'rollout', 'service'):
        resp = request(world, {'verb': 'backup', **BLOCKS[block]})
        body = resp['body']
        assert body.get('status') == 'STATUS_USAGE', body
        assert "'backup' takes arguments of kind none" in body['error'], body
        assert 'backup' not in body, 'the database was handed out'
    entries = audit(world, 3)
    assert [e['verb'] for e in entries] == ['backup'] * 3, entries
    assert all(e['user'] == 'guest' and 'takes arguments of kind none' in e['outcome']
               for e in entries), entries
    # The read-only variants are verbs of their own: a plan cannot be turned into apply.
    resp = request(world, {'verb': 'rollout', 'rollout': {'action': 'status'}})
    assert resp['body'].get('status') == 'STATUS_USAGE' and 'rollout-status' in \
        resp['body']['error'], resp
    r = world.batonctl('rollout', 'status', broker=S['urls']['eve'])
    assert r.returncode == 0, r
    r = world.batonctl('reshard', 'gateway', '--instances', '3', '--dry-run',
                       broker=S['urls']['eve'])
    assert r.returncode == 0 and 'Would reshard' in r.stdout, r
    r = world.batonctl('apply', '--dry-run', spec_file(world, 'web@.service', WEB),
                       broker=S['urls']['eve'])
    assert r.returncode == 0, r
    r = world.batonctl('reshard', 'gateway', '--instances', '3', broker=S['urls']['eve'])
    assert r.returncode == 4 and 'not an operator' in r.stderr, r


@suite.case
def requests_only_through_baton_requests_replies_only_to_direct_reply_to(world):
    """A request through the default exchange is refused (with an answer); one whose
    reply_to names a queue makes the controller publish nothing there."""
    n = counters(world)
    resp = request(world, {'verb': 'ping'}, exchange='')
    assert resp['body'].get('status') == 'STATUS_USAGE', resp
    assert 'requests go to exchange baton.requests' in resp['body']['error'], resp
    assert counters(world)['refused.mismatch'] == n['refused.mismatch'] + 1

    import pika
    conn = world.broker.pika_connection()
    ch = conn.channel()
    ch.queue_declare(queue='victim', durable=False)
    try:
        for target in ('victim', 'baton.agent.alpha'):
            before = counters(world)['refused.malformed']
            request(world, {'verb': 'ping'}, reply_to=target, await_reply=False)
            world.wait_for(lambda: counters(world)['refused.malformed'] == before + 1, 10,
                           what=f'the request with reply_to {target} refused')
        time.sleep(0.5)
        method, _, _ = ch.basic_get('victim', auto_ack=True)
        assert method is None, 'the controller published into a queue named by reply_to'
        assert 'baton.v1.Response' not in agent_log(world, 'alpha'), \
            'a Response reached the agent'
        assert 'reply_to is not direct reply-to' in S['controller'].log()
    finally:
        ch.queue_delete(queue='victim')
        conn.close()
    del pika


# -- envelopes, by hand: a tiny protobuf writer/reader for the attacks below ------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(b, i):
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7f) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def pb_fields(b):
    """[(field, wire type, value)]: value an int (varint) or bytes (length-delimited)."""
    out, i = [], 0
    while i < len(b):
        tag, i = read_varint(b, i)
        f, wt = tag >> 3, tag & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f'wire type {wt}')
        out.append((f, wt, v))
    return out


def pb_encode(fields):
    out = bytearray()
    for f, wt, v in fields:
        out += varint(f << 3 | wt)
        out += varint(v) if wt == 0 else varint(len(v)) + v
    return bytes(out)


def relabel(envelope, type=None, epoch_delta=0):
    """The envelope with its type (field 5) or epoch (field 4) changed, signature kept."""
    fields = []
    for f, wt, v in pb_fields(envelope):
        if f == 5 and type:
            v = type.encode()
        if f == 4:
            v += epoch_delta
        fields.append((f, wt, v))
    return pb_encode(fields)


def publish_raw(world, exchange, key, body, type):
    import pika
    conn = world.broker.pika_connection()
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(exchange, key, body, pika.BasicProperties(
            type=type, content_type='application/x-protobuf', delivery_mode=2))
    finally:
        conn.close()


def encode(type, body, **opts):
    """An envelope as the project's codec writes it (baton-probe encode), as bytes."""
    argv = [build_path('tests', 'tools', 'baton-probe'), 'encode', '--type', type,
            '--json', json.dumps(body)]
    for k, v in opts.items():
        argv += [f'--{k}', str(v)]
    r = run(argv)
    assert r.returncode == 0, r.stderr
    return bytes.fromhex(r.stdout.strip())


def signed_reply(world):
    """The raw bytes of a Response the controller signed, captured with pika from direct
    reply-to, as any broker user can."""
    import pika
    req = encode('baton.v1.Request', {'verb': 'ping'}, sender='batonctl:guest')
    conn = world.broker.pika_connection()
    got = []
    try:
        ch = conn.channel()
        ch.basic_consume('amq.rabbitmq.reply-to', lambda c, m, p, b: got.append(b),
                         auto_ack=True)
        ch.basic_publish('baton.requests', 'baton.rpc', req, pika.BasicProperties(
            reply_to='amq.rabbitmq.reply-to', type='baton.v1.Request', user_id='guest',
            correlation_id='c1'))
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.2)
    finally:
        conn.close()
    assert got, 'no reply'
    return got[0]


def web_on(host):
    r = S['hosts'][host].systemctl('list-units', '--state=active', '--plain', '--no-legend',
                                   'web@*')
    return sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())


@suite.case
def signatures_are_bound_to_type_and_epoch(world):
    """A Response signed by the controller, re-labelled as a Placement, and a real signed
    Placement with its epoch raised, are refused by the agent for their signatures."""
    web_before = web_on('alpha')
    reply = signed_reply(world)
    env = dict((f, v) for f, _, v in pb_fields(reply))
    assert env[5] == b'baton.v1.Response' and len(env[7]) == 64, 'not a signed Response'
    log_before = len(agent_log(world, 'alpha'))
    publish_raw(world, 'baton.cmd', 'alpha', relabel(reply, type='baton.v1.Placement'),
                'baton.v1.Placement')
    world.wait_for(lambda: 'bad signature' in agent_log(world, 'alpha')[log_before:], 10,
                   what='the re-labelled Response refused for its signature')
    # A genuine signed Placement whose envelope epoch is then raised past the fence.
    placement = encode('baton.v1.Placement',
                       {'host': 'alpha', 'epoch': 999999, 'generation': 1, 'units': []},
                       key=S['secret'], epoch=999999)
    log_before = len(agent_log(world, 'alpha'))
    publish_raw(world, 'baton.cmd', 'alpha', relabel(placement, epoch_delta=1),
                'baton.v1.Placement')
    world.wait_for(lambda: 'bad signature' in agent_log(world, 'alpha')[log_before:], 10,
                   what='the Placement with a changed envelope epoch refused')
    time.sleep(1)
    assert web_on('alpha') == web_before, 'a forged command took effect'


@suite.case
def an_old_signed_command_is_not_replayed(world):
    """A Placement dead-lettered 20 minutes ago (signed, genuine) is refused by its age; the
    same command fresh is obeyed."""
    h = S['hosts']['charlie']
    unit = {'name': 'web@9.service', 'unit_text': WEB, 'template_name': 'web@.service',
            'service': 'web', 'instance': 9, 'running': True}
    epoch = ok_json(world, 'ping')['epoch']
    before = len(agent_log(world, 'charlie'))
    world.send_placement('charlie', [unit], epoch=epoch, generation=10**9, age='20min')
    world.wait_for(lambda: 'older than the 600s a command may be'
                   in agent_log(world, 'charlie')[before:], 10, what='the old Placement refused')
    time.sleep(1)
    assert not h.is_active('web@9.service'), 'a replayed Placement was obeyed'
    # The controller's own Placements reach charlie as before (nothing else changed there).
    assert ok_json(world, 'hosts')['hosts'][2]['state'] == 'up'


@suite.case
def a_host_vouches_only_for_what_it_was_given(world):
    """Shard readiness claimed by a host for shards it does not own counts for nothing."""
    world.wait_for(lambda: len(ok_json(world, 'shards', 'gateway')['copies']) == 2, 30,
                   what='two gateway copies placed')
    doc = ok_json(world, 'shards', 'gateway')
    assert doc['ready'] == 0, doc  # they only ever say "connecting"
    epoch = doc['epoch']
    by_host = {c['host']: c for c in doc['copies']}
    owner = sorted(by_host)[0]
    other = sorted(by_host)[1]
    # charlie runs no gateway: it claims gateway@0's shards all ready.
    claim = {'unit': by_host[owner]['unit'], 'service': 'gateway',
             'instance': by_host[owner]['instance'], 'assigned': '0-7', 'shard_count': 8,
             'shard_epoch': epoch, 'ready': '0-7', 'active_state': 'active', 'has_tokens': True}
    n = counters(world)['refused.not-owned']
    world.send('baton.v1.ShardReport', {'host': 'charlie', 'instances': [claim]},
               exchange='baton.status', routing_key='charlie.shard', key=False, sender='charlie')
    # The other gateway's host claims, in its own copy's report, every shard ready.
    mine = {**claim, 'unit': by_host[other]['unit'], 'instance': by_host[other]['instance']}
    world.send('baton.v1.ShardReport', {'host': other, 'instances': [mine]},
               exchange='baton.status', routing_key=f'{other}.shard', key=False, sender=other)
    world.wait_for(lambda: counters(world)['refused.not-owned'] >= n + 2, 10,
                   what='both claims seen')
    doc = ok_json(world, 'shards', 'gateway')
    # Only the other copy's own four shards count (it may lie about those); charlie's claim
    # and the rest of the other's claim count for nothing.
    assert doc['ready'] == 4, f'claims beyond the assignments were counted: {doc}'
    assert doc['owned_twice'] == '', doc
    ready_of = {c['unit']: c['ready'] for c in doc['copies']}
    assert ready_of[by_host[owner]['unit']] == '', ready_of
    assert ready_of[by_host[other]['unit']] == by_host[other]['shards'], ready_of
    assert doc['unowned'] == by_host[owner]['shards'], doc


@suite.case
def what_agents_report_cannot_drive_a_terminal(world):
    """A heartbeat full of escape sequences shows as '?' in batonctl's tables."""
    esc = '\x1b]0;pwned\x07\x1b[2J'
    hb = {'host': 'mallory', 'boot_id': esc, 'agent_version': f'9.9{esc}',
          'systemd_version': f'252{esc}', 'system_state': f'running\u202e{esc}',
          'labels': [{'key': 'zone', 'value': f'eu{esc}'}],
          'units': [{'name': f'evil{esc}.service', 'active_state': f'active{esc}',
                     'sub_state': f'running{esc}'}], 'interval_us': 1000000}
    world.send('baton.v1.Heartbeat', hb, exchange='baton.status',
               routing_key='mallory.heartbeat', key=False, sender='mallory')
    world.wait_for(lambda: 'mallory' in [h['host'] for h in ok_json(world, 'hosts')['hosts']],
                   10, what='mallory seen')
    for args in (('hosts',), ('--json', 'hosts'), ('status',), ('alerts',)):
        r = world.batonctl(*args)
        assert r.returncode == 0, r
        assert '\x1b' not in r.stdout and '\x07' not in r.stdout and '\u202e' not in r.stdout, \
            f'batonctl {" ".join(args)} printed a control character:\n{r.stdout!r}'
    doc = ok_json(world, 'hosts')
    m = [h for h in doc['hosts'] if h['host'] == 'mallory'][0]
    assert m['agent_version'] == '9.9?]0;pwned??[2J', m


@suite.case
def rpc_rate_limit_per_user(world):
    """One user's flood of requests is refused beyond the limit; others are served."""
    S['controller'].stop()
    S['controller'] = world.start_controller(config={
        'controller': {'host_timeout': '10s', 'rpc_rate_limit': '2',
                       'audit_max_entries': '10'},
        'security': {'operators': 'guest'}})
    world.wait_for(lambda: world.batonctl('ping', timeout=10).returncode == 0, 30,
                   what='controller answering')
    time.sleep(5.5)  # a full bucket: 2/s, bursts of 10
    # All at once: one after the other, a slow (sanitizer) build refills the bucket as
    # fast as it drains it.
    with concurrent.futures.ThreadPoolExecutor(max_workers=45) as pool:
        results = list(pool.map(lambda _: world.batonctl('ping', broker=S['urls']['eve'],
                                                         timeout=60), range(45)))
    refused = [r for r in results if r.returncode == 4]
    assert refused, 'no request was refused'
    assert all("too many requests from 'eve'" in r.stderr for r in refused), refused[0].stderr
    assert all(r.returncode in (0, 4) for r in results), [r.stderr for r in results]
    assert len(refused) <= 45 - 10, len(refused)
    # guest is not eve: served at once.
    assert world.batonctl('ping').returncode == 0
    assert counters(world)['refused.rate-limited'] >= len(refused)


@suite.case
def audit_log_is_bounded(world):
    """With audit_max_entries = 10 the log is pruned as it grows: the oldest go first."""
    first = audit(world, 1)[0]['seq']
    done = 0
    while done < 70:
        r = world.batonctl('rollout', 'pause', 'nosuch')
        if 'too many requests' in r.stderr:
            time.sleep(1)  # rpc_rate_limit = 2
            continue
        assert r.returncode == 4 and 'no rollout of nosuch' in r.stderr, r
        done += 1
    time.sleep(1)  # the loop spent the user's requests: let the bucket refill
    entries = audit(world, 1000)
    seqs = [e['seq'] for e in entries]
    assert max(seqs) >= first + 70, seqs[:3]
    assert len(entries) < 10 + 64, len(entries)
    assert min(seqs) > first, 'nothing was pruned'


if __name__ == '__main__':
    suite.run()
