"""Exact stationary points of stop-gradient losses (TDPO2, Ra-DPO2).

With ``sg`` inside the loss, what a gradient method follows is the field ``F(θ) = ∇̃ℓ(θ)``
(``jax.grad`` with ``stop_gradient``), which is *not* the gradient of the loss value, so a
minimiser with a line search on the value (``solver.solve_exact``) is the wrong tool. Training
converges, if at all, to a zero of ``F``; :func:`solve_stationary` finds it by Newton's method
on ``F = 0``: Jacobian ``J = ∂F/∂θ`` by forward-mode autodiff (nonsymmetric), minimum-norm step
``−J⁺F`` (the per-state softmax gauge makes ``J`` singular; the pseudo-inverse ignores it), a
trust radius of 1 per coordinate and backtracking on ``‖F‖``. float64; it reports the residual
``‖F‖`` so callers can say whether "exact" really was. For losses without ``sg`` ``F`` is the
ordinary gradient and the result agrees with ``solve_exact`` (tested).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bandit_lab.solvers.solver import ExactResult

_CACHE: dict = {}


def _fns(objective, unravel):
    key = objective.signature()
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        F = lambda z, hp, c: ravel_pytree(jax.grad(lambda p: objective.value(p, hp, consts=c))(unravel(z)))[0]  # noqa: E731
        _CACHE[key] = (jax.jit(F), jax.jit(jax.jacfwd(F)), jax.jit(lambda z, c: objective.policy(unravel(z), c)))
    return _CACHE[key]


def solve_stationary(objective, hp: dict | None = None, init=None, *, tol: float = 1e-12, iters: int = 100) -> ExactResult:
    """Zero of the (stop-gradient) training field of ``objective`` at ``hp``; see module docstring."""
    hp = {k: jnp.asarray(float(v)) for k, v in {**objective.hp, **(hp or {})}.items()}
    template = objective.param.init() if init is None else init
    z0, unravel = ravel_pytree(template)
    F, J, pol = _fns(objective, unravel)
    c = objective.consts()
    z = np.asarray(z0, dtype=np.float64)
    f = np.asarray(F(z, hp, c))
    it = 0
    for it in range(1, iters + 1):
        r = np.linalg.norm(f)
        if r <= tol:
            break
        Jz = np.asarray(J(z, hp, c))
        d = -np.linalg.lstsq(Jz, f, rcond=1e-12)[0]
        d *= min(1.0, 1.0 / max(np.abs(d).max(), 1e-300))  # trust radius 1 per coordinate
        t, moved = 1.0, False
        for _ in range(40):
            zn = z + t * d
            fn = np.asarray(F(zn, hp, c))
            if np.all(np.isfinite(fn)) and np.linalg.norm(fn) < r * (1 - 1e-4 * t):
                moved = True
                break
            t *= 0.5
        if not moved:
            break
        z, f = zn, fn
    r = float(np.linalg.norm(f))
    p = unravel(jnp.asarray(z))
    value = float(objective.value(p, {k: v for k, v in hp.items()}))
    return ExactResult(p, np.asarray(pol(z, c)), value, r, bool(r <= max(100 * tol, 1e-10)), it, unravel(jnp.asarray(f)))
