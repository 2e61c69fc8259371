"""Distances between policies ``[..., X, K]``, averaged over contexts with weights ``ρ(x)``.

Work in NumPy or JAX alike (``xp`` is inferred). KL terms use the convention ``0·log 0 = 0``.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.errors import BanditError


def _xp(a):
    import jax

    if isinstance(a, jax.Array):
        import jax.numpy as jnp

        return jnp
    return np


def _avg(v, w):
    """Average per-context values ``[..., X]`` (a single 1-D policy gives a scalar: returned)."""
    xp = _xp(v)
    if xp.ndim(v) == 0:
        return v
    if w is None:
        return xp.mean(v, -1)
    return xp.sum(v * w, -1)


def tv(p, q, w=None):
    """Total variation ``½ Σ|p − q|``."""
    xp = _xp(p)
    return _avg(0.5 * xp.sum(xp.abs(p - q), -1), w)


def l2(p, q, w=None):
    """Euclidean distance ``‖p − q‖₂``."""
    xp = _xp(p)
    return _avg(xp.sqrt(xp.sum((p - q) ** 2, -1)), w)


def kl(p, q, w=None):
    """``KL(p‖q) = Σ p log(p/q)`` (∞ if q = 0 < p)."""
    xp = _xp(p)
    safe_p = xp.where(p > 0, p, 1.0)
    safe_q = xp.where(q > 0, q, 1.0)
    terms = xp.where(p > 0, p * (xp.log(safe_p) - xp.log(safe_q)), 0.0)
    terms = xp.where((p > 0) & (q <= 0), xp.inf, terms)
    return _avg(xp.sum(terms, -1), w)


def reverse_kl(p, q, w=None):
    """``KL(q‖p)``."""
    return kl(q, p, w)


def entropy(p, w=None):
    """Shannon entropy in nats."""
    xp = _xp(p)
    safe = xp.where(p > 0, p, 1.0)
    return _avg(-xp.sum(xp.where(p > 0, p * xp.log(safe), 0.0), -1), w)


DISTANCES = {"tv": tv, "l2": l2, "kl": kl, "reverse_kl": reverse_kl}


def distance(name: str):
    if name not in DISTANCES:
        raise BanditError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)}")
    return DISTANCES[name]
