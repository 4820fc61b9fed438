#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The real-systemd rollout benchmark (issue 11; issue 15, point 1): baton against the loop an
operator's script runs, side by side on the same three real `systemd --user` managers (alpha,
bravo, charlie, one baton-agent each), the real controller and batonctl, on an isolated
rabbitmq-server on loopback, all in one run.

The workload is baton-test-service, Type=notify with READY=1 after SERVICE_READY_DELAY_MS
(50 ms by default), so "active" means that start is done. A service of 18 instances
(MaxPerHost=6, MaxUnavailable=1, HealthyFor=0) is applied once; then, for each round (the
order of the two sides alternates from round to round):

  start:   a serial `systemctl start UNIT; systemctl is-active UNIT` loop over 18 identical
           units that baton does not manage (6 per host, stopped first), against
           `batonctl apply` of a fresh service of 18 instances until all 18 are active (polled
           with `systemctl --user list-units` on the three managers); the fresh service is
           deleted afterwards;
  restart: a serial `systemctl restart UNIT; systemctl is-active UNIT` loop over the 18
           applied units, each on its host, against `batonctl restart SERVICE` (a rolling
           restart) until `batonctl --json rollout status SERVICE` says done.

Each figure is also read from clocks that need no polling: the workloads' own log (every
start, ready and stop with its wall-clock µs), the controller's and agents' JSON logs, the
rollout's own decision times (started_at_us) and, from a listener on the wire, when each
Restart and UnitEvent was published. From them each step of a rolling restart is split into
where its time goes: decided → Restart published → old process got SIGTERM → new one started
→ ready → its agent saw it active → UnitEvent published → the next restart decided. Medians
over the rounds, and the ratios baton ÷ serial, are printed as a table.

The benchmark never fails for being slow: it exits 1 only when something does not converge at
all within generous limits, a restart did not restart every unit, or a process fails.

usage: run-rollout-bench.py [--rounds N] [--ready-delay MS] [--poll S] [--settle S]
                            [--heartbeat-interval D] [--log-level L] [--no-wire] [--json FILE]
"""

import argparse
import datetime
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))

import world as worldmod  # noqa: E402
from world import World  # noqa: E402

HOSTS = ['alpha', 'bravo', 'charlie']
PER_HOST = 6
N_UNITS = PER_HOST * len(HOSTS)
SERVICE = 'roll'
# Limits for things that must happen at all; generous so that a slow machine is only slow.
UP_TIMEOUT = 120.0
CONVERGE_TIMEOUT = 300.0
RPC_TIMEOUT = 60.0

SPEC = """[Unit]
Description=baton rollout benchmark {service} %i

[Service]
Type=notify
ExecStart="{exe}"
Environment="SERVICE_READY_DELAY_MS={delay}" "SERVICE_LOG={log}"
TimeoutStopSec=10s

[X-Baton]
Replicas={n}
MaxPerHost={per_host}
MaxUnavailable=1
HealthyFor=0
"""

# The serial start loop's units: the same service, written straight into the manager's unit
# directory, which baton does not manage (manage_units below leaves serial@ out).
SERIAL_UNIT = """[Unit]
Description=serial baseline %i (not managed by baton)

[Service]
Type=notify
ExecStart="{exe}"
Environment="SERVICE_READY_DELAY_MS={delay}" "SERVICE_LOG={log}"
Environment=BATON_SERVICE=serial BATON_HOST={host} BATON_INSTANCE=%i
TimeoutStopSec=10s
"""

WORKLOAD_LINE = re.compile(r'^(\d+) (\S+)@(\d+) (start|ready|stop|reload|crash) pid=(\d+)')
ROLLOUT_DONE = re.compile(r'^Rolling restart (\d+) of (\S+) is done\.$')


class BenchError(Exception):
    pass


def unit_escape(s: str) -> str:
    return s.replace('%', '%%').replace('$', '$$')


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def log_time(stamp: str) -> float:
    """'2024-05-01T12:00:00.123456Z' (the JSON log's time) → Unix seconds."""
    return datetime.datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
        tzinfo=datetime.timezone.utc).timestamp()


