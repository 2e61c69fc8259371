"""Closed-form optima (NumPy float64): the unconstrained answers a trained policy is held to.

- :func:`rlhf_optimum` — the f-RLHF optimum (Wang et al. 2024, Thm 1), defined in
  :mod:`bandit_lab.solvers.f_rlhf` and re-exported here.
- :func:`ipo_optimum` — ``π_ref·exp(r_IPO/β)/Z`` (Azar et al. 2024 Prop. 4; Kong et al. Eq. 9;
  Nguyen's notes Lemma 3.1).
- :func:`loss_oracle` — the closed form a registered loss should reach, or ``None``; for on-policy
  algorithms (``kind == "onpolicy"``) the stationary point of their expected update
  (:mod:`bandit_lab.onpolicy.closed_forms`: Gibbs, forward-KL, Vojnovic–Yun, Nash-MD).
"""
from __future__ import annotations

import numpy as np

from bandit_lab.core.problems import Problem
# re-exported: the f-RLHF optimum lives one level down, shared with the on-policy closed forms
from bandit_lab.solvers.f_rlhf import _bisect_decreasing, _forward_kl_optimum, rlhf_optimum, softmax_np  # noqa: F401


def ipo_optimum(problem: Problem, beta: float) -> np.ndarray | None:
    """``π_ref·exp(r_IPO/β)/Z`` when the pair law makes it IPO's population optimum.

    Derivation: the population IPO loss is the weighted least squares
    ``Σ w_ij (h_i − h_j − (p_ij − ½)/β)²`` with ``w_ij ∝ a_i a_j`` off the diagonal; its normal
    equations ``A h_i − Σ_j a_j h_j = Σ_j a_j (p_ij − ½)/β`` are solved by ``h = r_IPO/β + c``
    with ``μ = a/A``. Holds for the uniform and the reference pair law; else ``None``.
    """
    if not problem.ipo_closed_form:
        return None
    with np.errstate(divide="ignore"):  # log 0 = −∞: π = 0 off supp(π_ref), exactly
        return softmax_np(np.log(problem.pi_ref) + problem.r_ipo / beta)


def _pairs_connected(problem: Problem) -> bool:
    K = problem.n_responses
    for x in range(problem.n_contexts):
        adj = (problem.pairs[x] + problem.pairs[x].T) > 0
        seen, stack = {0}, [0]
        while stack:
            i = stack.pop()
            for j in np.nonzero(adj[i])[0]:
                if j not in seen:
                    seen.add(int(j))
                    stack.append(int(j))
        if len(seen) < K:
            return False
    return True


def _deterministic_pair(problem: Problem) -> bool:
    off = ~np.eye(problem.n_responses, dtype=bool)
    shown = (problem.pairs > 0) & off
    return bool(np.any(shown & ((problem.pref <= 0) | (problem.pref >= 1))))


def loss_oracle(problem: Problem, loss: str, hp: dict, static: dict, *, population_data: bool = True) -> tuple[np.ndarray | None, str]:
    """The closed-form unconstrained optimum of a registered loss, with a one-line reason.

    Returns ``(policy or None, note)``. Pairwise losses are held to the RLHF optimum with the
    BT reward only on population data whose pair graph is connected and whose labels are not
    deterministic (else the minimiser is not unique or not finite).
    """
    beta = hp.get("beta", 1.0)
    a = hp.get("f_alpha", 0.5)
    from bandit_lab.losses.base import REGISTRY

    if loss in REGISTRY and REGISTRY[loss].oracle is not None:  # a loss's own closed form (plugins)
        if not population_data:
            return None, "finite sampled data: the closed forms are population statements"
        pi, note = REGISTRY[loss].oracle(problem, hp, static)
        return (None if pi is None else np.atleast_2d(np.asarray(pi, dtype=np.float64))), str(note)
    if loss in REGISTRY and REGISTRY[loss].kind == "onpolicy":  # stationary points of on-policy algorithms
        from bandit_lab.onpolicy.closed_forms import oracle

        return oracle(problem, loss, hp, static)
    if loss == "rlhf":
        r = problem.r_ipo if static.get("reward") == "ipo" else problem.reward
        if r is None:
            return None, "no Bradley–Terry reward for this preference matrix"
        return rlhf_optimum(problem.pi_ref, r, beta, static["divergence"], a), f"f-RLHF closed form ({static['divergence']})"
    if not population_data:
        return None, "finite sampled data: the closed forms are population statements"
    if loss == "ipo":
        pi = ipo_optimum(problem, beta)
        return pi, "π_ref·exp(r_IPO/β)/Z" if pi is not None else "IPO closed form needs a uniform or reference pair law"
    if loss in ("dpo", "fdpo", "gaussian_nll"):
        if problem.reward is None:
            return None, "preferences are not Bradley–Terry: no closed form"
        if not _pairs_connected(problem):
            return None, "the pair graph is disconnected: the optimum is not unique"
        if _deterministic_pair(problem):
            return None, "deterministic labels: the loss has no finite minimiser"
        div = static.get("divergence", "reverse_kl")
        return rlhf_optimum(problem.pi_ref, problem.reward, beta, div, a), f"RLHF optimum with the BT reward ({div})"
    if loss == "spo_pref":
        a = hp.get("alpha", 1.0)
        if problem.reward is None:
            return None, "preferences are not Bradley–Terry: no closed form"
        off = ~np.eye(problem.n_responses, dtype=bool)
        if not np.all(problem.pairs[:, off] > 0) or _deterministic_pair(problem):
            return None, "SPO Thm 1 needs full-support, non-deterministic pair data"
        if a <= 0:
            return None, "α = 0 (Eq. 9) has no minimiser; softmax(r/α) → argmax only as α → 0"
        return softmax_np(problem.reward / a), "softmax(r/α) (SPO Thm 1)"  # = spo.softmax_r_over_alpha for α > 0
    return None, "no closed form known"
