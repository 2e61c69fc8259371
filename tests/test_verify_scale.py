"""`verify`'s compile sharing (issue 22): padded instances and the jitted on-policy field give
the same numbers as the unshared forms they replace."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.checks import onpolicy
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import random_problem


def test_padded_problem_repeats_the_last_context():
    rng = np.random.default_rng(0)
    pb = random_problem(rng, k=3, contexts=1, preference="reward")
    assert onpolicy.padded(pb, 1) is pb
    q = onpolicy.padded(pb, 3)
    assert q.pi_ref.shape == (3, 3) and q.reward.shape == (3, 3)
    assert np.array_equal(q.pi_ref, np.repeat(pb.pi_ref, 3, 0)) and np.array_equal(q.reward, np.repeat(pb.reward, 3, 0))
    assert np.allclose(q.context_weight, 1 / 3) and q.preference_kind == pb.preference_kind
    pb2 = random_problem(rng, k=3, contexts=2, preference="pi_star")
    q2 = onpolicy.padded(pb2, 3)
    assert np.array_equal(q2.pi_star[:2], pb2.pi_star) and np.array_equal(q2.pi_star[2], pb2.pi_star[1])
    assert np.array_equal(q2.pref[:2], pb2.pref)


def test_jitted_field_is_the_eager_gradient_and_reads_the_problem_as_data():
    rng = np.random.default_rng(1)
    onpolicy._FIELDS.clear()
    for i in range(2):  # two problems of one shape, other β: one program, each its own numbers
        pb = random_problem(rng, k=3, contexts=2, preference="reward")
        o = make_objective(pb, "rloo", {"beta": 0.5 + i, "group_size": 3})
        th = rng.normal(0, 1.0, pb.pi_ref.shape)
        eager = np.asarray(jax.grad(lambda p: o.value(p, o.hp))(jnp.asarray(th)))
        np.testing.assert_allclose(onpolicy.field(o, th), eager, rtol=0, atol=1e-14)
    assert len(onpolicy._FIELDS) == 1


def _final_params(o, cfg, hp):
    from bandit_lab.core.train import make_train

    return jax.jit(make_train(o, cfg))(hp).params


def test_endpoint_is_the_trainers_final_parameters():
    """make_endpoint (the stationary solver's warm start, issue 22) runs make_train's steps: the
    same optimizer, gradients and per-step state schedule — an on-policy loss (state renewed every
    step), PPO with 4 epochs per batch and a learned critic (state held and updated), sampled
    REINFORCE (keys) and TR-DPO (a moving reference) — and returns its final parameters."""
    from bandit_lab.core.train import TrainConfig, make_endpoint

    rng = np.random.default_rng(3)
    pb = random_problem(rng, k=3, contexts=2, preference="reward")
    cases = [("dr_grpo", {"beta": 0.7, "group_size": 3}), ("ppo", {"beta": 0.5}),
             ("reinforce", {"beta": 0.5, "sampling": {"samples": 8}}), ("rloo", {"beta": 1.0, "group_size": 2, "kl_estimator": "k3"}),
             ("trdpo", {"beta": 0.5, "mixup_alpha": 0.6, "sync_steps": 3.0}), ("dpo", {"beta": 1.0})]
    cfg = TrainConfig(optimizer="adam", steps=40, schedule="cosine", log_steps=(0, 40))
    for loss, params in cases:
        o = make_objective(pb, loss, params, weight_decay=0.01)
        hp = {**{k: jnp.asarray(v) for k, v in o.hp.items()}, "lr": jnp.asarray(0.05), "seed": jnp.asarray(7.0)}
        want = _final_params(o, cfg, hp)
        got = jax.jit(make_endpoint(o, cfg))(hp, o.consts(), o.param.init())
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-13, err_msg=loss)
        assert not np.allclose(np.asarray(got), np.asarray(o.param.init()))  # it trained


def test_draws_are_jax_randoms_own():
    """bandit_lab.core.draws (flat Gumbel/uniform bits, reshaped: 3× cheaper to compile) gives
    jax.random's very draws, bit for bit, at the shapes the sampled losses use, vmapped too."""
    from bandit_lab.core import draws

    keys = jax.random.split(jax.random.key(11), 5)
    rng = np.random.default_rng(0)
    for shape, lshape in (((16, 3), (3, 5)), ((8, 4, 2), (2, 3)), ((7,), (12,)), ((128, 3), (3, 4))):
        logits = jnp.asarray(rng.normal(0, 2, lshape))
        # one jitted program per side and shape (eagerly, every primitive compiled a program of its own)
        want, u = jax.jit(jax.vmap(lambda k: (jax.random.categorical(k, logits, axis=-1, shape=shape), jax.random.uniform(k, shape))))(keys)
        got, gu = jax.jit(jax.vmap(lambda k: (draws.categorical(k, logits, shape), draws.uniform(k, shape))))(keys)
        assert got.shape == want.shape and np.array_equal(np.asarray(got), np.asarray(want)), shape
        assert np.array_equal(np.asarray(gu), np.asarray(u)), shape
    assert len(np.unique(np.asarray(want))) > 1  # real draws


def test_verify_profile_counts_compiles_and_cpu(tmp_path):
    """`python -m bandit_lab.bench --verify-profile` (how docs/performance.md measures verify): a
    cold check compiles programs and takes CPU time; run again with the same cache, in a process
    that already holds them, it compiles none (counted by JAX's own compile events). "Cold" means
    cold for the process too, so it runs in a new one (the suite's flags inherited): in this worker
    an earlier test may hold the check's programs (test_kong_a runs the same Kong App. D solves),
    and clearing them here (``jax.clear_caches``) made every later test of the worker retrace, and
    ``verify_profile`` points the process's persistent cache at its own directory."""
    import json
    import subprocess
    import sys

    code = ("import json; from bandit_lab import bench; "
            f"rows = [bench.verify_profile(['kong-prop32-active'], {str(tmp_path)!r})[0] for _ in range(2)]; "
            "print(json.dumps(rows))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    cold, again = json.loads(out.stdout.strip().splitlines()[-1])
    assert cold["passed"] and cold["compiles"] > 0 and cold["cpu_s"] > 0 and cold["compile_s"] > 0
    assert again["compiles"] == 0 and again["value"] == cold["value"]
    from bandit_lab.infra import xla_flags

    assert cold["mode"] == ("fast-compile" if xla_flags.enabled() else "XLA defaults")  # verify's own mode, inherited


def test_fast_compile_flags_are_added_once_and_removed_for_readers_commands():
    """bandit_lab.infra.xla_flags on an environment mapping: ``enable`` appends the three flags once,
    keeping the caller's own; ``removed`` gives a copy with the caller's flags only; the
    BANDIT_LAB_FAST_COMPILE switch (1/0/unset → the caller's default)."""
    from bandit_lab.infra import xla_flags

    if not xla_flags.supported():  # this jaxlib would abort on them: enable() must leave the environment alone
        env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        assert not xla_flags.enable(env) and env == {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
        return
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert not xla_flags.enabled(env) and xla_flags.enable(env) and xla_flags.enabled(env)
    assert xla_flags.enable(env)
    assert env["XLA_FLAGS"].split() == ["--xla_force_host_platform_device_count=4", *xla_flags.FLAGS]
    back = xla_flags.removed({**env, "BANDIT_LAB_FAST_COMPILE": "1"})
    assert back == {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    assert "XLA_FLAGS" not in xla_flags.removed({"XLA_FLAGS": " ".join(xla_flags.FLAGS)})
    assert xla_flags.requested(True, {}) and not xla_flags.requested(False, {})
    assert not xla_flags.requested(True, {"BANDIT_LAB_FAST_COMPILE": "0"}) and xla_flags.requested(False, {"BANDIT_LAB_FAST_COMPILE": "1"})
    # this process: the suite compiles in its mode (tests/conftest.py), set before JAX's backend started
    assert xla_flags.backend_started() and xla_flags.enabled() == xla_flags.requested(True)


@pytest.mark.timing  # a wall-clock ratio: run alone (tests/conftest.py), not beside the other worker's compiles
def test_a_run_bound_program_compiles_at_O2_in_fast_compile_mode():
    """``xla_flags.run_bound_jit`` (verify's sampled training) in this process's fast-compile mode
    (LLVM -O0): the same long scan runs ≥ 1.5× faster than under plain ``jit`` (measured ≈ 2.6×;
    the fastest of 7 runs of each, interleaved), so the per-program option reaches XLA, and the two
    agree to 1e-12."""
    import time

    from bandit_lab.infra import xla_flags

    if not xla_flags.enabled():
        pytest.skip("this process is not in fast-compile mode (BANDIT_LAB_FAST_COMPILE=0, or a jaxlib without the flags)")

    def f(x):
        def step(c, _):
            return 0.9 * jnp.tanh(c) + 0.05 * jnp.log1p(c * c) + 0.1, None
        return jax.lax.scan(step, x, None, length=20_000)[0]

    x = jnp.linspace(0.0, 1.0, 64)
    plain, fast = jax.jit(f), xla_flags.run_bound_jit(f)
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(plain(x)), rtol=1e-12, atol=0)
    times: dict = {"plain": [], "fast": []}
    for _ in range(7):
        for name, g in (("plain", plain), ("fast", fast)):
            t = time.perf_counter()
            g(x).block_until_ready()
            times[name].append(time.perf_counter() - t)
    assert min(times["plain"]) >= 1.5 * min(times["fast"]), times


def _worker_flags():
    from bandit_lab.infra import xla_flags

    started = xla_flags.backend_started()
    import jax.numpy as jnp

    float(jnp.sum(jnp.arange(3.0)))
    return os.environ.get("XLA_FLAGS", ""), started, xla_flags.backend_started()


@pytest.mark.parametrize("fast", [True, False])
def test_verify_workers_start_their_backend_with_the_fast_compile_flags(fast):
    """``verify``'s worker processes (``checks._worker_init``) add the flags before their backend
    starts, so every program they compile is in fast-compile mode; with BANDIT_LAB_FAST_COMPILE=0
    (``fast=False`` from the parent) they keep the environment they inherited, minus nothing."""
    import concurrent.futures as cf
    import multiprocessing

    from bandit_lab import checks
    from bandit_lab.infra import xla_flags

    env = xla_flags.removed(os.environ)  # the workers inherit the parent's environment: start from XLA's defaults
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=checks._worker_init,
                                    initargs=(True, None, fast)) as pool:
            flags, before, after = pool.submit(_worker_flags).result()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert not before and after
    assert all(f in flags.split() for f in xla_flags.FLAGS) == (fast and xla_flags.supported())


def test_fast_compile_and_xla_defaults_reach_the_same_stationary_points():
    """The same on-policy stationary solve — GRPO (k3 in the loss, group std, G = 2) — in this
    process (the suite's mode: the fast-compile flags and LLVM -O0) and in a new process with XLA's
    default flags: the same verdict and policy to 1e-14 (the modes' code differs in the last bits
    only; every ``verify`` check passes in fast-compile mode and with the defaults, docs/performance.md). The compilation cache keeps the two modes apart (its keys
    include ``XLA_FLAGS``)."""
    import json
    import subprocess
    import sys

    from bandit_lab.infra import xla_flags

    code = """
import json, numpy as np, bandit_lab
bandit_lab.enable_x64()
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import random_problem
from bandit_lab.onpolicy import stationary
pb = random_problem(np.random.default_rng(5), k=3, contexts=2, preference="reward")
objs = [make_objective(pb, "grpo", {"beta": 0.9, "group_size": 2})]
print(json.dumps([[s.status, np.asarray(s.result.policy).tolist()] for s in map(stationary.solve, objs)]))
"""
    if not xla_flags.enabled():
        pytest.skip("this process is not in fast-compile mode (BANDIT_LAB_FAST_COMPILE=0, or a jaxlib without the flags)")
    env = xla_flags.removed(os.environ)
    default = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    ns: dict = {}
    exec(code.replace("print(json.dumps(", "out = (("), ns)
    for (sa, pa), (sb, pb_) in zip(ns["out"], default):
        assert sa == sb == "attracting"
        np.testing.assert_allclose(np.asarray(pa), np.asarray(pb_), rtol=0, atol=1e-14)


def test_fast_compile_flags_are_used_only_where_this_jaxlib_knows_them(monkeypatch, tmp_path):
    """XLA aborts a process whose XLA_FLAGS name a flag it does not know (and jaxlib releases retire
    flags; pyproject admits jaxlib 0.4.30). ``supported()`` (the flag names in jaxlib's binaries)
    must agree with what XLA itself does: a new process with the flags starts JAX's backend and
    computes; with an unknown flag the scan says no, ``enable`` leaves the environment alone, and
    XLA would indeed have aborted."""
    import subprocess
    import sys

    from bandit_lab.infra import xla_flags

    # no core file from the aborting process (set in the child itself: a preexec_fn would fork this threaded process)
    code = ("import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
            "import jax.numpy as jnp; print(float(jnp.arange(3.0).sum()))")

    def start(flags):
        env = {**xla_flags.removed(os.environ), "XLA_FLAGS": " ".join(flags)}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)

    ok = start(xla_flags.FLAGS)
    assert xla_flags.supported() == (ok.returncode == 0 and ok.stdout.strip() == "3.0"), ok.stderr[-500:]
    bogus = ("--xla_cpu_no_such_flag_for_bandit_lab=true",)
    monkeypatch.setattr(xla_flags, "_SUPPORTED", {})
    assert not xla_flags.supported(bogus)
    env: dict = {}
    assert not xla_flags.enable(env, bogus) and env == {}
    bad = start(bogus)
    assert bad.returncode != 0 and "no_such_flag" in bad.stderr


_EXACT_BITS = """
import json, os, numpy as np, bandit_lab
bandit_lab.enable_x64()
if os.environ.get("BITS_CACHE"):  # the caches as a command has them: compiled and exported programs on disk
    from bandit_lab.infra import cache
    assert cache.enable(os.environ["BITS_CACHE"])
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.experiments import with_counterpart
from bandit_lab.infra import xla_flags
from bandit_lab.runner import solve_certified
pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
objs = []
for name in ("dpo", "ipo"):
    o, c, _ = with_counterpart(make_objective(pb, name, {"beta": 0.7}, penalty="params"))
    objs += [o, c]
hps = [[{**o.hp, "weight_decay": a} for a in (0.0, 1e-3, 0.05, 0.4, 3.0)] for o in objs]
exact, certs = solve_certified(objs, hps)
bits = lambda a: np.asarray(a, dtype=np.float64).view(np.int64).tolist()  # every float's 64 bits, NaN included
out = {"options": xla_flags.compile_bound_options(), "global": xla_flags.enabled(),
       "policy": [bits(e.policy) for e in exact], "residual": [bits(e.residual) for e in exact],
       "cert": [[bits(v) for v in c] for c in certs], "certified": [np.asarray(c.certified).tolist() for c in certs]}
print(json.dumps(out))
"""


def test_exact_solves_are_the_same_bits_in_every_compile_mode(tmp_path):
    """The exact solver's and its certificates' programs are compiled in fast-compile mode in every
    process (``xla_flags.compile_bound_jit``): as per-program options in a process with XLA's
    default flags, by the process's own flags in the suite's. The stacked Newton solve of four
    weight-decay objectives at five α and its batched certificate give the same 64 bits of every
    float either way — in the default-flags process also with the caches on, as a command has them,
    both when it compiles and exports the programs and when a second process loads them; with
    BANDIT_LAB_FAST_COMPILE=0 no option is used (XLA's defaults: within 1e-14)."""
    import json
    import subprocess
    import sys

    from bandit_lab.infra import xla_flags

    # the per-program options are the process-wide flags, one for one
    assert {f"--{k}={str(v).lower()}" for k, v in xla_flags.COMPILE_BOUND.items()} == set(xla_flags.FLAGS)
    if not xla_flags.enabled() or not xla_flags.supported():
        pytest.skip("this process is not in fast-compile mode (BANDIT_LAB_FAST_COMPILE=0, or a jaxlib without the flags)")

    def child(**extra):
        env = {**xla_flags.removed(os.environ), **extra}
        out = subprocess.run([sys.executable, "-c", _EXACT_BITS], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    ns: dict = {}
    exec(_EXACT_BITS.replace("print(json.dumps(out))", "out = json.loads(json.dumps(out))"), ns)
    cache_dir = str(tmp_path / "cache")
    here, default = ns["out"], child(BITS_CACHE=cache_dir)
    exported = os.listdir(os.path.join(cache_dir, "exported"))
    assert exported  # the solver's programs went through export_cache.jit(…, compile_bound=True)
    loaded = child(BITS_CACHE=cache_dir)
    assert sorted(os.listdir(os.path.join(cache_dir, "exported"))) == sorted(exported)  # loaded, none made anew
    assert here["global"] and here["options"] is None  # the suite's own flags: no per-program options needed
    for run in (default, loaded):
        assert not run["global"] and run["options"] == xla_flags.COMPILE_BOUND
        for key in ("policy", "residual", "cert"):
            assert run[key] == here[key], key
    assert all(all(c) for c in here["certified"])  # every point certified: the bits compared are an answer's
    off = child(BANDIT_LAB_FAST_COMPILE="0")
    assert not off["global"] and off["options"] is None
    as_float = lambda b: np.asarray(b, dtype=np.int64).view(np.float64)  # noqa: E731
    np.testing.assert_allclose(as_float(off["policy"]), as_float(here["policy"]), rtol=0, atol=1e-14)
