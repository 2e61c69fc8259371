"""Stationary points of the library variants not covered elsewhere, against independent
computations (issue 21, last "Done when" item; the table is in docs/onpolicy-libraries.md).

Each row puts an independently computed point into the variant's exact expected update F (the
loss's own code, softmax logits = log π) and asserts that the update per unit of mass vanishes
there, max_k |F_k/π_k| ≤ 1e-9, and is ≥ 1e-3 at a nearby wrong point (so the check can fail).
The independent points are NumPy only: Gibbs π_ref·e^{r/β'}/Z, the forward-KL point by bisection,
and the group-std point by enumeration of the group's compositions (tests/conftest.py's
``group_std_point_by_enumeration``, with each library's ε). One problem (Kong et al. App. B), one
module; each variant compiles one gradient (≈ 1 s).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from conftest import group_std_point_by_enumeration  # noqa: E402  (tests/ is on the path)

PI_REF = np.array([0.4, 0.4, 0.2])
R = np.log([0.6, 0.3, 0.1])
BETA, G = 0.5, 4
C = (G - 1) / G


@pytest.fixture(scope="module")
def kong():
    return Problem.create(PI_REF.tolist(), reward=R.tolist(), pairs="uniform")


def _gibbs(beta):
    a = np.log(PI_REF) + R / beta
    return np.exp(a - np.logaddexp.reduce(a))


def _forward_kl_point(c, beta):
    """Zero of c·∇E_π r − β·∇KL(π_ref‖π) (k3 in the loss without TRL's correction): in the logits
    c·π_k(r_k − r̄) = β(π_k − π_ref,k), so π_k = β·π_ref,k/(β − c(r_k − λ)) with λ = r̄ fixed by
    Σπ = 1 (bisection on λ > max_k r_k − β/c, where the sum falls from +∞ to 0)."""
    lo, hi = R.max() - beta / c + 1e-15, R.max() + 1e3
    for _ in range(200):
        lam = 0.5 * (lo + hi)
        s = np.sum(beta * PI_REF / (beta - c * (R - lam)))
        lo, hi = (lam, hi) if s > 1 else (lo, lam)
    p = beta * PI_REF / (beta - c * (R - lam))
    return p / p.sum()


def _group_std(eps, beta=BETA, n=G):
    th = group_std_point_by_enumeration(PI_REF, R, n, beta, eps=eps)
    p = np.exp(th - np.logaddexp.reduce(th))
    return p


# (library, loss_params, independent point, its name). Why (single-token responses, on-policy ρ = 1):
# - scale_rewards none: E[(r − group mean)∇log π] = ((G−1)/G)·∇E_π r; TRL's corrected k3 (k3·ρ) and
#   verl's k3+/k2 and OpenRLHF's k2 have E_π[∇] = ∇KL(π‖π_ref) → Gibbs at β·G/(G−1); the sequence-level
#   ratio (GSPO) of a one-token completion is the token ratio;
# - plain k3 in the loss: E_π[∇k3] = ∇KL(π_ref‖π) → the forward-KL point above;
# - group std: no closed form (Vojnovic & Yun 2025); the enumeration with the library's ε and ddof 1
#   (TRL 1e-4, verl 1e-6, OpenRLHF 1e-9), with a KL(π‖π_ref) gradient;
# - verl's *_vectorized estimators compute the same expectation as the loop versions;
# - OpenRLHF flash_reinforce: a batch-mean baseline (E_π r in expectation) and k1 in the reward → Gibbs at β.
TRL_NONE = {"scale_rewards": "none", "num_generations": G, "beta": BETA}
ROWS = [
    ("grpo", {**TRL_NONE, "loss_type": "dapo", "importance_sampling_level": "sequence"}, lambda: _gibbs(BETA / C), "gibbs_G"),
    ("grpo", {**TRL_NONE, "loss_type": "grpo", "importance_sampling_level": "sequence"}, lambda: _gibbs(BETA / C), "gibbs_G"),
    ("grpo", {**TRL_NONE, "loss_type": "dr_grpo", "use_bias_correction_kl": False}, lambda: _forward_kl_point(C, BETA), "fkl_G"),
    ("grpo", {**TRL_NONE, "loss_type": "dapo", "use_bias_correction_kl": False,
              "importance_sampling_level": "sequence"}, lambda: _forward_kl_point(C, BETA), "fkl_G"),
    ("grpo", {"loss_type": "dapo", "num_generations": G, "beta": BETA}, lambda: _group_std(1e-4), "enum_trl"),
    ("grpo", {"loss_type": "grpo", "num_generations": G, "beta": BETA, "importance_sampling_level": "sequence"},
     lambda: _group_std(1e-4), "enum_trl"),
    ("grpo", {"loss_type": "bnpo", "num_generations": G, "beta": BETA}, lambda: _group_std(1e-4), "enum_trl"),
    ("grpo", {"loss_type": "dr_grpo", "num_generations": G, "beta": BETA}, lambda: _group_std(1e-4), "enum_trl"),
    ("grpo", {"loss_type": "luspo", "num_generations": G, "beta": BETA}, lambda: _group_std(1e-4), "enum_trl"),
    ("verl", {"adv_estimator": "grpo", "n": G, "use_kl_loss": True, "kl_loss_type": "k3+", "kl_loss_coef": BETA},
     lambda: _group_std(1e-6), "enum_verl"),
    ("verl", {"adv_estimator": "grpo_vectorized", "n": G, "use_kl_loss": True, "kl_loss_type": "mse", "kl_loss_coef": BETA},
     lambda: _group_std(1e-6), "enum_verl"),
    ("verl", {"adv_estimator": "rloo_vectorized", "n": G, "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA},
     lambda: _gibbs(BETA), "gibbs"),
    ("openrlhf", {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": G, "algo.kl.use_loss": True,
                  "algo.kl.estimator": "k2", "algo.kl.init_coef": BETA}, lambda: _group_std(1e-9), "enum_openrlhf"),
    ("openrlhf", {"algo.advantage.estimator": "flash_reinforce", "algo.kl.init_coef": BETA}, lambda: _gibbs(BETA), "gibbs"),
]
WRONG = {"gibbs": lambda: _gibbs(BETA / C), "gibbs_G": lambda: _gibbs(BETA), "fkl_G": lambda: _gibbs(BETA / C),
         "enum_trl": lambda: _gibbs(BETA / C), "enum_verl": lambda: _gibbs(BETA / C), "enum_openrlhf": lambda: _gibbs(BETA / C)}


def _per_mass_field(pb, loss, lp, policy):
    o = make_objective(pb, loss, lp)
    logits = jnp.log(jnp.asarray(policy))[None]
    f = np.asarray(jax.grad(lambda z: o.value(z, o.hp))(logits))[0]
    return f / policy


@pytest.mark.parametrize("loss, lp, point, name", ROWS, ids=[f"{r[0]}-{i}" for i, r in enumerate(ROWS)])
def test_expected_update_vanishes_at_the_independent_point(kong, loss, lp, point, name):
    u = _per_mass_field(kong, loss, lp, point())
    assert np.max(np.abs(u)) < 1e-9, u
    assert np.max(np.abs(_per_mass_field(kong, loss, lp, WRONG[name]()))) > 1e-3


def test_enumeration_and_forward_kl_points_are_not_gibbs():
    """The independent points differ from each other (so the rows above discriminate)."""
    assert np.abs(_group_std(1e-4) - _gibbs(BETA / C)).max() > 1e-3
    assert np.abs(_forward_kl_point(C, BETA) - _gibbs(BETA / C)).max() > 1e-3
