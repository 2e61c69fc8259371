"""Exact constrained solver: float64 Newton on the very objective the trainer minimises.

Method, by the parameterization's feasible set:
- free (softmax logits, log-linear weights): :func:`newton_free` — a modified Newton method on
  a whole batch of hyperparameter points at once. Gradients are exact (JAX); the Hessian is
  the central difference of those exact gradients (error ~1e-10, which only slows the final
  convergence a little and cannot move the fixed point, where the exact gradient vanishes);
  eigenvalues are replaced by ``max(|λ|, 1e-9·max|λ|)`` so every step is a descent direction
  on non-convex objectives and the flat gauge direction of unpenalised softmax logits is
  ignored; steps capped at a trust radius of 1 per coordinate; Armijo backtracking over
  ``t = 2^-k`` with all candidates evaluated in one call.
  Every evaluation goes through *one* compiled, vmapped ``value_and_grad`` with a fixed row
  count, so a whole α-grid costs one small compile (an in-graph Newton with ``jax.hessian``
  was measured at 2.2 s to compile for the six weight-decay objectives; this, 0.2 s).
  Beyond ``DENSE_MAX`` parameters (token trees, K in the thousands) the dense Hessian is
  replaced by :func:`newton_krylov`, matrix-free: Hessian-vector products by forward-over-reverse
  autodiff, each Newton system solved inexactly by SciPy's MINRES (symmetric, indefinite or
  singular systems: the softmax gauge), the same trust radius, line search and endgame;
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

from bandit_lab import export_cache
from bandit_lab.objective import Objective


class ExactResult(NamedTuple):
    params: object
    policy: np.ndarray  # [X, K]
    value: float
    residual: float  # ‖x − Π(x − ∇f)‖ at the returned point
    converged: bool
    iterations: int
    grad: object = None  # gradient pytree at ``params`` (free parameterizations)


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


NEWTON_ITERS = 200
STEP_CAP = 1.0  # trust radius (∞-norm, in parameter units) of one Newton step
_LS_STEPS = 40  # backtracking candidates t = 1, 1/2, …, 2^-39


_CACHE: dict = {}


def _compiled(objective, unravel, kind: str):
    """Compiled functions keyed by the objective's *signature* (loss, options, shapes): the
    problem's arrays are arguments, so every instance of the same shape reuses one compile."""
    key = (kind, objective.signature())
    if key not in _CACHE:
        if len(_CACHE) > 256:
            _CACHE.clear()
        # kept on disk too when the objective has a stable signature (bandit_lab.export_cache)
        stable = getattr(objective, "stable_signature", lambda: None)()
        skey = None if stable is None else ("solver", kind, stable)
        f = lambda z, hp, c: objective.value(unravel(z), hp, consts=c)  # noqa: E731
        if kind == "vg":  # value and gradient over a batch of rows (shared constants)
            fn = export_cache.jit(jax.vmap(jax.value_and_grad(f), in_axes=(0, 0, None)), skey)
        elif kind == "policy":
            fn = export_cache.jit(jax.vmap(lambda z, c: objective.policy(unravel(z), c), in_axes=(0, None)), skey)
        else:  # "fgh": value, gradient, Hessian at one point (constrained path)
            fn = export_cache.jit(lambda z, hp, c: (f(z, hp, c), jax.grad(f)(z, hp, c), jax.hessian(f)(z, hp, c)), skey)
        _CACHE[key] = fn
    return _CACHE[key]


DENSE_MAX = 256  # parameters: above this, Newton is matrix-free (newton_krylov)


def _krylov_fns(objective, unravel):
    key = ("krylov", objective.signature())
    if key not in _CACHE:
        if len(_CACHE) > 256:
            _CACHE.clear()
        f = lambda z, hp, c: objective.value(unravel(z), hp, consts=c)  # noqa: E731
        g = jax.grad(f)
        # Hessian-vector products by linearising the gradient once per iterate: ``linearize``
        # returns the linear map as a pytree (its residuals — σ(u) on the pair grid and the like —
        # are leaves, the linear program is static), so every product afterwards is only the
        # linear part: measured 3.5 ms against 16.5 ms for a fresh forward-over-reverse product
        # on a V = 4, T = 5 tree (1,024 sequences, a 1,048,576-entry pair grid).
        lin = jax.jit(lambda z, hp, c: jax.linearize(lambda y: g(y, hp, c), z)[1])
        apply = jax.jit(lambda fj, v: fj(v))
        apply_many = jax.jit(jax.vmap(lambda fj, v: fj(v), in_axes=(None, 0)))
        _CACHE[key] = (jax.jit(jax.value_and_grad(f)), lin, apply, apply_many, jax.jit(lambda z, c: objective.policy(unravel(z), c)))
    return _CACHE[key]


