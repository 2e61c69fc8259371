"""Issue 22's GPU checks as one prepared command, for a session that is lent a device machine:
``python -m bandit_lab.gpu_check --out DIR``.

No session has had a GPU since the 2026-12-04 H200 run that filed issue 22, so none of this has
run on a GPU yet. The command is tested on the CPU (``tests/test_gpu_check.py``). It runs the
steps below in order. Each result is appended to ``DIR/gpu_check.json`` as soon as it is known,
so a run cut short by the device's time limit still reports the steps it finished.

1. ``platform``: the JAX and jaxlib versions, the default backend and its devices.
2. ``sweep``: :func:`bandit_lab.bench.big_sweep` at ``--points`` (default 4,096), ``--repeats``
   times (default 3): ``bandit-lab --no-cache run weight-decay --n-alphas N --no-plot``, each in a
   new process, interleaved with the plain-JAX floor at the same size. Medians, the ratio, and
   where the time went (train / exact / records / write / start-up).
3. ``agreement``: that sweep once on the default backend and once with ``JAX_PLATFORMS=cpu`` on the
   same machine. Per ``records.npz`` column: the largest absolute difference of the float columns
   (:func:`compare_records`), and whether the other columns are equal. The 2026-12-04 H200 run
   measured 4.4e-16.
4. ``big``: ``--big`` points (default 65,536), once. Its wall time, and whether ``records.npz`` was
   written with every row.
5. ``suite``: the default test suite on the device, with ``python -m pytest -v -n WORKERS --dist
   loadfile`` (files as the unit, as the README's command runs them) and
   ``XLA_PYTHON_CLIENT_PREALLOCATE=false``, so the workers share the GPU's memory. The summary
   line and the ids of failed tests go to ``DIR/suite.txt``.

Every step gets at most what is left of ``--budget`` seconds (default 540, under the device's
10-minute limit per command). A step with too little time left is recorded as skipped.

On the device machine the project's dependencies that its image lacks travel as wheels
(/work/.library/device/README.md). The wheels are built for the image's Python 3.12, and
``.whl`` must be git-ignored. Fetch them here, once::

    mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
      -d .whl highspy plotly pydantic==2.14.4 pydantic-core==2.50.5 annotated-types typing-inspection \\
      typing-extensions platformdirs jsonschema jsonschema-specifications referencing rpds-py "typer>=0.19"

(16 MB on 2026-12-06. pydantic pins its pydantic-core exactly, and wants typing-extensions ≥ 4.16.
The image already has the rest that these need: narwhals, packaging, attrs, rich, shellingham,
annotated-doc, numpy.)

Then, in one ``run`` call with ``carry=[".whl"]``::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \\
      && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && python3 -m bandit_lab.gpu_check --out $OUT
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bandit_lab import bench

ROOT = bench.ROOT


def compare_records(a_path: str, b_path: str) -> dict:
    """Two ``records.npz`` files column by column. Returns ``max_abs`` (the largest absolute
    difference over the float columns: a NaN on both sides counts as equal, a NaN on one side makes
    it NaN), ``worst`` (the column it is in), ``unequal`` (the non-float columns that differ) and
    ``missing`` (columns in only one file). Raises ``ValueError`` when a column's shape differs."""
    import numpy as np

    with np.load(a_path, allow_pickle=False) as a, np.load(b_path, allow_pickle=False) as b:
        names_a, names_b = set(a.files), set(b.files)
        out: dict = {"max_abs": 0.0, "worst": None, "unequal": [], "missing": sorted(names_a ^ names_b)}
        for k in sorted(names_a & names_b):
            x, y = a[k], b[k]
            if x.shape != y.shape:
                raise ValueError(f"records column {k!r}: shape {x.shape} vs {y.shape}")
            if x.dtype.kind == "f" and y.dtype.kind == "f":
                both_nan = np.isnan(x) & np.isnan(y)
                d = np.where(both_nan, 0.0, np.abs(x.astype(float) - y.astype(float)))
                m = float(np.max(d)) if d.size else 0.0  # NaN where only one side is NaN
                cur = out["max_abs"]
                if not np.isnan(cur) and (np.isnan(m) or m > cur):  # a NaN, once found, is what is reported
                    out["max_abs"], out["worst"] = m, k
            elif not np.array_equal(x, y):
                out["unequal"].append(k)
        return out


class _Report:
    def __init__(self, out: str, budget: float):
        self.path = os.path.join(out, "gpu_check.json")
        self.end = time.monotonic() + budget
        self.steps: list[dict] = []

    def left(self) -> float:
        return self.end - time.monotonic()

    def add(self, step: str, **result) -> dict:
        row = {"step": step, **result}
        self.steps.append(row)
        with open(self.path, "w", encoding="utf-8") as fh:
            json.dump(self.steps, fh, indent=1)
        print(json.dumps(row), flush=True)
        return row


