"""CVaR of a discrete distribution, exactly (jax for losses, numpy for references).

Ra-DPO Eq. 20–21 define ``Φ^μ(Z) = (1/μ)∫_0^μ F_Z^{-1}(ξ) dξ`` — the mean of the *lowest* μ
probability mass (``tail="lower"``). For a discrete ``Z`` with values ``v_i`` and masses
``p_i`` this is ``(1/μ) Σ_i m_i v_i`` with ``m_i = clip(μ − (mass strictly before i), 0, p_i)``
in ascending order of ``v``. ``tail="upper"`` takes the highest μ mass instead (descending
order): ``CVaR^up_μ(Z) = −CVaR^low_μ(−Z)``. Both equal ``E[Z]`` at μ = 1; for μ < 1 the upper
tail is ≥ the mean and the lower tail ≤ it.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

TAILS = ("upper", "lower")


def cvar(values, probs, mu, tail: str = "upper"):
    """CVaR over the last axis (jax; differentiable in ``values`` almost everywhere — the
    sort order is piecewise constant)."""
    mu = jnp.clip(mu, 1e-12, 1.0)
    key = -values if tail == "upper" else values
    order = jnp.argsort(key, axis=-1)
    v = jnp.take_along_axis(values, order, axis=-1)
    p = jnp.take_along_axis(probs, order, axis=-1)
    before = jnp.cumsum(p, axis=-1) - p
    m = jnp.clip(mu - before, 0.0, p)
    return jnp.sum(m * v, axis=-1) / mu


def cvar_np(values: np.ndarray, probs: np.ndarray, mu: float, tail: str = "upper") -> np.ndarray:
    """Plain-numpy reference: the quantile integral of Eq. 21 evaluated piece by piece
    (an independent route from :func:`cvar`: integrates ``F^{-1}`` over [0, μ] or [1−μ, 1])."""
    values = np.asarray(values, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    out = np.zeros(values.shape[:-1])
    for idx in np.ndindex(values.shape[:-1]):
        v, p = values[idx], probs[idx]
        o = np.argsort(v, kind="stable")
        v, p = v[o], p[o]
        F = np.concatenate([[0.0], np.cumsum(p)])
        F[-1] = 1.0
        lo, hi = (0.0, mu) if tail == "lower" else (1.0 - mu, 1.0)
        total = 0.0
        for i in range(v.size):  # F^{-1}(ξ) = v_i on (F_i, F_{i+1}]
            a, b = max(F[i], lo), min(F[i + 1], hi)
            if b > a:
                total += (b - a) * v[i]
        out[idx] = total / mu
    return out