def newton_krylov(objective, hp: dict, init=None, *, gtol: float = 1e-12, iters: int = NEWTON_ITERS) -> ExactResult:
    """Exact minimiser of an unconstrained objective without forming its Hessian.

    Truncated Newton: at each iterate the system ``H d = −g`` is solved by MINRES
    (``scipy.sparse.linalg.minres``; ``H`` symmetric, possibly indefinite or singular — the
    per-context softmax gauge is a null direction that ``g`` never points along) using only
    Hessian-vector products ``H v = ∂/∂ε ∇f(z + εv)`` (forward over reverse, exact), to a relative
    tolerance ``min(½, √‖g‖)`` (Eisenstat–Walker: loose far away, tight near the optimum, so the
    final convergence stays quadratic). A direction that is not a descent direction (negative
    curvature) is replaced by ``−g``. Steps are capped at the trust radius ``STEP_CAP`` per
    coordinate and chosen by Armijo backtracking, with the endgame of :func:`newton_free` (once
    values can no longer certify a decrease, a step is taken if it shrinks the exact gradient).
    Cost per iteration: a few dozen gradient-sized passes instead of ``2n + 1``."""
    from scipy.sparse.linalg import LinearOperator, minres  # lazy: cold start

    hpj = {k: jnp.asarray(float(v)) for k, v in {**objective.hp, **hp}.items()}
    template = jax.tree_util.tree_map(np.asarray, objective.param.init() if init is None else init)
    z0, unravel = ravel_pytree(template)
    vg, lin, apply, apply_many, pol = _krylov_fns(objective, unravel)
    c = objective.consts()
    z = np.asarray(z0, dtype=np.float64)
    n = z.size
    at: dict = {}

    def hvp(x, v):
        x = np.asarray(x, dtype=np.float64)
        k = x.tobytes()
        if at.get("key") != k:
            at.update(key=k, fj=lin(jnp.asarray(x), hpj, c))
        return np.asarray(apply(at["fj"], jnp.asarray(v)))

    def fg(x):
        v, gr = vg(jnp.asarray(x), hpj, c)
        return float(v), np.asarray(gr)

    # Phase 1: SciPy's trust-region Newton-CG (Steihaug: adaptive radius, so far optima are reached
    # in few iterations; negative curvature handled by the trust region). Not trust-krylov: its
    # GLTR solver (trlib) is not deterministic — measured on a V = 4, T = 6 tree, three identical
    # calls in one process took 41, 57 and 50 iterations to three different points, and on T = 7
    # that made phase 2 converge or stall at random. trust-ncg needs more Hessian-vector products
    # (T = 5 RLHF: ~3.3 s vs ~2.0 s) but gives the same bits every time (tests/test_scale.py).
    # It stops once values can no longer certify progress; phase 2 (below) finishes to gtol.
    from scipy import optimize

    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # the subproblem solver's internal overflow on a rejected trial step is handled by it;
        # its RuntimeWarning would only reach the user's terminal as noise
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.minimize(fg, z, jac=True, method="trust-ncg",
                                hessp=hvp,
                                options={"gtol": max(gtol, 1e-9), "maxiter": iters})
    if np.all(np.isfinite(res.x)):
        z = np.asarray(res.x, dtype=np.float64)
    f0, g0 = fg(z)
    it = int(res.nit)
    probes = np.where(np.random.default_rng(0).random((32, n)) < 0.5, -1.0, 1.0)
    pre = None
    for it in range(it + 1, it + iters + 1):
        gn = float(np.linalg.norm(g0))
        if gn <= gtol or not np.isfinite(gn):
            break
        H = LinearOperator((n, n), matvec=lambda v, z=z: hvp(z, v), dtype=np.float64)
        rtol = min(0.5, np.sqrt(gn))
        if pre is None:
            d, _ = minres(H, -g0, rtol=rtol, maxiter=max(50, min(n, 500)))
        else:
            # Jacobi preconditioner from a Hutchinson estimate of diag(H) (E[v ⊙ Hv], 32 fixed
            # Rademacher probes in one batched product): the curvature of a softmax coordinate
            # scales with the probability of reaching it (1e-8 for rare states of a token tree),
            # which unpreconditioned Krylov iterations cannot resolve. Only the speed depends on it.
            hvp(z, probes[0])  # linearise at z
            est = np.abs(np.mean(probes * np.asarray(apply_many(at["fj"], jnp.asarray(probes))), axis=0))
            est = np.maximum(est, 1e-14 * max(est.max(), 1e-300))
            M = LinearOperator((n, n), matvec=lambda v, e=est: v / e, dtype=np.float64)
            d, _ = minres(H, -g0, rtol=rtol, maxiter=max(50, min(n, 500)), M=M)
        if not np.all(np.isfinite(d)) or g0 @ d >= 0:
            d = -g0
        # First the full Newton step: near the optimum it is right even when it is large in
        # weakly curved coordinates (rarely visited states of a token tree), where the
        # per-coordinate cap would shrink every step and make convergence linear.
        fn, gn_ = fg(z + d)
        t = 1.0
        accepted = bool(np.isfinite(fn) and (fn <= f0 + 1e-4 * float(g0 @ d) or
                                             (fn <= f0 + 1e-13 * (1.0 + abs(f0)) and np.linalg.norm(gn_) < gn)))
        if not accepted:
            d = d * min(1.0, STEP_CAP / max(np.abs(d).max(), 1e-300))
            slope = float(g0 @ d)
            if -slope <= 1e-13 * (1.0 + abs(f0)):  # endgame: values cannot certify progress
                fn, gn_ = fg(z + d)
                accepted = bool(np.linalg.norm(gn_) < gn)
            else:
                for _ in range(_LS_STEPS):
                    fn, gn_ = fg(z + t * d)
                    if np.isfinite(fn) and fn <= f0 + 1e-4 * t * slope and fn <= f0:
                        accepted = True
                        break
                    t *= 0.5
        if not accepted:
            break
        z, f0, g0 = z + t * d, fn, gn_
        if pre is None and np.linalg.norm(g0) > 0.5 * gn:
            # Newton is not converging fast: badly scaled curvature (MINRES's own residual
            # estimate drifts from the true one there) — precondition from now on
            pre = True
    r = float(np.linalg.norm(g0))
    return ExactResult(unravel(z), np.asarray(pol(jnp.asarray(z), c)), f0, r, bool(r <= max(gtol * 100, 1e-10)), it, unravel(g0))


