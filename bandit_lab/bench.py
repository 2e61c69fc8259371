"""The performance numbers quoted in the README: ``python -m bandit_lab.bench [--repeats N]``.

Every row reports the median and the range over ``--repeats`` runs and, where one exists, the
ratio to a plain-JAX floor measured in the same run (:mod:`bandit_lab.bench_floor`: the same
training written directly in ``jax.numpy`` + optax). "Cold" rows start a *new process* each time
(interpreter, imports, tracing, XLA compilation included); "warm" rows repeat a call in one
process after a first call. Rows:

- ``cold-alpha``: ``bandit-lab run weight-decay --alpha 0.1``, with a warm cache (a private cache
  directory, filled by one untimed run: JAX's compiled programs and bandit-lab's exported traced
  programs, :mod:`bandit_lab.infra.export_cache`) and with ``--no-cache``; floor: the plain script for
  one α, new process, no cache;
- ``cold-sweep``: the 64-point α sweep (6 objectives, trained *and* solved exactly); floor: the
  plain script's 64-point training;
- ``warm-sweep``: the same sweep repeated in one process; floor: the plain script's repeated call;
- ``noise-adaptive``: ``run noise-adaptive --n-contexts 10000 / 100000`` cold, no cache;
- ``tree-solve``: exact solve of a V = 4 token tree, T = 5 (1,024 sequences; DPO and RLHF), T = 6
  (4,096; RLHF) and T = 7 (16,384; RLHF), after compilation (the first call, compilation included,
  in the ``first`` column), with the residual and the TV distance to the closed form;
- ``sharded``: the sweep on 4 forced host devices (``--xla_force_host_platform_device_count=4``),
  new process, and whether its records equal the one-device records bit for bit;
- ``onpolicy-sweep``: a 64-point β sweep of GRPO in exact mode (issue 12), cold;
- ``--tokens``: 1,000 Adam steps of each token loss on a V = 4, T = 4 tree (issue 5's table);
- ``--phases`` (issue 22): the big sweeps, ``bandit-lab --no-cache run weight-decay --n-alphas N
  --no-plot`` for N in ``--points`` (default 4,096 and 65,536), new process each, interleaved with
  the plain-JAX floor at the same N (``python -m bandit_lab.bench_floor N``, training only, no
  cache); each run also reports where its time went (:mod:`bandit_lab.infra.timing`: ``train``,
  ``exact``, ``records``, ``write``, and start-up = the rest), medians over ``--repeats``;
- ``--verify-profile [CHECK …]`` (issue 22): every ``verify`` check cold in one process, CPU
  seconds and XLA compiles per check (:func:`verify_profile`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(argv: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    return time.perf_counter() - t0, out.stdout


def _cpu_children() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_cpu(argv: list[str], env: dict | None = None) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one child process — the CPU time is the robust number
    on a shared machine (other people's jobs stretch the wall time, not the CPU time)."""
    c0 = _cpu_children()
    t, _ = _run(argv, env)
    return t, _cpu_children() - c0


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def _stats(ts: list[float]) -> dict:
    return {"median": statistics.median(ts), "min": min(ts), "max": max(ts), "runs": len(ts)}


def cold(argv: list[str], repeats: int, env: dict | None = None) -> dict:
    return _stats([_run(argv, env)[0] for _ in range(repeats)])


def cold_alpha(repeats: int) -> list[dict]:
    cache = tempfile.mkdtemp(prefix="bandit-lab-bench-cache-")
    try:
        env = {"BANDIT_LAB_CACHE_DIR": cache, "BANDIT_LAB_NO_CACHE": ""}
        _run(_cli("run", "weight-decay", "--alpha", "0.1"), env)  # fills the cache
        warm = cold(_cli("run", "weight-decay", "--alpha", "0.1"), repeats, env)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    nocache = cold(_cli("--no-cache", "run", "weight-decay", "--alpha", "0.1"), repeats)
    floor = cold([sys.executable, "-m", "bandit_lab.bench_floor", "1"], repeats, {"JAX_COMPILATION_CACHE_DIR": ""})
    return [
        {"row": "cold `run weight-decay --alpha 0.1`, warm compilation cache", **warm, "floor": floor["median"]},
        {"row": "cold `run weight-decay --alpha 0.1`, `--no-cache`", **nocache, "floor": floor["median"]},
        {"row": "plain-JAX floor, one α (training only), new process", **floor},
    ]


