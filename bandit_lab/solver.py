"""Exact constrained solver: float64 Newton on the very objective the trainer minimises.

Method, by the parameterization's feasible set:
- free (softmax logits, log-linear weights): L-BFGS (SciPy) to get close, then Newton steps
  with the exact JAX Hessian, eigenvalues floored at ``|λ|`` (a modified Newton that stays a
  descent direction on non-convex objectives and ignores the flat gauge direction of
  unpenalised softmax logits), Armijo backtracking;
- box ``[0, 1]`` (mixture θ): L-BFGS-B, then Newton on the free coordinates (active set);
- simplex (direct probabilities): SLSQP, then Newton on the face in the null space of the
  per-context sum constraint, with the multiplier check that releases wrongly active zeros.

It stops on a first-order residual ``‖x − Π(x − ∇f)‖ ≤ gtol`` (default 1e-12) and reports it,
so callers can say whether "exact" really was.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy import optimize

from bandit_lab.objective import Objective


class ExactResult(NamedTuple):
    params: object
    policy: np.ndarray  # [X, K]
    value: float
    residual: float  # ‖x − Π(x − ∇f)‖ at the returned point
    converged: bool
    iterations: int


_COMPILED: dict = {}


def _funcs(objective: Objective, template):
    """Jitted value/grad/hessian on the flat vector, hyperparameters as arguments (compiled once
    per objective, reused across a whole α/β grid)."""
    key = id(objective)
    if key in _COMPILED and _COMPILED[key][0] is objective:
        return _COMPILED[key][1]
    _, unravel = ravel_pytree(template)
    f = lambda z, hp: objective.value(unravel(z), hp)  # noqa: E731
    funcs = (jax.jit(f), jax.jit(jax.grad(f)), jax.jit(jax.hessian(f)), unravel)
    _COMPILED.clear() if len(_COMPILED) > 64 else None
    _COMPILED[key] = (objective, funcs)
    return funcs


def _modified_newton_step(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    lam, V = np.linalg.eigh(0.5 * (H + H.T))
    scale = max(np.abs(lam).max(), 1e-300)
    lam = np.maximum(np.abs(lam), 1e-13 * scale)
    return -V @ ((V.T @ g) / lam)


def _project(kind: str, z: np.ndarray, shape) -> np.ndarray:
    if kind == "box":
        return np.clip(z, 0.0, 1.0)
    if kind == "simplex":
        P = z.reshape(shape)
        out = np.stack([_proj_simplex_np(row) for row in P])
        return out.reshape(-1)
    return z


def _proj_simplex_np(v: np.ndarray) -> np.ndarray:
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, v.size + 1)
    rho = np.nonzero(u - css / ind > 0)[0][-1]
    return np.maximum(v - css[rho] / (rho + 1.0), 0.0)


def _residual(kind, z, g, shape) -> float:
    return float(np.linalg.norm(z - _project(kind, z - g, shape)))


def solve_exact(objective: Objective, hp: dict | None = None, init=None, *, gtol: float = 1e-12, max_newton: int = 200) -> ExactResult:
    """Minimise ``objective.value(·, hp)`` over the parameterization's feasible set."""
    hp = {k: float(v) for k, v in {**objective.hp, **(hp or {})}.items()}
    hpj = {k: jnp.asarray(v) for k, v in hp.items()}
    template = objective.param.init() if init is None else init
    z0, _ = ravel_pytree(template)
    f, g, h, unravel = _funcs(objective, template)
    fz = lambda z: float(f(jnp.asarray(z), hpj))  # noqa: E731
    gz = lambda z: np.asarray(g(jnp.asarray(z), hpj))  # noqa: E731
    hz = lambda z: np.asarray(h(jnp.asarray(z), hpj))  # noqa: E731
    kind = objective.param.constraint
    shape = np.shape(template)
    z = np.asarray(z0, dtype=np.float64)

    # --- stage 1: a robust first-order / SQP solve
    if kind == "free":
        res = optimize.minimize(fz, z, jac=gz, method="L-BFGS-B", options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
        z = res.x
    elif kind == "box":
        res = optimize.minimize(fz, z, jac=gz, method="L-BFGS-B", bounds=[(0.0, 1.0)] * z.size, options={"maxiter": 5000, "gtol": 1e-12, "ftol": 1e-16})
        z = np.clip(res.x, 0.0, 1.0)
    elif kind == "simplex":
        X, K = shape
        A = np.kron(np.eye(X), np.ones((1, K)))
        cons = [{"type": "eq", "fun": lambda z: A @ z - 1.0, "jac": lambda z: A}]
        res = optimize.minimize(fz, z, jac=gz, method="SLSQP", bounds=[(0.0, 1.0)] * z.size, constraints=cons, options={"maxiter": 2000, "ftol": 1e-16})
        z = _project(kind, res.x, shape)
    else:
        raise ValueError(f"unknown constraint kind {kind!r}")

    # --- stage 2: (active-set) Newton polish
    it = 0
    for it in range(1, max_newton + 1):
        grad = gz(z)
        r = _residual(kind, z, grad, shape)
        if r <= gtol:
            break
        if kind == "free":
            free = np.ones(z.size, bool)
        elif kind == "box":
            free = ~(((z <= 0.0) & (grad > 0)) | ((z >= 1.0) & (grad < 0)))
        else:
            X, K = shape
            G = grad.reshape(X, K)
            P = z.reshape(X, K)
            nu = np.array([G[x][P[x] > 0].mean() for x in range(X)])  # multiplier estimate
            free = ((P > 0) | (G - nu[:, None] < 0)).reshape(-1)
        H = hz(z)
        Hf = H[np.ix_(free, free)]
        gf = grad[free]
        if kind == "simplex":
            X, K = shape
            A = np.kron(np.eye(X), np.ones((1, K)))[:, free]
            A = A[np.any(A != 0, axis=1)]
            # null-space basis of A (rows: one per context with a free coordinate)
            _, s, Vt = np.linalg.svd(A)
            Z = Vt[(s > 1e-12).sum():].T
            d_red = _modified_newton_step(Z.T @ Hf @ Z, Z.T @ gf)
            df = Z @ d_red
        else:
            df = _modified_newton_step(Hf, gf)
        d = np.zeros_like(z)
        d[free] = df
        f0 = fz(z)
        slope = float(grad @ d)
        t = 1.0
        accepted = False
        for _ in range(60):
            zn = _project(kind, z + t * d, shape)
            fn = fz(zn)
            if np.isfinite(fn) and (fn <= f0 + 1e-4 * t * min(slope, 0.0) or (fn <= f0 and t < 1e-6)):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        if np.array_equal(zn, z):
            break
        z = zn
    grad = gz(z)
    r = _residual(kind, z, grad, shape)
    params = unravel(jnp.asarray(z))
    pol = np.asarray(objective.policy(params))
    return ExactResult(params, pol, fz(z), r, bool(r <= max(gtol * 100, 1e-10)), it)
