"""The f-RLHF optimum in closed form (NumPy float64): the leaf every oracle builds on.

:func:`rlhf_optimum` — argmin of ``−E_π[r] + β D_f(π‖π_ref)`` on the simplex. Stationarity
with a multiplier λ for ``Σπ = 1`` gives ``f'(π/π_ref) = (r − λ)/β`` (Wang et al. 2024, Thm 1):
reverse KL: ``π = π_ref·exp(r/β)/Z`` (Rafailov et al. Eq. 4; Kong et al. Eq. 5);
forward KL: ``π = β·π_ref/(λ − r)``; JS: ``π = π_ref·e^t/(2 − e^t)``, α: ``π = π_ref(1 − αt)^{−1/α}``
with ``t = (r − λ)/β``; λ from normalisation (monotone: bracketing, then bisection to the last bit).

Split out of :mod:`bandit_lab.solvers.oracles` (moved, not rewritten) so that the on-policy closed
forms (:mod:`bandit_lab.onpolicy.closed_forms`) and the loss dispatcher
(:func:`bandit_lab.solvers.oracles.loss_oracle`, which calls them) no longer import each other:
both import this module, which imports only :mod:`bandit_lab.core.divergences`.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.core import divergences


def softmax_np(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def rlhf_optimum(pi_ref: np.ndarray, reward: np.ndarray, beta: float, divergence: str = "reverse_kl", f_alpha: float = 0.5) -> np.ndarray:
    """Unconstrained f-RLHF optimum per context (see module docstring)."""
    pi_ref = np.atleast_2d(pi_ref)
    reward = np.atleast_2d(reward)
    if np.any(pi_ref <= 0):  # π_ref with zeros: the optimum lives on supp(π_ref) (bandit_lab.core.support)
        out = np.zeros(np.broadcast_shapes(pi_ref.shape, reward.shape))
        for x in range(out.shape[0]):
            s = pi_ref[x] > 0
            out[x, s] = rlhf_optimum(pi_ref[x, s], np.broadcast_to(reward, out.shape)[x, s], beta, divergence, f_alpha)[0]
        return out
    if divergence == "reverse_kl":
        return softmax_np(np.log(pi_ref) + reward / beta)
    if divergence in ("forward_kl", "js"):
        return _forward_kl_optimum(pi_ref, reward, beta, divergence)
    out = np.empty_like(pi_ref)
    tmax = divergences.t_max(divergence, f_alpha)
    for x in range(pi_ref.shape[0]):
        r, ref = reward[x], pi_ref[x]

        def mass(lam):  # Σ π(λ) − 1, strictly decreasing in λ
            t = (r - lam) / beta
            return np.sum(ref * divergences.fprime_inv(divergence, t, f_alpha)) - 1.0

        if np.isfinite(tmax):
            lo = np.max(r) - beta * tmax  # t < t_max for every response
            lo_ = lo + 1e-12 * max(1.0, abs(lo))
        else:  # f' unbounded above (χ²-mixture): a λ at which every u ≥ 1/min π_ref, so Σ π(λ) > 1
            u0 = 1.0 / float(ref.min())
            lo = lo_ = float(np.min(r) - beta * float(divergences.fprime(divergence, np.log(u0), f_alpha)) - 1.0)
        step = max(1.0, beta)
        while mass(lo_) <= 0:  # only possible if the range of f' is bounded and mass small
            lo_ = lo + (lo_ - lo) / 2
            if lo_ - lo < 1e-300:
                break
        hi = lo_ + step
        while mass(hi) > 0:
            step *= 2
            hi = lo_ + step
        lam = _bisect_decreasing(mass, lo_, hi)
        p = ref * divergences.fprime_inv(divergence, (r - lam) / beta, f_alpha)
        out[x] = p / p.sum()
    return out


def _bisect_decreasing(mass, a: float, b: float) -> float:
    """The root of a decreasing ``mass`` on ``[a, b]`` (``mass(a) > 0 ≥ mass(b)``), bisected to the
    last bit and returned as the end with the smaller ``|mass|`` (no SciPy import: cold starts matter)."""
    for _ in range(2000):
        mid = 0.5 * (a + b)
        if mid <= a or mid >= b:
            break
        if mass(mid) > 0:
            a = mid
        else:
            b = mid
    return b if abs(mass(b)) <= abs(mass(a)) else a


def _forward_kl_optimum(pi_ref: np.ndarray, reward: np.ndarray, beta: float, divergence: str = "forward_kl") -> np.ndarray:
    """Forward KL: ``π_k = β·π_ref,k/(s + d_k)``, ``d_k = max r − r_k ≥ 0``, with the gap
    ``s = λ − max r > 0`` found by bisection in log s (``Σ π(s)`` is decreasing, ``> 1`` below
    ``β·Σ_{argmax} π_ref`` and ``≤ 1`` at ``s = β``). Solving for the gap itself, rather than for λ,
    keeps full relative precision for the arg-max responses as π_ref → 0 (there s ~ β·π_ref/π is
    tiny; bisection on λ left a stationarity error of 6e-6 at π_ref = 1e-12). JS likewise in the gap
    to its bound t_max = log 2: ``π_k = π_ref,k/expm1((d_k + s)/β)`` (``Σ π ≤ 1`` at s = β·log 2,
    ``> 1`` below β·log1p(Σ_{argmax} π_ref)); it was 1.8e-5 at π_ref = 1e-12."""
    js = divergence == "js"
    out = np.empty_like(pi_ref, dtype=np.float64)
    for x in range(pi_ref.shape[0]):
        ref, r = pi_ref[x].astype(np.float64), reward[x].astype(np.float64)
        d = r.max() - r
        top = float(ref[d == 0].sum())

        def pol(ls):
            return ref / np.expm1((np.exp(ls) + d) / beta) if js else beta * ref / (np.exp(ls) + d)

        def mass(ls):
            return float(np.sum(pol(ls))) - 1.0

        a, b = (np.log(beta * np.log1p(top)), np.log(beta * np.log(2.0))) if js else (np.log(beta * top), np.log(beta))
        a -= 1e-9
        while mass(a) <= 0:
            a -= 1.0
        ls = _bisect_decreasing(mass, a, b)
        p = pol(ls)
        out[x] = p / p.sum()
    return out
