#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The controller scale benchmark: the real baton-controller and batonctl against a simulated
fleet (baton-bench-agents: one process, a few AMQP connections, agents that apply a Placement at
once) on an isolated rabbitmq-server on loopback.

For each fleet size (a small point and the full one, so per-host slopes can be given) it starts
a fresh controller on a vhost of its own, then measures: idle RSS; hosts up; `batonctl apply` of
UNITS template services with Replicas=HOSTS and MaxPerHost=2, so every host runs UNITS units;
the time until every simulated agent applied its Placement and until `batonctl status` shows
every instance healthy; controller CPU and memory over a steady window; `batonctl` round trips;
and the time to re-place the units of one host that is stopped.

Every figure is also given as a ratio against the floor measured in the same run: a persistent
message with publisher confirms through the same broker, and `batonctl ping` against the idle
controller. The benchmark never fails for being slow: it exits 1 only when the fleet does not
converge at all within generous limits, or a process fails.

usage: run-bench.py [--hosts N] [--units N] [--duration S] [--small N] [--connections N]
                    [--heartbeat-interval D] [--host-timeout D] [--lose N]
                    [--before BUILD_DIR] [--json FILE]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))

import world as worldmod  # noqa: E402
from events import Alerts  # noqa: E402
from world import World  # noqa: E402

CLK_TCK = os.sysconf('SC_CLK_TCK')
# Limits for things that must happen at all; generous so that a slow machine is only slow.
UP_TIMEOUT = 300.0
CONVERGE_TIMEOUT = 900.0
RPC_TIMEOUT = 120.0
RPC_REPEAT = 5
REQUEST_BUSY = re.compile(r"Request '[^']*' of \S* kept the loop busy for (\d+) ms")
# The controller notes a turn of its loop over 100 ms (one a second at most) with its
# longest part.
LONG_TURN = re.compile(r"A turn of the loop took (\d+) ms \(the longest part: ([^,]*), (\d+) ms; "
                       r"CPU (\d+) ms; waiting for a CPU (?:unknown, )?(\d+) ms")
# After host_timeout, how long a lost group may take to be re-placed before the benchmark
# reports it as not settled (and goes on).
SETTLE_TIMEOUT = 120.0
# Simulated hosts per AMQP connection by default, and the simulator's limit.
HOSTS_PER_CONNECTION = 200
MAX_SIM_CONNECTIONS = 64
# During a loss, the heartbeats of every HEARTBEAT_SAMPLE-th surviving host are
# read on a queue of their own: how late they reach the broker.
HEARTBEAT_SAMPLE = 50

SPEC = """[Unit]
Description=baton benchmark service {i} instance %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas={replicas}
MaxPerHost=2
"""


class BenchError(Exception):
    pass


def duration_seconds(text: str) -> float:
    """'5s', '500ms', '2min' → seconds (the subset of systemd's syntax the options need)."""
    units = [('ms', 0.001), ('min', 60.0), ('s', 1.0), ('h', 3600.0)]
    t = text.strip()
    for suffix, mult in units:
        if t.endswith(suffix):
            try:
                return float(t[:-len(suffix)]) * mult
            except ValueError:
                break
    raise argparse.ArgumentTypeError(f'not a duration: {text!r} (use e.g. 500ms, 5s, 2min)')


def duration_arg(text: str) -> str:
    if duration_seconds(text) <= 0:
        raise argparse.ArgumentTypeError(f'must be positive: {text!r}')
    return text


