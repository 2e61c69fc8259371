"""bandit-lab: preference-optimisation losses and RL algorithms, optimised exactly on small bandits.

The public API is the list ``bandit_lab.__all__`` (re-exported from private modules, optax
style); everything else is internal and may change. A five-minute tour, run by the test suite:

>>> import bandit_lab as bl
>>> with bl.x64():                                   # float64, scoped: JAX's config is restored
...     pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
...     dpo = bl.make_objective(pb, "dpo", {"beta": 1.0})
...     ex = bl.solve_exact(dpo)                      # the exact population optimum
...     rl = bl.solve_exact(dpo.counterpart())        # reverse-KL RLHF with the BT reward
>>> print(ex.policy.round(6), ex.converged)
[[0.631579 0.315789 0.052632]] True
>>> print(float(abs(ex.policy - rl.policy).sum() / 2) < 1e-9)   # Kong et al. Eq. 10–11
True

Importing the package changes nothing in JAX's configuration: see :mod:`bandit_lab.infra.precision`
for the float64 rule (``enable_x64()`` process-wide, ``with x64():`` scoped; the ``bandit-lab``
command enables it for its own process). Names resolve lazily, so ``import bandit_lab`` does not
import JAX. (The functions are ``train_policy`` and ``find_fixed_points`` because
``bandit_lab.core.train`` and ``bandit_lab.fixed_points`` are modules.)
"""
from __future__ import annotations

import importlib

from bandit_lab.infra.precision import enable_x64, use_float32, x64, x64_enabled

# public name → private module that defines it
_LAZY = {
    # errors
    "BanditError": "bandit_lab.errors",
    "DivergenceError": "bandit_lab.errors",
    # problems and data
    "Problem": "bandit_lab.core.problems",
    "PreferenceData": "bandit_lab.core.data",
    "population": "bandit_lab.core.data",
    "sample": "bandit_lab.core.data",
    # objectives, training, exact solutions
    "Objective": "bandit_lab.core.objective",
    "make_objective": "bandit_lab.core.objective",
    "make_parameterization": "bandit_lab.core.params",
    "chosen_rejected": "bandit_lab.core.data",
    "minibatch": "bandit_lab.core.data",
    "batch_key": "bandit_lab.core.train",
    "TrainConfig": "bandit_lab.core.train",
    "Trajectory": "bandit_lab.core.train",
    "ExactResult": "bandit_lab.solvers.solver",
    "Verdict": "bandit_lab.verdict",
    "VerdictKind": "bandit_lab.verdict",
    "train_policy": "bandit_lab.api",
    "solve_exact": "bandit_lab.api",
    "closed_form": "bandit_lab.api",
    "certify": "bandit_lab.api",
    "ClosedForm": "bandit_lab.api",
    "solve": "bandit_lab.api",
    "SolveResult": "bandit_lab.api",
    "find_fixed_points": "bandit_lab.api",
    "FixedPoints": "bandit_lab.api",
    "FixedPointRow": "bandit_lab.api",
    "verify": "bandit_lab.api",
    "CheckResult": "bandit_lab.checks",
    # losses: the registry, the helpers every loss uses, user-defined losses
    "LossSpec": "bandit_lab.losses.base",
    "LossInputs": "bandit_lab.losses.base",
    "expect": "bandit_lab.losses.base",
    "log_ratios": "bandit_lab.losses.base",
    "pair_grid": "bandit_lab.losses.base",
    "loss_registry": "bandit_lab.api",
    "loss": "bandit_lab.plugins",
    "register_loss": "bandit_lab.plugins",
    "unregister_loss": "bandit_lab.plugins",
    "load_plugin": "bandit_lab.plugins",
    # the check-loss battery
    "check_loss": "bandit_lab.loss_check",
    "LossCheckReport": "bandit_lab.loss_check",
    # citations
    "cite": "bandit_lab.bibliography",
}

__all__ = sorted([*_LAZY, "enable_x64", "use_float32", "x64", "x64_enabled"])


def __getattr__(name: str):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'bandit_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
