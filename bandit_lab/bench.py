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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    print("| command (new process each run) | median | min–max | runs |\n|---|---|---|---|")
    for label, args in COMMANDS.items():
        ts = time_command(args, a.repeats)
        print(f"| `bandit-lab {label}` | {statistics.median(ts):.2f} s | {min(ts):.2f}–{max(ts):.2f} s | {len(ts)} |", flush=True)
    c8, c64 = compiles_of_sweep(8), compiles_of_sweep(64)
    print(f"\nXLA compilations for a weight-decay sweep: {c8} at 8 α points, {c64} at 64 α points (grid = vmapped axis).")


if __name__ == "__main__":
    main()
