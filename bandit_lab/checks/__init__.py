"""Theorem checks run by ``bandit-lab verify``.

Each module in this package defines ``CHECKS = [Check(...), ...]``. A check's ``run(n, seed)``
evaluates a claim on ``n`` random float64 instances and returns the largest error seen; the
check passes when that error is at most its tolerance. Modules are discovered, not listed.
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


@dataclasses.dataclass(frozen=True)
class CheckResult:
    check: Check
    value: float
    passed: bool
    seconds: float


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


def run_check(check: Check, n: int | None = None, seed: int = 0) -> CheckResult:
    import time

    t0 = time.perf_counter()
    value = float(check.run(n or check.n_instances, seed))
    ok = bool(np.isfinite(value) and (value <= check.tolerance if check.direction == "≤" else value >= check.tolerance))
    return CheckResult(check, value, ok, time.perf_counter() - t0)
