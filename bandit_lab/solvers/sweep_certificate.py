"""A verdict for every point of a sweep, batched (issue 20's leftover; issue 22).

Sweeps (``run weight-decay``, ``early-stopping``, ``spo-softness``, ``check-loss``'s constraint
facts) solve a :class:`~bandit_lab.core.objective.Stack` of objectives at thousands of
hyperparameter points with :func:`bandit_lab.solvers.solver.newton_free`. Its absolute residual
``‖∇f‖ ≤ 1e-10`` is not a certificate (it underflows on a runaway; issue 20). :func:`certify_sweep`
computes, for every point and every member of the stack at once (arrays, no Python per point),
the *unique minimiser* test of :func:`bandit_lab.certificates.certify` — the definitions of that
module's docstring, items 1, 2 and 4, with its constants (imported, not copied):

1. the tangent space: the whole space when ``α > 0`` with the penalty on the parameters (weight
   decay breaks the softmax gauge), else ``range(Jᵀ)``, ``J = ∂ log π / ∂z`` (singular values above
   ``1e-10·σ_max``, as ``certificates._tangent``), used as the orthogonal projector ``P``;
2. the Newton step ``s = −(PHP)⁺ P g`` on the eigen-directions above ``NULL_RTOL·|λ|_max`` — its
   length ``‖s‖`` in logit units is scale-free (a loss multiplied by c > 0 gives the same step) —
   and the Newton decrement ``√(−gᵀ P s)``;
3. **unique minimiser** iff ``g``, ``H`` and ``s`` are finite, ``‖s‖ ≤ STEP_TOL`` (1e-8) and ``H``
   is positive definite on the tangent space (as many eigenvalues above ``NULL_RTOL·|λ|_max`` as
   the tangent's dimension); *global* when the loss declares itself convex
   (:func:`bandit_lab.certificates.convex`). Anything else is **not certified** — a set of
   minimisers or a runaway needs ``certify``'s rays and probes, point by point.

The Hessian is the solver's coloured central difference of exact gradients *at the returned
point* (``newton_free(arrays=…)``: the rows of its final evaluation, which it makes anyway), not
``jax.hessian``: its error (≈ 1e-10 relative) moves neither test — the step is ≈ 1e-12 at a
converged point against a 1e-8 threshold, and λ_min/λ_max is ≫ 1e-9 for these strongly convex
objectives — and it costs no compile. (An exact Hessian inside one compiled Newton loop was tried:
4.3 s CPU to compile against 0.5 s for the solver's value-and-gradient program; docs/performance.md.)
``J`` is needed only where the tangent is not the whole space (α = 0): one small compiled
``vmap(jacfwd(log π))`` for those points. ``tests/test_sweep_certificate.py`` re-checks the numbers
against the single-point ``bl.certify``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from bandit_lab.certificates import NULL_RTOL, STEP_TOL, convex
from bandit_lab.infra.xla_flags import compile_bound_jit

UNIQUE = "unique minimiser"
NOT_CERTIFIED = "not certified"
TANGENT_RTOL = 1e-10  # singular values of J kept in the tangent space (certificates._tangent)


class SweepCertificate(NamedTuple):
    """One objective's certificate at every point of a sweep (arrays over points)."""

    newton_step: np.ndarray  # [B] ‖s‖ on the tangent space, logit units (scale-free)
    decrement: np.ndarray  # [B] √(−g_Tᵀ s)
    lambda_min: np.ndarray  # [B] smallest eigenvalue of H on the tangent space
    lambda_max: np.ndarray  # [B] largest |eigenvalue| of H on the tangent space
    tangent_dim: np.ndarray  # [B]
    certified: np.ndarray  # [B] bool: unique minimiser
    convex: bool  # the loss declares convexity in the logits: a certified minimiser is global

    def verdict(self) -> np.ndarray:
        """Per point: ``"unique minimiser"`` or ``"not certified"``."""
        return np.where(self.certified, UNIQUE, NOT_CERTIFIED)

    def reason(self, b: int) -> str:
        """Point ``b``'s verdict in one line, with its numbers."""
        s, lo, hi = float(self.newton_step[b]), float(self.lambda_min[b]), float(self.lambda_max[b])
        ratio = lo / hi if hi > 0 else float("nan")
        head = f"Newton step {s:.1e}, λ_min/λ_max {ratio:.1e} on the {int(self.tangent_dim[b])}-dim tangent space"
        if self.certified[b]:
            return f"{UNIQUE}: {head}; " + ("global (convex objective)" if self.convex else "local (the loss is not declared convex)")
        if not (np.isfinite(s) and np.isfinite(lo) and np.isfinite(hi)):
            return f"{NOT_CERTIFIED}: the loss's gradient or Hessian is not finite at the point"
        why = f"Newton step > {STEP_TOL:g}" if not s <= STEP_TOL else f"Hessian not positive definite on the tangent space (λ_min/λ_max ≤ {NULL_RTOL:g})"
        return f"{NOT_CERTIFIED}: {head} ({why})"


def _members(objective) -> tuple:
    return tuple(objective.objectives) if hasattr(objective, "objectives") else (objective,)


_CACHE: dict = {}


