"""Shared test setup: float64 for the whole test process (``bandit_lab.enable_x64()``, as the
``bandit-lab`` command does; importing bandit_lab alone leaves JAX's config alone), strict checks."""
import contextlib
import os
import re

import numpy as np
import pytest

# On a GPU, XLA may reduce and scatter with atomics, whose order (and so the last bits) changes from
# run to run; the suite's bit-identity tests (identical solves, blocked sweeps) hold on a GPU only
# with deterministic ops. The flag is read by XLA's GPU backend only (the CPU ignores it), and it
# must be set before JAX's backend starts; subprocesses of the tests inherit it.
if "xla_gpu_deterministic_ops" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_deterministic_ops=true").strip()

# The suite is compile-bound (below): its processes and their subprocesses compile in fast-compile
# mode (bandit_lab.infra.xla_flags: XLA's classic CPU fusion emitters, one codegen module per program,
# LLVM at -O0 — XLA's compile time of a cold run 290 → 135 s, the run 368 → 294 s; the generated code
# is slower, and values move in the last bits — through 8,000 Adam steps by up to 1e-7 — which the
# tests' tolerances are for: docs/performance.md, "The test suite"), set before JAX's backend starts.
# `verify` compiles in the same mode. The commands that check documented outputs run with XLA's
# defaults, as a reader's do (docs_outputs.run_command). BANDIT_LAB_FAST_COMPILE=0 runs the suite
# with XLA's defaults throughout.
from bandit_lab.infra import xla_flags  # noqa: E402  (imports no JAX)

if xla_flags.requested(True):
    xla_flags.enable()

import jax  # noqa: E402

import bandit_lab  # noqa: E402

bandit_lab.enable_x64()
jax.config.update("jax_numpy_rank_promotion", "allow")

# The suite is compile-bound: XLA compiles are ≈ 3/4 of its CPU time (docs/performance.md, "The test
# suite"). So the test processes use JAX's persistent compilation cache as every `bandit-lab` command
# does, in the same directory (`bandit_lab.infra.cache`: $BANDIT_LAB_CACHE_DIR, else the user's cache
# dir): a program compiled once — by an earlier run, by the other xdist worker, or by a CLI subprocess —
# is loaded instead of compiled again. An entry's key is the program itself with the JAX/XLA versions
# and the device, so a stale entry is never used; entries are verified and written atomically, so the
# workers and subprocesses share the directory safely (tests/test_cache_verified.py, which also shows
# the answers are the `--no-cache` bits). Only XLA's compile is skipped: every test still traces and
# lowers the library's code (bandit-lab's export cache of traced programs stays off, except inside a
# test whose own command turns it on; the process-wide state guard below puts it back off).
# BANDIT_LAB_NO_CACHE=1 runs the suite without it (a cold run compiles everything).
from bandit_lab.infra import cache as _cache, export_cache as _export_cache  # noqa: E402

_cache.enable()
_export_cache.set_dir(None)


def pytest_configure(config):
    assert jax.config.jax_enable_x64, "tests need float64"


# ----------------------------------------------------------------------------- parallel by default
# `python -m pytest -q` (the README's command, CI's) runs the whole default suite on two pytest-xdist
# workers when pytest-xdist is installed (the `test` extra declares it): measured in docs/performance.md
# ("The test suite"). Files, not single tests, are the unit of distribution (`--dist loadfile`): a
# module's fixtures (compiled programs shared by its tests) are built once, on one worker. Serial
# (as before) when pytest-xdist is absent or disabled (`-p no:xdist`), when you name tests yourself
# (`pytest tests/test_x.py -k …`: no worker start-up for a few tests), with `-n N` / `-n 0` given,
# with --pdb or --collect-only, or with BANDIT_LAB_TEST_WORKERS=0 (or =N for N workers).
DEFAULT_WORKERS = 2


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    workers = os.environ.get("BANDIT_LAB_TEST_WORKERS", "").strip()
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput"):
        return
    if config.option.numprocesses is not None or config.option.dist != "no" or getattr(config.option, "tx", None):
        return  # the caller chose
    if config.getoption("usepdb", False) or config.getoption("collectonly", False):
        return
    if workers:
        if not workers.isdigit():
            raise pytest.UsageError(f"BANDIT_LAB_TEST_WORKERS: a number of workers (0: serial), got {workers!r}")
        n = int(workers)
    elif config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        n = DEFAULT_WORKERS
    else:
        return
    if n > 0:
        config.option.numprocesses = n
        config.option.dist = "loadfile"
        config.option.loadscopereorder = False  # our order: LONG_FILES first (below), not the most tests first


