# SPDX-License-Identifier: MIT
"""The systemd units and the Debian packages as an operator meets them: the units pass
`systemd-analyze verify` (a broken copy does not) and keep their hardening; the .debs build
with packaging/build-debs.sh, lintian-clean of errors; `dpkg -i` installs them on this
machine with safe defaults that pass --check-config, configuration files that only root
(and the controller's user) can read, a signing key made at installation, the units where
dh puts them and enabled the Debian way; the installed controller, agent and batonctl work
together with that key against a real broker; `dpkg --purge` leaves the machine as it was.

Set BATON_TEST_DEBS=DIR to test .debs already built there instead of building them."""

import glob
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import world as worldmod  # noqa: E402
from tap import Suite  # noqa: E402

SRC = worldmod.SOURCE_DIR
PACKAGES = ['baton-agent', 'baton-controller', 'batonctl']
UNITS = ['baton-agent.service', 'baton-controller.service']
BUILD_TIMEOUT = 720  # dpkg-buildpackage with the unit tests: ~2 min on 2 idle cores
# Left behind by an interrupted run (packages installed, maybe the user made): the next
# run purges first.
MARKER = '/var/tmp/baton-test-packaging.json'
WANTS = '/etc/systemd/system/multi-user.target.wants'
DSH = '/var/lib/systemd/deb-systemd-helper-enabled'

suite = Suite('packaging')
S = {}

WEB = """[Unit]
Description=packaging test web %i

[Service]
ExecStart=/bin/sleep infinity

[X-Baton]
Replicas=1
"""


def run(argv, timeout=120, **kw):
    r = worldmod.run(argv, timeout=timeout, **kw)
    print(f'$ {" ".join(argv)} -> {r.returncode}')
    return r


def dpkg(*args, timeout=300):
    """dpkg, waiting for its lock while someone else (apt) holds it."""
    deadline = time.monotonic() + 180
    while True:
        r = run(['dpkg', *args], timeout=timeout, env={**os.environ,
                                                      'DEBIAN_FRONTEND': 'noninteractive'})
        if 'lock' not in r.stderr or r.returncode == 0 or time.monotonic() > deadline:
            return r
        time.sleep(2)


def installed(pkg):
    r = worldmod.run(['dpkg-query', '-W', '-f=${Status}', pkg])
    return r.returncode == 0 and 'install ok installed' in r.stdout


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def mode_owner(path):
    st = os.stat(path)
    return (stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name,
            grp.getgrgid(st.st_gid).gr_name)


def purge_everything(user_created):
    """dpkg --purge our packages; remove the system user the package made (Debian keeps
    system users on purge; this test gives the machine back as it found it)."""
    r = dpkg('--purge', *PACKAGES)
    assert r.returncode == 0, r.stdout + r.stderr
    if user_created and user_exists('baton'):
        r = run(['deluser', '--system', '--quiet', 'baton'])
        assert r.returncode == 0, r.stderr
        try:
            grp.getgrnam('baton')
            run(['delgroup', '--system', '--quiet', 'baton'])
        except KeyError:
            pass
    try:
        os.unlink(MARKER)
    except FileNotFoundError:
        pass


# -- units, from the source tree -----------------------------------------------------------


def unit_root(world, units):
    """A root for `systemd-analyze --root`: this machine's units (for the targets ours
    reference), the units given, and the binaries they run, from the build."""
    S['roots'] = S.get('roots', 0) + 1
    root = os.path.join(world.dir, f'root-{S["roots"]}')
    shutil.copytree('/lib/systemd/system', os.path.join(root, 'lib/systemd/system'),
                    symlinks=True)
    os.makedirs(os.path.join(root, 'usr/sbin'))
    os.makedirs(os.path.join(root, 'etc/systemd/system'))
    for name, text in units.items():
        with open(os.path.join(root, 'lib/systemd/system', name), 'w') as f:
            f.write(text)
    for exe in ('agent/baton-agent', 'controller/baton-controller'):
        shutil.copy(worldmod.build_path(*exe.split('/')), os.path.join(root, 'usr/sbin'))
    return root


def verify(root, *units):
    """(ok, output): verify prints nothing for a good unit and exits 0 even for a typo'd
    key or an unparsable value (it only warns), so any output counts as a failure."""
    argv = ['systemd-analyze', 'verify', '--man=no', '--generators=no']
    if root:
        argv.append(f'--root={root}')
    r = run(argv + list(units), timeout=60)
    out = (r.stdout + r.stderr).strip()
    return r.returncode == 0 and not out, out


def read_unit(name):
    with open(os.path.join(SRC, 'packaging', name)) as f:
        return f.read()