def _jacobians(objective, unravels):
    """``(Z [b, n], consts) → (J_m [b, X·K, n_m] for each member)``: one compiled program."""
    key = objective.signature()
    if key not in _CACHE:
        members = _members(objective)

        def one(z_parts, consts):
            return tuple(jax.jacfwd(lambda q, o=o, u=u, c=c: o.param.log_probs(u(q), c["param"]).reshape(-1))(z)
                         for o, u, c, z in zip(members, unravels, consts, z_parts))

        _CACHE[key] = compile_bound_jit(jax.vmap(one, in_axes=(0, None)))
    return _CACHE[key]


def tangent_projectors(J: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthogonal projectors onto ``range(Jᵀ)`` [b, n, n] and their ranks [b] (rows of J that are not
    finite dropped, as ``certificates._tangent``)."""
    J = np.where(np.all(np.isfinite(J), axis=2, keepdims=True), J, 0.0)
    _, sv, Vt = np.linalg.svd(J, full_matrices=False)
    keep = sv > TANGENT_RTOL * np.maximum(sv.max(axis=1, keepdims=True), 1e-300)
    return np.einsum("bki,bk,bkj->bij", Vt, keep.astype(float), Vt), keep.sum(axis=1)


def certify_arrays(g: np.ndarray, H: np.ndarray, P: np.ndarray, dim: np.ndarray, is_convex: bool) -> SweepCertificate:
    """Items 2–3 of the module docstring for a batch: gradients ``g`` [B, n], Hessians ``H``
    [B, n, n], tangent projectors ``P`` [B, n, n] of rank ``dim`` [B]."""
    B, n = g.shape
    finite = np.all(np.isfinite(g), axis=1) & np.all(np.isfinite(H), axis=(1, 2))
    g = np.where(finite[:, None], g, 0.0)
    H = np.where(finite[:, None, None], H, 0.0)
    Hs = 0.5 * (H + np.swapaxes(H, 1, 2))
    mu, V = np.linalg.eigh(P @ Hs @ P)
    gT = np.einsum("bij,bj->bi", P, g)
    top = np.abs(mu).max(axis=1)
    pos = (mu > NULL_RTOL * top[:, None]) & (top[:, None] > 0)
    coef = np.einsum("bji,bj->bi", V, gT) / np.where(pos, mu, 1.0)
    s = -np.einsum("bij,bj->bi", V, np.where(pos, coef, 0.0))
    step = np.where(finite, np.linalg.norm(s, axis=1), np.inf)
    dec = np.sqrt(np.maximum(-np.einsum("bi,bi->b", gT, s), 0.0))
    # eigh sorts ascending: on a positive definite tangent space its eigenvalues are the top `dim`
    # (the other n − dim are the projector's zeros)
    lam_min = np.where(dim > 0, np.take_along_axis(mu, np.clip(n - dim, 0, n - 1)[:, None], axis=1)[:, 0], 0.0)
    lam_min = np.where(finite, lam_min, np.nan)
    cert = finite & (step <= STEP_TOL) & (pos.sum(axis=1) == dim)
    return SweepCertificate(step, dec, lam_min, np.where(finite, top, np.nan), dim.astype(np.int64), cert, bool(is_convex))


def certify_sweep(objective, hps: list[dict], arrays: dict) -> list[SweepCertificate]:
    """One :class:`SweepCertificate` per member of ``objective`` (a Stack, or one objective), from
    ``arrays`` filled by ``newton_free(objective, hps, arrays=arrays)``."""
    members = _members(objective)
    temps = [jax.tree_util.tree_map(np.asarray, o.param.init()) for o in members]
    raveled = [ravel_pytree(t) for t in temps]
    sizes = [int(np.size(r[0])) for r in raveled]
    if len(members) > 1 and sum(sizes) != arrays["z"].shape[1]:
        raise ValueError("certify_sweep: the stack's parameters do not split into its members'")
    ends = np.cumsum(sizes)
    z, g, H = arrays["z"], arrays["g"], arrays["H"]
    B = z.shape[0]
    base = objective.hp  # a Stack merges its members' hp on every access: once
    wd = np.array([float({**base, **h}.get("weight_decay", 0.0)) for h in hps])
    whole = [(wd > 0) if getattr(o, "penalty", "params") == "params" else np.zeros(B, bool) for o in members]
    need = np.nonzero(~np.all(whole, axis=0))[0]  # points where some member's tangent needs J
    Js = None
    if need.size:
        parts = tuple(z[need, e - k:e] for e, k in zip(ends, sizes))
        Js = [np.asarray(J) for J in _jacobians(objective, tuple(r[1] for r in raveled))(parts, tuple(o.consts() for o in members))]
    out = []
    for m, (o, e, k) in enumerate(zip(members, ends, sizes)):
        sl = slice(e - k, e)
        P = np.broadcast_to(np.eye(k), (B, k, k)).copy()
        dim = np.full(B, k)
        if Js is not None:
            PJ, rank = tangent_projectors(Js[m])
            use = ~whole[m][need]
            P[need[use]], dim[need[use]] = PJ[use], rank[use]
        out.append(certify_arrays(g[:, sl], H[:, sl, sl], P, dim, convex(o)))
    return out


def named_failures(labels, alphas, certs, limit: int = 20) -> tuple[int, str]:
    """``(count, "dpo at α = 0, …")`` of the points that are not certified (the first ``limit``
    named, then "… and N more")."""
    names = [f"{lab} at α = {alphas[b]:g}" for lab, c in zip(labels, certs) for b in np.nonzero(~c.certified)[0]]
    text = ", ".join(names[:limit]) + (f", … and {len(names) - limit} more" if len(names) > limit else "")
    return len(names), text