def newton_free(objective, hps: list[dict], init=None, *, gtol: float = 1e-12, iters: int = NEWTON_ITERS) -> list[ExactResult]:
    """Exact minimisers of an unconstrained objective at every hyperparameter point in ``hps``
    (see the module docstring). Works for :class:`~bandit_lab.objective.Stack` too. Above
    ``DENSE_MAX`` parameters each point is solved matrix-free by :func:`newton_krylov`."""
    template = objective.param.init() if init is None else init
    template = jax.tree_util.tree_map(np.asarray, template)
    z0, unravel = ravel_pytree(template)
    n = z0.size
    if n > DENSE_MAX:
        return [newton_krylov(objective, h, template, gtol=gtol, iters=iters) for h in hps]
    B = len(hps)
    R = max(2 * n + 1, _LS_STEPS)  # rows per point in every call: one compile for everything
    keys = sorted({k for h in hps for k in {**objective.hp, **h}})
    full = [{**objective.hp, **h} for h in hps]
    hp_rows = {k: np.repeat([float(h[k]) for h in full], R) for k in keys}
    vg = _compiled(objective, unravel, "vg")
    consts = objective.consts()

    def evaluate(Z):  # Z: [B, R, n] → values [B, R], grads [B, R, n]
        v, g = vg(Z.reshape(B * R, n), hp_rows, consts)
        return np.asarray(v).reshape(B, R), np.asarray(g).reshape(B, R, n)

    z = np.tile(np.asarray(z0, dtype=np.float64), (B, 1))
    ts = 0.5 ** np.arange(_LS_STEPS)
    it = 0
    for it in range(1, iters + 1):
        eps = 1e-5 * np.maximum(1.0, np.abs(z))  # [B, n]
        Z = np.repeat(z[:, None, :], R, axis=1)
        idx = np.arange(n)
        Z[:, 1 + idx, idx] += eps
        Z[:, 1 + n + idx, idx] -= eps
        v, g = evaluate(Z)
        f0, g0 = v[:, 0], g[:, 0]
        if np.all(np.linalg.norm(g0, axis=1) <= gtol):
            break
        H = (g[:, 1 : 1 + n, :] - g[:, 1 + n : 1 + 2 * n, :]) / (2 * eps[:, :, None])  # [B, j, i]
        H = 0.5 * (H + np.swapaxes(H, 1, 2))
        lam, V = np.linalg.eigh(H)
        # floor 1e-20: an all-zero Hessian (piecewise-linear loss, e.g. hinge) gives a finite
        # steepest-descent-like step (then capped) instead of g/1e-309 = inf and NaN
        scale = np.maximum(np.abs(lam).max(axis=1, keepdims=True), 1e-20)
        lam = np.maximum(np.abs(lam), 1e-9 * scale)
        d = -np.einsum("bij,bj->bi", V, np.einsum("bji,bj->bi", V, g0) / lam)
        # Trust radius: no coordinate moves more than STEP_CAP per iteration. An uncapped first
        # step can throw a softmax into saturation, where gradient *and* curvature of the
        # starved logits are ~π_i ≈ 0 and the solve stalls far from the optimum (seen on
        # reverse-KL RLHF with small β). Near the optimum steps are small and uncapped.
        d = d * np.minimum(1.0, STEP_CAP / np.maximum(np.abs(d).max(axis=1), 1e-300))[:, None]
        slope = np.minimum(np.einsum("bi,bi->b", g0, d), 0.0)
        C = np.zeros((B, R, n))
        C[:, :_LS_STEPS, :] = z[:, None, :] + ts[None, :, None] * d[:, None, :]
        C[:, _LS_STEPS:, :] = z[:, None, :]
        vc, gc = evaluate(C)
        ok = np.isfinite(vc[:, :_LS_STEPS]) & (vc[:, :_LS_STEPS] <= f0[:, None] + 1e-4 * ts[None] * slope[:, None]) & (vc[:, :_LS_STEPS] <= f0[:, None])
        t = np.where(ok.any(axis=1), ts[np.argmax(ok, axis=1)], 0.0)
        # Endgame: once the predicted decrease −g·d is below the rounding of f, values can no
        # longer certify progress; take the full step if it shrinks the (exact) gradient.
        tiny = -slope <= 1e-13 * (1.0 + np.abs(f0))
        better = np.linalg.norm(gc[:, 0], axis=1) < np.linalg.norm(g0, axis=1)
        t = np.where(tiny, np.where(better, 1.0, 0.0), t)
        z = z + t[:, None] * d
    Zf = np.repeat(z[:, None, :], R, axis=1)
    v, g = evaluate(Zf)
    policies = np.asarray(_compiled(objective, unravel, "policy")(z, consts))
    out = []
    _, unravel_np = ravel_pytree(jax.tree_util.tree_map(np.asarray, template))
    for b in range(B):
        r = float(np.linalg.norm(g[b, 0]))
        out.append(ExactResult(unravel_np(z[b]), policies[b], float(v[b, 0]), r, bool(r <= max(gtol * 100, 1e-10)), it,
                               unravel_np(g[b, 0])))
    return out