def _timed(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[float, subprocess.CompletedProcess | None]:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t0, None
    return time.perf_counter() - t0, p


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json and suite.txt (created)")
    ap.add_argument("--points", type=int, default=4096, help="the sweep of steps 2 and 3 (α points)")
    ap.add_argument("--big", type=int, default=65536, help="the sweep of step 4 (0: skip)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of step 2 (medians)")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="pytest-xdist workers of step 5")
    ap.add_argument("--no-suite", action="store_true", help="skip step 5")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds for all steps together")
    a = ap.parse_args(argv)
    bad = [f"--{name} must be {rule}; got {getattr(a, name):g}" for name, rule, ok in (
        ("points", "≥ 1", a.points >= 1), ("repeats", "≥ 1", a.repeats >= 1), ("workers", "≥ 1", a.workers >= 1),
        ("big", "≥ 0", a.big >= 0), ("budget", "> 0", a.budget > 0)) if not ok]
    if bad:  # the first bad option, one line
        print(f"gpu_check: {bad[0]}", file=sys.stderr)
        return 2
    os.makedirs(a.out, exist_ok=True)
    rep = _Report(a.out, a.budget)

    import jax
    import jaxlib

    rep.add("platform", jax=jax.__version__, jaxlib=jaxlib.__version__, backend=jax.default_backend(),
            devices=[str(d) for d in jax.devices()], xla_flags=os.environ.get("XLA_FLAGS", ""))

    # 2. the sweep against the floor, on the default backend (medians of --repeats)
    if rep.left() > 60:
        rows = bench.big_sweep(a.repeats, (a.points,))
        lib, flo = rows
        rep.add("sweep", points=a.points, runs=lib["runs"], median_s=lib["median"], min_s=lib["min"], max_s=lib["max"],
                floor_median_s=flo["median"], ratio=lib["median"] / flo["median"], phases=lib["phases"], note=lib["note"])
    else:
        rep.add("sweep", skipped=f"{rep.left():.0f} s left")

    # 3. default backend against the CPU on this machine, records column by column
    with tempfile.TemporaryDirectory(prefix="bandit-lab-gpu-check-") as tmp:
        outs = {}
        for label, env in (("default", {}), ("cpu", {"JAX_PLATFORMS": "cpu"})):
            if rep.left() < 30:
                break
            t, p = _timed(bench.sweep_argv(a.points, os.path.join(tmp, label)), rep.left(), env)
            if p is None or p.returncode != 0:
                rep.add("agreement", failed=label, seconds=t, stderr=(p.stderr[-2000:] if p else "timed out"))
                break
            outs[label] = (t, os.path.join(tmp, label, "records.npz"))
        if len(outs) == 2:
            cmp = compare_records(outs["default"][1], outs["cpu"][1])
            rep.add("agreement", points=a.points, default_s=outs["default"][0], cpu_s=outs["cpu"][0], **cmp)
        elif not any(s["step"] == "agreement" for s in rep.steps):
            rep.add("agreement", skipped=f"{rep.left():.0f} s left")

    # 4. the big sweep, once
    if a.big and rep.left() > 60:
        with tempfile.TemporaryDirectory(prefix="bandit-lab-gpu-check-") as tmp:
            t, p = _timed(bench.sweep_argv(a.big, os.path.join(tmp, "big")), rep.left())
            if p is None or p.returncode != 0:
                rep.add("big", points=a.big, seconds=t, failed=True, stderr=(p.stderr[-2000:] if p else "timed out"))
            else:
                from bandit_lab.infra import records

                rep.add("big", points=a.big, seconds=t, records=len(records.load(os.path.join(tmp, "big", "records.npz"))))
    elif a.big:
        rep.add("big", skipped=f"{rep.left():.0f} s left")

    # 5. the default suite on this backend; pytest writes straight to suite.txt (one line per test,
    # -v), so a run stopped at the time limit still shows what passed and failed
    if not a.no_suite and rep.left() > 60:
        path = os.path.join(a.out, "suite.txt")
        t0 = time.perf_counter()
        with open(path, "w", encoding="utf-8") as fh:
            # a process group of its own: at the time limit the xdist workers go with pytest (killing
            # pytest alone left them running, and a later suite on this machine ran beside them)
            proc = subprocess.Popen([sys.executable, "-m", "pytest", "-v", "-n", str(a.workers), "--dist", "loadfile",
                                     "-p", "no:cacheprovider", "-rf", "--tb=short"],
                                    cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
            try:
                rc = proc.wait(timeout=max(1.0, rep.left() - 5))
            except subprocess.TimeoutExpired:
                import signal

                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                rc = None
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [ln.rstrip() for ln in fh if ln.strip()]
        failed = sorted({w for ln in lines if " FAILED " in f" {ln} " for w in ln.split() if "::" in w})
        rep.add("suite", seconds=time.perf_counter() - t0, returncode=rc, timed_out=rc is None,
                passed=sum(" PASSED " in f" {ln} " for ln in lines), failed=failed, summary=lines[-1] if lines else "")
    elif not a.no_suite:
        rep.add("suite", skipped=f"{rep.left():.0f} s left")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