def directives(text):
    out = {}
    for line in text.splitlines():
        if '=' in line and not line.startswith(('#', ';', '[')):
            k, v = line.split('=', 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


@suite.case
def units_pass_systemd_analyze_verify(world):
    units = {u: read_unit(u) for u in UNITS}
    root = unit_root(world, units)
    ok, out = verify(root, *UNITS)
    assert ok, out
    for u, text in units.items():
        d = directives(text)
        assert d['Type'] == ['notify'], (u, d['Type'])
        assert d['WatchdogSec'] and d['Restart'] == ['always'], u
        assert d['ProtectSystem'] == ['strict'] and d['NoNewPrivileges'] == ['yes'], u
        assert d['CapabilityBoundingSet'] == [''], u
    assert directives(units['baton-agent.service'])['ReadWritePaths'] == ['/etc/systemd/system']
    assert directives(units['baton-controller.service'])['User'] == ['baton']


@suite.case
def broken_units_fail_verification(world):
    good = read_unit('baton-agent.service')
    breakages = {
        'a misspelt key': ('ProtectSystem=strict', 'ProtectSytem=strict', 'ProtectSytem'),
        'a bad value': ('Type=notify', 'Type=notfy', 'notfy'),
        'a bad duration': ('WatchdogSec=30s', 'WatchdogSec=30x', '30x'),
        'a missing binary': ('ExecStart=/usr/sbin/baton-agent', 'ExecStart=/usr/sbin/baton-agnt',
                             'baton-agnt'),
    }
    for what, (old, new, word) in breakages.items():
        assert old in good, (what, old)
        root = unit_root(world, {'broken.service': good.replace(old, new, 1)})
        ok, out = verify(root, 'broken.service')
        assert not ok, f'{what}: verify accepted it'
        assert word in out, (what, out)


@suite.case
def units_keep_their_hardening(world):
    # systemd's own exposure score (0 safest .. 10; --threshold counts tenths): a unit
    # that loses some of its sandboxing fails.
    root = unit_root(world, {u: read_unit(u) for u in UNITS})
    for unit, threshold in (('baton-controller.service', 1.5), ('baton-agent.service', 2.0)):
        r = run(['systemd-analyze', 'security', '--offline=yes', f'--root={root}',
                 f'--threshold={round(threshold * 10)}', '--no-pager', unit], timeout=60)
        score = [line for line in r.stdout.splitlines() if 'Overall exposure' in line]
        print(score)
        assert r.returncode == 0, f'{unit} exposure above {threshold}: {score}'


# -- the packages --------------------------------------------------------------------------


@suite.case
def debs_build_without_lintian_errors(world):
    given = os.environ.get('BATON_TEST_DEBS')
    if given:
        S['debs'] = sorted(glob.glob(os.path.join(given, '*.deb')))
        suite.skip(f'using the .debs in {given} (BATON_TEST_DEBS)')
    out = os.path.join(world.dir, 'debs')
    t0 = time.monotonic()
    r = run([os.path.join(SRC, 'packaging', 'build-debs.sh'), out], timeout=BUILD_TIMEOUT)
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stderr[-6000:]
    print(f'built in {time.monotonic() - t0:.0f}s')
    lint = [line for line in r.stdout.splitlines() if line[:3] in ('E: ', 'W: ', 'I: ')]
    assert not [line for line in lint if line.startswith('E: ')], lint
    S['debs'] = sorted(glob.glob(os.path.join(out, '*.deb')))
    names = sorted(os.path.basename(d).split('_')[0] for d in S['debs'])
    assert names == sorted(PACKAGES + [p + '-dbgsym' for p in PACKAGES]), names


def install_guard():
    if not S.get('debs'):
        suite.skip('no .debs (the build failed)')
    if S.get('not_ours'):
        suite.skip(S['not_ours'])


@suite.case
def debs_install_with_dpkg(world):
    if not S.get('debs'):
        suite.skip('no .debs (the build failed)')
    if os.path.exists(MARKER):  # an interrupted earlier run: undo it first
        with open(MARKER) as f:
            purge_everything(json.load(f).get('user_created', False))
    busy = [p for p in PACKAGES if installed(p)]
    if busy or os.path.exists('/etc/baton') or os.path.exists('/var/lib/baton'):
        S['not_ours'] = (f'baton is already installed here ({" ".join(busy) or "/etc/baton"}): '
                         'not touching it')
        suite.skip(S['not_ours'])
    S['user_created'] = not user_exists('baton')
    S['wants_before'] = sorted(os.listdir(WANTS)) if os.path.isdir(WANTS) else []
    with open(MARKER, 'w') as f:
        json.dump({'user_created': S['user_created']}, f)
    debs = [d for d in S['debs'] if '-dbgsym_' not in d]
    r = dpkg('-i', *debs)
    S['installed'] = True
    assert r.returncode == 0, r.stdout + r.stderr
    for p in PACKAGES:
        assert installed(p), p


@suite.case
def installed_defaults_pass_check_config(world):
    install_guard()
    r = run(['/usr/sbin/baton-agent', '--check-config', '--config', '/etc/baton/agent.conf'])
    assert r.returncode == 0, r.stderr
    assert 'configuration is valid' in r.stdout, r.stdout
    assert 'CHANGE-ME' not in r.stdout and 'url = (set)' in r.stdout, r.stdout
    assert 'declare_topology = no' in r.stdout and 'manage_units = \n' in r.stdout, r.stdout
    r = run(['/usr/sbin/baton-controller', '--check-config', '--config',
             '/etc/baton/controller.conf'])
    assert r.returncode == 0 and 'configuration is valid' in r.stdout, r.stderr
    # The controller's user reads its file; another unprivileged user cannot.
    as_baton = ['setpriv', '--reuid=baton', '--regid=baton', '--init-groups']
    r = run(as_baton + ['/usr/sbin/baton-controller', '--check-config', '--config',
                        '/etc/baton/controller.conf'])
    assert r.returncode == 0, r.stderr
    r = run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups',
             '/usr/sbin/baton-controller', '--check-config', '--config',
             '/etc/baton/controller.conf'])
    assert r.returncode == 1 and 'Permission denied' in r.stderr, (r.returncode, r.stderr)

    r = run(['/usr/bin/batonctl', '--help'])
    assert r.returncode == 0 and r.stdout.startswith('Usage: batonctl'), r.stdout
    # The default batonctl.conf parses; its placeholder broker is (rightly) unreachable.
    r = run(['/usr/bin/batonctl', '--config', '/etc/baton/batonctl.conf', '--timeout', '3s',
             'ping'], timeout=30)
    assert r.returncode == 3 and 'broker.invalid' in r.stderr, (r.returncode, r.stderr)
    for tool in ('/usr/sbin/baton-keygen', '/usr/sbin/baton-broker-setup'):
        r = run([tool, '--help'])
        assert r.returncode == 0 and 'Usage:' in r.stdout, (tool, r.stdout, r.stderr)