def json_log(path: str) -> list[tuple[float, str]]:
    """(time, message) of every JSON line of a baton daemon's log."""
    out = []
    try:
        with open(path, errors='replace') as f:
            for line in f:
                if not line.startswith('{'):
                    continue
                try:
                    o = json.loads(line)
                    out.append((log_time(o['time']), o.get('message', '')))
                except (ValueError, KeyError):
                    continue
    except FileNotFoundError:
        pass
    return out


def workload_log(path: str) -> list[dict]:
    """The workloads' own lines: {t, service, instance, event, pid}."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                m = WORKLOAD_LINE.match(line)
                if m:
                    out.append({'t': int(m[1]) / 1e6, 'service': m[2], 'instance': int(m[3]),
                                'event': m[4], 'pid': int(m[5])})
    except FileNotFoundError:
        pass
    return out


class Bench:
    def __init__(self, world: World, args):
        self.w = world
        self.args = args
        self.exe = world._need_binary(worldmod.build_path('tests', 'workloads',
                                                          'baton-test-service'))
        self.specs = os.path.join(world.dir, 'specs')
        os.makedirs(self.specs, exist_ok=True)
        self.logs = os.path.join(world.dir, 'workload-logs')
        os.makedirs(self.logs, exist_ok=True)
        self.hosts = {}
        self.agents = {}
        self.controller = None
        self.wire = None
        self.placed = {}  # instance → host of SERVICE
        self.serial_placed = {}  # instance → host of serial@

    def log(self, msg: str) -> None:
        print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)

    # -- helpers ---------------------------------------------------------------------------

    def procs(self) -> list:
        return [self.controller, *self.agents.values()]

    def check_alive(self, what: str) -> None:
        for p in self.procs():
            if not p.alive():
                raise BenchError(f'{p.name} exited while {what}:\n{p.log_tail()}')

    def ctl(self, *args: str, timeout: float = RPC_TIMEOUT) -> dict:
        """batonctl --json ARGS: the answer. Raises on failure."""
        r = self.w.batonctl('--json', '--timeout', f'{int(timeout)}s', *args,
                            timeout=timeout + 10)
        what = ' '.join(os.path.basename(x) for x in args)
        if r.returncode != 0:
            raise BenchError(f'batonctl {what} exited {r.returncode}: '
                             f'{r.stderr.strip()[-2000:]}')
        try:
            return json.loads(r.stdout)
        except ValueError as e:
            raise BenchError(f'batonctl {what}: not JSON ({e}): {r.stdout[:200]!r}') from None

    def wait(self, what: str, predicate, timeout: float = CONVERGE_TIMEOUT,
             interval: float = 0.1):
        """Poll predicate until it returns something true; BenchError after timeout or when a
        daemon died meanwhile."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                v = predicate()
            except BenchError as e:
                v, last = None, e
            if v:
                return v
            self.check_alive(f'waiting for {what}')
            if time.monotonic() >= deadline:
                raise BenchError(f'no {what} within {timeout:g}s' +
                                 (f' (last error: {last})' if last else ''))
            time.sleep(interval)

    def systemctl(self, host: str, *args: str):
        return self.hosts[host].systemctl(*args, timeout=60)

    def active_units(self, pattern: str) -> dict[str, set[str]]:
        """{host: active units matching pattern}, from the managers themselves."""
        out = {}
        for name, h in self.hosts.items():
            r = h.systemctl('list-units', '--state=active', '--plain', '--no-legend', pattern)
            out[name] = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
        return out

    def main_pids(self, service: str, placed: dict[int, str]) -> dict[int, str]:
        pids = {}
        for i, host in placed.items():
            pids[i] = self.hosts[host].unit_property(f'{service}@{i}.service', 'MainPID')
        return pids

    def write_spec(self, service: str) -> str:
        path = os.path.join(self.specs, f'{service}@.service')
        with open(path, 'w') as f:
            f.write(SPEC.format(service=service, exe=unit_escape(self.exe),
                                delay=self.args.ready_delay,
                                log=unit_escape(os.path.join(self.logs, f'{service}.log')),
                                n=N_UNITS, per_host=PER_HOST))
        return path

    # -- the world -------------------------------------------------------------------------

    def setup(self) -> None:
        a = self.args
        broker = self.w.start_broker()
        secret, public = self.w.keygen()
        level = {'BATON_LOG_LEVEL': a.log_level}
        for n in HOSTS:
            self.hosts[n] = self.w.add_host(n)
        # As world.start_controller() does, but at the level asked for and with JSON logs:
        # their times (µs) split each step below.
        conf = os.path.join(self.w.dir, 'controller.conf')
        worldmod.write_ini(conf, {
            'broker': {'url': broker.url, 'heartbeat': '2s'},
            'controller': {'database': os.path.join(self.w.dir, 'controller.db'),
                           'host_timeout': '30s'},
            'security': {'signing_key': secret, 'operators': 'guest'},
        }, None)
        self.controller = self.w.spawn('controller', [
            self.w._need_binary(worldmod.build_path('controller', 'baton-controller')),
            '--config', conf, '--log-format=json'], env=level, kind='controller')
        self.wait('the controller answering', lambda: self.ctl('ping', timeout=10), 60)
        # A copy of what goes over the wire, for the split of each step: every command the
        # hosts get and every unit event and result they send, with the sender's clock.
        if not a.no_wire:
            self.wire = self.w.listen(*[f'baton.cmd:{n}' for n in HOSTS], 'baton.status:*.unit',
                                      'baton.status:*.result', name='wire')
        for n in HOSTS:
            self.agents[n] = self.w.start_agent(self.hosts[n], config={
                'agent': {'manage_units': f'{SERVICE}@*.service fresh*@*.service',
                          'heartbeat_interval': a.heartbeat_interval},
                'security': {'controller_public_key': public}}, log_format='json', env=level)
        self.wait('three hosts up',
                  lambda: [h['state'] for h in self.ctl('hosts')['hosts']] == ['up'] * 3,
                  UP_TIMEOUT, interval=0.5)

        # The serial start loop's own units, 6 per host, installed (started by the loop).
        for k, n in enumerate(HOSTS):
            self.hosts[n].write_unit('serial@.service', SERIAL_UNIT.format(
                exe=unit_escape(self.exe), delay=a.ready_delay, host=n,
                log=unit_escape(os.path.join(self.logs, 'serial.log'))))
            for j in range(PER_HOST):
                self.serial_placed[k * PER_HOST + j] = n

        # The service every restart round works on.
        self.log(f'applying {SERVICE}: {N_UNITS} instances, MaxPerHost={PER_HOST}, '
                 f'MaxUnavailable=1, HealthyFor=0, ready {a.ready_delay} ms after start')
        doc = self.ctl('apply', self.write_spec(SERVICE))
        if not doc.get('applied') or doc.get('problems'):
            raise BenchError(f'apply of {SERVICE} did not place everything: {str(doc)[:2000]}')
        self.placed = {p['instance']: p['host'] for p in doc['placements']
                       if p['service'] == SERVICE}
        self.wait(f'{N_UNITS} instances of {SERVICE} active',
                  lambda: sum(map(len, self.active_units(f'{SERVICE}@*').values())) == N_UNITS)
        self.wait(f'{SERVICE} healthy in batonctl status',
                  lambda: self.ctl('status', SERVICE)['services'][0]['healthy'] == N_UNITS)
        per_host = {n: sorted(i for i, h in self.placed.items() if h == n) for n in HOSTS}
        self.log('placed: ' + ', '.join(f'{n} {per_host[n]}' for n in HOSTS))

    # -- start: serial loop against apply ---------------------------------------------------

    def serial_start(self) -> dict:
        units = [(i, self.serial_placed[i]) for i in range(N_UNITS)]
        for i, host in units:
            self.systemctl(host, 'stop', f'serial@{i}.service')
        if any(self.active_units('serial@*').values()):
            raise BenchError(f'serial units still active after stop: '
                             f'{self.active_units("serial@*")}')
        t0_rt = time.time()
        t0 = time.monotonic()
        for i, host in units:
            unit = f'serial@{i}.service'
            r = self.systemctl(host, 'start', unit)
            if r.returncode != 0:
                raise BenchError(f'systemctl start {unit} on {host}: {r.stderr.strip()}')
            r = self.systemctl(host, 'is-active', unit)
            if r.stdout.strip() != 'active':
                raise BenchError(f'{unit} on {host} is {r.stdout.strip()!r} after start')
        wall = time.monotonic() - t0
        return {'wall_s': wall, 't0': t0_rt}

    def baton_apply(self, rnd: int) -> dict:
        service = f'fresh{rnd}'
        spec = self.write_spec(service)
        log = os.path.join(self.logs, f'{service}.log')
        poll = self.args.poll
        t0_rt = time.time()
        t0 = time.monotonic()
        doc = self.ctl('apply', spec)
        t_answer = time.monotonic() - t0
        if not doc.get('applied') or doc.get('problems'):
            raise BenchError(f'apply of {service} did not place everything: {str(doc)[:2000]}')
        placed = {p['instance']: p['host'] for p in doc['placements'] if p['service'] == service}
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        while sum(map(len, self.active_units(f'{service}@*').values())) < N_UNITS:
            self.check_alive(f'waiting for {service} to be active')
            if time.monotonic() >= deadline:
                raise BenchError(f'{service}: not all {N_UNITS} instances active within '
                                 f'{CONVERGE_TIMEOUT:g}s: {self.active_units(f"{service}@*")}')
            time.sleep(poll)
        wall = time.monotonic() - t0
        readies = [e['t'] for e in workload_log(log) if e['event'] == 'ready']
        if len(readies) < N_UNITS:
            raise BenchError(f'{service}: {len(readies)} ready lines in {log}, '
                             f'expected {N_UNITS}')
        res = {'service': service, 'wall_s': wall, 'answer_s': t_answer,
               'last_ready_s': max(readies) - t0_rt,
               'first_ready_s': min(readies) - t0_rt,
               'hosts': {n: sum(1 for h in placed.values() if h == n) for n in HOSTS}}
        # Away again, not timed: the next round applies a fresh one.
        self.ctl('delete', service)
        self.wait(f'{service} gone', lambda: not any(self.active_units(f'{service}@*').values()))
        return res

    # -- restart: serial loop against a rolling restart ----------------------------------------

    def serial_restart(self) -> dict:
        before = self.main_pids(SERVICE, self.placed)
        t0_rt = time.time()
        t0 = time.monotonic()
        steps = []
        for i in range(N_UNITS):
            host, unit = self.placed[i], f'{SERVICE}@{i}.service'
            s0 = time.monotonic()
            r = self.systemctl(host, 'restart', unit)
            if r.returncode != 0:
                raise BenchError(f'systemctl restart {unit} on {host}: {r.stderr.strip()}')
            s1 = time.monotonic()
            r = self.systemctl(host, 'is-active', unit)
            if r.stdout.strip() != 'active':
                raise BenchError(f'{unit} on {host} is {r.stdout.strip()!r} after restart')
            steps.append({'instance': i, 'restart_s': s1 - s0,
                          'is_active_s': time.monotonic() - s1})
        wall = time.monotonic() - t0
        self.check_restarted('the serial loop', before)
        return {'wall_s': wall, 't0': t0_rt, 'steps': steps,
                'restart_call_s': median([s['restart_s'] for s in steps]),
                'is_active_call_s': median([s['is_active_s'] for s in steps])}

    def check_restarted(self, what: str, before: dict[int, str]) -> None:
        after = self.main_pids(SERVICE, self.placed)
        same = [i for i in before if after[i] in (before[i], '0')]
        if same:
            raise BenchError(f'{what} left {len(same)} units with their old (or no) main PID: '
                             f'instances {same}')
        down = {n: sorted(u) for n, u in self.active_units(f'{SERVICE}@*').items()}
        if sum(map(len, down.values())) != N_UNITS:
            raise BenchError(f'after {what} not all {N_UNITS} units are active: {down}')

    def baton_restart(self) -> dict:
        before = self.main_pids(SERVICE, self.placed)
        poll = self.args.poll
        t0_rt = time.time()
        t0 = time.monotonic()
        doc = self.ctl('restart', SERVICE)
        t_answer = time.monotonic() - t0
        rid = doc.get('rollout')
        if not isinstance(rid, int) or doc.get('instances') != N_UNITS:
            raise BenchError(f'batonctl restart {SERVICE}: unexpected answer {doc}')
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        polls = 0
        while True:
            ro = self.ctl('rollout', 'status', SERVICE)['rollouts']
            polls += 1
            ro = next((r for r in ro if r['id'] == rid), None)
            if ro is None:
                raise BenchError(f'rollout {rid} of {SERVICE} is not in rollout status')
            if ro['state'] == 'done':
                break
            if ro['state'] != 'running':
                raise BenchError(f'rollout {rid} of {SERVICE} is {ro["state"]}: {ro["reason"]}')
            self.check_alive('waiting for the rolling restart')
            if time.monotonic() >= deadline:
                raise BenchError(f'rollout {rid} of {SERVICE} not done within '
                                 f'{CONVERGE_TIMEOUT:g}s: {ro}')
            time.sleep(poll)
        wall = time.monotonic() - t0
        self.check_restarted(f'rolling restart {rid}', before)
        starts = sorted(it['started_at_us'] / 1e6 for it in ro['items'])
        return {'wall_s': wall, 't0': t0_rt, 'rollout': rid, 'answer_s': t_answer,
                'polls': polls, 'items': ro['items'],
                'first_sent_s': starts[0] - t0_rt, 'last_sent_s': starts[-1] - t0_rt}

    # -- where the time goes ---------------------------------------------------------------

    def analyse_rollout(self, res: dict, t_end: float) -> None:
        """Splits each step of a rolling restart by clocks that need no polling (all the same
        machine's): the rollout's own decision times (started_at_us), the envelopes' sent_at_us
        on the wire, the agents' JSON log and the workload's log."""
        t0 = res['t0']
        done_t = None
        for t, m in json_log(self.controller.log_path):
            mm = ROLLOUT_DONE.match(m)
            if t0 <= t <= t_end and mm and int(mm[1]) == res['rollout']:
                done_t = t
        agent = {n: [(t, m) for t, m in json_log(p.log_path) if t0 <= t <= t_end]
                 for n, p in self.agents.items()}
        wl = [e for e in workload_log(os.path.join(self.logs, f'{SERVICE}.log'))
              if t0 <= e['t'] <= t_end]
        wire = []
        if self.wire:
            for m in self.wire.messages():
                try:
                    sent_at = int(m['envelope']['sent_at_us']) / 1e6
                except (KeyError, TypeError, ValueError):
                    continue
                if t0 <= sent_at <= t_end:
                    wire.append((sent_at, m))

        def first(events, pred, after):
            return next((t for t, x in events if t >= after and pred(x)), None)

        items = sorted((it for it in res['items'] if it['started_at_us']),
                       key=lambda it: it['started_at_us'])
        steps = []
        for k, it in enumerate(items):
            i, decided = it['instance'], it['started_at_us'] / 1e6
            unit, host = f'{SERVICE}@{i}.service', self.placed[i]
            mine = [(e['t'], e['event']) for e in wl if e['instance'] == i]
            log = agent[host]
            restart = next(((t, m) for t, m in wire if t >= decided and
                            m['type'] == 'baton.v1.Restart' and m['body'].get('unit') == unit),
                           None)
            published = restart[0] if restart else None
            stopping = first(mine, lambda e: e == 'stop', decided)
            started = first(mine, lambda e: e == 'start', decided)
            ready = first(mine, lambda e: e == 'ready', decided)
            seen = first(log, lambda m: m.startswith(f'Unit {unit}: active/running '),
                         ready or decided)
            job = first(log, lambda m: m.startswith('Restart ') and f' of {unit}: ' in m,
                        decided)
            event = next(((t, m) for t, m in wire if t >= (seen or ready or decided) - 0.001 and
                          m['type'] == 'baton.v1.UnitEvent' and
                          m['body'].get('unit', {}).get('name') == unit and
                          m['body']['unit'].get('active_state') == 'active'), None)
            steps.append({
                'instance': i, 'host': host, 'decided': decided, 'published': published,
                'delivered': restart[1]['received_at_us'] / 1e6 if restart else None,
                'stopping': stopping, 'started': started,
                'ready': ready, 'agent_active': seen, 'agent_job_done': job,
                'event_sent': event[0] if event else None,
                'event_received': event[1]['received_at_us'] / 1e6 if event else None,
                'next': items[k + 1]['started_at_us'] / 1e6 if k + 1 < len(items) else done_t})

        def span(a, b):
            return b - a if a is not None and b is not None else None

        def seg(a, b, last=True):
            return [span(st[a], st[b]) for st in (steps if last else steps[:-1])]

        segs = {
            'decided → Restart published (controller: commit, publish)':
                seg('decided', 'published'),
            'published → delivered (broker, to the listener)': seg('published', 'delivered'),
            'delivered → old process got SIGTERM (agent, systemd)':
                seg('delivered', 'stopping'),
            'SIGTERM → new process started (systemd)': seg('stopping', 'started'),
            "started → ready (the workload's own delay)": seg('started', 'ready'),
            'ready → agent saw it active (systemd, D-Bus)': seg('ready', 'agent_active'),
            'agent saw active → UnitEvent published (agent)': seg('agent_active', 'event_sent'),
            'UnitEvent published → next decided (broker, controller)':
                seg('event_sent', 'next', last=False),
            '  (agent saw active → next decided)': seg('agent_active', 'next', last=False),
            '  (agent saw active → its restart job done)': seg('agent_active', 'agent_job_done'),
            'one step: decided → next decided': seg('decided', 'next', last=False),
        }
        res['steps'] = steps
        res['segments_ms'] = {k: (median(v) * 1000 if median(v) is not None else None)
                              for k, v in segs.items()}
        res['segments_sum_ms'] = {k: sum(x for x in v if x is not None) * 1000
                                  for k, v in segs.items()}
        res['done_logged_s'] = done_t - t0 if done_t else None
        readies = [st['ready'] for st in steps if st['ready']]
        res['last_ready_s'] = max(readies) - t0 if readies else None
        res['first_decided_s'] = steps[0]['decided'] - t0 if steps else None

    def analyse_serial(self, res: dict, t_end: float) -> None:
        """The serial loop's restarts by the workload's clock: stop → start → ready."""
        t0 = res['t0']
        wl = [e for e in workload_log(os.path.join(self.logs, f'{SERVICE}.log'))
              if t0 <= e['t'] <= t_end]
        spans = {'stop_to_start': [], 'start_to_ready': []}
        for i in range(N_UNITS):
            mine = [e for e in wl if e['instance'] == i]
            stop = next((e['t'] for e in mine if e['event'] == 'stop'), None)
            start = next((e['t'] for e in mine if e['event'] == 'start'), None)
            ready = next((e['t'] for e in mine if e['event'] == 'ready'), None)
            if stop and start:
                spans['stop_to_start'].append(start - stop)
            if start and ready:
                spans['start_to_ready'].append(ready - start)
        readies = [e['t'] for e in wl if e['event'] == 'ready']
        res['last_ready_s'] = max(readies) - t0 if readies else None
        res['segments_ms'] = {k: (median(v) * 1000 if v else None) for k, v in spans.items()}

    # -- rounds ----------------------------------------------------------------------------

    def run_round(self, rnd: int) -> dict:
        serial_first = rnd % 2 == 1
        out = {'round': rnd, 'serial_first': serial_first}

        def start_pair():
            first, second = ('serial', 'baton') if serial_first else ('baton', 'serial')
            for side in (first, second):
                if side == 'serial':
                    out['serial_start'] = self.serial_start()
                    self.log(f'round {rnd}: serial start loop: '
                             f'{out["serial_start"]["wall_s"]:.3f} s')
                else:
                    out['apply'] = self.baton_apply(rnd)
                    self.log(f'round {rnd}: apply → all active: {out["apply"]["wall_s"]:.3f} s '
                             f'(last ready {out["apply"]["last_ready_s"]:.3f} s)')
                time.sleep(self.args.settle)

        def restart_pair():
            first, second = ('serial', 'baton') if serial_first else ('baton', 'serial')
            for side in (first, second):
                if side == 'serial':
                    res = self.serial_restart()
                    self.analyse_serial(res, time.time())
                    out['serial_restart'] = res
                    self.log(f'round {rnd}: serial restart loop: {res["wall_s"]:.3f} s')
                else:
                    res = self.baton_restart()
                    time.sleep(0.5)  # the daemons' last log lines
                    self.analyse_rollout(res, res['t0'] + res['wall_s'] + 0.5)
                    out['rolling_restart'] = res
                    self.log(f'round {rnd}: rolling restart {res["rollout"]}: '
                             f'{res["wall_s"]:.3f} s polled, done logged '
                             f'{fmt_s(res["done_logged_s"])}, last ready '
                             f'{fmt_s(res["last_ready_s"])}')
                # Everything healthy again in the controller's eyes before the other side.
                self.wait(f'{SERVICE} healthy in batonctl status',
                          lambda: self.ctl('status', SERVICE)['services'][0]['healthy'] ==
                          N_UNITS, interval=0.1)
                time.sleep(self.args.settle)

        start_pair()
        restart_pair()
        out['ratio_restart'] = out['rolling_restart']['wall_s'] / out['serial_restart']['wall_s']
        out['ratio_start'] = out['apply']['wall_s'] / out['serial_start']['wall_s']
        return out


