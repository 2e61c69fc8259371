"""f-divergences used by f-DPO and f-RLHF (Wang et al. 2024, "Beyond Reverse KL", Table 1).

``D_f(π ‖ π_ref) = Σ_y π_ref(y) f(π(y)/π_ref(y))``. Each divergence gives, as functions of the
log-ratio ``h = log π − log π_ref`` (so that nothing is exponentiated before it has to be):

- ``weighted_f(logp, logp_ref)``: ``π_ref · f(π/π_ref)`` per response (summed by callers);
- ``fprime(h)``: ``f'(u)`` at ``u = e^h`` — f-DPO's implicit reward is ``β f'(π/π_ref)``;
- ``fprime_inv(t)``: ``u`` with ``f'(u) = t`` (NumPy, for the oracles), defined for ``t < t_max``.

α-divergence convention (Wang et al. 2024; Amari's α): ``f(u) = (u^{1−α} − (1−α)u − α)/(α(α−1))``,
``f'(u) = (1 − u^{−α})/α``, for ``α ∈ (0, 1)``; ``α → 0`` gives reverse KL, ``α → 1`` forward KL.
Jensen–Shannon: ``f(u) = u log u − (1+u) log((1+u)/2)``, ``f'(u) = log(2u/(1+u))``.
χ²-mixture (χPO, Huang et al. 2024, "Correcting the Mythos of KL-Regularization", §3: the
regulariser ``D_χ² + D_KL``): ``f(u) = ½(u − 1)² + u log u``, ``f'(u) = u + log u`` (their link
``φ(z) = z + log z``); ``f'⁻¹(t) = W(e^t)`` (Lambert W).

TRL's conventions (``DPOConfig.f_divergence_type``, TRL 1.16): ``forward_kl`` uses
``f'(u) = 1 − 1/u`` and ``js_divergence`` ``log 2 + log σ(h)`` — ours up to an additive constant,
which cancels in every chosen-minus-rejected difference; ``alpha_divergence`` with coefficient
``c`` = TRL's ``f_alpha_divergence_coef`` uses ``f'(u) = (u^{c−1} − 1)/(c − 1)``, which is ours with
**α = 1 − c** (exactly: ``(1 − u^{−α})/α``). TRL clamps ``(c − 1)·h`` at 80 before exponentiating
and its α branch accepts float16/bfloat16/float32 only.

Overflow guard: only the divergences whose ``f'`` exponentiates (``forward_kl``: ``e^{−h}``;
``alpha``: ``e^{−αh}``; ``chi_mix``: ``e^{h}``) clamp that *exponent* at 700 (float64 overflows
past ≈ 709.78), so values and gradients are unchanged wherever the exponent is ≤ 700, and the
gradient beyond is that of the clamped exponent (zero) instead of ``inf·0``. Reverse KL and JS
never exponentiate and are never clamped: ``fdpo[reverse_kl]`` is DPO exactly at any margin.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha", "chi_mix")
# TRL 1.16's names for ours (``f_divergence_type``); chi_mix has no TRL equivalent.
TRL_NAMES = {"reverse_kl": "reverse_kl", "forward_kl": "forward_kl", "js": "js_divergence", "alpha": "alpha_divergence"}

# exp overflows float64 past ≈ 709.78: exponents are clamped here, and only exponents.
EXP_MAX = 700.0


def _exp(z):
    """``e^z`` with the exponent clamped at :data:`EXP_MAX` (identical for z ≤ 700)."""
    return jnp.exp(jnp.minimum(z, EXP_MAX))


def check(name: str, alpha: float | None = None) -> None:
    if name not in DIVERGENCES:
        raise BanditError(f"unknown divergence {name!r}; choose one of {', '.join(DIVERGENCES)}")
    if name == "alpha" and (alpha is None or not (0.0 < float(alpha) < 1.0)):
        raise BanditError("the α-divergence needs f_alpha in (0, 1)")


def fprime(name: str, h, alpha=0.5):
    """``f'(e^h)``; reverse KL uses ``f(u) = u log u`` so ``f' = log u + 1``. Exponents clamped
    at 700 where one occurs (module docstring); no other change."""
    if name == "reverse_kl":
        return h + 1.0
    if name == "forward_kl":
        return -_exp(-h)
    if name == "js":
        return jnp.log(2.0) + h - jnp.logaddexp(0.0, h)
    if name == "alpha":
        return -jnp.expm1(jnp.minimum(-alpha * h, EXP_MAX)) / alpha
    if name == "chi_mix":
        return _exp(h) + h
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
    if name == "chi_mix":
        # π_ref·(½(u − 1)² + u log u) = ½ π_ref (u − 1)² + π h
        return 0.5 * ref * jnp.expm1(h) ** 2 + p * h
    raise BanditError(f"unknown divergence {name!r}")


def t_max(name: str, alpha: float = 0.5) -> float:
    """Supremum of the range of ``f'`` on ``(0, ∞)``."""
    return {"reverse_kl": np.inf, "forward_kl": 0.0, "js": np.log(2.0), "alpha": 1.0 / alpha, "chi_mix": np.inf}[name]


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
    if name == "chi_mix":
        # u + log u = t ⇔ u = W(e^t); Newton on s = log u (e^s + s = t, convex), from a bracket-safe start
        s = np.where(t < 1.0, t - np.exp(np.minimum(t, 1.0)), np.log(np.maximum(t, 1.0)))
        for _ in range(100):
            e = np.exp(s)
            step = (e + s - t) / (e + 1.0)
            s = s - step
            if np.all(np.abs(step) <= 1e-15 * np.maximum(1.0, np.abs(s))):
                break
        return np.exp(s)
    raise BanditError(f"unknown divergence {name!r}")
