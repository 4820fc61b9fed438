#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Brings the demo world up or down, reusing the integration-test world (the
same isolated broker and systemd managers the tests use), in keep mode so
the processes outlive this script and `down` can stop them by PID."""

import json
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, 'tests', 'integration'))
# world.py finds the binaries through BATON_BUILD_DIR when it is imported.
if len(sys.argv) > 2:
    os.environ['BATON_BUILD_DIR'] = os.path.abspath(sys.argv[2])

import world as worldmod  # noqa: E402

HOSTS = [('host-a', 'zone=eu rack=r1 role=gateway'),
         ('host-b', 'zone=eu rack=r2 role=gateway'),
         ('host-c', 'zone=us rack=r3 role=audio')]


def batonctl(build, url, *args):
    return subprocess.run([os.path.join(build, 'controller', 'ctl', 'batonctl'), '--broker', url,
                           *args], capture_output=True, text=True)


def up(build, demo_dir):
    if os.path.exists(os.path.join(demo_dir, 'demo.json')):
        print(f'A demo is already running in {demo_dir}; run packaging/demo.sh down first.')
        return 1
    w = worldmod.World('demo', keep=True, base=demo_dir)
    # Written first, so that `down` can clean up even if start-up fails.
    with open(os.path.join(demo_dir, 'demo.json'), 'w') as f:
        json.dump({'world': w.dir, 'url': None, 'build': build}, f)
    print(f'Starting RabbitMQ (about 10 s) in {w.dir} …', flush=True)
    broker = w.start_broker()
    secret, public = w.keygen()
    # The broker's demo user (guest) is the operator; commands are signed.
    w.start_controller(config={'controller': {'host_timeout': '10s'},
                               'security': {'signing_key': secret, 'operators': 'guest'}})
    for name, labels in HOSTS:
        h = w.add_host(name)
        w.start_agent(h, config={
            'agent': {'labels': labels, 'heartbeat_interval': '2s',
                      'manage_units': 'core.service gateway@*.service audio@*.service'},
            'security': {'controller_public_key': public}})
    w.save_state()
    with open(os.path.join(demo_dir, 'demo.json'), 'w') as f:
        json.dump({'world': w.dir, 'url': broker.url, 'build': build}, f)

    def hosts_up():
        r = batonctl(build, broker.url, '--json', 'hosts')
        if r.returncode != 0:
            return False
        hosts = json.loads(r.stdout)['hosts']
        return len(hosts) == len(HOSTS) and all(h['state'] == 'up' for h in hosts)

    w.wait_for(hosts_up, 60, interval=0.5, what='three hosts up')
    print(batonctl(build, broker.url, 'hosts').stdout)

    # The example fleet: packaging/examples with the test workloads.
    specs = os.path.join(w.dir, 'specs')
    os.makedirs(specs, exist_ok=True)
    files = []
    for name in ('core.service', 'gateway@.service', 'audio@.service'):
        with open(os.path.join(root, 'packaging', 'examples', name)) as f:
            text = f.read().replace('@WORKLOADS@', os.path.join(build, 'tests', 'workloads'))
        files.append(os.path.join(specs, name))
        with open(files[-1], 'w') as f:
            f.write(text)
    r = batonctl(build, broker.url, 'apply', *files)
    print(r.stdout or r.stderr)
    if r.returncode != 0:
        return r.returncode
    print('Waiting for every instance to be active and every shard ready '
          '(the gateways identify at the start budget\'s pace) …', flush=True)

    def fleet_ready():
        r = batonctl(build, broker.url, '--json', 'status')
        if r.returncode != 0:
            return False
        services = json.loads(r.stdout)['services']
        return len(services) == 3 and all(
            s['healthy'] == s['count'] and (not s.get('shards') or
                                            s['shards']['ready'] == s['shards']['total'])
            for s in services)

    w.wait_for(fleet_ready, 300, interval=1, what='the example fleet ready')
    print(batonctl(build, broker.url, 'status').stdout)
    r = batonctl(build, broker.url, 'shards', 'gateway')
    print('\n'.join(r.stdout.splitlines()[-3:]))
    print()
    r = restart_with_coverage(w, build, broker.url)
    if r != 0:
        return r
    ctl = os.path.join(build, 'controller', 'ctl', 'batonctl')
    print()
    print('The demo is running. Try:')
    print(f'  export BATON_BROKER={broker.url}')
    print(f'  {ctl} status')
    print(f'  {ctl} shards gateway')
    print(f'  {ctl} reshard gateway --instances 7 --wait   # live: identifies only the shards '
          'that change owner')
    print(f'  {ctl} restart gateway                     # make-before-break: every shard served')
    print(f'  {ctl} watch                               # alerts and events as they happen')
    print(f'  kill $(pgrep -f "baton-agent.*host-c")   # host-c goes down after 10 s')
    print('  packaging/demo.sh down                      # stop everything')
    return 0


def restart_with_coverage(w, build, url):
    """`batonctl restart gateway`, printing as it goes how many shards have a ready
    owner (the controller's shard map, from what the gateways report)."""
    r = batonctl(build, url, 'restart', 'gateway')
    print(r.stdout or r.stderr, end='', flush=True)
    if r.returncode != 0:
        return r.returncode
    least, samples, last = None, 0, None

    def sample():
        nonlocal least, samples, last
        r = batonctl(build, url, '--json', 'shards', 'gateway')
        if r.returncode != 0:
            return False
        m = json.loads(r.stdout)
        covered = m['ready']
        least = covered if least is None else min(least, covered)
        samples += 1
        copies = sorted(c['unit'] for c in m['copies']
                        if sum(d['instance'] == c['instance'] for d in m['copies']) > 1)
        line = (f'  {covered}/{m["shard_count"]} shards with a ready owner'
                + (f'; replacing: {" ".join(copies)}' if copies else ''))
        if line != last:
            print(line, flush=True)
            last = line
        r = batonctl(build, url, '--json', 'rollout', 'status', 'gateway')
        return r.returncode == 0 and not json.loads(r.stdout)['reshards'] and \
            m['ready'] == m['shard_count']

    w.wait_for(sample, 180, interval=0.25, what='the restart of gateway done')
    print(f'Restarted every gateway copy; the fewest shards with a ready owner in '
          f'{samples} samples: {least}/96.')
    return 0


def find_world_dir(demo_dir):
    p = os.path.join(demo_dir, 'demo.json')
    if os.path.exists(p):
        with open(p) as f:
            return json.load(f)['world']
    return None


def down(demo_dir):
    d = find_world_dir(demo_dir)
    if not d:
        print('No demo is running.')
        return 0
    w = worldmod.World.load(d)
    w.close()
    for p in (os.path.join(demo_dir, 'demo.json'),):
        if os.path.exists(p):
            os.unlink(p)
    print('The demo is stopped; every process it started is gone.')
    return 0


def status(build, demo_dir):
    p = os.path.join(demo_dir, 'demo.json')
    if not os.path.exists(p):
        print('No demo is running.')
        return 1
    with open(p) as f:
        d = json.load(f)
    r = batonctl(build, d['url'], 'hosts')
    print(r.stdout or r.stderr)
    return r.returncode


def main():
    action, build = sys.argv[1], sys.argv[2]
    demo_dir = os.environ.get('BATON_DEMO_DIR', '/var/tmp/baton-demo')
    os.makedirs(demo_dir, exist_ok=True)
    if action == 'up':
        return up(build, demo_dir)
    if action == 'down':
        return down(demo_dir)
    return status(build, demo_dir)


if __name__ == '__main__':
    sys.exit(main())