# -- report ----------------------------------------------------------------------------------


def fmt_s(s: float | None) -> str:
    if s is None:
        return '-'
    return f'{s * 1000:.0f} ms' if s < 1 else f'{s:.3f} s'


def fmt_ms(ms: float | None) -> str:
    return '-' if ms is None else f'{ms:.1f} ms'


def summarize(rounds: list[dict]) -> dict:
    def med(path):
        vals = []
        for r in rounds:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            vals.append(v)
        return median(vals)

    s = {
        'serial_start_s': med(['serial_start', 'wall_s']),
        'apply_s': med(['apply', 'wall_s']),
        'apply_last_ready_s': med(['apply', 'last_ready_s']),
        'serial_restart_s': med(['serial_restart', 'wall_s']),
        'serial_restart_last_ready_s': med(['serial_restart', 'last_ready_s']),
        'rolling_restart_s': med(['rolling_restart', 'wall_s']),
        'rolling_done_logged_s': med(['rolling_restart', 'done_logged_s']),
        'rolling_last_ready_s': med(['rolling_restart', 'last_ready_s']),
        'rolling_first_decided_s': med(['rolling_restart', 'first_decided_s']),
        'ratio_restart_per_round': med(['ratio_restart']),
        'ratio_start_per_round': med(['ratio_start']),
    }
    s['ratio_restart'] = s['rolling_restart_s'] / s['serial_restart_s']
    s['ratio_start'] = s['apply_s'] / s['serial_start_s']
    if s['rolling_done_logged_s']:
        s['ratio_restart_logged'] = s['rolling_done_logged_s'] / s['serial_restart_s']
    segs = {}
    for k in rounds[0]['rolling_restart']['segments_ms']:
        segs[k] = median([r['rolling_restart']['segments_ms'].get(k) for r in rounds])
    s['rolling_segments_ms'] = segs
    s['serial_segments_ms'] = {
        k: median([r['serial_restart']['segments_ms'].get(k) for r in rounds])
        for k in rounds[0]['serial_restart']['segments_ms']}
    s['serial_restart_call_ms'] = median([r['serial_restart']['restart_call_s']
                                          for r in rounds]) * 1000
    s['serial_is_active_call_ms'] = median([r['serial_restart']['is_active_call_s']
                                            for r in rounds]) * 1000
    return s