# The run ends when the last file does, and xdist's default order (the files with the most tests
# first) started test_explore_browser.py — one test, 14 s — last: the other worker sat idle for 17 s
# (session 10's timeline of a cold run). So the files that took ≥ 10 s of a worker's wall in that run
# are handed out first, longest first, and the short ones fill in at the end. Only the order changes.
LONG_FILES = ("test_scale.py", "test_api.py", "test_zoo_trl.py", "test_verify_scale.py", "test_docs.py", "test_zoo.py",
              "test_explore_live_browser.py", "test_explore_live.py", "test_stochastic.py", "test_onpolicy.py",
              "test_trl_conformance.py", "test_runaway_limits.py", "test_bad_input.py", "test_audit_rows.py",
              "test_tokens.py", "test_loss_check.py", "test_explore_browser.py", "test_core_solver.py", "test_verdicts.py",
              "test_spo.py", "test_verl_cov.py", "test_explore.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order



# ----------------------------------------------------------------------------- timed tests run alone
# A test that asserts a wall-clock time (`@pytest.mark.timing`: the live page's 100 ms round trip, the
# refusal-in-a-second checks, the token-tree speed floor) measures this machine, not this machine
# shared with the other worker's compiles: on 2 cores a concurrent test doubled a 70 ms browser round
# trip (CI, stop 29). So the workers share a writer-preferring lock: every test holds it shared for
# its whole protocol (setup, call, teardown); a timed test takes it exclusively, which waits for the
# other workers' current tests and keeps them from starting another until it is done. Serial runs
# (no xdist) skip it. Two files: `gate` orders the requests (a waiting timed test is not starved by
# a stream of shared holders), `work` is the lock itself.

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    with _cpu_logged(item):
        yield from _timed_alone(item)


def _timed_alone(item):
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not uid:
        yield
        return
    import fcntl
    import tempfile

    root = os.path.join(tempfile.gettempdir(), f"bandit-lab-tests-{uid}")
    os.makedirs(root, exist_ok=True)
    timed = item.get_closest_marker("timing") is not None
    with open(os.path.join(root, "gate"), "a+") as gate, open(os.path.join(root, "work"), "a+") as work:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(work, fcntl.LOCK_EX if timed else fcntl.LOCK_SH)
        finally:
            if not timed:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(work, fcntl.LOCK_UN)
            if timed:
                fcntl.flock(gate, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- where the CPU goes
# BANDIT_LAB_TEST_CPU=FILE appends one line per test, "CPU-seconds XLA-compiles nodeid": the test
# process's CPU time (all its threads, XLA's compiler included: time.process_time) plus that of the
# subprocesses it waited for (getrusage(RUSAGE_CHILDREN)), and the XLA programs the test process
# compiled (JAX's backend-compile events; a persistent-cache hit is not one; subprocesses' compiles
# are not counted), over the test's whole protocol — setup, call, teardown, so a module's shared
# fixtures count in its first test and their teardown in its last. Unlike --durations (wall), it
# does not grow when the machine is shared (how docs/performance.md, "The test suite", measured
# where the CPU goes). Sum per file:
#   awk '{split($3, a, "::"); s[a[1]] += $1; n[a[1]] += $2} END {for (f in s) printf "%7.1f %6d %s\n", s[f], n[f], f}' FILE | sort -rn
_CPU_LOG = os.environ.get("BANDIT_LAB_TEST_CPU")
_COMPILES = [0]
if _CPU_LOG:  # registered before any test's state snapshot: part of every test's baseline
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: _COMPILES.__setitem__(0, _COMPILES[0] + (name == "/jax/core/compile/backend_compile_duration")))


@contextlib.contextmanager
def _cpu_logged(item):
    if not _CPU_LOG:
        yield
        return
    import resource
    import time

    def cpu():
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    c0, n0 = cpu(), _COMPILES[0]
    try:
        yield
    finally:
        with open(_CPU_LOG, "a") as fh:  # one short line per write: the workers' lines do not interleave
            fh.write(f"{cpu() - c0:.3f} {_COMPILES[0] - n0} {item.nodeid}\n")


# ----------------------------------------------------------------------------- on-policy references
# shared by tests/test_explain.py and tests/test_variant_points.py

def group_std_point_by_enumeration(pi_ref, r, G, beta, eps=1e-4):
    """Independent NumPy computation (no bandit-lab code): the interior zero of group-std GRPO with
    an expected KL(π‖π_ref) gradient (TRL's bias-corrected k3). Zero ⇔ g_k − ḡ = β(h_k − h̄) for all
    k, g_k = E[(r_k − mean)/(std_ddof1 + ε) | focal k] over the G − 1 others ~ π (0 for a degenerate
    group), h = log π/π_ref; solved as the fixed point θ_k − θ_0 = log π_ref,k/π_ref,0 + (g_k − g_0)/β."""
    import itertools

    from scipy.special import gammaln

    K = len(r)
    comps = np.array([np.bincount(c, minlength=K) for c in itertools.combinations_with_replacement(range(K), G - 1)], float)
    logc = gammaln(G) - gammaln(comps + 1).sum(1)

    def g_of(lp):
        P = np.exp(logc + np.where(comps > 0, comps * lp, 0).sum(1))
        out = np.zeros(K)
        for k in range(K):
            A = []
            for n in comps:
                rs = np.concatenate([np.repeat(r, n.astype(int)), [r[k]]])
                A.append(0.0 if np.all(rs == rs[0]) else (r[k] - rs.mean()) / (rs.std(ddof=1) + eps))
            out[k] = P @ np.asarray(A)
        return out

    th = np.log(pi_ref)
    for _ in range(100):
        g = g_of(th - np.logaddexp.reduce(th))
        new = np.log(pi_ref / pi_ref[0]) + (g - g[0]) / beta
        if np.max(np.abs(new - (th - th[0]))) < 1e-13:
            break
        th = new
    return new


# ----------------------------------------------------------------------------- counting XLA compiles
# shared by the "compiles once" tests (test_core_solver, test_onpolicy, test_explore, test_explore_live)

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compile_events():
    """``with compile_events() as names:`` — the XLA backend compiles (JAX's monitoring event, one
    per compiled program) while the block runs. Registers its own listener and removes only that one
    (never ``jax.monitoring.clear_event_listeners()``, which would also remove JAX's and other
    tests' listeners): ``unregister_event_duration_listener`` where JAX has it (≥ 0.4.36), else the
    listener is taken out of JAX's list by hand."""
    names: list = []

    def listener(name, *a, **k):
        if name == COMPILE_EVENT:
            names.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
        if unregister is not None:
            unregister(listener)
        else:  # older JAX: the private list the register function appends to
            from jax._src import monitoring

            monitoring._event_duration_secs_listeners.remove(listener)


def count_compiles(fn) -> int:
    """How many XLA programs ``fn()`` compiles (:func:`compile_events`)."""
    with compile_events() as names:
        fn()
    return len(names)


# ----------------------------------------------------------------------------- the bad-input contract
# shared by tests/test_bad_input.py and tests/test_bad_input_surfaces.py

def sampled_states_match_exact(o, th, n_keys: int):
    """On-policy sampled mode: the state ``init_state`` draws under ``n_keys`` keys, and whether the
    mean of its surrogate coefficients ``cp − cm`` is the exact-mode state's within 6 standard
    errors (a Monte Carlo test). Returns ``(keys, states, ok)``."""
    import numpy as np

    ex = o.init_state(th, o.hp, None)
    keys = jax.random.split(jax.random.key(0), n_keys)
    st = jax.vmap(lambda k: o.init_state(th, o.hp, k))(keys)
    w = np.asarray(st["cp"] - st["cm"])
    se = w.std(0) / np.sqrt(w.shape[0])
    return keys, st, bool(np.all(np.abs(w.mean(0) - np.asarray(ex["cp"] - ex["cm"])) <= 6 * se + 1e-12))


def snapshot(root) -> dict:
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            try:
                st_ = os.lstat(p)
            except OSError:
                continue
            out[p] = (st_.st_size, st_.st_mtime_ns)
        out[d] = "dir"
    return out


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(argv, code=2)``: run in-process in an empty cwd; assert the bad-input contract."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    from cli.main import main  # here, not at the top: most test modules never need the CLI

    def run(argv, code=2, match=None, before=None):
        snap = snapshot(tmp_path) if before is None else before
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert e.value.code == code, (argv, e.value.code, err, out[-500:])
        assert len(lines) == 1, (argv, err)
        assert "Traceback" not in err and "internal error" not in err and "Warning" not in err, err
        assert not re.search(r"\b(nan|NaN|inf|Infinity)\b", out), out[-500:]
        assert snapshot(tmp_path) == snap, "a file changed"
        if match is not None:
            assert re.search(match, err), (match, err)
        return err

    run.tmp = tmp_path
    return run


# ----------------------------------------------------------------------------- process-wide state
# Tests run in one process (and, under pytest-xdist, several tests of different modules share a
# worker in an order nobody chose), so a test that changes process-wide state — an in-process
# `bandit-lab --max-memory 1k …` (budget limits), `--float32`, `--plugin` (a registered loss), the
# persistent cache turned on by any in-process command, an environment variable, a JAX option, a
# jax.monitoring listener, a signal handler — must not hand it to the next test. The autouse
# fixture below snapshots all of it before each test (after the module's own fixtures, which a
# module-scoped twin restores at the module's end) and puts back what changed. With
# BANDIT_LAB_TEST_LEAKS=FILE it also appends which test changed what to FILE (how the leaks were found).

_MONITORING_LISTS = ("_event_listeners", "_event_duration_secs_listeners", "_event_time_span_listeners", "_scalar_listeners")


def _state() -> dict:
    import signal
    import sys

    from bandit_lab import errors, explain, plugins
    from bandit_lab.infra import budget, export_cache, precision
    from bandit_lab.losses import base

    mon = sys.modules.get("jax._src.monitoring")
    return {
        "environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},  # pytest's own
        "cwd": os.getcwd(),
        "jax_config": dict(jax.config.values),
        "budget": dict(budget._limits),
        "precision": list(precision._PROCESS_CHOICE),
        "export_dir": export_cache._DIR,
        "plugin_timeout": list(plugins._TIMEOUT),
        "user_losses": set(plugins._USER),
        "plugin_files": {k: list(v) for k, v in plugins._LOADED.items()},
        "plugin_shown": dict(plugins._SHOWN),
        "losses": dict(base.REGISTRY),
        "readers": (dict(explain.READERS), dict(explain.PRESETS), dict(explain.DESCRIBERS)),
        "interrupts": (list(errors._INTERRUPTED), list(errors._ARMED)),
        "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)},
        "itimer": signal.getitimer(signal.ITIMER_REAL)[0] > 0,
        "hooks": (sys.excepthook, sys.unraisablehook),
        "monitoring": {n: list(getattr(mon, n, ())) for n in _MONITORING_LISTS} if mon else {},
        "sys_path": list(sys.path),
    }


_GROWS = ("losses", "readers")  # filled lazily (on first use): growing is not a leak; a user's loss is ("user_losses")


def _only_grew(a, b) -> bool:
    if isinstance(a, tuple):
        return all(_only_grew(x, y) for x, y in zip(a, b))
    return all(b.get(k) is v for k, v in a.items())


def _restore(old: dict, new: dict) -> list[str]:
    """Put back what changed between ``old`` and ``new``; the names of what was put back. Lazily
    filled registries (built-in losses, readers added by a module imported on first use) only grow:
    what a test *added* is removed only when it is a user's (a plugin's) entry."""
    import signal
    import sys

    from bandit_lab import errors, explain, plugins
    from bandit_lab.infra import budget, cache, export_cache, precision
    from bandit_lab.losses import base

    changed = [k for k in old if old[k] != new[k] and not (k in _GROWS and _only_grew(old[k], new[k]))]
    if "environ" in changed:
        for k in set(new["environ"]) - set(old["environ"]):
            del os.environ[k]
        os.environ.update(old["environ"])
    if "cwd" in changed:
        os.chdir(old["cwd"])
    if "jax_config" in changed:
        diff = {k: v for k, v in old["jax_config"].items() if new["jax_config"].get(k) != v}
        if "jax_compilation_cache_dir" in diff:
            cache.disable()  # also forgets JAX's memo of whether the cache is in use
        for k, v in diff.items():
            jax.config.update(k, v)
    budget._limits.clear()
    budget._limits.update(old["budget"])
    precision._PROCESS_CHOICE[:] = old["precision"]
    export_cache.set_dir(old["export_dir"])
    plugins._TIMEOUT[:] = old["plugin_timeout"]
    for name in new["user_losses"] - old["user_losses"]:
        base.REGISTRY.pop(name, None)
    plugins._USER.clear()
    plugins._USER.update(old["user_losses"])
    plugins._LOADED.clear()
    plugins._LOADED.update(old["plugin_files"])
    plugins._SHOWN.clear()
    plugins._SHOWN.update(old["plugin_shown"])
    base.REGISTRY.update({k: v for k, v in old["losses"].items() if base.REGISTRY.get(k) is not v})
    for now, before in zip((explain.READERS, explain.PRESETS, explain.DESCRIBERS), old["readers"]):
        now.update({k: v for k, v in before.items() if now.get(k) is not v})
    errors._INTERRUPTED[:] = old["interrupts"][0]
    errors._ARMED[:] = old["interrupts"][1]
    for s, h in old["signals"].items():
        if new["signals"][s] != h and h is not None:
            signal.signal(s, h)
    if new["itimer"] and not old["itimer"]:
        signal.setitimer(signal.ITIMER_REAL, 0)
    sys.excepthook, sys.unraisablehook = old["hooks"]
    mon = sys.modules.get("jax._src.monitoring")
    for n, before in old["monitoring"].items():
        getattr(mon, n)[:] = before
    sys.path[:] = old["sys_path"]
    return changed


def _guard(what: str):
    old = _state()
    old_copy = dict(old)
    yield
    new = _state()
    changed = _restore(old, new)
    log = os.environ.get("BANDIT_LAB_TEST_LEAKS")
    if changed and log:
        with open(log, "a") as fh:
            fh.write(f"{what}: {', '.join(changed)}\n")
            for k in changed:
                a, b = old_copy[k], new[k]
                if isinstance(a, dict):
                    a, b = ({i: str(v)[:80] for i, v in d.items()} for d in (a, b))
                    a, b = ({i: v for i, v in a.items() if b.get(i) != v}, {i: v for i, v in b.items() if a.get(i) != v})
                fh.write(f"    {k}: {str(a)[:300]} -> {str(b)[:300]}\n")


@pytest.fixture(autouse=True, scope="module")
def _restore_module_state(request):
    yield from _guard(request.module.__name__)


@pytest.fixture(autouse=True)
def _restore_test_state(request):
    yield from _guard(request.node.nodeid)


# ----------------------------------------------------------------------------- the clone stays clean
# A test that runs a sweep without --out writes runs/NAME-TIMESTAMP/ into the working directory —
# the clone, which git ignores there, so nothing showed it: one test did so on every run for
# several sessions (round 3, session 11). The run (the controller, not an xdist worker) fails when
# the clone's runs/ holds an entry at the end that it did not hold at the start.
_CLONE_RUNS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runs")


def _runs_entries() -> set:
    try:
        return set(os.listdir(_CLONE_RUNS))
    except OSError:
        return set()


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):
        session.config._bandit_lab_runs = _runs_entries()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_bandit_lab_runs", None)
    if before is None:
        return
    new = sorted(_runs_entries() - before)
    if new:
        tr = session.config.pluginmanager.get_plugin("terminalreporter")
        msg = (f"the test run wrote {len(new)} entr{'y' if len(new) == 1 else 'ies'} into the clone's runs/ "
               f"({', '.join(new[:5])}{', …' if len(new) > 5 else ''}): a sweep run without --out in a test")
        if tr is not None:
            tr.write("\n" + msg + "\n", red=True)  # after the progress line, which has no newline yet
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
