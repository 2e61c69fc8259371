"""Timings quoted in the README: ``python -m bandit_lab.bench [--repeats N]``.

Each command runs in a *new process* (cold: interpreter start, imports, tracing and XLA
compilation included); we report the median and the range over the repeats.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "run weight-decay --alpha 0.1": ["run", "weight-decay", "--alpha", "0.1"],
    "run weight-decay (64-point α sweep, 6 objectives)": ["run", "weight-decay", "--no-plot", "--out", "{tmp}/wd", "--overwrite"],
    "solve examples/kong_app_b.json": ["solve", "examples/kong_app_b.json"],
}


def time_command(args: list[str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        tmp = tempfile.mkdtemp()
        argv = [a.replace("{tmp}", tmp) for a in args]
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cli.main", *argv], check=True, stdout=subprocess.DEVNULL)
        out.append(time.perf_counter() - t0)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def compiles_of_sweep(n_alphas: int) -> int:
    """XLA compilations triggered by one weight-decay sweep of ``n_alphas`` points."""
    import jax

    from bandit_lab.experiments import weight_decay as wd

    wd.run(wd.Settings(n_alphas=2, steps=10))  # warm the process's small eager-op caches first
    seen = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda name, *a, **k: seen.append(name) if name == "/jax/core/compile/backend_compile_duration" else None
    )
    wd.run(wd.Settings(n_alphas=n_alphas, steps=200, beta=1.0 + n_alphas * 1e-6))
    jax.monitoring.clear_event_listeners()
    return len(seen)


def token_tree_timings(repeats: int = 5) -> None:
    """Issue 5's floor: V = 4, T = 4 (256 sequences), 1,000 Adam steps of each token loss on
    population data, after compilation (median of ``repeats`` warm runs)."""
    import jax
    import numpy as np

    from bandit_lab.objective import make_objective
    from bandit_lab.tokens import make_param, make_tree_problem
    from bandit_lab.tokens.tree import TokenTree
    from bandit_lab.train import TrainConfig, make_train

    rng = np.random.default_rng(0)
    tp = make_tree_problem(4, 4, tree=TokenTree.create(4, 4), ref_logits=rng.normal(size=(85, 4)), token_reward=rng.normal(size=(85, 4)))
    print("\n| loss (V=4, T=4, 1,000 steps) | after compilation: median | min–max | compile + first run |\n|---|---|---|---|")
    for loss in ("dpo", "tdpo1", "tdpo2", "radpo1", "radpo2", "uedpo"):
        o = make_objective(tp.problem, loss, {"beta": 0.5}, param=make_param(tp))
        f = jax.jit(make_train(o, TrainConfig(steps=1000, log_steps=(0, 1000))))
        t0 = time.perf_counter()
        jax.block_until_ready(f({"lr": 0.05}))
        cold = time.perf_counter() - t0
        ts = []
        for i in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f({"lr": 0.05 + 0.001 * i}))
            ts.append(time.perf_counter() - t0)
        print(f"| `{loss}` | {statistics.median(ts):.2f} s | {min(ts):.2f}–{max(ts):.2f} s | {cold:.2f} s |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", action="store_true", help="only the token-tree timings")
    a = ap.parse_args()
    if a.tokens:
        token_tree_timings(a.repeats)
        return
    print("| command (new process each run) | median | min–max | runs |\n|---|---|---|---|")
    for label, args in COMMANDS.items():
        ts = time_command(args, a.repeats)
        print(f"| `bandit-lab {label}` | {statistics.median(ts):.2f} s | {min(ts):.2f}–{max(ts):.2f} s | {len(ts)} |", flush=True)
    c8, c64 = compiles_of_sweep(8), compiles_of_sweep(64)
    print(f"\nXLA compilations for a weight-decay sweep: {c8} at 8 α points, {c64} at 64 α points (grid = vmapped axis).")


if __name__ == "__main__":
    main()