def report(args, rounds: list[dict], s: dict) -> str:
    lines = []
    add = lines.append
    add('')
    add(f'baton rollout benchmark: {N_UNITS} units (Type=notify, ready {args.ready_delay} ms '
        f'after start) on {len(HOSTS)} real systemd --user managers, {PER_HOST} per host, '
        f'MaxUnavailable=1, HealthyFor=0; {len(rounds)} rounds, poll every '
        f'{args.poll * 1000:.0f} ms; {os.cpu_count()} cores')
    add('')
    cols = [f'round {r["round"]}' + (' (s→b)' if r['serial_first'] else ' (b→s)')
            for r in rounds] + ['median']
    width = max(16, *(len(c) + 2 for c in cols))
    add(f'{"":52}' + ''.join(f'{c:>{width}}' for c in cols))

    def row(label, values):
        add(f'{label:52}' + ''.join(f'{v:>{width}}' for v in values))

    def get(r, *path):
        for k in path:
            r = r.get(k) if isinstance(r, dict) else None
        return r

    def fig(label, path, key, ratio=False):
        vals = [get(r, *path) for r in rounds]
        if ratio:
            row(label, [f'{v:.2f}×' if v is not None else '-' for v in vals] +
                [f'{s[key]:.2f}×' if s.get(key) is not None else '-'])
        else:
            row(label, [fmt_s(v) for v in vals] + [fmt_s(s.get(key))])

    fig('serial: systemctl start; is-active × 18', ['serial_start', 'wall_s'], 'serial_start_s')
    fig('baton: apply → all 18 active (polled)', ['apply', 'wall_s'], 'apply_s')
    fig('  last instance ready (workload log)', ['apply', 'last_ready_s'], 'apply_last_ready_s')
    fig('  apply ÷ serial start', ['ratio_start'], 'ratio_start', ratio=True)
    fig('serial: systemctl restart; is-active × 18', ['serial_restart', 'wall_s'],
        'serial_restart_s')
    fig('  last instance ready (workload log)', ['serial_restart', 'last_ready_s'],
        'serial_restart_last_ready_s')
    fig('baton: restart → rollout status done (polled)', ['rolling_restart', 'wall_s'],
        'rolling_restart_s')
    fig('  first restart decided (rollout status)', ['rolling_restart', 'first_decided_s'],
        'rolling_first_decided_s')
    fig('  done, by the controller\'s log', ['rolling_restart', 'done_logged_s'],
        'rolling_done_logged_s')
    fig('  last instance ready (workload log)', ['rolling_restart', 'last_ready_s'],
        'rolling_last_ready_s')
    fig('  rolling ÷ serial restart', ['ratio_restart'], 'ratio_restart', ratio=True)
    add('')
    add(f'ratios of the medians: rolling restart ÷ serial restart loop {s["ratio_restart"]:.2f}× '
        f'(issue 11 asks at most 1.2×), apply ÷ serial start loop {s["ratio_start"]:.2f}×')
    add('')
    add('where one step of the rolling restart goes (median over steps, then over rounds):')
    for k, v in s['rolling_segments_ms'].items():
        add(f'  {k:62}{fmt_ms(v):>12}')
    add('one unit of the serial loop (median):')
    add(f'  {"systemctl restart (returns when the unit is active)":62}'
        f'{fmt_ms(s["serial_restart_call_ms"]):>12}')
    add(f'  {"systemctl is-active":62}{fmt_ms(s["serial_is_active_call_ms"]):>12}')
    add(f'  {"one unit: restart + is-active":62}'
        f'{fmt_ms(s["serial_restart_call_ms"] + s["serial_is_active_call_ms"]):>12}')
    add(f'  {"SIGTERM → new process started (systemd)":62}'
        f'{fmt_ms(s["serial_segments_ms"]["stop_to_start"]):>12}')
    label = "started → ready (the workload's delay)"
    add(f'  {label:62}{fmt_ms(s["serial_segments_ms"]["start_to_ready"]):>12}')
    add('')
    return '\n'.join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--rounds', type=int, default=3,
                    help='rounds of each comparison, alternating which side goes first '
                    '(default 3)')
    ap.add_argument('--ready-delay', type=int, default=50, metavar='MS',
                    help="the workload's start time: READY=1 this long after exec (default 50)")
    ap.add_argument('--poll', type=float, default=0.02, metavar='S',
                    help='pause between polls of rollout status and of the managers '
                    '(default 0.02)')
    ap.add_argument('--settle', type=float, default=1.0, metavar='S',
                    help='pause between measurements (default 1)')
    ap.add_argument('--heartbeat-interval', default='5s',
                    help="the agents' heartbeat_interval (default 5s, the agent's default)")
    ap.add_argument('--log-level', default='info', choices=['info', 'debug'],
                    help="the controller's and agents' log level (default info; the per-step "
                    'split needs only info)')
    ap.add_argument('--no-wire', action='store_true',
                    help='no listener on the wire (the split of each step then lacks when '
                    'commands and unit events were published)')
    ap.add_argument('--json', metavar='FILE', help='also write every figure as JSON to FILE')
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error('--rounds: at least 1')
    if not 0 <= args.ready_delay <= 60000:
        ap.error('--ready-delay: 0..60000')
    if args.poll <= 0 or args.settle < 0:
        ap.error('--poll must be positive, --settle not negative')

    with World('rollout-bench') as w:
        b = Bench(w, args)
        try:
            b.setup()
            rounds = [b.run_round(r) for r in range(1, args.rounds + 1)]
        except BenchError as e:
            print(f'benchmark failed: {e}', file=sys.stderr)
            return 1
        summary = summarize(rounds)
    print(report(args, rounds, summary))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'hosts': HOSTS, 'units': N_UNITS,
                       'cores': os.cpu_count(), 'date': time.strftime('%Y-%m-%d'),
                       'rounds': rounds, 'summary': summary}, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
