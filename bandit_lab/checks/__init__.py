"""Theorem checks run by ``bandit-lab verify``.

Each module in this package defines ``CHECKS = [Check(...), ...]``. A check's ``run(n, seed)``
evaluates a claim on ``n`` random float64 instances and returns the largest error seen; the
check passes when that error is at most its tolerance. Modules are discovered, not listed.

A check that is inherently long at the paper's size (``sampled-rate``: 20 seeds × 1,500 steps
with N = 4,096 draws per step) also has a ``slow`` run, the same claim at the full size, used by
``bandit-lab verify --slow``; its default ``run`` checks the claim at a smaller size (see
docs/performance.md). :func:`run_checks` runs checks in ``jobs`` worker processes (they share
compiled programs through the persistent compilation cache when it is on).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    claim: str  # one line, with the paper and equation
    tolerance: float
    run: Callable[[int, int], float]  # (n_instances, seed) -> max error
    n_instances: int = 20
    # "≤": error must be at most tolerance; "≥": the measured value must be at least it
    # (for claims that two things differ, e.g. constrained DPO ≠ constrained RLHF).
    direction: str = "≤"
    # the same claim at the paper's full size, for `verify --slow` (None: ``run`` is already that)
    slow: Callable[[int, int], float] | None = None
    slow_claim: str | None = None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    check: Check
    value: float
    passed: bool
    seconds: float
    tier: str = "default"  # "slow" when the check's full-size run was used (`verify --slow`)


def padded(pb, contexts: int):
    """``pb`` (a :class:`~bandit_lab.core.problems.Problem`) with its last context repeated up to
    ``contexts`` contexts (equal weights).

    Compile sharing for ``verify`` (issue 22): the solvers compile their programs once per
    *shape* (the on-policy stationary solver's warm start and evaluation, the exact Newton
    solver's value-and-gradient and policy), so instances with 1 or 3 contexts cost two sets. The
    objectives checked on padded instances are sums over contexts of per-context terms with no
    parameter shared between contexts and no weight decay (groups, baselines, KL and pairs are
    per prompt), so every context's optimum or stationary point is independent of the others and
    of its weight: the padded problem's first ``pb.n_contexts`` rows are ``pb``'s. The checks
    compare exactly those rows with ``pb``'s own oracles (weighted by ``pb.context_weight``), so a
    coupling would fail them."""
    import dataclasses

    X = pb.n_contexts
    if X >= contexts:
        return pb
    idx = list(range(X)) + [X - 1] * (contexts - X)

    def take(a):
        return None if a is None else np.asarray(a)[idx]

    return dataclasses.replace(pb, pi_ref=take(pb.pi_ref), given_pref=take(pb.given_pref), given_pairs=take(pb.given_pairs),
                               context_weight=np.full(contexts, 1.0 / contexts), reward=take(pb.reward), pi_star=take(pb.pi_star))


_VG: dict = {}


def value_and_grad(obj, params):
    """``(value, gradient)`` of ``obj`` at ``params`` (its own hyperparameters), by one jitted
    ``jax.value_and_grad`` per objective signature with the problem's arrays and the
    hyperparameters as arguments, kept for the process. Evaluated eagerly, every primitive compiled
    a small program of its own per shape (``tdpo1-dpo-T1``: 228 compiles for 20 instances, 8
    programs now; issue 22)."""
    import jax

    key = (obj.signature(), tuple(sorted(obj.hp)))
    if key not in _VG:
        if len(_VG) > 256:
            _VG.clear()
        _VG[key] = jax.jit(jax.value_and_grad(lambda p, hp, c, obj=obj: obj.value(p, hp, consts=c)))
    return _VG[key](params, {k: float(v) for k, v in obj.hp.items()}, obj.consts())


_REGISTRY: dict[str, Check] = {}


def registry() -> dict[str, Check]:
    if not _REGISTRY:
        for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            m = importlib.import_module(f"{__name__}.{mod.name}")
            for c in getattr(m, "CHECKS", []):
                if c.name in _REGISTRY:
                    raise ValueError(f"check {c.name!r} registered twice")
                _REGISTRY[c.name] = c
    return dict(_REGISTRY)


def run_check(check: Check, n: int | None = None, seed: int = 0, slow: bool = False) -> CheckResult:
    import time

    full = slow and check.slow is not None
    t0 = time.perf_counter()
    value = float((check.slow if full else check.run)(n or check.n_instances, seed))
    ok = bool(np.isfinite(value) and (value <= check.tolerance if check.direction == "≤" else value >= check.tolerance))
    return CheckResult(check, value, ok, time.perf_counter() - t0, "slow" if full else "default")


def claim(check: Check, slow: bool = False) -> str:
    """The claim as run: the full-size wording under ``--slow`` where the check has one."""
    return check.slow_claim if slow and check.slow is not None and check.slow_claim else check.claim


PARALLEL_FROM = 8  # fewer checks than this run in-process by default: a spawned worker costs ≈ 2 s to start


def default_jobs(n_checks: int | None = None) -> int:
    """Worker processes for ``verify`` by default: the CPUs this process may use, at most 4
    (the checks are compile-bound; XLA's CPU compiler uses about one core per program) — and 1,
    in-process, for fewer than ``PARALLEL_FROM`` checks."""
    import os

    if n_checks is not None and n_checks < PARALLEL_FROM:
        return 1

    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def _worker_init(x64: bool, cache_dir: str | None, fast: bool = True) -> None:
    import os

    os.environ.setdefault("BANDIT_LAB_NO_PROGRESS", "1")
    if fast:  # before this worker's first computation: its programs compile in fast-compile mode
        from bandit_lab.infra import xla_flags

        xla_flags.enable()
    if cache_dir:
        from bandit_lab.infra import cache

        cache.enable(cache_dir)
    from bandit_lab.infra import precision

    precision.enable_x64(x64)


def _worker_run(name: str, n: int | None, seed: int, slow: bool):
    r = run_check(registry()[name], n, seed, slow)
    return r.value, r.passed, r.seconds, r.tier


# checks that reuse another's in-process results (memoised trainings or stationary solves): kept
# in one worker, after the check they reuse
AFFINITY = {"sampled-4096": "sampled-rate", "grpo-not-gibbs": "grpo-vojnovic-yun", "spo-thm2-absorbing": "spo-thm2-flow"}


# cold seconds of the longest checks (a worker's, two workers side by side, fast-compile mode; issue 22,
# session 8, 2026-12-06), for ``--jobs``: units start longest first, so a long check does not start
# last and leave the other workers idle at the end; unlisted checks count 1. Only the start order
# depends on it, never a value.
COST = {"dr-grpo-rlhf": 17, "reinforce-rloo-gibbs": 12, "radpo1-optimum": 9, "sampled-rate": 9, "fdiv-nca_pair": 5,
        "grpo-vojnovic-yun": 5, "fdiv-caldpo": 5, "fdiv-bco_pair": 3, "fdiv-hinge": 3, "token-optimum": 3,
        "kl-estimator-grads": 3, "fdiv-sppo_hard": 3, "reinforce-rlhf-grad": 2, "spo-thm1-minimiser": 3,
        "verdict-no-minimiser": 3, "nash-md-equilibria": 2, "fdpo-js": 3, "fdpo-alpha": 2, "dpo-rlhf": 2, "spo-thm2-flow": 2}


def run_checks(names: list[str], n: int | None = None, seed: int = 0, *, jobs: int = 1, slow: bool = False):
    """Yield a :class:`CheckResult` per name, in the order of ``names``, each as soon as it and
    every check before it are done. ``jobs > 1`` runs them in that many spawned processes
    (JAX does not survive ``fork``); each worker uses float64 if this process does and the same
    persistent compilation cache, so a program compiled by one worker is read by the others, and
    compiles in fast-compile mode (:mod:`bandit_lab.infra.xla_flags`; not with
    ``BANDIT_LAB_FAST_COMPILE=0``). In-process (``jobs=1``) the checks use this process's mode."""
    reg = registry()
    if jobs <= 1 or len(names) <= 1:
        for name in names:
            yield run_check(reg[name], n, seed, slow)
        return
    import concurrent.futures as cf
    import multiprocessing

    import jax

    from bandit_lab.infra import precision, xla_flags

    cache_dir = jax.config.jax_compilation_cache_dir or None
    # a unit of work = a check with the checks that reuse its results; started longest first
    # (``COST``), printed in the order of ``names``
    units: list[list[str]] = []
    home: dict[str, list[str]] = {}
    for name in names:
        lead = AFFINITY.get(name)
        if lead in home:
            home[lead].append(name)
            home[name] = home[lead]
        else:
            home[name] = [name]
            units.append(home[name])
    units.sort(key=lambda u: -sum(COST.get(nm, 1) for nm in u))  # stable: registry order among equals
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(units)), mp_context=ctx, initializer=_worker_init,
                                initargs=(precision.x64_enabled(), cache_dir, xla_flags.requested(True))) as pool:
        futs = {u[0]: pool.submit(_run_unit, u, n, seed, slow) for u in units}
        done: dict[str, CheckResult] = {}
        for name in names:
            unit = home[name]
            if name not in done:
                for nm, (value, passed, seconds, tier) in zip(unit, futs[unit[0]].result()):
                    done[nm] = CheckResult(reg[nm], value, passed, seconds, tier)
            yield done.pop(name)


def _run_unit(unit: list[str], n: int | None, seed: int, slow: bool):
    return [_worker_run(name, n, seed, slow) for name in unit]
