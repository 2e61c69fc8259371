"""The (loss, f) table: for which losses is the f-RLHF optimum a fixed point of the loss's
f-divergence version? (TRL 1.16 accepts ``f_divergence_type`` only for difference-based losses.)

The f-version of a loss reads the scores ``s = f'(π/π_ref) − f'(1)`` where the loss read the
log-ratios ``h`` (:func:`bandit_lab.losses.mixture.scores`; Wang et al. 2024, "Beyond Reverse KL",
Eq. 11 for DPO). Let ``π_L`` be the loss's (reverse-KL) optimum and ``r_L = β log(π_L/π_ref)`` its
implied reward. Claim for a loss of the difference ``Δ = s_w − s_l`` only: the f-RLHF optimum with
reward ``r_L``, ``β f'(π/π_ref) = r_L − λ(x)`` (Wang et al. Thm 1's stationarity), minimises the
f-version. Proof: the loss is ``F(s)`` with ``F`` invariant to a per-context constant; under
reverse KL every score vector is reachable up to that constant, so ``min L = min F = F(β⁻¹r_L)``;
the f-RLHF optimum has scores ``β⁻¹r_L − λ/β``, so it attains ``min F`` and nothing can do better.
Certificate checked here: ``L_f(f-RLHF optimum) = L(π_L)`` to rounding (exact for kinked hinge too).
A loss that reads each score on its own (NCA, BCO, SPPO, Cal-DPO) is not invariant to the
constant; the reachable set ``Σ π_ref·f'⁻¹(s + f'(1)) = 1`` differs from reverse KL's, and the
f-RLHF optimum is *not* its minimiser: checked as TV(f-RLHF optimum, exact minimiser of the
f-version) ≥ 1e-4 (a finding, direction "≥") — why TRL rejects them and :mod:`bandit_lab.losses.mixture` raises.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.core import metrics
from bandit_lab.checks import Check
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.core.random_problems import random_problem

DIVS = (("forward_kl", 0.5), ("js", 0.5), ("alpha", 0.5), ("chi_mix", 0.5))
DIFFERENCE = ("dpo", "hinge", "cdpo", "robust", "exo_pair", "ipo", "gaussian_nll")
PER_RESPONSE = ("nca_pair", "bco_pair", "sppo_hard", "caldpo")


def _problem(rng):
    pb = random_problem(rng, k=int(rng.integers(3, 5)), contexts=1, preference="pi_star", pairs="uniform")
    return pb, float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))


def _f_version(pb, loss, beta, div, a):
    base = make_objective(pb, "mixture", {"terms": [loss], "beta": beta, "f_alpha": a})
    # bypass the mixture's rejection of per-response losses on purpose: this check is its reason
    return dataclasses.replace(base, static={**base.static, "divergence": div})


def _params(loss, beta):
    return {"beta": beta, **({"label_smoothing": 0.1} if loss in ("cdpo", "robust") else {})}


def loss_optimum(pb, loss, beta) -> np.ndarray:
    """π_L, the loss's own (reverse-KL) exact optimum on ``pb``: the same for every f of a row."""
    from bandit_lab import fixed_points as fp

    rk = make_objective(pb, loss, _params(loss, beta))
    if loss == "hinge":
        from bandit_lab.solvers.solver import solve_exact

        return np.atleast_2d(solve_exact(rk).policy)
    return np.atleast_2d(fp.multistart(rk)[0].policy)


def table_row(pb, loss, beta, div, a, pi_L=None):
    """``(L_f(f-RLHF optimum), L(π_L), min L_f)`` on one problem (min L_f by the exact solver);
    ``pi_L``: :func:`loss_optimum`, when the caller already has it (one solve per problem, not per f)."""
    from bandit_lab import fixed_points as fp

    params = _params(loss, beta)
    rk = make_objective(pb, loss, params)
    if pi_L is None:
        pi_L = loss_optimum(pb, loss, beta)
    reward = beta * (np.log(pi_L) - np.log(pb.pi_ref))
    cand = rlhf_optimum(pb.pi_ref, reward, beta, div, a)
    fo = _f_version(pb, loss, beta, div, a)
    fo = dataclasses.replace(fo, hp={**fo.hp, **{k: v for k, v in params.items()}})
    import jax.numpy as jnp

    v_cand = float(fo.value(jnp.asarray(np.log(cand)), fo.hp))
    v_L = float(rk.value(jnp.asarray(np.log(pi_L)), rk.hp))
    tv = None
    if loss in PER_RESPONSE:
        r_f = fp.multistart(fo)[0]
        tv = float(metrics.tv(np.atleast_2d(r_f.policy), cand, pb.context_weight))
    return v_cand, v_L, tv


def _difference(loss):
    def run(n, seed):
        rng = np.random.default_rng(seed)
        worst = 0.0
        for _ in range(n):
            pb, beta = _problem(rng)
            pi_L = loss_optimum(pb, loss, beta)
            for div, a in DIVS:
                v_cand, v_L, _ = table_row(pb, loss, beta, div, a, pi_L)
                worst = max(worst, abs(v_cand - v_L) / max(1.0, abs(v_L)))
        return worst
    return run


def _per_response(loss):
    def run(n, seed):
        rng = np.random.default_rng(seed)
        gaps = []
        for _ in range(n):
            pb, beta = _problem(rng)
            pi_L = loss_optimum(pb, loss, beta)
            for div, a in DIVS:
                _v_cand, _v_L, tv = table_row(pb, loss, beta, div, a, pi_L)
                gaps.append(tv)
        return min(gaps)
    return run


CHECKS = [
    Check(f"fdiv-{loss}", f"{loss}: f-RLHF optimum (reward β log π_L/π_ref) minimises the f-version, f ∈ fwd KL/JS/α/χ²-mix: "
          "|L_f(it) − min L| (Wang et al. Thm 1; docs/zoo.md)", 1e-10, _difference(loss), n_instances=3)
    for loss in DIFFERENCE
] + [
    Check(f"fdiv-{loss}", f"finding: {loss} reads each score alone — the f-RLHF optimum is NOT its f-version's minimiser: "
          "min over instances and f of TV(it, f-version's exact minimiser) (why TRL rejects f here)", 1e-4, _per_response(loss), n_instances=3, direction="≥")
    for loss in PER_RESPONSE
]