def cold_sweep(repeats: int) -> list[dict]:
    tmp = tempfile.mkdtemp()
    try:
        lib = cold(_cli("--no-cache", "run", "weight-decay", "--no-plot", "--out", f"{tmp}/wd", "--overwrite"), repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    floor = cold([sys.executable, "-m", "bandit_lab.bench_floor", "64"], repeats)
    return [{"row": "cold 64-point α sweep × 6 objectives (trained + exact), `--no-cache`", **lib, "floor": floor["median"]},
            {"row": "plain-JAX floor, 64-point training, new process", **floor}]


def warm_sweep(repeats: int) -> list[dict]:
    import numpy as np

    import bandit_lab

    bandit_lab.enable_x64()
    from bandit_lab import bench_floor
    from bandit_lab.experiments import weight_decay as wd

    s = wd.Settings()
    f, grid = bench_floor.make_sweep(), bench_floor.alphas()
    wd.run(s)
    np.asarray(f(grid))
    lib, flo = [], []
    for _ in range(repeats):  # interleaved, so both see the same machine
        t0 = time.perf_counter()
        wd.run(s)
        lib.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.asarray(f(grid))
        flo.append(time.perf_counter() - t0)
    return [{"row": "warm 64-point α sweep in-process (trained + exact)", **_stats(lib), "floor": statistics.median(flo)},
            {"row": "plain-JAX floor, repeated call (training only)", **_stats(flo)}]


def noise_adaptive(repeats: int) -> list[dict]:
    rows = []
    for n in (10_000, 100_000):
        tmp = tempfile.mkdtemp()
        try:
            rows.append({"row": f"cold `run noise-adaptive --n-contexts {n}`, `--no-cache`",
                         **cold(_cli("--no-cache", "run", "noise-adaptive", "--n-contexts", str(n), "--no-plot", "--out", f"{tmp}/na",
                                     "--overwrite"), repeats)})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def tree_solve(repeats: int) -> list[dict]:
    import numpy as np

    import bandit_lab

    bandit_lab.enable_x64()
    from bandit_lab.core import metrics
    from bandit_lab.core.objective import make_objective
    from bandit_lab.solvers.oracles import rlhf_optimum
    from bandit_lab.solvers.solver import solve_exact
    from bandit_lab.tokens.param import make_param
    from bandit_lab.tokens.tree import TokenTree, make_tree_problem

    rows = []
    for T, loss in TREE_ROWS:
        rng = np.random.default_rng(0)
        tree = TokenTree.create(4, T)
        S = tree.n_states
        tp = make_tree_problem(4, T, tree=tree, ref_logits=rng.normal(0, 1, (S, 4)), token_reward=rng.normal(0, 1, (S, 4)))
        o = make_objective(tp.problem, loss, {"beta": 1.0}, param=make_param(tp))
        t0 = time.perf_counter()
        r = solve_exact(o)
        first = time.perf_counter() - t0
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = solve_exact(o)
            ts.append(time.perf_counter() - t0)
        tv = float(metrics.tv(r.policy, rlhf_optimum(tp.problem.pi_ref, tp.problem.reward, 1.0)))
        rows.append({"row": f"exact solve, V = 4, T = {T} tree ({tree.n_responses:,} sequences, {S * 4:,} logits), {loss}, after compilation",
                     **_stats(ts), "first": first, "note": f"residual {r.residual:.1e}, converged {r.converged}, TV to closed form {tv:.1e}"})
    return rows


_SHARD = r"""
import json, bandit_lab, jax
bandit_lab.enable_x64()
from bandit_lab.experiments import weight_decay as wd
r = wd.run(wd.Settings())
print(json.dumps([[x["policy"], x["counterpart_policy"], x["exact"]] for x in r["records"]]))
"""


def sharded(repeats: int) -> list[dict]:
    one_t, one = _run([sys.executable, "-c", _SHARD], {"XLA_FLAGS": "", "BANDIT_LAB_NO_CACHE": "1"})
    ts, same = [], True
    for _ in range(repeats):
        t, out = _run([sys.executable, "-c", _SHARD], {"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "BANDIT_LAB_NO_CACHE": "1"})
        ts.append(t)
        same &= json.loads(out) == json.loads(one)
    return [{"row": "64-point sweep on 4 forced host devices, new process", **_stats(ts), "floor": one_t,
             "note": f"records bit-identical to one device: {'yes' if same else 'NO'} (floor column: the one-device run)"}]


_GRPO = r"""
import numpy as np, bandit_lab
bandit_lab.enable_x64()
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.runner import train_batch
from bandit_lab.core.train import TrainConfig
o = make_objective(Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1]), "grpo", {"group_size": 8})
train_batch([o], TrainConfig(steps=3000, log_steps=(0, 3000)), [[{**o.hp, "beta": b, "lr": 0.05} for b in np.geomspace(0.05, 10, 64)]])
"""


def onpolicy_sweep(repeats: int) -> list[dict]:
    return [{"row": "cold 64-point β sweep of GRPO (G = 8, exact mode, 3,000 steps), new process, no cache",
             **cold([sys.executable, "-c", _GRPO], repeats, {"BANDIT_LAB_NO_CACHE": "1"})}]


PHASES = ("train", "exact", "records", "write")


def sweep_argv(n: int, out_dir: str) -> list[str]:
    """The big sweep's command: ``bandit-lab --no-cache run weight-decay --n-alphas N --no-plot``,
    with limits a 65,536-point run fits, writing to ``out_dir``."""
    return _cli("--no-cache", "--max-memory", "64G", "--max-work", "2h", "run", "weight-decay", "--n-alphas", str(n),
                "--no-plot", "--out", out_dir, "--overwrite")


def big_sweep(repeats: int, points=(4096, 65536)) -> list[dict]:
    """The ``--phases`` rows (see the module docstring)."""
    rows = []
    for n in points:
        lib, flo, ph, lib_cpu, flo_cpu = [], [], [], [], []
        for _ in range(repeats):  # interleaved, so both see the same machine
            tmp = tempfile.mkdtemp(prefix="bandit-lab-bench-")
            try:
                env = {"BANDIT_LAB_PHASES": os.path.join(tmp, "phases.json"), "BANDIT_LAB_NO_CACHE": "1"}
                t, cpu = _run_cpu(sweep_argv(n, os.path.join(tmp, "wd")), env)
                lib_cpu.append(cpu)
                with open(env["BANDIT_LAB_PHASES"], encoding="utf-8") as fh:
                    p = json.load(fh)
                p["start-up"] = t - sum(p.get(k, 0.0) for k in PHASES)
                lib.append(t)
                ph.append(p)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            t, cpu = _run_cpu([sys.executable, "-m", "bandit_lab.bench_floor", str(n)], {"JAX_COMPILATION_CACHE_DIR": ""})
            flo.append(t)
            flo_cpu.append(cpu)
        med = {k: statistics.median(p.get(k, 0.0) for p in ph) for k in PHASES + ("start-up",)}
        ratios = [a / b for a, b in zip(lib_cpu, flo_cpu)]
        note = ("phases (median): " + ", ".join(f"{k} {v:.2f} s" for k, v in med.items())
                + f"; CPU time (median) {statistics.median(lib_cpu):.2f} s vs floor {statistics.median(flo_cpu):.2f} s, "
                f"CPU ratio per run (median) {statistics.median(ratios):.2f}×")
        rows.append({"row": f"cold `run weight-decay --n-alphas {n:,} --no-plot` (6 objectives × {n:,} α, 3,000 steps, exact, "
                            "records.npz), `--no-cache`", **_stats(lib), "floor": statistics.median(flo), "note": note, "phases": med})
        rows.append({"row": f"plain-JAX floor, {n:,}-point training, new process", **_stats(flo)})
    return rows


TREE_ROWS = ((5, "dpo"), (5, "rlhf"), (6, "rlhf"), (7, "rlhf"))


ROWS = {"cold-alpha": cold_alpha, "cold-sweep": cold_sweep, "warm-sweep": warm_sweep, "noise-adaptive": noise_adaptive,
        "tree-solve": tree_solve, "sharded": sharded, "onpolicy-sweep": onpolicy_sweep}


def token_tree_timings(repeats: int = 5) -> None:
    """Issue 5's floor: V = 4, T = 4 (256 sequences), 1,000 Adam steps of each token loss on
    population data, after compilation (median of ``repeats`` warm runs)."""
    import jax
    import numpy as np

    import bandit_lab

    bandit_lab.enable_x64()
    from bandit_lab.core.objective import make_objective
    from bandit_lab.tokens import make_param, make_tree_problem
    from bandit_lab.tokens.tree import TokenTree
    from bandit_lab.core.train import TrainConfig, make_train

    rng = np.random.default_rng(0)
    tp = make_tree_problem(4, 4, tree=TokenTree.create(4, 4), ref_logits=rng.normal(size=(85, 4)), token_reward=rng.normal(size=(85, 4)))
    print("\n| loss (V=4, T=4, 1,000 steps) | after compilation: median | min–max | compile + first run |\n|---|---|---|---|")
    for loss in ("dpo", "tdpo1", "tdpo2", "radpo1", "radpo2", "uedpo"):
        o = make_objective(tp.problem, loss, {"beta": 0.5}, param=make_param(tp))
        f = jax.jit(make_train(o, TrainConfig(steps=1000, log_steps=(0, 1000))))
        t0 = time.perf_counter()
        jax.block_until_ready(f({"lr": 0.05}))
        first = time.perf_counter() - t0
        ts = []
        for i in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f({"lr": 0.05 + 0.001 * i}))
            ts.append(time.perf_counter() - t0)
        print(f"| `{loss}` | {statistics.median(ts):.2f} s | {min(ts):.2f}–{max(ts):.2f} s | {first:.2f} s |", flush=True)


def _fmt(r: dict) -> str:
    ratio = f"{r['median'] / r['floor']:.2f}×" if r.get("floor") else "—"
    extra = f" (first call {r['first']:.2f} s)" if "first" in r else ""
    note = f" {r['note']}" if r.get("note") else ""
    return f"| {r['row']} | {r['median']:.2f} s | {r['min']:.2f}–{r['max']:.2f} s | {r['runs']} | {ratio} |{extra}{note}"


def verify_profile(names: list[str] | None = None, cache_dir: str | None = None) -> list[dict]:
    """``--verify-profile`` (issue 22): every check (or ``names``) in registry order in *this*
    process — what ``verify --jobs 1`` runs — with the persistent cache in ``cache_dir`` (default a
    new empty directory: cold), per check: CPU seconds (``time.process_time``, all threads, XLA's
    compiler included), XLA compiles (JAX's ``/jax/core/compile/backend_compile_duration`` events,
    one per compiled program) and their summed duration, the value and whether it passed. Programs
    a check shares with an earlier one are counted where they are first compiled. Run it in a new
    process: an earlier compile in the process would be reused. The process compiles as ``verify``
    does — in fast-compile mode (:mod:`bandit_lab.infra.xla_flags`; not with
    ``BANDIT_LAB_FAST_COMPILE=0``) when JAX's backend has not started yet; ``mode`` in each row
    says which mode was measured."""
    from bandit_lab.infra import xla_flags

    if xla_flags.requested(True):
        xla_flags.enable()
    import jax

    from bandit_lab import checks
    from bandit_lab.infra import cache, precision

    cache.enable(cache_dir or tempfile.mkdtemp(prefix="bandit-lab-verify-profile-"))
    precision.enable_x64(True)
    events: list = []

    def listener(name, secs, **_):
        if name == "/jax/core/compile/backend_compile_duration":
            events.append(secs)

    jax.monitoring.register_event_duration_secs_listener(listener)
    reg = checks.registry()
    rows = []
    for name in names or list(reg):
        n0, c0, w0 = len(events), time.process_time(), time.perf_counter()
        r = checks.run_check(reg[name])
        rows.append({"check": name, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - w0,
                     "compiles": len(events) - n0, "compile_s": float(sum(events[n0:])), "value": r.value, "passed": r.passed,
                     "mode": "fast-compile" if xla_flags.enabled() else "XLA defaults"})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", action="append", choices=sorted(ROWS), help="rows to measure (repeatable; default all)")
    ap.add_argument("--tokens", action="store_true", help="only the token-tree training timings")
    ap.add_argument("--json", action="store_true", help="one JSON list of rows")
    ap.add_argument("--phases", action="store_true", help="only the big sweeps, with the time of each phase (issue 22)")
    ap.add_argument("--points", default="4096,65536", help="sweep sizes of --phases (comma-separated)")
    ap.add_argument("--verify-profile", nargs="*", metavar="CHECK",
                    help="each verify check (default all) cold in this process: CPU s and XLA compiles per check (issue 22)")
    a = ap.parse_args(argv)
    if a.verify_profile is not None:
        rows = verify_profile(a.verify_profile or None)
        if a.json:
            print(json.dumps(rows))
            return
        if rows:
            print(f"compiled in {rows[0]['mode']} mode")
        print("| check | CPU s | XLA compiles | compile s (wall) | value | pass |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| `{r['check']}` | {r['cpu_s']:.1f} | {r['compiles']} | {r['compile_s']:.1f} | {r['value']:.3g} | {r['passed']} |", flush=True)
        print(f"| total | {sum(r['cpu_s'] for r in rows):.1f} | {sum(r['compiles'] for r in rows)} | {sum(r['compile_s'] for r in rows):.1f} | | |")
        return
    if a.tokens:
        token_tree_timings(a.repeats)
        return
    rows = []
    if not a.json:
        print("| what | median | min–max | runs | ratio to floor |\n|---|---|---|---|---|", flush=True)
    groups = [("big-sweep", lambda r: big_sweep(r, tuple(int(x) for x in a.points.split(","))))] if a.phases else \
        [(name, ROWS[name]) for name in a.only or list(ROWS)]
    for name, fn in groups:
        for r in fn(a.repeats):
            rows.append({"group": name, **r})
            if not a.json:
                print(_fmt(r), flush=True)
    if a.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
