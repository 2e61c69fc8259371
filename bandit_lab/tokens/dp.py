"""Exact dynamic programming on token trees (float64 numpy, backward over the BFS order).

- :func:`soft_dp`: the KL-regularised token MDP of UE-DPO Eq. 16–18 (γ = 1, deterministic
  transitions ``s' = s·a``): ``Q*(s, a) = R(s, a) + V*(s')`` (``V* = 0`` past a complete
  response), ``V*(s) = β log Σ_a π_ref(a|s) exp(Q*(s, a)/β)`` (Eq. 25, 27), and
  ``π*(a|s) = π_ref(a|s)·exp((Q*(s, a) − V*(s))/β)`` (Eq. 24, 28).
- :func:`nested_values`: the nested risk Bellman recursion of Ra-DPO Eq. 5 (per-step reward,
  ``Q(s, a) = R(s, a) + V(s')``, ``V(s) = Φ^μ_{a∼π(·|s)} Q(s, a)``) and its cumulative-reward form
  Eq. 6 as fixed by Lemma 3.1 (``Q̃(s, a) = Ṽ(s')``, ``Ṽ`` of a complete response = its whole
  reward ``r``, ``Ṽ(s) = Φ^μ_{a∼π(·|s)} Q̃(s, a)``).
- :func:`eq31_optimum`: the per-state maximiser of UE-DPO Eq. 31 with per-action λ, numerically
  (Newton on softmax logits), independent of its claimed closed form Eq. 34.
- :func:`lemma34_policy`: Ra-DPO Lemma 3.4 / Eq. 11, ``π*(z|s) ∝ π_ref(z|s)·exp(Q̃_{π_ref}(s, z)/β)``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.tokens.risk import cvar_np
from bandit_lab.tokens.tree import TokenTree


class SoftDP(NamedTuple):
    Q: np.ndarray  # [X, S, V]
    V: np.ndarray  # [X, S]
    logpi: np.ndarray  # [X, S, V] log π*(a|s)


def _lse(z, axis=-1):
    m = z.max(axis, keepdims=True)
    return (m + np.log(np.exp(z - m).sum(axis, keepdims=True))).squeeze(axis)


def soft_dp(tree: TokenTree, ref_logp: np.ndarray, token_reward: np.ndarray, beta: float) -> SoftDP:
    """Backward soft Bellman recursion (UE-DPO Eq. 17–18, 24–28); see the module docstring."""
    X, S, Vv = ref_logp.shape
    Q = np.zeros((X, S, Vv))
    Vs = np.zeros((X, S))
    for s in range(S - 1, -1, -1):  # children have larger indices than parents
        nxt = np.where(tree.child[s] >= 0, Vs[:, np.maximum(tree.child[s], 0)], 0.0)
        Q[:, s] = token_reward[:, s] + nxt
        Vs[:, s] = beta * _lse(ref_logp[:, s] + Q[:, s] / beta)
    logpi = ref_logp + (Q - Vs[..., None]) / beta
    return SoftDP(Q, Vs, logpi)


class NestedValues(NamedTuple):
    Q: np.ndarray  # [X, S, V]  Eq. 5
    V: np.ndarray  # [X, S]
    Qt: np.ndarray  # [X, S, V] Eq. 6 (cumulative reward)
    Vt: np.ndarray  # [X, S]


def nested_values(tree: TokenTree, policy: np.ndarray, token_reward: np.ndarray, mu: float, tail: str = "lower") -> NestedValues:
    """Both nested-risk recursions of Ra-DPO (Eq. 5 and Eq. 6), ``Φ^μ`` = CVaR at level μ of
    the next-token distribution ``policy [X, S, V]`` (``tail`` as in :func:`cvar_np`; Eq. 21
    literally is the lower tail). Computed independently, so Lemma 3.1 can be checked."""
    X, S, Vv = policy.shape
    Q = np.zeros((X, S, Vv))
    Vs = np.zeros((X, S))
    Qt = np.zeros((X, S, Vv))
    Vt = np.zeros((X, S))
    seq_r = tree.seq_sum(token_reward)  # [X, K]
    for s in range(S - 1, -1, -1):
        c = tree.child[s]
        lf = tree.leaf[s]
        Q[:, s] = token_reward[:, s] + np.where(c >= 0, Vs[:, np.maximum(c, 0)], 0.0)
        Qt[:, s] = np.where(c >= 0, Vt[:, np.maximum(c, 0)], seq_r[:, np.maximum(lf, 0)])
        Vs[:, s] = cvar_np(Q[:, s], policy[:, s], mu, tail)
        Vt[:, s] = cvar_np(Qt[:, s], policy[:, s], mu, tail)
    return NestedValues(Q, Vs, Qt, Vt)


def lemma34_policy(tree: TokenTree, ref_logp: np.ndarray, token_reward: np.ndarray, beta: float, mu: float,
                   tail: str = "lower") -> np.ndarray:
    """Ra-DPO Lemma 3.4 (Eq. 11): ``log π*(z|s) = log π_ref(z|s) + Q̃_{π_ref}(s, z)/β − log Z(s)``,
    with ``Q̃_{π_ref}`` from the Eq. 6 recursion under π_ref. Returns ``[X, S, V]`` log-probs."""
    nv = nested_values(tree, np.exp(ref_logp), token_reward, mu, tail)
    z = ref_logp + nv.Qt / beta
    return z - _lse(z)[..., None]


# ------------------------------------------------------------------ UE-DPO Eq. 31 at one state

def _eq31_negf(z, Q, lref, lam, beta):
    lp = jax.nn.log_softmax(z)
    return -jnp.sum(jnp.exp(lp) * (Q - beta * (lam * lp - lref)))


_EQ31_G = jax.jit(jax.grad(_eq31_negf))
_EQ31_H = jax.jit(jax.hessian(_eq31_negf))
_EQ31_F = jax.jit(_eq31_negf)


def eq31_optimum(Q, lref, lam, beta):
    """Maximiser of Eq. 31, ``Σ_a π_a [Q_a − β(λ_a log π_a − log π_ref,a)]`` over the simplex, by a
    damped Newton method on softmax logits (exact Hessian; independent of the Eq. 34 form)."""
    args = tuple(jnp.asarray(a) for a in (Q, lref, lam, float(beta)))
    z = jnp.asarray(lref)
    for _ in range(200):
        gz = np.asarray(_EQ31_G(z, *args))
        if np.linalg.norm(gz) < 1e-14:
            break
        H = np.asarray(_EQ31_H(z, *args))
        lam_h, U = np.linalg.eigh(0.5 * (H + H.T))
        lam_h = np.maximum(np.abs(lam_h), 1e-12 * np.abs(lam_h).max())
        d = -U @ ((U.T @ gz) / lam_h)
        d *= min(1.0, 2.0 / np.abs(d).max())
        t, f0 = 1.0, float(_EQ31_F(z, *args))
        while t > 1e-12 and float(_EQ31_F(z + t * d, *args)) > f0 + 1e-4 * t * float(gz @ d) + 1e-15:
            t *= 0.5
        z = z + t * d
    return np.asarray(jax.nn.log_softmax(z))
