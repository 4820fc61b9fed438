# SPDX-License-Identifier: MIT
"""TAP runner for integration test scripts: cases share one World (unless a case asks for a
fresh one), run in definition order, and a failure is reported with its traceback and the
tail of every process log of the world, all as TAP comments.

    suite = Suite('skeleton')

    @suite.setup
    def setup(world): world.start_broker()

    @suite.case
    def three_hosts_appear(world): ...

    @suite.case(fresh=True)
    def survives_broker_loss(world): ...

    if __name__ == '__main__':
        suite.run()

Command-line arguments (or BATON_TEST_CASES, space separated) select cases by name; the
others are reported as skipped.
"""

import io
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import world as worldmod  # noqa: E402
from world import World  # noqa: E402


class Skip(Exception):
    pass


class _Comments(io.TextIOBase):
    """Whatever a case prints becomes TAP comments, so it cannot break the stream."""

    def __init__(self, out):
        self.out = out
        self.buf = ''

    def writable(self):
        return True

    def write(self, s):
        self.buf += s
        while '\n' in self.buf:
            line, self.buf = self.buf.split('\n', 1)
            self.out.write(f'# {line}\n')
        return len(s)

    def flush(self):
        if self.buf:
            self.out.write(f'# {self.buf}\n')
            self.buf = ''
        self.out.flush()


class _Case:
    def __init__(self, fn, name: str, fresh: bool):
        self.fn = fn
        self.name = name
        self.fresh = fresh


class Suite:
    def __init__(self, name: str, world_factory=None):
        self.name = name
        self.cases: list[_Case] = []
        self._setup = None
        self._world_factory = world_factory or (lambda n: World(n))
        self._out = sys.stdout

    # -- declaration ---------------------------------------------------------------------------

    def case(self, fn=None, *, fresh: bool = False, name: str | None = None):
        """Decorator: @suite.case or @suite.case(fresh=True, name='...')."""
        def register(f):
            self.cases.append(_Case(f, name or f.__name__, fresh))
            return f
        return register(fn) if fn is not None else register

    def setup(self, fn):
        """Decorator: runs once on the shared world before the first case that uses it."""
        self._setup = fn
        return fn

    @staticmethod
    def skip(why: str):
        raise Skip(why)

    # -- output --------------------------------------------------------------------------------

    def _emit(self, line: str = '') -> None:
        self._out.write(line + '\n')
        self._out.flush()

    def _comment(self, text: str) -> None:
        for line in text.rstrip('\n').split('\n'):
            self._emit(f'# {line}'.rstrip())

    # -- running -------------------------------------------------------------------------------

    def _selected(self, argv) -> set[str] | None:
        names = list(argv) or os.environ.get('BATON_TEST_CASES', '').split()
        if not names:
            return None
        unknown = [n for n in names if n not in {c.name for c in self.cases}]
        if unknown:
            self._comment(f'unknown case(s): {" ".join(unknown)}')
        return set(names)

    def _run_case(self, case: _Case, world) -> tuple[str, str]:
        """Run one case; returns (result, text) with result 'ok', 'skip' or 'fail'. The
        failure text (traceback, log tails) is gathered before a fresh world is closed."""
        real_stdout = sys.stdout
        sys.stdout = _Comments(real_stdout)
        try:
            if case.fresh:
                world = self._world_factory(f'{self.name}-{case.name}')
            try:
                case.fn(world)
                return 'ok', ''
            except Skip as s:
                return 'skip', str(s)
            except Exception:
                return 'fail', traceback.format_exc() + self._world_report(world)
            finally:
                sys.stdout.flush()
                sys.stdout = real_stdout
                if case.fresh:
                    world.close()
        except Exception:
            return 'fail', traceback.format_exc()
        finally:
            sys.stdout = real_stdout

    def _world_report(self, world) -> str:
        if world is None:
            return ''
        out = [f'world: {world.dir}']
        for name, path in world.logs():
            if not path:
                continue
            out.append(f'--- {name}: last {worldmod.LOG_TAIL_LINES} lines of {path}')
            out.append(worldmod.tail(path) or '(empty)')
        return '\n'.join(out)

    def run(self, argv=None) -> None:
        argv = sys.argv[1:] if argv is None else argv
        worldmod.install_signal_handlers()
        selected = self._selected(argv)
        self._out = sys.stdout
        self._emit('TAP version 13')
        self._emit(f'1..{len(self.cases)}')
        todo = [c for c in self.cases if selected is None or c.name in selected]
        failed = 0
        shared = None
        setup_error = None
        n = 0
        try:
            if any(not c.fresh for c in todo) or (todo and self._setup is not None):
                try:
                    shared = self._world_factory(self.name)
                    if self._setup is not None:
                        self._setup(shared)
                except Exception:
                    setup_error = (traceback.format_exc() +
                                   self._world_report(shared))
            first_failure = True
            for n, case in enumerate(self.cases, 1):
                if case not in todo:
                    self._emit(f'ok {n} - {case.name} # SKIP not selected')
                    continue
                if setup_error is not None:
                    failed += 1
                    self._emit(f'not ok {n} - {case.name}')
                    self._comment('setup failed' + (':' if first_failure else ' (see above)'))
                    if first_failure:
                        self._comment(setup_error)
                    first_failure = False
                    continue
                t0 = time.monotonic()
                result, text = self._run_case(case, shared)
                if result == 'ok':
                    self._emit(f'ok {n} - {case.name}')
                    self._comment(f'{case.name}: {time.monotonic() - t0:.1f}s')
                elif result == 'skip':
                    self._emit(f'ok {n} - {case.name} # SKIP {text}')
                else:
                    failed += 1
                    self._emit(f'not ok {n} - {case.name}')
                    self._comment(text)
        except BaseException as e:  # SystemExit from a signal, KeyboardInterrupt
            self._emit(f'Bail out! {type(e).__name__} {e} during case {n}')
            raise
        finally:
            if shared is not None:
                try:
                    shared.close()
                except Exception:
                    failed += 1
                    self._comment('closing the world failed:')
                    self._comment(traceback.format_exc())
        sys.exit(1 if failed else 0)