@suite.case
def installed_files_have_safe_modes(world):
    install_guard()
    expect = {
        '/etc/baton/agent.conf': (0o600, 'root', 'root'),
        '/etc/baton/controller.conf': (0o640, 'root', 'baton'),
        '/etc/baton/batonctl.conf': (0o600, 'root', 'root'),
        '/etc/baton/controller.key': (0o600, 'baton', 'baton'),
        '/etc/baton/controller.pub': (0o644, 'root', 'root'),
        '/var/lib/baton': (0o700, 'baton', 'baton'),
        # Searchable, not listable: a gateway running as its own user reads its
        # shards/<unit> file (ShardChange=reload); the state file itself is 0600.
        '/var/lib/baton-agent': (0o711, 'root', 'root'),
        '/usr/sbin/baton-agent': (0o755, 'root', 'root'),
        '/usr/sbin/baton-controller': (0o755, 'root', 'root'),
        '/usr/bin/batonctl': (0o755, 'root', 'root'),
    }
    got = {p: mode_owner(p) for p in expect}
    assert got == expect, {p: (oct(got[p][0]),) + got[p][1:] for p in got if got[p] != expect[p]}
    u = pwd.getpwnam('baton')
    assert u.pw_uid < 1000 and u.pw_shell.endswith('nologin'), u
    r = run(['dpkg-statoverride', '--list', '/etc/baton/controller.conf'])
    assert r.stdout.split() == ['root', 'baton', '640', '/etc/baton/controller.conf'], r.stdout
    # Conffiles: an administrator's edits survive upgrades.
    r = run(['dpkg-query', '-W', '-f=${Conffiles}\n', *PACKAGES])
    conffiles = sorted(line.split()[0] for line in r.stdout.splitlines() if line.strip())
    assert conffiles == ['/etc/baton/agent.conf', '/etc/baton/batonctl.conf',
                         '/etc/baton/controller.conf'], conffiles


@suite.case
def installed_units_are_enabled_the_debian_way(world):
    install_guard()
    for u in UNITS:
        path = f'/lib/systemd/system/{u}'
        with open(path) as f:
            assert f.read() == read_unit(u), f'{path} differs from packaging/{u}'
        # Enabled as `systemctl enable` would: a symlink in multi-user.target.wants, and
        # deb-systemd-helper's record of it (so purge removes exactly that).
        link = os.path.join(WANTS, u)
        assert os.path.islink(link) and os.readlink(link) == path, link
        assert os.path.exists(os.path.join(DSH, 'multi-user.target.wants', u))
    # Installed units verify against the installed binaries, in the real root.
    ok, out = verify(None, *UNITS)
    assert ok, out
    after = sorted(os.listdir(WANTS))
    assert sorted(set(after) - set(S['wants_before'])) == sorted(UNITS), after


