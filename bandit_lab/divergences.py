"""f-divergences used by f-DPO and f-RLHF (Wang et al. 2024, "Beyond Reverse KL", Table 1).

``D_f(π ‖ π_ref) = Σ_y π_ref(y) f(π(y)/π_ref(y))``. Each divergence gives, as functions of the
log-ratio ``h = log π − log π_ref`` (so that nothing is exponentiated before it has to be):

- ``weighted_f(logp, logp_ref)``: ``π_ref · f(π/π_ref)`` per response (summed by callers);
- ``fprime(h)``: ``f'(u)`` at ``u = e^h`` — f-DPO's implicit reward is ``β f'(π/π_ref)``;
- ``fprime_inv(t)``: ``u`` with ``f'(u) = t`` (NumPy, for the oracles), defined for ``t < t_max``.

α-divergence convention (Wang et al. 2024; Amari's α): ``f(u) = (u^{1−α} − (1−α)u − α)/(α(α−1))``,
``f'(u) = (1 − u^{−α})/α``, for ``α ∈ (0, 1)``; ``α → 0`` gives reverse KL, ``α → 1`` forward KL.
Jensen–Shannon: ``f(u) = u log u − (1+u) log((1+u)/2)``, ``f'(u) = log(2u/(1+u))``.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")

# exp overflows float64 past ~709.78; f' of forward KL / α needs e^{−h}. Clipping the log-ratio
# there keeps losses finite at extreme margins (the gradient beyond the clip is zero).
_H_CLIP = 700.0


def check(name: str, alpha: float | None = None) -> None:
    if name not in DIVERGENCES:
        raise BanditError(f"unknown divergence {name!r}; choose one of {', '.join(DIVERGENCES)}")
    if name == "alpha" and (alpha is None or not (0.0 < float(alpha) < 1.0)):
        raise BanditError("the α-divergence needs f_alpha in (0, 1)")


def fprime(name: str, h, alpha=0.5):
    """``f'(e^h)``; reverse KL uses ``f(u) = u log u`` so ``f' = log u + 1``."""
    h = jnp.clip(h, -_H_CLIP, _H_CLIP)
    if name == "reverse_kl":
        return h + 1.0
    if name == "forward_kl":
        return -jnp.exp(-h)
    if name == "js":
        return jnp.log(2.0) + h - jnp.logaddexp(0.0, h)
    if name == "alpha":
        return -jnp.expm1(-alpha * h) / alpha
    raise BanditError(f"unknown divergence {name!r}")


def weighted_f(name: str, logp, logp_ref, alpha=0.5):
    """``π_ref · f(π/π_ref)`` per response, computed from log-probabilities."""
    h = logp - logp_ref
    p = jnp.exp(logp)
    ref = jnp.exp(logp_ref)
    if name == "reverse_kl":
        return p * h
    if name == "forward_kl":
        return -ref * h
    if name == "js":
        # f(u) = u log u − (1+u) log((1+u)/2); log(1+u) = softplus(h)
        return p * h - (ref + p) * (jnp.logaddexp(0.0, h) - jnp.log(2.0))
    if name == "alpha":
        mixed = jnp.exp((1.0 - alpha) * logp + alpha * logp_ref)
        return (mixed - (1.0 - alpha) * p - alpha * ref) / (alpha * (alpha - 1.0))
    raise BanditError(f"unknown divergence {name!r}")


def t_max(name: str, alpha: float = 0.5) -> float:
    """Supremum of the range of ``f'`` on ``(0, ∞)``."""
    return {"reverse_kl": np.inf, "forward_kl": 0.0, "js": np.log(2.0), "alpha": 1.0 / alpha}[name]


def fprime_inv(name: str, t: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``u > 0`` with ``f'(u) = t`` (valid for ``t < t_max``), NumPy float64."""
    t = np.asarray(t, dtype=np.float64)
    if name == "reverse_kl":
        return np.exp(t - 1.0)
    if name == "forward_kl":
        return -1.0 / t
    if name == "js":
        e = np.exp(t)
        return e / (2.0 - e)
    if name == "alpha":
        return (1.0 - alpha * t) ** (-1.0 / alpha)
    raise BanditError(f"unknown divergence {name!r}")
