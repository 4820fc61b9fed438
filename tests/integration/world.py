#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""One isolated world per integration test: a real rabbitmq-server on loopback, real
`systemd --user` managers (one per simulated host, each in its own cgroup) and the baton
binaries, all recorded by PID and start time in <dir>/world.json so that close(), a reaper
process or `world.py down` can stop exactly what this world started and nothing else.

usage: world.py broker-up DIR      start a node in DIR (layout made if missing), leave it running
       world.py broker-down DIR    stop that node and its epmd
       world.py broker-ctl DIR {stop,start,pause,resume}   (DIR of any node, e.g. a World's)
       world.py down DIR           stop everything DIR/world.json records (keep=True worlds)
       world.py reaper DIR         internal: tears DIR's world down when its owner goes away
"""

import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

PYTHON = '/usr/bin/python3'
RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
RABBITMQCTL = '/usr/lib/rabbitmq/bin/rabbitmqctl'
SYSTEMD = '/lib/systemd/systemd'
SYSTEMCTL = 'systemctl'
CGROUP_ROOT = '/sys/fs/cgroup'

STATE_VERSION = 1
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 40

SOURCE_DIR = os.environ.get('BATON_SOURCE_DIR') or os.path.abspath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
BUILD_DIR = os.environ.get('BATON_BUILD_DIR') or os.path.join(SOURCE_DIR, 'build')


def build_path(*parts: str) -> str:
    return os.path.join(BUILD_DIR, *parts)


# ---------------------------------------------------------------------------------------------
# Process identity. A PID alone is not an identity: after a crash the number may belong to
# someone else. We pair it with the start time (field 22 of /proc/PID/stat) and treat zombies
# as gone, since PID 1 here may never reap orphans.


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of pid, or None if there is no such process."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            data = f.read().decode('ascii', 'replace')
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(')') + 2:].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def session_pids(sid: int, not_before: int | None) -> list[tuple[int, int]]:
    """Live members of session sid that started no earlier than its leader did: what is left
    of a process we started with start_new_session=True, even after the leader is gone."""
    out = []
    for pid in all_pids():
        try:
            with open(f'/proc/{pid}/stat', 'rb') as f:
                data = f.read().decode('ascii', 'replace')
        except OSError:
            continue
        fields = data[data.rfind(')') + 2:].split()
        try:
            state, session, start = fields[0], int(fields[3]), int(fields[19])
        except (IndexError, ValueError):
            continue
        if session == sid and state not in ('Z', 'X', 'x') and \
                (not_before is None or start >= not_before):
            out.append((pid, start))
    return out


def proc_start_time(pid: int) -> int | None:
    st = proc_stat(pid)
    return st[1] if st else None


def pid_alive(pid: int | None, start: int | None) -> bool:
    """True if pid is a live (non-zombie) process started at `start` (None: any start)."""
    if not pid or pid <= 0:
        return False
    st = proc_stat(pid)
    if st is None or st[0] in ('Z', 'X', 'x'):
        return False
    return start is None or st[1] == start


def proc_environ(pid: int) -> dict[str, str]:
    try:
        with open(f'/proc/{pid}/environ', 'rb') as f:
            data = f.read()
    except OSError:
        return {}
    env = {}
    for item in data.split(b'\0'):
        k, sep, v = item.partition(b'=')
        if sep:
            env[k.decode(errors='replace')] = v.decode(errors='replace')
    return env


def proc_comm(pid: int) -> str:
    try:
        with open(f'/proc/{pid}/comm') as f:
            return f.read().strip()
    except OSError:
        return ''


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir('/proc') if d.isdigit()]


def safe_kill(pid: int | None, start: int | None, sig: int) -> bool:
    """Send sig to pid only if it is still the process we recorded."""
    if not pid_alive(pid, start):
        return False
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def wait_pids_gone(pairs: list[tuple[int, int | None]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not any(pid_alive(p, s) for p, s in pairs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def terminate_pids(pairs: list[tuple[int, int | None]], grace: float, sig=signal.SIGTERM) -> bool:
    """SIGTERM every recorded process, wait up to grace, SIGKILL the rest. True if all gone."""
    pairs = [(p, s) for p, s in pairs if p]
    for p, s in pairs:
        safe_kill(p, s, sig)
    if wait_pids_gone(pairs, grace):
        return True
    for p, s in pairs:
        safe_kill(p, s, signal.SIGKILL)
    return wait_pids_gone(pairs, 5.0)


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, chosen by the kernel (bind to port 0)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(('127.0.0.1', 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=0.5):
            return True
    except OSError:
        return False


def write_json_atomic(path: str, data) -> None:
    tmp = f'{path}.tmp.{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def merge_env(base: dict | None, overrides: dict | None) -> dict[str, str]:
    """os.environ (or base) with overrides applied; a value of None removes the variable."""
    env = dict(os.environ if base is None else base)
    for k, v in (overrides or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def tail(path: str, lines: int = LOG_TAIL_LINES, offset: int = 0) -> str:
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ''
    text = data.decode(errors='replace')
    return '\n'.join(text.splitlines()[-lines:])


def run(argv: list[str], env=None, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) else (e.stdout or '')
        err = e.stderr.decode(errors='replace') if isinstance(e.stderr, bytes) else (e.stderr or '')
        return subprocess.CompletedProcess(argv, 124, out, err + f'\n(timed out after {timeout}s)')


def write_ini(path: str, defaults: dict, overrides: dict | None) -> dict:
    """Write an INI file from defaults merged with overrides (None deletes a key/section)."""
    conf = {sec: dict(keys) for sec, keys in defaults.items()}
    for sec, keys in (overrides or {}).items():
        if keys is None:
            conf.pop(sec, None)
            continue
        dst = conf.setdefault(sec, {})
        for k, v in keys.items():
            if v is None:
                dst.pop(k, None)
            else:
                dst[k] = v
    with open(path, 'w') as f:
        for sec, keys in conf.items():
            f.write(f'[{sec}]\n')
            for k, v in keys.items():
                if v is None:
                    continue
                if isinstance(v, bool):
                    v = 'yes' if v else 'no'
                f.write(f'{k} = {v}\n')
            f.write('\n')
    return conf


# ---------------------------------------------------------------------------------------------
# cgroups: each simulated host's manager lives in a fresh cgroup of its own.


def cgroup_roots() -> list[str]:
    """Hierarchies a user manager must be moved in: name=systemd and unified on a hybrid
    (v1) machine, just the one tree on a cgroup v2 only machine."""
    if os.path.exists(os.path.join(CGROUP_ROOT, 'cgroup.controllers')):
        return [CGROUP_ROOT]
    roots = []
    for sub in ('systemd', 'unified'):
        p = os.path.join(CGROUP_ROOT, sub)
        if os.path.exists(os.path.join(p, 'cgroup.procs')):
            roots.append(p)
    return roots


def cgroup_pids(path: str) -> list[int]:
    pids = []
    for d, _, _ in os.walk(path):
        try:
            with open(os.path.join(d, 'cgroup.procs')) as f:
                pids += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return pids


def cgroup_remove(path: str, timeout: float = 5.0) -> None:
    """Kill whatever is left in a cgroup we created, then remove it depth first."""
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    while True:
        for pid in cgroup_pids(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        busy = None
        for d, _, _ in os.walk(path, topdown=False):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                busy = e
        if busy is None or not os.path.isdir(path):
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f'cannot remove cgroup {path}: {busy}')
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Signals: a test killed by SIGTERM/SIGINT (meson timeout, ^C) unwinds through finally/close().


_deferring = 0
_pending_signal = None


def _raise_exit(signum, frame):
    global _pending_signal
    if _deferring:
        _pending_signal = signum
        return
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, _raise_exit)


class _SignalsDeferred:
    """Hold SIGTERM/SIGINT while tearing down, so a second signal cannot cut cleanup short;
    the exit happens afterwards. (Not a signal mask: children would inherit it.)"""

    def __enter__(self):
        global _deferring
        _deferring += 1
        return self

    def __exit__(self, *exc):
        global _deferring, _pending_signal
        _deferring -= 1
        if not _deferring and _pending_signal is not None and exc[0] is None:
            signum, _pending_signal = _pending_signal, None
            raise SystemExit(128 + signum)
        return False


# ---------------------------------------------------------------------------------------------


class Proc:
    """A process started by a World, in its own session, output in <dir>/<name>.log."""

    def __init__(self, name: str, pid: int, start: int | None, log_path: str, argv: list[str],
                 kind: str = 'proc', log_offset: int = 0, popen: subprocess.Popen | None = None,
                 host: str | None = None):
        self.name = name
        self.pid = pid
        self.start_time = start
        self.log_path = log_path
        self.log_offset = log_offset
        self.argv = argv
        self.kind = kind
        self.host = host
        self.returncode = None
        self._popen = popen

    def __repr__(self):
        return f'<Proc {self.name} pid={self.pid}>'

    def to_json(self) -> dict:
        return {'kind': 'proc', 'role': self.kind, 'name': self.name, 'pid': self.pid,
                'start': self.start_time, 'log_path': self.log_path,
                'log_offset': self.log_offset, 'argv': self.argv, 'host': self.host}

    @classmethod
    def from_json(cls, d: dict) -> 'Proc':
        return cls(d['name'], d['pid'], d.get('start'), d['log_path'], d.get('argv', []),
                   d.get('role', 'proc'), d.get('log_offset', 0), None, d.get('host'))

    def _exited(self) -> bool:
        """Has the leader exited? Our own children are checked without reaping them, so the
        PID (and its process group) stays ours until _reap()."""
        if self.returncode is not None:
            return True
        if self._popen is not None:
            try:
                r = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self._popen.poll()
                self.returncode = self._popen.returncode
                return True
            return r is not None
        return not pid_alive(self.pid, self.start_time)

    def _reap(self) -> int | None:
        """Kill what is left of the session after its leader exited, then reap the leader."""
        if self.returncode is not None:
            return self.returncode
        if self._popen is not None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.returncode = self._popen.wait()
            return self.returncode
        if self.start_time is not None:
            terminate_pids(session_pids(self.pid, self.start_time), 0, signal.SIGKILL)
        return None

    def alive(self) -> bool:
        return not self._exited()

    def signal(self, sig: int) -> None:
        """Send sig to the process itself (not its group); a no-op once it has exited."""
        if self._exited():
            return
        if self._popen is not None:
            os.kill(self.pid, sig)
        else:
            safe_kill(self.pid, self.start_time, sig)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for exit; returns the exit code (negative signal number if killed; None when the
        process is not our child). Raises TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._exited():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f'{self.name} (pid {self.pid}) still running after {timeout}s')
            time.sleep(0.02)
        return self._reap()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
        if self._exited():
            return self._reap()
        safe_kill(self.pid, self.start_time, signal.SIGTERM)
        try:
            return self.wait(timeout)
        except TimeoutError:
            return self.kill()

    def kill(self) -> int | None:
        if not self._exited():
            try:
                if self._popen is not None:
                    os.killpg(self.pid, signal.SIGKILL)
                elif pid_alive(self.pid, self.start_time):
                    os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                safe_kill(self.pid, self.start_time, signal.SIGKILL)
        try:
            return self.wait(10)
        except TimeoutError:
            raise RuntimeError(f'{self.name} (pid {self.pid}) survived SIGKILL') from None

    def log(self) -> str:
        """Everything this process wrote (not earlier runs sharing the log file)."""
        try:
            with open(self.log_path, 'rb') as f:
                f.seek(self.log_offset)
                return f.read().decode(errors='replace')
        except OSError:
            return ''

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines, self.log_offset)


# ---------------------------------------------------------------------------------------------


class Broker:
    """A rabbitmq-server node on 127.0.0.1, either ours (isolated) or a shared one we attach
    to with a private vhost. Its pids live in <dir>/broker.json, which `world.py broker-ctl`
    rewrites too, so every method re-reads it first."""

    def __init__(self, dir: str, attached: bool = False, vhost: str = '/baton',
                 world: 'World | None' = None):
        self.dir = dir
        self.attached = attached
        self.vhost = vhost
        self.users: list[str] = []
        self._world = world
        self._popen = None
        self.state = read_json(self.state_path)

    # -- state -------------------------------------------------------------------------------

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, 'broker.json')

    def _refresh(self) -> dict:
        try:
            self.state = read_json(self.state_path)
        except (OSError, ValueError):
            pass
        if self._popen is not None and self._popen.pid != self.state.get('wrapper_pid'):
            self._popen.poll()
            self._popen = None
        return self.state

    def _save(self) -> None:
        write_json_atomic(self.state_path, self.state)

    def to_json(self) -> dict:
        # A snapshot for readers of world.json; <dir>/broker.json stays the authority, since
        # `world.py broker-ctl` in another process may restart the node.
        st = self.state
        snap = {k: st.get(k) for k in ('node', 'port', 'dist_port', 'epmd_port', 'wrapper_pid',
                                       'wrapper_start', 'beam_pid', 'beam_start', 'epmd_pid',
                                       'epmd_start')}
        return {'kind': 'broker', 'dir': self.dir, 'attached': self.attached,
                'vhost': self.vhost, 'users': self.users, **snap}

    @property
    def port(self) -> int:
        return self.state['port']

    @property
    def node(self) -> str:
        return self.state['node']

    @property
    def pid(self) -> int | None:
        """PID of the Erlang VM (beam.smp), None when stopped."""
        st = self._refresh()
        return st.get('beam_pid') if pid_alive(st.get('beam_pid'), st.get('beam_start')) else None

    @property
    def pidfile(self) -> str:
        return self.state['pidfile']

    @property
    def url(self) -> str:
        return url_for(self.port, self.vhost)

    @property
    def env(self) -> dict[str, str]:
        return merge_env(None, self.state['env'])

    # -- creation ------------------------------------------------------------------------------

    @staticmethod
    def create(dir: str) -> dict:
        """Lay out a private node in dir (ports, config, cookie); does not start it."""
        os.makedirs(dir, exist_ok=True)
        port, dist_port, epmd_port, ctl_min = free_ports(4)
        node = f'baton{secrets.token_hex(4)}@localhost'
        home = os.path.join(dir, 'home')
        os.makedirs(home, exist_ok=True)
        cookie = os.path.join(home, '.erlang.cookie')
        # Create the cookie before the first CLI call, or server and CLI may each invent one.
        if not os.path.exists(cookie):
            fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            os.write(fd, secrets.token_hex(16).upper().encode())
            os.close(fd)
        conf = os.path.join(dir, 'rabbitmq.conf')
        with open(conf, 'w') as f:
            f.write(f'listeners.tcp.default = 127.0.0.1:{port}\n'
                    'tcp_listen_options.sndbuf = 32768\n'
                    'tcp_listen_options.recbuf = 32768\n'
                    # The first boot creates /baton instead of / and gives guest all on it.
                    'default_vhost = /baton\n'
                    'log.console = false\n'
                    'log.file.level = info\n'
                    'disk_free_limit.absolute = 10MB\n')
        plugins = os.path.join(dir, 'enabled_plugins')
        with open(plugins, 'w') as f:
            f.write('[].\n')
        log_dir = os.path.join(dir, 'log')
        os.makedirs(log_dir, exist_ok=True)
        env = {
            'HOME': home,
            'RABBITMQ_CONF_ENV_FILE': '/dev/null',
            'RABBITMQ_NODENAME': node,
            'RABBITMQ_NODE_IP_ADDRESS': '127.0.0.1',
            'RABBITMQ_NODE_PORT': str(port),
            'RABBITMQ_DIST_PORT': str(dist_port),
            'RABBITMQ_CTL_DIST_PORT_MIN': str(ctl_min),
            'RABBITMQ_CTL_DIST_PORT_MAX': str(min(ctl_min + 100, 65535)),
            'RABBITMQ_MNESIA_BASE': os.path.join(dir, 'mnesia'),
            'RABBITMQ_LOG_BASE': log_dir,
            'RABBITMQ_CONFIG_FILE': conf,
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(dir, 'advanced.config'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': plugins,
            'RABBITMQ_PID_FILE': os.path.join(dir, 'rabbit.pid'),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS': '-kernel inet_dist_use_interface {127,0,0,1}',
            'ERL_EPMD_PORT': str(epmd_port),
            'ERL_EPMD_ADDRESS': '127.0.0.1',
            'BATON_WORLD_BROKER': dir,
        }
        state = {
            'version': STATE_VERSION, 'dir': dir, 'node': node, 'port': port,
            'dist_port': dist_port, 'epmd_port': epmd_port, 'env': env,
            'pidfile': env['RABBITMQ_PID_FILE'], 'url': url_for(port, '/baton'),
            'log_path': os.path.join(dir, 'server.log'),
            'wrapper_pid': None, 'wrapper_start': None, 'beam_pid': None, 'beam_start': None,
            'epmd_pid': None, 'epmd_start': None,
        }
        write_json_atomic(os.path.join(dir, 'broker.json'), state)
        return state

    # -- CLI -----------------------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """rabbitmqctl against this node, with the node's environment (cookie, epmd port)."""
        return run([RABBITMQCTL, '-n', self.node, *args], env=self.env, timeout=timeout)

    def _ctl_ok(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        r = self.ctl(*args, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f'rabbitmqctl {" ".join(args)} failed ({r.returncode}): '
                               f'{r.stderr.strip() or r.stdout.strip()}')
        return r

    # -- lifecycle -----------------------------------------------------------------------------

    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 60) -> None:
        """Start the node on its same ports and data dir; returns when it accepts clients."""
        st = self._refresh()
        if pid_alive(st.get('beam_pid'), st.get('beam_start')):
            return
        if not pid_alive(st.get('wrapper_pid'), st.get('wrapper_start')):
            st['wrapper_pid'] = st['wrapper_start'] = None
        try:
            os.unlink(self.pidfile)
        except FileNotFoundError:
            pass
        log = open(st['log_path'], 'ab')
        try:
            self._popen = subprocess.Popen([RABBITMQ_SERVER], env=self.env, cwd=self.dir,
                                           stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        st['wrapper_pid'] = self._popen.pid
        st['wrapper_start'] = proc_start_time(self._popen.pid)
        st['beam_pid'] = st['beam_start'] = None
        self._save()
        self._world_saved()
        rc, out = self._wait_ready(timeout)
        beam = self._read_pidfile()
        if rc != 0 or beam is None:
            msg = (f'rabbitmq-server in {self.dir} did not start (rabbitmqctl wait: '
                   f'{rc}: {out})\n'
                   f'--- {st["log_path"]}\n{tail(st["log_path"])}\n'
                   f'--- {self._rabbit_log()}\n{tail(self._rabbit_log())}')
            self._kill_hard()
            raise RuntimeError(msg)
        st['beam_pid'] = beam
        st['beam_start'] = proc_start_time(beam)
        epmd = find_epmd(st['epmd_port'], st['env']['HOME'])
        if epmd:
            st['epmd_pid'], st['epmd_start'] = epmd, proc_start_time(epmd)
        self._save()
        self._world_saved()

    def _wait_ready(self, timeout: float) -> tuple[int, str]:
        """`rabbitmqctl wait PIDFILE`, given up early if the server dies before writing its pid
        file (the CLI would otherwise sit out the whole timeout)."""
        st = self.state
        waiter = subprocess.Popen([RABBITMQCTL, '-n', self.node, 'wait', self.pidfile,
                                   '--timeout', str(int(timeout))], env=self.env,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout + 30
        while waiter.poll() is None:
            server_dead = (self._popen.poll() is not None if self._popen is not None
                           else not pid_alive(st['wrapper_pid'], st['wrapper_start']))
            if server_dead or time.monotonic() >= deadline:
                waiter.kill()
                out = waiter.communicate()[0]
                return -1, ('server exited' if server_dead else 'timed out') + f'; {out.strip()}'
            time.sleep(0.1)
        return waiter.returncode, waiter.communicate()[0].strip()

    def _world_saved(self) -> None:
        if self._world is not None:
            self._world.save_state()

    def _rabbit_log(self) -> str:
        return os.path.join(self.state['env']['RABBITMQ_LOG_BASE'], f'{self.node}.log')

    def _read_pidfile(self) -> int | None:
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        # The pid file is only trusted if it names a VM of this node.
        if proc_environ(pid).get('RABBITMQ_NODENAME') != self.node:
            return None
        return pid

    def _wait_wrapper(self, timeout: float) -> None:
        st = self.state
        if self._popen is not None:
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
            self._popen = None
        else:
            terminate_pids([(st.get('wrapper_pid'), st.get('wrapper_start'))], timeout)

    def _kill_hard(self, grace: float = 10.0) -> None:
        st = self.state
        safe_kill(st.get('beam_pid'), st.get('beam_start'), signal.SIGCONT)
        pairs = [(st.get('beam_pid'), st.get('beam_start')),
                 (st.get('wrapper_pid'), st.get('wrapper_start'))]
        terminate_pids(pairs, grace)
        self._wait_wrapper(2)
        st['beam_pid'] = st['beam_start'] = st['wrapper_pid'] = st['wrapper_start'] = None
        self._save()

    def stop(self, timeout: float = 60) -> None:
        """rabbitmqctl stop, then wait until the VM is gone. epmd keeps running."""
        st = self._refresh()
        beam, beam_start = st.get('beam_pid'), st.get('beam_start')
        if pid_alive(beam, beam_start):
            safe_kill(beam, beam_start, signal.SIGCONT)
            r = self.ctl('stop', self.pidfile, timeout=timeout)
            if r.returncode != 0 or not wait_pids_gone([(beam, beam_start)], 15):
                self._kill_hard()
        self._wait_wrapper(10)
        st['beam_pid'] = st['beam_start'] = st['wrapper_pid'] = st['wrapper_start'] = None
        self._save()
        self._world_saved()

    def pause(self) -> None:
        """SIGSTOP the VM: the broker freezes, its sockets stay open."""
        pid = self.pid
        if pid is None:
            raise RuntimeError(f'broker {self.node} is not running')
        os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        pid = self.pid
        if pid is None:
            raise RuntimeError(f'broker {self.node} is not running')
        os.kill(pid, signal.SIGCONT)

    def stop_epmd(self, grace: float = 5.0) -> None:
        st = self._refresh()
        pairs = [(st.get('epmd_pid'), st.get('epmd_start'))]
        # epmd may have been started by a CLI call before we looked for it.
        extra = find_epmd(st['epmd_port'], st['env']['HOME'])
        if extra and extra != st.get('epmd_pid'):
            pairs.append((extra, proc_start_time(extra)))
        terminate_pids(pairs, grace)
        st['epmd_pid'] = st['epmd_start'] = None
        self._save()

    def destroy(self) -> None:
        """Stop the node and its epmd (ours only), then anything else carrying its marker."""
        try:
            self.stop()
            self.stop_epmd()
        finally:
            terminate_pids(broker_marked_pids(self.dir), 5.0)

    # -- users, vhosts, introspection ----------------------------------------------------------

    def add_vhost(self, vhost: str) -> None:
        self._ctl_ok('add_vhost', vhost)
        self._ctl_ok('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*')

    def add_user(self, user: str, password: str, configure: str = '.*', write: str = '.*',
                 read: str = '.*', vhost: str | None = None) -> str:
        """Create a user with permissions on vhost (default: this world's vhost); returns the
        AMQP URL to connect as that user."""
        vhost = vhost or self.vhost
        self._ctl_ok('add_user', user, password)
        self.users.append(user)
        self._world_saved()
        self._ctl_ok('set_permissions', '-p', vhost, user, configure, write, read)
        return url_for(self.port, vhost, user, password)

    def connection_count(self) -> int:
        """Open AMQP connections to this world's vhost."""
        r = self._ctl_ok('list_connections', '--silent', '--no-table-headers', 'vhost')
        return sum(1 for line in r.stdout.splitlines() if line.strip() == self.vhost)

    def list_queues(self) -> dict[str, int]:
        r = self._ctl_ok('list_queues', '-p', self.vhost, '--silent', '--no-table-headers',
                         'name', 'messages')
        out = {}
        for line in r.stdout.splitlines():
            parts = line.split('\t')
            if len(parts) == 2:
                out[parts[0]] = int(parts[1]) if parts[1].strip().isdigit() else 0
        return out

    def pika_connection(self, **kw):
        import pika
        params = pika.URLParameters(self.url)
        for k, v in kw.items():
            setattr(params, k, v)
        return pika.BlockingConnection(params)


def url_for(port: int, vhost: str, user: str = 'guest', password: str = 'guest') -> str:
    q = urllib.parse.quote
    return f'amqp://{q(user, safe="")}:{q(password, safe="")}@127.0.0.1:{port}/{q(vhost, safe="")}'


def find_epmd(port: int, home: str) -> int | None:
    """Our epmd daemonizes and shows no port on its command line: recognise it by its
    environment (our ERL_EPMD_PORT and our private HOME)."""
    for pid in all_pids():
        if proc_comm(pid) != 'epmd':
            continue
        env = proc_environ(pid)
        if env.get('ERL_EPMD_PORT') == str(port) and env.get('HOME') == home:
            return pid
    return None


def broker_marked_pids(dir: str) -> list[tuple[int, int | None]]:
    """Every process that carries our marker BATON_WORLD_BROKER=<dir> in its environment:
    server wrapper, VM, its helpers, epmd, stray CLI calls. Catches a node whose VM pid was
    not recorded yet (owner killed during start)."""
    me = os.getpid()
    out = []
    for pid in all_pids():
        if pid != me and proc_environ(pid).get('BATON_WORLD_BROKER') == dir:
            out.append((pid, proc_start_time(pid)))
    return out


def broker_up(dir: str) -> Broker:
    """Start the node laid out in dir, creating the layout first if there is none (so a dir
    can be recorded by a World before the node exists). A node already running is kept."""
    dir = os.path.abspath(dir)
    if not os.path.exists(os.path.join(dir, 'broker.json')):
        Broker.create(dir)
    b = Broker(dir)
    try:
        b.start()
    except BaseException:
        b.destroy()
        raise
    return b


# ---------------------------------------------------------------------------------------------


class Host:
    """A simulated host: a `systemd --user` manager with private XDG dirs, in its own cgroup."""

    def __init__(self, world: 'World', name: str, dir: str, cgroup: str):
        self.world = world
        self.name = name
        self.dir = dir
        self.cgroup = cgroup
        self.manager_pid = None
        self.manager_start = None
        self._popen = None
        runtime = os.path.join(dir, 'runtime')
        self.xdg = {
            'XDG_RUNTIME_DIR': runtime,
            'XDG_CONFIG_HOME': os.path.join(dir, 'config'),
            'XDG_DATA_HOME': os.path.join(dir, 'data'),
            'XDG_STATE_HOME': os.path.join(dir, 'state'),
            'XDG_CACHE_HOME': os.path.join(dir, 'cache'),
        }
        # Full environment for anything run "on" this host: finds the manager through
        # XDG_RUNTIME_DIR, never through a session bus of the machine.
        self.env = merge_env(None, {**self.xdg, 'DBUS_SESSION_BUS_ADDRESS': None,
                                    'SYSTEMD_PAGER': '', 'SYSTEMD_COLORS': '0'})
        self.runtime_dir = runtime
        self.unit_dir = os.path.join(self.xdg['XDG_CONFIG_HOME'], 'systemd', 'user')
        self.bus_address = f'unix:path={runtime}/systemd/private'
        self.log_path = os.path.join(dir, 'manager.log')
        self.log_offset = 0

    def __repr__(self):
        return f'<Host {self.name} manager={self.manager_pid}>'

    @property
    def cgroup_dirs(self) -> list[str]:
        return [os.path.join(root, self.cgroup) for root in cgroup_roots()]

    def to_json(self) -> dict:
        return {'kind': 'host', 'name': self.name, 'dir': self.dir, 'cgroup': self.cgroup,
                'cgroup_dirs': self.cgroup_dirs, 'manager_pid': self.manager_pid,
                'manager_start': self.manager_start, 'log_path': self.log_path,
                'log_offset': self.log_offset}

    @classmethod
    def from_json(cls, world, d: dict) -> 'Host':
        h = cls(world, d['name'], d['dir'], d['cgroup'])
        h.manager_pid, h.manager_start = d.get('manager_pid'), d.get('manager_start')
        h.log_offset = d.get('log_offset', 0)
        return h

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.manager_pid, self.manager_start)

    def start(self, timeout: float = 30) -> None:
        """Start a fresh manager on the same dirs; returns once it is running."""
        if self.alive():
            return
        os.makedirs('/run/systemd/system', exist_ok=True)
        for d in self.xdg.values():
            os.makedirs(d, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        os.makedirs(self.unit_dir, exist_ok=True)
        roots = cgroup_roots()
        if not roots:
            raise RuntimeError(f'no writable cgroup hierarchy under {CGROUP_ROOT}')
        procs = []
        for d in self.cgroup_dirs:
            try:
                os.makedirs(d, exist_ok=True)
            except OSError as e:
                raise RuntimeError(f'host {self.name}: cannot create cgroup {d}: {e}') from None
            procs.append(os.path.join(d, 'cgroup.procs'))
        self.world.save_state()  # record the cgroups before anything can land in them
        # The shell moves itself into the fresh cgroups, then becomes the manager, so the
        # manager and every unit it starts live under /<cgroup>/ in each hierarchy.
        script = ('for f in "$@"; do echo $$ > "$f" || { echo "cannot join cgroup $f" >&2; '
                  f'exit 1; }}; done; exec {SYSTEMD} --user')
        log = open(self.log_path, 'ab')
        self.log_offset = log.tell()
        try:
            self._popen = subprocess.Popen(['/bin/sh', '-c', script, 'sh', *procs],
                                           env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        finally:
            log.close()
        self.manager_pid = self._popen.pid
        self.manager_start = proc_start_time(self.manager_pid)
        self.world.save_state()
        sock = os.path.join(self.runtime_dir, 'systemd', 'private')
        deadline = time.monotonic() + timeout
        last = ''
        while True:
            if self._popen.poll() is not None:
                raise RuntimeError(f'host {self.name}: systemd --user exited with '
                                   f'{self._popen.returncode}\n{tail(self.log_path)}')
            if os.path.exists(sock):
                r = self.systemctl('is-system-running', timeout=10)
                last = r.stdout.strip() or r.stderr.strip()
                if last in ('running', 'degraded'):
                    return
            if time.monotonic() >= deadline:
                raise RuntimeError(f'host {self.name}: manager not running after {timeout}s '
                                   f'(is-system-running: {last!r})\n{tail(self.log_path)}')
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the manager (it stops its units), SIGKILL after timeout, remove cgroups."""
        if self._popen is not None:
            if self._popen.poll() is None:
                self._popen.send_signal(signal.SIGTERM)
                try:
                    self._popen.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._popen.kill()
                    self._popen.wait()
            self._popen = None
        else:
            terminate_pids([(self.manager_pid, self.manager_start)], timeout)
        self.manager_pid = self.manager_start = None
        for d in self.cgroup_dirs:
            cgroup_remove(d)
        self.world.save_state()

    def systemctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return run([SYSTEMCTL, '--user', *args], env=self.env, timeout=timeout)

    def unit_property(self, unit: str, prop: str) -> str:
        r = self.systemctl('show', '-p', prop, '--value', unit)
        if r.returncode != 0:
            raise RuntimeError(f'host {self.name}: systemctl show {unit} {prop}: '
                               f'{r.stderr.strip()}')
        return r.stdout.rstrip('\n')

    def is_active(self, unit: str) -> bool:
        return self.systemctl('is-active', unit).stdout.strip() == 'active'

    def write_unit(self, name: str, text: str, reload: bool = True) -> str:
        """Install a unit file in the manager's persistent unit dir (daemon-reload by default)."""
        path = os.path.join(self.unit_dir, name)
        with open(path, 'w') as f:
            f.write(text)
        if reload:
            r = self.systemctl('daemon-reload')
            if r.returncode != 0:
                raise RuntimeError(f'host {self.name}: daemon-reload: {r.stderr.strip()}')
        return path


# ---------------------------------------------------------------------------------------------


def probe_json_safe(value):
    """Body dicts for `baton-probe send`: integers jansson cannot hold (above INT64_MAX, i.e.
    big uint64 values) go as decimal strings, which the probe reads for any integer field."""
    if isinstance(value, dict):
        return {k: probe_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [probe_json_safe(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 2**63 - 1:
        return str(value)
    return value


class Listener:
    """`baton-probe listen` on a server-named exclusive queue of its own, bound as asked: every
    message that arrives there as a dict, one per JSON line of the probe:
    {"routing_key", "exchange", "type", "message_id", "headers", "envelope": {"sender",
    "epoch", "sent_at_us", "signed", ...}, "body": {...decoded...}, "verified"?} or, for what
    does not decode, {"error", "routing_key", ..., "body_hex"}. uint64 values above INT64_MAX
    appear as decimal strings. Started by World.listen(), stopped with the world."""

    def __init__(self, world: 'World', proc: Proc, output: str, binds: list[str]):
        self.world = world
        self.proc = proc
        self.output = output
        self.binds = binds
        self._offset = 0
        self._partial = b''
        self._messages: list[dict] = []

    def __repr__(self):
        return f'<Listener {" ".join(self.binds)} pid={self.proc.pid}>'

    def messages(self) -> list[dict]:
        """Every message received so far, in arrival order."""
        try:
            with open(self.output, 'rb') as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b''
        self._offset += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b'\n')
        for line in lines:
            if line.strip():
                self._messages.append(json.loads(line))
        return list(self._messages)

    def wait_for(self, predicate, timeout: float = 10.0, what: str = '', since: int = 0) -> dict:
        """The first message (from index `since` on) for which predicate(message) is truthy.
        Exceptions in the predicate (a KeyError on an error line) count as no match. Raises
        AssertionError on timeout or when the listener died, with what it did see."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            for m in msgs[since:]:
                try:
                    if predicate(m):
                        return m
                except Exception:  # noqa: BLE001 - not this one
                    pass
            if not self.proc.alive():
                raise AssertionError(f'listener {self.binds} exited while waiting for '
                                     f'{what or predicate!r}:\n{self.proc.log_tail()}')
            if time.monotonic() >= deadline:
                seen = '\n'.join(json.dumps(m, sort_keys=True) for m in msgs[since:][-5:])
                raise AssertionError(f'timed out after {timeout}s waiting for '
                                     f'{what or predicate!r} on {self.binds}; '
                                     f'{len(msgs) - since} message(s) seen, the last ones:\n'
                                     f'{seen or "(none)"}')
            time.sleep(0.05)

    def stop(self) -> int | None:
        return self.proc.stop()


# ---------------------------------------------------------------------------------------------


class World:
    """Everything one test script runs. Use as a context manager, or call close()."""

    def __init__(self, name: str, keep: bool = False, base: str | None = None,
                 _dir: str | None = None):
        self.name = name
        self.keep = keep
        self._closed = False
        self._reaper = None
        self._reaper_fd = None
        self.objects: list = []  # Proc | Broker | Host, in start order
        self.broker: Broker | None = None
        self.hosts: dict[str, Host] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # baton-probe key pairs by name
        self._n_listeners = 0
        self._n_sends = 0
        if _dir is not None:  # World.load()
            self.dir = _dir
            self.id = os.path.basename(_dir).rsplit('-', 1)[-1]
            return
        safe = ''.join(c if c.isalnum() or c in '-_' else '_' for c in name)
        base = base or tempfile.gettempdir()
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix=f'baton-world-{safe}-', dir=base)
        os.chmod(self.dir, 0o755)
        self.id = os.path.basename(self.dir).rsplit('-', 1)[-1]
        install_signal_handlers()
        self.save_state()
        if not keep:
            self._start_reaper()

    def __repr__(self):
        return f'<World {self.name} {self.dir}>'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- state ---------------------------------------------------------------------------------

    @property
    def state_path(self) -> str:
        return os.path.join(self.dir, 'world.json')

    @property
    def procs(self) -> list[Proc]:
        return [o for o in self.objects if isinstance(o, Proc)]

    def save_state(self, closed: bool = False) -> None:
        state = {
            'version': STATE_VERSION, 'name': self.name, 'id': self.id, 'dir': self.dir,
            'keep': self.keep, 'closed': closed, 'owner_pid': os.getpid(),
            'reaper_pid': self._reaper.pid if self._reaper else None,
            'objects': [o.to_json() for o in self.objects],
        }
        write_json_atomic(self.state_path, state)

    @classmethod
    def load(cls, dir: str) -> 'World':
        """Rebuild a world saved by another process (the demo's `down`, the reaper)."""
        dir = os.path.abspath(dir)
        state = read_json(os.path.join(dir, 'world.json'))
        w = cls(state.get('name', 'loaded'), keep=state.get('keep', False), _dir=dir)
        w.id = state.get('id', w.id)
        w._closed = state.get('closed', False)
        for d in state.get('objects', []):
            if d['kind'] == 'proc':
                w.objects.append(Proc.from_json(d))
            elif d['kind'] == 'host':
                h = Host.from_json(w, d)
                w.hosts[h.name] = h
                w.objects.append(h)
            elif d['kind'] == 'broker':
                try:
                    b = Broker(d['dir'], d.get('attached', False), d.get('vhost', '/baton'), w)
                except (OSError, ValueError):
                    continue
                b.users = d.get('users', [])
                w.broker = b
                w.objects.append(b)
        return w

    # -- reaper --------------------------------------------------------------------------------

    def _start_reaper(self) -> None:
        r, w = os.pipe()  # both ends close-on-exec: only we and the reaper hold them
        log = open(os.path.join(self.dir, 'reaper.log'), 'ab')
        try:
            self._reaper = subprocess.Popen([PYTHON, os.path.abspath(__file__), 'reaper',
                                             self.dir], stdin=r, stdout=log,
                                            stderr=subprocess.STDOUT, cwd='/',
                                            start_new_session=True)
        finally:
            os.close(r)
            log.close()
        self._reaper_fd = w
        self.save_state()

    # -- building blocks -----------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict | None = None, cwd=None,
              kind: str = 'proc', host: str | None = None) -> Proc:
        """Start a tracked process in its own session; stdout and stderr go to <dir>/<name>.log
        (appended, so a restarted process keeps its history; Proc.log() shows its own part).
        env holds overrides of os.environ (None removes a variable)."""
        if self._closed:
            raise RuntimeError(f'world {self.name} is closed')
        log_path = os.path.join(self.dir, f'{name}.log')
        log = open(log_path, 'ab')
        offset = log.tell()
        try:
            p = subprocess.Popen(argv, env=merge_env(None, env), cwd=cwd or self.dir,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        finally:
            log.close()
        proc = Proc(name, p.pid, proc_start_time(p.pid), log_path, list(argv), kind, offset, p,
                    host)
        self.objects.append(proc)
        self.save_state()
        return proc

    def start_broker(self) -> Broker:
        """An isolated rabbitmq-server with vhost /baton; or, when BATON_TEST_BROKER_JSON names
        a shared node (`world.py broker-up`), a fresh vhost of our own on that node."""
        if self.broker is not None:
            return self.broker
        shared = os.environ.get('BATON_TEST_BROKER_JSON')
        if shared:
            b = Broker(os.path.dirname(os.path.abspath(shared)), attached=True,
                       vhost=f'/baton-{self.id}-{secrets.token_hex(3)}', world=self)
            if not b.running():
                raise RuntimeError(f'shared broker in {b.dir} (BATON_TEST_BROKER_JSON) '
                                   'is not running')
            self.broker = b
            self.objects.append(b)
            self.save_state()  # recorded before the vhost exists, so the reaper deletes it
            b.add_vhost(b.vhost)
            return b
        dir = os.path.join(self.dir, 'broker')
        Broker.create(dir)
        b = Broker(dir, world=self)
        self.broker = b
        self.objects.append(b)
        self.save_state()
        b.start()
        return b

    def track_broker(self, dir: str) -> Broker:
        """Record a node started elsewhere (`world.py broker-up DIR`) as ours, so close() and
        the reaper stop it and its epmd too."""
        b = Broker(os.path.abspath(dir), world=self)
        self.objects.append(b)
        self.save_state()
        return b

    def add_host(self, name: str) -> Host:
        if name in self.hosts:
            raise ValueError(f'host {name!r} already exists in world {self.name}')
        if not name or '/' in name or name.startswith('.'):
            raise ValueError(f'bad host name {name!r}')
        dir = os.path.join(self.dir, f'host-{name}')
        os.makedirs(dir, exist_ok=True)
        h = Host(self, name, dir, f'baton-{self.id}-{name}')
        self.hosts[name] = h
        self.objects.append(h)
        h.start()
        return h

    def _need_binary(self, path: str) -> str:
        if not os.access(path, os.X_OK):
            raise RuntimeError(f'{path} is not built (BATON_BUILD_DIR={BUILD_DIR})')
        return path

    def start_agent(self, host: Host, config: dict | None = None, args: list[str] = [],
                    log_format: str = 'text', name: str | None = None) -> Proc:
        state_dir = os.path.join(host.dir, 'agent-state')
        os.makedirs(state_dir, exist_ok=True)
        defaults = {
            'broker': {'url': self.broker.url if self.broker else None, 'heartbeat': '2s'},
            'agent': {'host': host.name, 'scope': 'user', 'heartbeat_interval': '1s',
                      'state_dir': state_dir, 'manage_units': '*'},
            # Agents refuse to start without the controller's key: the world's own.
            'security': {'controller_public_key': self.keygen()[1]},
        }
        conf = os.path.join(host.dir, 'agent.conf')
        write_ini(conf, defaults, config)
        argv = [self._need_binary(build_path('agent', 'baton-agent')), '--config', conf]
        if log_format != 'text':
            argv.append(f'--log-format={log_format}')
        argv += list(args)
        return self.spawn(name or f'agent-{host.name}', argv,
                          env={**host.env, 'BATON_LOG_LEVEL': 'debug'}, kind='agent',
                          host=host.name)

    def start_controller(self, config: dict | None = None, args: list[str] = [],
                         log_format: str = 'text', name: str = 'controller') -> Proc:
        defaults = {
            'broker': {'url': self.broker.url if self.broker else None, 'heartbeat': '2s'},
            'controller': {'database': os.path.join(self.dir, 'controller.db'),
                           'host_timeout': '5s'},
            'security': {'signing_key': self.keygen()[0]},
        }
        conf = os.path.join(self.dir, 'controller.conf')
        write_ini(conf, defaults, config)
        argv = [self._need_binary(build_path('controller', 'baton-controller')), '--config', conf]
        if log_format != 'text':
            argv.append(f'--log-format={log_format}')
        argv += list(args)
        return self.spawn(name, argv, env={'BATON_LOG_LEVEL': 'debug'}, kind='controller')

    _DEFAULT = object()

    def batonctl(self, *args: str, timeout: float = 20, env: dict | None = None,
                 check: bool = False, broker=_DEFAULT, input: str | None = None
                 ) -> subprocess.CompletedProcess:
        """Run batonctl (text mode, output captured). --broker is this world's URL unless
        broker= names another or is None (then batonctl finds it itself)."""
        argv = [self._need_binary(build_path('controller', 'batonctl'))]
        if broker is World._DEFAULT:
            broker = self.broker.url if self.broker else None
        if broker is not None:
            argv += ['--broker', broker]
        argv += list(args)
        try:
            r = subprocess.run(argv, env=merge_env(None, env), cwd=self.dir, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f'batonctl {" ".join(args)}: no answer within {timeout}s\n'
                                 f'stdout: {e.stdout}\nstderr: {e.stderr}') from None
        if check and r.returncode != 0:
            raise AssertionError(f'batonctl {" ".join(args)} exited {r.returncode}\n'
                                 f'stdout: {r.stdout}\nstderr: {r.stderr}')
        return r

    # -- the wire, through baton-probe ---------------------------------------------------------

    def _probe(self) -> str:
        return self._need_binary(build_path('tests', 'tools', 'baton-probe'))

    def keygen(self, name: str = 'controller') -> tuple[str, str]:
        """An Ed25519 key pair made by baton-probe (once per name and world): the secret key
        file's path (for the controller's signing_key or send(key=...)) and the public key
        as base64 (for an agent's controller_public_key)."""
        if name in self._keys:
            return self._keys[name]
        dir = os.path.join(self.dir, 'keys')
        os.makedirs(dir, exist_ok=True)
        secret = os.path.join(dir, f'{name}.key')
        public = os.path.join(dir, f'{name}.pub')
        r = run([self._probe(), 'keygen', secret, public], timeout=30)
        if r.returncode != 0 or not r.stdout.strip():
            raise RuntimeError(f'baton-probe keygen failed ({r.returncode}): {r.stderr.strip()}')
        self._keys[name] = (secret, r.stdout.strip())
        return self._keys[name]

    # send(**props) → baton-probe options
    _SEND_VALUE_PROPS = {'sender': '--sender', 'expiration': '--expiration', 'age': '--age',
                         'future': '--future',
                         'user_id': '--user-id', 'message_id': '--message-id',
                         'timeout': '--timeout', 'repeat': '--repeat'}
    _SEND_FLAG_PROPS = {'persistent': '--persistent', 'mandatory': '--mandatory'}

    def send(self, type: str, body: dict | None = None, exchange: str = 'baton.cmd',
             routing_key: str | None = None, epoch: int | None = None, key=True,
             raw_body: bytes | str | None = None, check: bool = True, broker: str | None = None,
             **props) -> subprocess.CompletedProcess:
        """Publish one message with baton-probe and wait for the broker's confirm. `body` is
        the message as a dict in .proto field names; it goes into a real Envelope, signed with
        the world's key (keygen()) when key is True, with the secret key file `key` when it is
        a path, unsigned when False. epoch=None takes the body's own `epoch` field. raw_body
        (bytes, or hex text) is published as is instead of an envelope. props: sender,
        expiration (ms), user_id, message_id, timeout (a duration), persistent, mandatory
        (flags), headers (dict), declare=False (do not declare baton's exchanges).
        stdout is the message id. Raises AssertionError on failure when check is set."""
        if routing_key is None:
            raise ValueError('send() needs a routing_key')
        url = broker or (self.broker.url if self.broker else None)
        if not url:
            raise RuntimeError(f'world {self.name} has no broker')
        argv = [self._probe(), 'send', '--broker', url, '--type', type, '--exchange', exchange,
                '--routing-key', routing_key]
        self._n_sends += 1
        tmp = os.path.join(self.dir, f'probe-send-{self._n_sends}')
        if raw_body is not None:
            if isinstance(raw_body, str):
                argv += ['--raw-body', raw_body]
            else:
                with open(tmp, 'wb') as f:
                    f.write(raw_body)
                argv += ['--raw-body', f'@{tmp}']
        else:
            # A file, not the command line: a Placement with unit texts can be long.
            with open(tmp, 'w') as f:
                json.dump(probe_json_safe(body or {}), f)
            argv += ['--json', f'@{tmp}']
            if key is True:
                argv += ['--key', self.keygen()[0]]
            elif key:
                argv += ['--key', str(key)]
        if epoch is not None:
            argv += ['--epoch', str(epoch)]
        for k, v in props.items():
            if k in self._SEND_VALUE_PROPS:
                if v is not None:
                    argv += [self._SEND_VALUE_PROPS[k], str(v)]
            elif k in self._SEND_FLAG_PROPS:
                if v:
                    argv.append(self._SEND_FLAG_PROPS[k])
            elif k == 'headers':
                for hk, hv in (v or {}).items():
                    argv += ['--header', f'{hk}={hv}']
            elif k == 'declare':
                if not v:
                    argv.append('--no-declare')
            else:
                raise TypeError(f'send(): unknown property {k!r}')
        try:
            r = run(argv, timeout=60)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if check and r.returncode != 0:
            raise AssertionError(f'baton-probe send {type} to {exchange}/{routing_key} exited '
                                 f'{r.returncode}\nstderr: {r.stderr.strip()}')
        return r

    def send_placement(self, host_name: str, units: list[dict], epoch: int, generation: int,
                       key=True, **props) -> subprocess.CompletedProcess:
        """A Placement for host_name on baton.cmd, as the controller sends it (persistent,
        signed). units are PlacedUnit dicts: name, unit_text, template_name, service,
        instance, env [{name, value}], shards {shards, shard_count, shard_epoch},
        config_hash, running."""
        body = {'host': host_name, 'epoch': epoch, 'generation': generation,
                'units': list(units)}
        props.setdefault('persistent', True)
        return self.send('baton.v1.Placement', body, exchange='baton.cmd',
                         routing_key=host_name, epoch=epoch, key=key, **props)

    def send_restart(self, host_name: str, unit: str, id: str, epoch: int,
                     not_after_us: int | None = None, mode: str | None = None, key=True,
                     **props) -> subprocess.CompletedProcess:
        """A Restart of one unit on host_name, as the controller sends it."""
        body = {'id': id, 'host': host_name, 'epoch': epoch, 'unit': unit}
        if not_after_us is not None:
            body['not_after_us'] = not_after_us
        if mode is not None:
            body['mode'] = mode
        props.setdefault('persistent', True)
        return self.send('baton.v1.Restart', body, exchange='baton.cmd', routing_key=host_name,
                         epoch=epoch, key=key, **props)

    def listen(self, *binds: str, verify=None, name: str | None = None,
               timeout: float = 30) -> Listener:
        """Start a tracked `baton-probe listen` on binds ("exchange:key", e.g.
        "baton.status:#", "baton.cmd:h1") and return once its queue is bound, so nothing
        published afterwards is missed. verify=True checks signatures against the world's
        key (keygen()), a string names a public key (base64 or file); each message then has
        "verified" (and "verify_error" when false)."""
        if not binds:
            raise ValueError('listen() needs at least one binding')
        if self.broker is None:
            raise RuntimeError(f'world {self.name} has no broker')
        self._n_listeners += 1
        name = name or f'listener-{self._n_listeners}'
        output = os.path.join(self.dir, f'{name}.jsonl')
        ready = os.path.join(self.dir, f'{name}.ready')
        for p in (output, ready):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        argv = [self._probe(), 'listen', '--broker', self.broker.url, '--output', output,
                '--ready-file', ready]
        for b in binds:
            argv += ['--bind', b]
        if verify is True:
            argv += ['--verify', self.keygen()[1]]
        elif verify:
            argv += ['--verify', str(verify)]
        proc = self.spawn(name, argv, kind='probe')
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if not proc.alive():
                raise RuntimeError(f'{name} exited before its queue was bound:\n'
                                   f'{proc.log_tail()}')
            if time.monotonic() >= deadline:
                proc.stop()
                raise RuntimeError(f'{name}: queue not bound after {timeout}s:\n'
                                   f'{proc.log_tail()}')
            time.sleep(0.02)
        return Listener(self, proc, output, list(binds))

    def wait_for(self, predicate, timeout: float, interval: float = 0.1, what: str = ''):
        """Poll predicate until it returns something truthy and return that. Exceptions count
        as "not yet"; the last one is shown if time runs out."""
        deadline = time.monotonic() + timeout
        last_exc = None
        last_val = None
        while True:
            try:
                last_val = predicate()
                if last_val:
                    return last_val
            except Exception as e:  # noqa: BLE001 - reported on timeout
                last_exc = e
            if time.monotonic() >= deadline:
                msg = f'timed out after {timeout}s waiting for {what or predicate!r}'
                if last_exc is not None:
                    msg += f' (last error: {type(last_exc).__name__}: {last_exc})'
                else:
                    msg += f' (last value: {last_val!r})'
                raise AssertionError(msg)
            time.sleep(interval)

    def logs(self) -> list[tuple[str, str]]:
        """(name, path) of every log this world has, once each, for failure reports."""
        out = []
        for o in self.objects:
            if isinstance(o, Proc):
                out.append((o.name, o.log_path))
            elif isinstance(o, Host):
                out.append((f'manager-{o.name}', o.log_path))
            elif isinstance(o, Broker) and not o.attached:
                out.append(('broker', o.state.get('log_path')))
        seen = set()
        return [(n, p) for n, p in out if p and not (p in seen or seen.add(p))]

    # -- teardown ------------------------------------------------------------------------------

    def _teardown_object(self, o) -> None:
        if isinstance(o, Proc):
            o.stop(STOP_TIMEOUT)
        elif isinstance(o, Host):
            o.stop(STOP_TIMEOUT)
        elif isinstance(o, Broker):
            if o.attached:
                teardown_attached_broker(o)
            else:
                o.destroy()

    def close(self) -> None:
        """Stop everything in reverse start order, by PID; remove cgroups and (unless
        BATON_KEEP_WORLD=1) the world's directory. Safe to call twice."""
        if self._closed:
            return
        with _SignalsDeferred():
            self._closed = True
            errors = []
            for o in reversed(self.objects):
                try:
                    self._teardown_object(o)
                except Exception as e:  # noqa: BLE001 - keep stopping the rest
                    errors.append(f'{o!r}: {e}')
            self.save_state(closed=True)
            if self._reaper_fd is not None:
                os.close(self._reaper_fd)
                self._reaper_fd = None
            if self._reaper is not None:
                try:
                    self._reaper.wait(30)
                except subprocess.TimeoutExpired:
                    self._reaper.kill()
                    self._reaper.wait()
            if os.environ.get('BATON_KEEP_WORLD') == '1':
                print(f'# world {self.name} kept in {self.dir}', file=sys.stderr)
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            if errors:
                raise RuntimeError(f'world {self.name}: teardown problems:\n  ' +
                                   '\n  '.join(errors))

    def reap(self, grace: float = 3.0) -> None:
        """Stop everything at once, without ceremony: for the reaper when the owner died."""
        objs = list(reversed(self.objects))
        leaders = []  # session leaders of spawned processes: signal their whole group
        pairs = []
        for o in objs:
            if isinstance(o, Proc):
                leaders.append((o.pid, o.start_time))
            elif isinstance(o, Host):
                pairs.append((o.manager_pid, o.manager_start))
            elif isinstance(o, Broker) and not o.attached:
                st = o._refresh()
                safe_kill(st.get('beam_pid'), st.get('beam_start'), signal.SIGCONT)
                pairs += [(st.get('beam_pid'), st.get('beam_start')),
                          (st.get('wrapper_pid'), st.get('wrapper_start'))]
                # epmd last (below): the VM may still need it to shut down cleanly.
                epmd = st.get('epmd_pid')
                pairs += [(p, s) for p, s in broker_marked_pids(o.dir) if p != epmd
                          and proc_comm(p) != 'epmd']

        def killgroups(sig):
            for pid, start in leaders:
                if pid_alive(pid, start):
                    try:
                        os.killpg(pid, sig)
                    except (ProcessLookupError, PermissionError):
                        safe_kill(pid, start, sig)

        killgroups(signal.SIGTERM)
        for pid, start in pairs:
            safe_kill(pid, start, signal.SIGTERM)
        if not wait_pids_gone(leaders + pairs, grace):
            killgroups(signal.SIGKILL)
            for pid, start in pairs:
                safe_kill(pid, start, signal.SIGKILL)
            wait_pids_gone(leaders + pairs, 5.0)
        for pid, start in leaders:  # children that outlived their session leader
            if start is not None:
                terminate_pids(session_pids(pid, start), 0, signal.SIGKILL)
        for o in objs:
            try:
                if isinstance(o, Host):
                    for d in o.cgroup_dirs:
                        cgroup_remove(d)
                elif isinstance(o, Broker):
                    if o.attached:
                        teardown_attached_broker(o)
                    else:
                        o.stop_epmd(2.0)
                        terminate_pids(broker_marked_pids(o.dir), 2.0)
            except Exception as e:  # noqa: BLE001 - keep going
                print(f'reaper: {o!r}: {e}', file=sys.stderr)
        self.save_state(closed=True)


def teardown_attached_broker(b: Broker) -> None:
    """Give a shared node back as we found it: running, without our vhost and users."""
    st = b._refresh()
    safe_kill(st.get('beam_pid'), st.get('beam_start'), signal.SIGCONT)
    if not b.running():
        b.start()
    problems = []
    for user in b.users:
        r = b.ctl('delete_user', user)
        if r.returncode != 0 and 'does not exist' not in (r.stderr + r.stdout):
            problems.append(f'delete_user {user}: {r.stderr.strip()}')
    r = b.ctl('delete_vhost', b.vhost)
    if r.returncode != 0 and 'does not exist' not in (r.stderr + r.stdout):
        problems.append(f'delete_vhost {b.vhost}: {r.stderr.strip()}')
    if problems:
        raise RuntimeError('; '.join(problems))


# ---------------------------------------------------------------------------------------------
# CLI


def reaper_main(dir: str) -> int:
    """Block until the owner's pipe closes (owner closed the world or died), then stop
    whatever world.json still lists."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            if not os.read(0, 4096):
                break
        except InterruptedError:
            continue
        except OSError as e:
            if e.errno == errno.EBADF:
                break
            raise
    try:
        state = read_json(os.path.join(dir, 'world.json'))
    except (OSError, ValueError):
        return 0
    if state.get('closed'):
        return 0
    print(f'reaper: owner {state.get("owner_pid")} of {dir} is gone, stopping its world',
          flush=True)
    w = World.load(dir)
    w.reap()
    if os.environ.get('BATON_KEEP_WORLD') != '1':
        shutil.rmtree(dir, ignore_errors=True)
    return 0


def usage() -> int:
    print(__doc__.strip().split('\n\n')[-1], file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        return usage()
    cmd, rest = argv[1], argv[2:]
    if cmd == 'reaper' and len(rest) == 1:
        return reaper_main(rest[0])
    if cmd == 'broker-up' and len(rest) == 1:
        install_signal_handlers()
        b = broker_up(rest[0])
        print(json.dumps({'url': b.url, 'json': b.state_path, 'dir': b.dir, 'port': b.port,
                          'pid': b.pid}))
        return 0
    if cmd == 'broker-down' and len(rest) == 1:
        Broker(os.path.abspath(rest[0])).destroy()
        return 0
    if cmd == 'broker-ctl' and len(rest) == 2:
        b = Broker(os.path.abspath(rest[0]))
        action = rest[1]
        if action not in ('stop', 'start', 'pause', 'resume'):
            return usage()
        getattr(b, action)()
        return 0
    if cmd == 'down' and len(rest) == 1:
        w = World.load(rest[0])
        w._closed = False
        w.close()
        return 0
    return usage()


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv))
    except (RuntimeError, OSError, ValueError) as e:
        print(f'world.py: {e}', file=sys.stderr)
        sys.exit(1)