def write_conf(path, text, mode=0o600, group='root'):
    with open(path, 'w') as f:
        f.write(text)
    os.chown(path, 0, grp.getgrnam(group).gr_gid)
    os.chmod(path, mode)


@suite.case
def installed_binaries_work_with_the_generated_key(world):
    """The installed controller, running as baton with the key postinst made, signs a
    Placement that the installed agent, given /etc/baton/controller.pub, accepts."""
    install_guard()
    b = world.start_broker()
    state = os.path.join(world.dir, 'controller-state')
    os.makedirs(state)
    baton = pwd.getpwnam('baton')
    os.chown(state, baton.pw_uid, baton.pw_gid)
    os.chmod(state, 0o700)
    conf = os.path.join(world.dir, 'controller.conf')
    write_conf(conf, f"""[broker]
url = {b.url}
heartbeat = 2s
[controller]
database = {state}/controller.db
host_timeout = 5s
[security]
signing_key = /etc/baton/controller.key
operators = guest
""", 0o640, 'baton')
    world.spawn('installed-controller', ['setpriv', '--reuid=baton', '--regid=baton',
                                         '--init-groups', '/usr/sbin/baton-controller',
                                         '--config', conf], kind='controller')
    ctl = ['/usr/bin/batonctl', '--broker', b.url]
    world.wait_for(lambda: run(ctl + ['ping'], timeout=15).returncode == 0, 30,
                   what='the installed controller answering')

    host = world.add_host('pkg')
    aconf = os.path.join(host.dir, 'agent.conf')
    write_conf(aconf, f"""[broker]
url = {b.url}
heartbeat = 2s
[agent]
host = pkg
scope = user
manage_units = web@*.service
heartbeat_interval = 1s
state_dir = {host.dir}/agent-state
[security]
controller_public_key = /etc/baton/controller.pub
""")
    world.spawn('installed-agent', ['/usr/sbin/baton-agent', '--config', aconf],
                env=host.env, kind='agent', host='pkg')

    def hosts_up():
        r = run(ctl + ['--json', 'hosts'], timeout=15)
        return r.returncode == 0 and [h for h in json.loads(r.stdout)['hosts']
                                      if h['host'] == 'pkg' and h['state'] == 'up']
    world.wait_for(hosts_up, 30, what='host pkg up')
    spec = os.path.join(world.dir, 'web@.service')
    with open(spec, 'w') as f:
        f.write(WEB)
    r = run(ctl + ['apply', spec], timeout=30)
    assert r.returncode == 0, r.stderr
    world.wait_for(lambda: host.is_active('web@0.service'), 30, what='web@0 active on pkg')


@suite.case
def purge_leaves_the_machine_as_it_was(world):
    if not S.get('installed'):
        suite.skip('nothing was installed')
    # Stop what ran from the installed binaries before their files go.
    for p in world.procs:
        if p.name.startswith('installed-'):
            p.stop()
    purge_everything(S['user_created'])
    for p in PACKAGES:
        r = worldmod.run(['dpkg-query', '-W', '-f=${Status}', p])
        assert 'installed' not in r.stdout.replace('not-installed', ''), (p, r.stdout)
    gone = ['/etc/baton', '/var/lib/baton', '/var/lib/baton-agent', '/usr/sbin/baton-agent',
            '/usr/sbin/baton-controller', '/usr/sbin/baton-keygen', '/usr/bin/batonctl',
            '/usr/sbin/baton-broker-setup', '/usr/share/doc/baton-agent', MARKER] + \
        [f'/lib/systemd/system/{u}' for u in UNITS] + \
        [os.path.join(WANTS, u) for u in UNITS] + \
        [os.path.join(DSH, 'multi-user.target.wants', u) for u in UNITS] + \
        [os.path.join(DSH, f'{u}.dsh-also') for u in UNITS]
    left = [p for p in gone if os.path.lexists(p)]
    assert not left, left
    r = run(['dpkg-statoverride', '--list', '/etc/baton/controller.conf'])
    assert r.stdout.strip() == '', r.stdout
    wants = sorted(os.listdir(WANTS)) if os.path.isdir(WANTS) else []
    assert wants == S['wants_before'], wants
    if S['user_created']:
        assert not user_exists('baton')


if __name__ == '__main__':
    suite.run()