def solve_exact(objective: Objective, hp: dict | None = None, init=None, *, gtol: float = 1e-12, max_newton: int = 200) -> ExactResult:
    """Minimise ``objective.value(·, hp)`` over the parameterization's feasible set."""
    hp = {k: float(v) for k, v in {**objective.hp, **(hp or {})}.items()}
    special = getattr(getattr(objective, "loss", None), "exact", None)
    if special is not None:  # e.g. LP for hinge, self-consistent δ for BCO
        res = special(objective, hp, init)
        if res is not None:
            return res
    hpj = {k: jnp.asarray(v) for k, v in hp.items()}
    template = objective.param.init() if init is None else init
    z0, _ = ravel_pytree(template)
    _, unravel = ravel_pytree(jax.tree_util.tree_map(np.asarray, template))
    fgh = _compiled(objective, unravel, "fgh")
    consts = objective.consts()
    cache: dict = {}

    def at(z):
        key = z.tobytes()
        if key not in cache:
            cache.clear()
            v, g_, h_ = fgh(z, hpj, consts)
            cache[key] = (float(v), np.asarray(g_), np.asarray(h_))
        return cache[key]

    fz = lambda z: at(np.asarray(z, dtype=np.float64))[0]  # noqa: E731
    gz = lambda z: at(np.asarray(z, dtype=np.float64))[1]  # noqa: E731
    hz = lambda z: at(np.asarray(z, dtype=np.float64))[2]  # noqa: E731
    kind = objective.param.constraint
    shape = np.shape(template)
    z = np.asarray(z0, dtype=np.float64)

    # --- stage 1: a robust first-order / SQP solve
    from scipy import optimize  # lazy: keeps the CLI's cold start short
    if kind == "free":
        return newton_free(objective, [hp], template, gtol=gtol)[0]
    if kind == "box":
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
        if -slope <= 1e-13 * (1.0 + abs(f0)):
            # endgame (see newton_free): accept the full step if it lowers the residual
            zn = _project(kind, z + d, shape)
            accepted = _residual(kind, zn, gz(zn), shape) < r
        for _ in range(0 if accepted else 60):
            zn = _project(kind, z + t * d, shape)
            fn = fz(zn)
            if np.isfinite(fn) and fn <= f0 + 1e-4 * t * min(slope, 0.0) and fn <= f0:
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