# -- /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid, in seconds."""
    with open(f'/proc/{pid}/stat') as f:
        data = f.read()
    fields = data[data.rfind(')') + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(value.split()[0])
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def envelope_sent_at_us(body: bytes) -> int | None:
    """Envelope.sent_at_us (field 3, a varint) of a baton message, without protobuf."""
    def varint(i):
        v = shift = 0
        while True:
            b = body[i]
            i += 1
            v |= (b & 0x7f) << shift
            shift += 7
            if b < 0x80:
                return v, i
    i = 0
    try:
        while i < len(body):
            key, i = varint(i)
            kind = key & 7
            if kind == 0:
                v, i = varint(i)
                if key >> 3 == 3:
                    return v
            elif kind == 2:
                size, i = varint(i)
                i += size
            elif kind == 1:
                i += 8
            elif kind == 5:
                i += 4
            else:
                return None
    except IndexError:
        return None
    return None


class HeartbeatDelays:
    """How late the heartbeats of some hosts reach the broker: a queue of its own bound
    to their heartbeats, read as they come (this machine's clock is the agents' too)."""

    def __init__(self, broker: 'VhostBroker', hosts: list[str]):
        self.broker, self.hosts = broker, hosts
        self.delays: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        conn = self.broker.pika_connection()
        ch = conn.channel()
        q = ch.queue_declare(queue='', exclusive=True).method.queue
        for h in self.hosts:
            ch.queue_bind(queue=q, exchange='baton.status', routing_key=f'{h}.heartbeat')
        for method, _, body in ch.consume(q, auto_ack=True, inactivity_timeout=0.5):
            if self.stop.is_set():
                break
            if method is None:
                continue
            sent = envelope_sent_at_us(body)
            if sent:
                self.delays.append(time.time() - sent / 1e6)
        conn.close()

    def finish(self) -> dict:
        self.stop.set()
        self.thread.join(timeout=10)
        d = sorted(self.delays)
        if not d:
            return {'heartbeats': 0}
        return {'heartbeats': len(d), 'p50_s': d[len(d) // 2],
                'p99_s': d[int(0.99 * (len(d) - 1))], 'max_s': d[-1]}


# -- the benchmark ---------------------------------------------------------------------------


class VhostBroker:
    """The broker, as events.Alerts sees it, on one point's vhost."""

    def __init__(self, broker, url: str):
        self.broker, self.url = broker, url

    def pika_connection(self):
        import pika
        return pika.BlockingConnection(pika.URLParameters(self.url))


class Bench:
    def __init__(self, world: World, args):
        self.w = world
        self.args = args
        self.hb_s = duration_seconds(args.heartbeat_interval)
        self.sim = world._need_binary(worldmod.build_path('tests', 'bench', 'baton-bench-agents'))
        self.controller_bin = world._need_binary(
            worldmod.build_path('controller', 'baton-controller'))
        self.batonctl = world._need_binary(worldmod.build_path('controller', 'ctl', 'batonctl'))
        self.label = 'this build'
        self.builds = {'this build': (self.controller_bin, self.sim, self.batonctl)}
        if args.before:
            ctl = next((os.path.join(args.before, *parts) for parts in
                        (('controller', 'ctl', 'batonctl'), ('controller', 'batonctl'))
                        if os.access(os.path.join(args.before, *parts), os.X_OK)), None)
            bins = (os.path.join(args.before, 'controller', 'baton-controller'),
                    os.path.join(args.before, 'tests', 'bench', 'baton-bench-agents'), ctl)
            if not all(b and os.access(b, os.X_OK) for b in bins):
                raise BenchError(f'--before {args.before}: no controller, batonctl and '
                                 'baton-bench-agents built there')
            self.builds = {'before': bins, **self.builds}
        self.secret, self.public = world.keygen()
        self.broker = world.start_broker()
        self.floor = None

    def connections(self, hosts: int) -> int:
        """AMQP connections for `hosts` simulated hosts: --connections, or one per
        HOSTS_PER_CONNECTION (real agents have one each; thousands of hosts on one
        connection wait behind each other in the broker's flow control, and their
        heartbeats reach it minutes late)."""
        if self.args.connections:
            return self.args.connections
        return max(1, min(MAX_SIM_CONNECTIONS, -(-hosts // HOSTS_PER_CONNECTION)))

    def log(self, msg: str) -> None:
        print(f'[{time.strftime("%H:%M:%S")}] {msg}', flush=True)

    # -- helpers ---------------------------------------------------------------------------

    def ctl(self, url: str, *args: str, timeout: float = RPC_TIMEOUT) -> tuple[dict, float]:
        """batonctl --json ARGS against url: (answer, wall seconds). Raises on failure."""
        t0 = time.monotonic()
        try:
            r = subprocess.run([self.batonctl, '--broker', url, '--json', '--timeout',
                                f'{int(timeout)}s', *args], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=timeout + 10,
                               cwd=self.w.dir)
        except subprocess.TimeoutExpired:
            raise BenchError(f'batonctl {" ".join(args)}: no answer within {timeout + 10:g}s') \
                from None
        dt = time.monotonic() - t0
        what = ' '.join(os.path.basename(x) for x in args)
        if r.returncode != 0:
            raise BenchError(f'batonctl {what} exited {r.returncode}: '
                             f'{r.stderr.strip()[-2000:]}')
        try:
            return json.loads(r.stdout), dt
        except ValueError as e:
            raise BenchError(f'batonctl {what}: not JSON ({e}): {r.stdout[:200]!r}') from None

    def wait(self, what: str, predicate, timeout: float, interval: float = 0.5,
             procs: list = ()):
        """Poll predicate until it returns something true; BenchError after timeout or when
        one of procs died meanwhile."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                v = predicate()
            except BenchError as e:
                v, last = None, e
            if v:
                return v
            for p in procs:
                if not p.alive():
                    raise BenchError(f'{p.name} exited while waiting for {what}:\n'
                                     f'{p.log_tail()}')
            if time.monotonic() >= deadline:
                raise BenchError(f'no {what} within {timeout:g}s' +
                                 (f' (last error: {last})' if last else ''))
            time.sleep(interval)

    @staticmethod
    def stats(path: str) -> dict:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    # -- the floor ---------------------------------------------------------------------------

    def measure_floor(self) -> dict:
        self.log('floor: broker round trip of a persistent message with publisher confirms')
        p = self.w.spawn('floor', [self.sim, 'floor', '--broker', self.broker.url,
                                   '--count', str(self.args.floor_count)])
        rc = p.wait(300)
        if rc != 0:
            raise BenchError(f'baton-bench-agents floor exited {rc}:\n{p.log_tail()}')
        lines = [line for line in p.log().splitlines() if line.startswith('{')]
        if not lines:
            raise BenchError(f'baton-bench-agents floor printed no result:\n{p.log_tail()}')
        self.floor = json.loads(lines[-1])
        self.log(f'floor: p50 {self.floor["rtt_p50_us"]} µs, p99 {self.floor["rtt_p99_us"]} µs')
        return self.floor

    # -- one fleet size ------------------------------------------------------------------------

    def run_point(self, n: int, label: str) -> dict:
        a = self.args
        units = a.units
        self.label = label
        self.controller_bin, self.sim, self.batonctl = self.builds[label]
        tag = f'{n}-{"before" if label == "before" else "now"}'
        res = {'hosts': n, 'units_per_host': units, 'instances': n * units, 'build': label}
        vhost = f'/bench-{tag}'
        self.broker.add_vhost(vhost)
        url = worldmod.url_for(self.broker.port, vhost)
        dir = os.path.join(self.w.dir, f'point-{tag}')
        os.makedirs(os.path.join(dir, 'specs'), exist_ok=True)
        conf = os.path.join(dir, 'controller.conf')
        worldmod.write_ini(conf, {
            'broker': {'url': url},
            'controller': {'id': 'bench', 'database': os.path.join(dir, 'controller.db'),
                           'host_timeout': a.host_timeout},
            'security': {'signing_key': self.secret, 'operators': 'guest'},
        }, None)

        # The production log level: debug lines per message would be measured too.
        ctl = self.w.spawn(f'controller-{n}', [self.controller_bin, '--config', conf],
                           env={'BATON_LOG_LEVEL': 'info'}, kind='controller')
        self.wait('controller answering', lambda: self.ctl(url, 'ping', timeout=10)[0], 60,
                  procs=[ctl])
        time.sleep(2)
        res['idle'] = memory_kb(ctl.pid)
        pings = [self.ctl(url, 'ping')[1] for _ in range(RPC_REPEAT * 2)]
        res['ping_idle_s'] = p50(pings)
        self.log(f'{n} hosts: controller idle RSS {res["idle"]["VmRSS"]} kB, '
                 f'batonctl ping {res["ping_idle_s"] * 1000:.1f} ms')

        # The fleet: all hosts but the last in one process, the last alone, so that stopping
        # it is stopping one host.
        common = ['--broker', url, '--heartbeat-interval', a.heartbeat_interval,
                  '--controller-public-key', self.public]
        # ... and, with --lose, a group of that many hosts before it that stops at once.
        lose = a.lose if 0 < a.lose < n - 2 else 0
        stat_paths = [os.path.join(dir, 'agents.json')]
        sims = [self.w.spawn(f'agents-{tag}', [
            self.sim, *common, '--hosts', str(n - 1 - lose),
            '--connections', str(self.connections(n - 1 - lose)),
            '--stats', stat_paths[-1]])]
        loss_proc = None
        if lose:
            stat_paths.append(os.path.join(dir, 'lose.json'))
            loss_proc = self.w.spawn(f'lose-{tag}', [
                self.sim, *common, '--hosts', str(lose), '--first', str(n - 1 - lose),
                '--connections', str(self.connections(lose)), '--stats', stat_paths[-1]])
            sims.append(loss_proc)
        stat_paths.append(os.path.join(dir, 'victim.json'))
        victim_proc = self.w.spawn(f'victim-{tag}', [
            self.sim, *common, '--hosts', '1', '--first', str(n - 1), '--connections', '1',
            '--stats', stat_paths[-1]])
        sims.append(victim_proc)
        victim = f'sim-{n - 1:04d}'
        procs = [ctl, *sims]

        t0 = time.monotonic()
        self.wait(f'{n} hosts up', lambda: self.ctl(url, 'ping')[0]['hosts_up'] == n,
                  UP_TIMEOUT, interval=1.0, procs=procs)
        res['hosts_up_s'] = time.monotonic() - t0
        time.sleep(2)
        res['up'] = memory_kb(ctl.pid)
        self.log(f'{n} hosts: all up after {res["hosts_up_s"]:.1f}s, '
                 f'RSS {res["up"]["VmRSS"]} kB')

        # Apply UNITS services, one instance of each per host.
        specs = []
        for i in range(units):
            path = os.path.join(dir, 'specs', f'bench{i:02d}@.service')
            with open(path, 'w') as f:
                f.write(SPEC.format(i=i, replicas=n))
            specs.append(path)
        cpu0 = cpu_seconds(ctl.pid)
        t_apply = time.monotonic()
        t_apply_rt = time.time()
        applied, res['apply_s'] = self.ctl(url, 'apply', *specs)
        if not applied.get('applied') or applied.get('problems'):
            raise BenchError(f'apply did not place everything: {str(applied)[:2000]}')

        def agents_done():
            st = [self.stats(p) for p in stat_paths]
            return (sum(s.get('hosts_applied', 0) for s in st) == n and
                    sum(s.get('units_active', 0) for s in st) == n * units)

        self.wait('every simulated agent running its units', agents_done, CONVERGE_TIMEOUT,
                  interval=0.2, procs=procs)
        # The agents' own clock (the same machine's) says when the last one applied: no
        # polling delay in the figure.
        res['converge_agents_s'] = max(
            self.stats(p)['last_apply_us'] for p in stat_paths) / 1e6 - t_apply_rt

        # The controller has caught up once it has received every report the agents sent
        # so far (heartbeats, unit events, results): its CPU until then is the cost of the
        # change, before any `batonctl status` below adds its own.
        # Heartbeats may expire in the queue of a controller far behind (the broker
        # drops them): unit events and results never do, and count alone when the
        # controller says how many of its own markers it read.
        stats = list(map(self.stats, stat_paths))
        sent = sum(st.get('heartbeats_sent', 0) + st.get('unit_events_sent', 0) +
                   st.get('results_sent', 0) for st in stats)
        sent_kept = sum(st.get('unit_events_sent', 0) + st.get('results_sent', 0)
                        for st in stats)

        def caught_up():
            c = self.ctl(url, 'ping')[0]['counters']
            if 'markers' in c:
                return c['status_received'] - c['heartbeats'] - c['markers'] >= sent_kept
            return c['status_received'] >= sent

        self.wait('the controller caught up with the reports', caught_up,
                  CONVERGE_TIMEOUT, interval=0.2, procs=procs)
        res['converge_controller_s'] = time.monotonic() - t_apply
        res['converge_cpu_s'] = cpu_seconds(ctl.pid) - cpu0

        def all_healthy(exclude: str | None = None):
            st, _ = self.ctl(url, 'status')
            svcs = st.get('services', [])
            if len(svcs) != units:
                return False
            for s in svcs:
                if s['count'] != n or s['healthy'] != n:
                    return False
                # A summary above 200 instances: then healthy == count says
                # that none is on the stopped host.
                if exclude and any(i['host'] == exclude for i in s.get('instances', [])):
                    return False
            return True

        self.wait('every instance healthy in batonctl status', all_healthy, CONVERGE_TIMEOUT,
                  interval=1.0, procs=procs)
        res['converge_status_s'] = time.monotonic() - t_apply
        self.log(f'{n} hosts: converged: agents {res["converge_agents_s"]:.1f}s, '
                 f'status {res["converge_status_s"]:.1f}s after apply')

        # Steady state: only heartbeats, after every host has sent a few with its units.
        time.sleep(max(2 * self.hb_s, 5.0))
        sim_pids = [p.pid for p in sims]
        beam = self.broker.pid
        c0, s0 = cpu_seconds(ctl.pid), sum(cpu_seconds(p) for p in sim_pids)
        b0 = cpu_seconds(beam) if beam else None
        hb0 = self.ctl(url, 'ping')[0]['counters']['heartbeats']
        t0 = time.monotonic()
        peak_rss = 0
        while time.monotonic() - t0 < a.duration:
            peak_rss = max(peak_rss, memory_kb(ctl.pid)['VmRSS'])
            for p in procs:
                if not p.alive():
                    raise BenchError(f'{p.name} exited during the steady window:\n'
                                     f'{p.log_tail()}')
            time.sleep(min(1.0, max(0.0, a.duration - (time.monotonic() - t0))))
        c1, s1 = cpu_seconds(ctl.pid), sum(cpu_seconds(p) for p in sim_pids)
        b1 = cpu_seconds(beam) if beam else None
        window = time.monotonic() - t0
        hb1 = self.ctl(url, 'ping')[0]['counters']['heartbeats']
        heartbeats = hb1 - hb0
        res['window_s'] = window
        res['heartbeats'] = heartbeats
        res['heartbeats_per_s'] = heartbeats / window
        res['cpu_pct'] = 100.0 * (c1 - c0) / window
        res['cpu_us_per_heartbeat'] = (c1 - c0) * 1e6 / heartbeats if heartbeats else None
        res['sim_cpu_pct'] = 100.0 * (s1 - s0) / window
        res['broker_cpu_pct'] = 100.0 * (b1 - b0) / window if beam else None
        mem = memory_kb(ctl.pid)
        res['steady'] = {'VmRSS': mem['VmRSS'], 'VmHWM': mem['VmHWM'],
                         'peak_VmRSS': max(peak_rss, mem['VmRSS'])}
        res['kb_per_host'] = (mem['VmRSS'] - res['idle']['VmRSS']) / n
        self.log(f'{n} hosts: steady: CPU {res["cpu_pct"]:.2f}% of a core, '
                 f'{res["heartbeats_per_s"]:.0f} heartbeats/s, '
                 f'{res["cpu_us_per_heartbeat"] or 0:.0f} µs CPU per heartbeat, '
                 f'RSS {mem["VmRSS"]} kB (peak {mem["VmHWM"]} kB)')

        # batonctl round trips, after the window so they do not count in its CPU.
        rpc = {}
        for name, args in [('ping', ['ping']), ('hosts', ['hosts']), ('hosts --all', ['hosts', '--all']),
                           ('status SERVICE', ['status', 'bench00']), ('status', ['status']),
                           ('status --all', ['status', '--all']),
                           ('plan', ['plan', *specs]), ('plan --all', ['plan', '--all', *specs])]:
            if name.endswith('--all') and self.label == 'before':
                continue  # no such option before
            times, size, busy = [], 0, []
            for _ in range(a.rpc_repeat):
                mark = len(ctl.log())
                answer, dt = self.ctl(url, *args)
                times.append(dt)
                size = len(json.dumps(answer))
                # The controller logs a request that held its loop for 100 ms or more.
                busy.append(max([int(m) for m in REQUEST_BUSY.findall(ctl.log()[mark:])],
                                default=0))
            if name == 'hosts --all' and len(answer.get('hosts', [])) != n:
                raise BenchError(f'batonctl hosts lists {len(answer.get("hosts", []))} hosts, '
                                 f'expected {n}')
            rpc[name] = {'p50_s': p50(times), 'max_s': max(times), 'json_bytes': size,
                         'loop_busy_max_s': max(busy) / 1000}
        res['rpc'] = rpc

        # One host stops: its units must run elsewhere. Down after host_timeout, then
        # re-placed; the time after detection is what the controller adds.
        # Times come from the controller's state_since_us and the agents' last apply (the
        # same machine's clock), not from when this script happened to poll.
        t_stop_rt = time.time()
        self.stop(victim_proc)

        def victim_down():
            hosts = self.ctl(url, 'hosts')[0]['hosts']
            return next((h['state_since_us'] / 1e6 for h in hosts
                         if h['host'] == victim and h['state'] == 'down'), None)

        down_rt = self.wait(f'{victim} down', victim_down, CONVERGE_TIMEOUT, interval=0.5,
                            procs=[ctl])
        live_stats = stat_paths[:-1]
        self.wait(f'the units of {victim} running on other hosts',
                  lambda: sum(self.stats(p).get('units_active', 0) for p in live_stats) ==
                  n * units, CONVERGE_TIMEOUT, interval=0.2, procs=[ctl, *sims[:-1]])
        moved_rt = max(self.stats(p)['last_apply_us'] for p in live_stats) / 1e6
        self.wait(f'batonctl status healthy without {victim}',
                  lambda: all_healthy(exclude=victim), CONVERGE_TIMEOUT, interval=0.5,
                  procs=[ctl, *sims[:-1]])
        healthy_rt = time.time()
        res['replace'] = {'down_s': down_rt - t_stop_rt, 'moved_after_down_s': moved_rt - down_rt,
                          'healthy_after_down_polled_s': healthy_rt - down_rt}
        self.log(f'{n} hosts: {victim} down {down_rt - t_stop_rt:.1f}s after it stopped, its '
                 f'units running elsewhere {moved_rt - down_rt:.3f}s later, status seen healthy '
                 f'{healthy_rt - down_rt:.2f}s later')
        if loss_proc:
            # What heartbeats cost per second, to tell the transitions' share.
            base = (res['cpu_pct'] / 100.0) * (n - 1 - lose) / n
            res['loss'] = self.lose_group(url, ctl, sims[0], stat_paths[0], loss_proc, n, lose,
                                          base)
            procs.remove(loss_proc)  # killed
        res['final'] = memory_kb(ctl.pid)
        try:
            counters = self.ctl(url, 'ping')[0]['counters']
        except BenchError:
            counters = {}
        for key in ('longest_step_ms', 'longest_busy_ms', 'busy_over_100ms',
                    'longest_busy_cpu_ms', 'busy_cpu_over_100ms', 'longest_busy_own_ms',
                    'busy_own_over_100ms'):
            res[key] = counters.get(key)
        # What the long turns were doing: by longest part, how many were noted and the
        # longest of them.
        parts = {}
        for took, part, _, cpu, delay in LONG_TURN.findall(ctl.log()):
            seen = parts.setdefault(part, {'turns': 0, 'max_ms': 0, 'max_cpu_ms': 0,
                                           'max_own_ms': 0})
            seen['turns'] += 1
            seen['max_ms'] = max(seen['max_ms'], int(took))
            seen['max_cpu_ms'] = max(seen['max_cpu_ms'], int(cpu))
            seen['max_own_ms'] = max(seen['max_own_ms'], int(took) - int(delay))
        res['long_turns'] = parts
        res['sim_stats'] = [self.stats(p) for p in stat_paths]
        refused = sum(st.get('refused', 0) for st in res['sim_stats'])
        if refused:
            raise BenchError(f'the simulated agents refused {refused} commands (bad signature, '
                             f'host or epoch): see {sims[0].log_path}')

        for p in reversed(procs):
            self.stop(p)
        return res

    def lose_group(self, url, ctl, survivors, survivors_stats, loss_proc, n, lose,
                   base_cpu_per_s) -> dict:
        """`lose` hosts stop at once (a rack): when are they down, when do their units run
        on the others, does any other host go down or stop a unit, how long does `batonctl
        ping` take meanwhile, and what does each transition cost the controller: its CPU
        from shortly before the first could be declared down until their units run
        elsewhere, less what the survivors' heartbeats cost in that time at the steady
        rate (`base_cpu_per_s`, CPU seconds per second)."""
        units = self.args.units
        timeout = duration_seconds(self.args.host_timeout)
        alerts = Alerts(VhostBroker(self.broker, url))
        before = self.stats(survivors_stats)
        pings, stop_pinging = [], threading.Event()

        def pinger():
            while not stop_pinging.is_set():
                try:
                    pings.append(self.ctl(url, 'ping', timeout=30)[1])
                except BenchError:
                    pings.append(30.0)
                stop_pinging.wait(0.25)

        thread = threading.Thread(target=pinger, daemon=True)
        sampled = HeartbeatDelays(VhostBroker(self.broker, url),
                                  [f'sim-{i:04d}' for i in range(0, n - 1 - lose,
                                                                 HEARTBEAT_SAMPLE)])
        try:
            c0 = self.ctl(url, 'ping')[0]['counters']
        except BenchError:
            c0 = {}
        cpu0, t_kill, t_kill_rt = cpu_seconds(ctl.pid), time.monotonic(), time.time()
        thread.start()
        loss_proc.kill()
        res = {'lose': lose, 'settled': False}
        deadline = t_kill + timeout + SETTLE_TIMEOUT
        up_target = n - 1 - lose
        down_at = moved_at = None
        cpu_pre = t_pre = None
        while time.monotonic() < deadline:
            if cpu_pre is None and time.monotonic() >= t_kill + timeout - 3.0:
                cpu_pre, t_pre = cpu_seconds(ctl.pid), time.monotonic()
            try:
                up = self.ctl(url, 'ping', timeout=30)[0]['hosts_up']
            except BenchError:
                continue  # not answering: measured by the pings above
            if down_at is None and up <= up_target:
                down_at = time.monotonic()
            if down_at is not None and \
                    self.stats(survivors_stats).get('units_active', 0) == n * units:
                moved_at = time.monotonic()
                break
            time.sleep(0.2)
        cpu1, t1 = cpu_seconds(ctl.pid), time.monotonic()
        if cpu_pre is None:
            cpu_pre, t_pre = cpu0, t_kill
        transitions_cpu = max(0.0, (cpu1 - cpu_pre) - base_cpu_per_s * (t1 - t_pre))
        time.sleep(min(10.0, 2 * timeout))  # what follows the loss, if anything
        stop_pinging.set()
        thread.join()
        res['survivor_heartbeat_delay'] = sampled.finish()
        try:
            c1 = self.ctl(url, 'ping')[0]['counters']
        except BenchError:
            c1 = {}
        for key in ('busy_over_100ms', 'busy_cpu_over_100ms', 'busy_own_over_100ms'):
            res[key] = c1[key] - c0[key] if key in c0 and key in c1 else None
        after = self.stats(survivors_stats)
        lost_ids = {f'sim-{i:04d}' for i in range(n - 1 - lose, n - 1)}
        false_downs = {a.get('host') for a in alerts.poll()
                       if a.get('kind') == 'host-down' and a.get('resolved') == 'false' and
                       a.get('host') not in lost_ids and a.get('host') != f'sim-{n - 1:04d}'}
        # From the clocks of the controller (when each host went down) and of the agents
        # (when the last one applied), not from when this script polled.
        try:
            hosts = self.ctl(url, 'hosts', *([] if self.label == 'before' else ['--all']))[0]['hosts']
        except BenchError:
            hosts = []
        lost_down = [h['state_since_us'] / 1e6 for h in hosts
                     if h['host'] in lost_ids and h['state'] == 'down']
        down_rt = max(lost_down) if len(lost_down) == lose else None
        moved_rt = after.get('last_apply_us', 0) / 1e6
        res.update({
            'settled': moved_at is not None,
            'down_after_kill_s': down_rt - t_kill_rt if down_rt else None,
            'moved_after_down_s': max(0.0, moved_rt - down_rt) if moved_at and down_rt else None,
            'false_host_down': len(false_downs),
            'survivor_units_stopped': after.get('units_stopped', 0) -
            before.get('units_stopped', 0),
            'survivor_units_started': after.get('units_started', 0) -
            before.get('units_started', 0),
            'ping_p50_s': p50(pings) if pings else None,
            'ping_p99_s': sorted(pings)[int(0.99 * (len(pings) - 1))] if pings else None,
            'ping_max_s': max(pings) if pings else None,
            'cpu_s': cpu1 - cpu0,
            'cpu_transitions_s': transitions_cpu,
            'cpu_ms_per_transition': transitions_cpu * 1000 / lose,
        })
        alerts.conn.close()
        self.log(f'{n} hosts ({self.label}): {lose} lost: down after '
                 f'{fmt_s(res["down_after_kill_s"])}, their units elsewhere '
                 f'{fmt_s(res["moved_after_down_s"])} later, {res["false_host_down"]} other '
                 f'hosts declared down, {res["survivor_units_stopped"]} units stopped on the '
                 f'others, ping p99 {fmt_s(res["ping_p99_s"])}')
        return res

    @staticmethod
    def stop(p) -> None:
        """Stop p (SIGTERM); a crash or sanitizer abort on the way out is a failure."""
        rc = p.stop()
        if rc not in (0, None):
            raise BenchError(f'{p.name} exited {rc} when stopped:\n{p.log_tail()}')


# -- report ----------------------------------------------------------------------------------


def fmt_s(s: float | None) -> str:
    if s is None:
        return '-'
    return f'{s * 1000:.1f} ms' if s < 1 else f'{s:.2f} s'


def fmt_bytes(n: int) -> str:
    return f'{n} B' if n < 1024 else f'{n / 1024:.0f} kB' if n < 1024 * 1024 else \
        f'{n / 1024 / 1024:.1f} MB'


def ratios(s: float, floor_s: float, ping_s: float) -> str:
    return f'{s / floor_s:.0f}× / {s / ping_s:.1f}×'


def report(args, floor: dict, points: list[dict]) -> str:
    f50 = floor['rtt_p50_us'] / 1e6
    lines = []
    add = lines.append
    add('')
    add(f'baton controller benchmark: {args.units} units per host, heartbeat every '
        f'{args.heartbeat_interval}, host_timeout {args.host_timeout}, steady window '
        f'{args.duration:g}s, {os.cpu_count()} cores')
    add(f'floor: broker round trip (persistent {floor["body_bytes"]} B, publisher confirms, '
        f'publish → confirmed and delivered): p50 {floor["rtt_p50_us"]} µs, '
        f'p99 {floor["rtt_p99_us"]} µs ({floor["count"]} round trips)')
    add('')
    cols = [f'{p["hosts"]} hosts' + (' (before)' if p.get('build') == 'before' else '')
            for p in points]
    width = max(18 if not any('loss' in p for p in points) else 40, *(len(c) + 2 for c in cols))
    add(f'{"":44}' + ''.join(f'{c:>{width}}' for c in cols))

    def row(label, values):
        add(f'{label:44}' + ''.join(f'{v:>{width}}' for v in values))

    row('instances', [str(p['instances']) for p in points])
    row('controller RSS idle', [f'{p["idle"]["VmRSS"] / 1024:.1f} MB' for p in points])
    row('controller RSS steady', [f'{p["steady"]["VmRSS"] / 1024:.1f} MB' for p in points])
    row('controller RSS peak (VmHWM)', [f'{p["steady"]["VmHWM"] / 1024:.1f} MB' for p in points])
    row('  per host (steady - idle)', [f'{p["kb_per_host"]:.1f} kB' for p in points])
    row('controller CPU, steady (% of one core)', [f'{p["cpu_pct"]:.2f} %' for p in points])
    row('heartbeats handled per second', [f'{p["heartbeats_per_s"]:.0f}' for p in points])
    row('controller CPU per heartbeat',
        [f'{p["cpu_us_per_heartbeat"]:.0f} µs' if p['cpu_us_per_heartbeat'] else '-'
         for p in points])
    row('  ÷ floor p50',
        [f'{p["cpu_us_per_heartbeat"] / floor["rtt_p50_us"]:.2f}×'
         if p['cpu_us_per_heartbeat'] else '-' for p in points])
    row('hosts one core could serve (heartbeat load)',
        [f'{args_hb(args) * 1e6 / p["cpu_us_per_heartbeat"]:,.0f}'
         if p['cpu_us_per_heartbeat'] else '-' for p in points])
    row('agents: heartbeats dropped / publish failed',
        [f'{sum(st.get("heartbeats_dropped", 0) for st in p["sim_stats"])} / '
         f'{sum(st.get("publish_failed", 0) for st in p["sim_stats"])}' for p in points])
    row('simulator CPU / broker CPU (% of a core)',
        [f'{p["sim_cpu_pct"]:.0f} / {p["broker_cpu_pct"] or 0:.0f} %' for p in points])
    row('all hosts up after start', [fmt_s(p['hosts_up_s']) for p in points])
    row(f'batonctl apply ({args.units} specs) round trip', [fmt_s(p['apply_s']) for p in points])
    row('converged: every agent running its units', [fmt_s(p['converge_agents_s'])
                                                     for p in points])
    row('  per host ÷ floor p50',
        [f'{p["converge_agents_s"] / p["hosts"] / f50:.1f}×' for p in points])
    row('converged: controller got every report',
        [fmt_s(p['converge_controller_s']) for p in points])
    row('  controller CPU until then', [fmt_s(p['converge_cpu_s']) for p in points])
    row('converged: status all healthy (polled)', [fmt_s(p['converge_status_s'])
                                                    for p in points])
    for name in ('ping', 'hosts', 'hosts --all', 'status SERVICE', 'status', 'status --all', 'plan',
                 'plan --all'):
        label = name.replace('plan', f'plan of the {args.units} applied specs', 1)

        def rpc(p, key, f):
            return f(p['rpc'][name][key]) if name in p['rpc'] else '-'
        row(f'batonctl {label} (p50 of {args.rpc_repeat})',
            [rpc(p, 'p50_s', fmt_s) for p in points])
        row('  ÷ floor p50 / ÷ idle ping',
            [rpc(p, 'p50_s', lambda v: ratios(v, f50, p['ping_idle_s'])) for p in points])
        row('  answer size (JSON)', [rpc(p, 'json_bytes', fmt_bytes) for p in points])
        row('  controller loop held by it (max; 0: < 100 ms)',
            [rpc(p, 'loop_busy_max_s', fmt_s) if p['rpc'].get(name, {}).get('loop_busy_max_s')
             else rpc(p, 'p50_s', lambda v: '< 100 ms') for p in points])
    row('stopped host marked down after', [fmt_s(p.get('replace', {}).get('down_s'))
                                           for p in points])
    row('  its units running elsewhere, after down',
        [fmt_s(p.get('replace', {}).get('moved_after_down_s')) for p in points])
    row('  ÷ floor p50', [f'{p["replace"]["moved_after_down_s"] / f50:.0f}×'
                          if 'replace' in p else '-' for p in points])
    row('  status all healthy, after down (polled)',
        [fmt_s(p.get('replace', {}).get('healthy_after_down_polled_s')) for p in points])
    if any('loss' in p for p in points):
        def loss(p, key, f=str):
            v = p.get('loss', {}).get(key)
            return '-' if v is None else f(v)
        row('hosts stopped at once (a rack)', [loss(p, 'lose') for p in points])
        row('  down after they stopped', [loss(p, 'down_after_kill_s', fmt_s) for p in points])
        row('  their units running elsewhere, after down',
            [loss(p, 'moved_after_down_s', fmt_s) if p.get('loss', {}).get('settled')
             else 'never' if 'loss' in p else '-' for p in points])
        row('  other hosts declared down', [loss(p, 'false_host_down') for p in points])
        row('  their heartbeats reaching the broker, p99 / max late',
            [f'{fmt_s(p["loss"]["survivor_heartbeat_delay"].get("p99_s"))} / '
             f'{fmt_s(p["loss"]["survivor_heartbeat_delay"].get("max_s"))}'
             if p.get('loss', {}).get('survivor_heartbeat_delay') else '-' for p in points])
        row('  units stopped on the other hosts',
            [loss(p, 'survivor_units_stopped') for p in points])
        row('  units started on the other hosts',
            [loss(p, 'survivor_units_started') for p in points])
        row('  batonctl ping p50 / p99 / max meanwhile',
            [f'{fmt_s(p["loss"]["ping_p50_s"])} / {fmt_s(p["loss"]["ping_p99_s"])} / '
             f'{fmt_s(p["loss"]["ping_max_s"])}' if 'loss' in p else '-' for p in points])
        row('  turns of the loop over 100 ms meanwhile (own time; of CPU)',
            [f'{loss(p, "busy_over_100ms")} ({loss(p, "busy_own_over_100ms")}; '
             f'{loss(p, "busy_cpu_over_100ms")})' for p in points])
        row('  controller CPU per lost host (less heartbeats)', [loss(p, 'cpu_ms_per_transition',
                                                    lambda v: f'{v:.1f} ms') for p in points])
    row('longest reconcile pass (event → published)',
        [f'{p["longest_step_ms"]} ms' if p.get('longest_step_ms') is not None else '-'
         for p in points])
    row('longest turn of the loop (any callback, less waiting)',
        [f'{p["longest_busy_ms"]} ms' if p.get('longest_busy_ms') is not None else '-'
         for p in points])
    row('  turns over 100 ms',
        [str(p['busy_over_100ms']) if p.get('busy_over_100ms') is not None else '-'
         for p in points])
    # Wall time counts the turns the controller waited for a core (broker and simulated
    # agents share this machine); CPU time is the controller's own work.
    row('longest turn of the loop in CPU time (its own work)',
        [f'{p["longest_busy_cpu_ms"]} ms' if p.get('longest_busy_cpu_ms') is not None else '-'
         for p in points])
    row('  turns over 100 ms of CPU',
        [str(p['busy_cpu_over_100ms']) if p.get('busy_cpu_over_100ms') is not None else '-'
         for p in points])
    # Own time: the turn less the time it waited for a core, where the kernel keeps
    # run-queue time (kernel.task_delayacct=1; else it is the whole turn): the CPU and
    # what the turn blocked on (disk, sockets).
    row('longest turn of the loop in own time (CPU and blocking)',
        [f'{p["longest_busy_own_ms"]} ms' if p.get('longest_busy_own_ms') is not None else '-'
         for p in points])
    row('  turns over 100 ms of own time',
        [str(p['busy_own_over_100ms']) if p.get('busy_own_over_100ms') is not None else '-'
         for p in points])
    for part in sorted({k for p in points for k in p.get('long_turns', {})}):
        row(f'    noted, longest part {part}: turns, max (own; CPU)',
            [f'{p["long_turns"][part]["turns"]}, {p["long_turns"][part]["max_ms"]} ms '
             f'({p["long_turns"][part]["max_own_ms"]} ms; '
             f'{p["long_turns"][part]["max_cpu_ms"]} ms)'
             if part in p.get('long_turns', {}) else '-' for p in points])

    now = [p for p in points if p.get('build') != 'before']
    if len(now) >= 2:
        a, b = now[0], now[-1]
        dn = b['hosts'] - a['hosts']
        add('')
        add(f'slopes between {a["hosts"]} and {b["hosts"]} hosts:')
        add(f'  RSS    {(b["steady"]["VmRSS"] - a["steady"]["VmRSS"]) / dn:.1f} kB per host '
            f'({(b["steady"]["VmRSS"] - a["steady"]["VmRSS"]) / dn / args.units:.2f} kB per '
            'instance)')
        add(f'  CPU    {(b["cpu_pct"] - a["cpu_pct"]) / dn * 1000:.2f} % of a core per 1,000 '
            'hosts')
        add(f'  converge {(b["converge_agents_s"] - a["converge_agents_s"]) / dn * 1000:.1f} ms '
            'per host')
    add('')
    return '\n'.join(lines)


def args_hb(args) -> float:
    return duration_seconds(args.heartbeat_interval)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--hosts', type=int, default=1000, help='simulated hosts (default 1000)')
    ap.add_argument('--units', type=int, default=20,
                    help='services, each with one instance per host (default 20)')
    ap.add_argument('--duration', type=float, default=60.0,
                    help='steady window in seconds (default 60)')
    ap.add_argument('--small', type=int, default=100,
                    help='also measure this many hosts first, for per-host slopes (default 100; '
                    '0: no)')
    ap.add_argument('--connections', type=int, default=0,
                    help='AMQP connections of each simulator process (default: one per '
                    f'{HOSTS_PER_CONNECTION} hosts, at most {MAX_SIM_CONNECTIONS})')
    ap.add_argument('--heartbeat-interval', type=duration_arg, default='5s',
                    help="the agents' heartbeat_interval (default 5s, the agent's default)")
    ap.add_argument('--host-timeout', type=duration_arg, default='30s',
                    help="the controller's host_timeout (default 30s, its default)")
    ap.add_argument('--floor-count', type=int, default=1000,
                    help='broker round trips in the floor measurement (default 1000)')
    ap.add_argument('--lose', type=int, default=0,
                    help='also stop this many hosts at once (a rack) and measure what follows '
                    '(default 0: no)')
    ap.add_argument('--before', metavar='BUILD_DIR',
                    help='also measure the controller, batonctl and simulated agents built in '
                    'BUILD_DIR (an older baton), point by point in the same run')
    ap.add_argument('--rpc-repeat', type=int, default=RPC_REPEAT,
                    help=f'round trips of each batonctl verb measured (default {RPC_REPEAT}; '
                         'at 10,000 hosts a `status` of every instance takes seconds)')
    ap.add_argument('--json', metavar='FILE', help='also write every figure as JSON to FILE')
    args = ap.parse_args()
    if args.hosts < 2:
        ap.error('--hosts: at least 2 (one of them is stopped)')
    if not 1 <= args.units <= 99:
        ap.error('--units: 1..99')
    if args.duration <= 0:
        ap.error('--duration: must be positive')
    if not 0 <= args.connections <= MAX_SIM_CONNECTIONS:
        ap.error(f'--connections: 0 (by the fleet) .. {MAX_SIM_CONNECTIONS}')
    if args.floor_count < 1:
        ap.error('--floor-count: at least 1')
    sizes = [n for n in (args.small, args.hosts) if n >= 2]
    sizes = sorted(set(sizes))

    with World('bench') as w:
        try:
            b = Bench(w, args)
            floor = b.measure_floor()
            points = [b.run_point(n, label) for n in sizes for label in b.builds]
        except BenchError as e:
            print(f'benchmark failed: {e}', file=sys.stderr)
            return 1
    text = report(args, floor, points)
    print(text)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'args': vars(args), 'floor': floor, 'points': points}, f, indent=2)
            f.write('\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
