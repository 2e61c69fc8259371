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
  replaced by :func:`newton_krylov`, matrix-free: a trust-region Newton method on Hessian-vector
  products (forward-over-reverse autodiff), subproblems by Steihaug–Toint preconditioned CG in one
  compiled loop, trust region and preconditioner the policy's Fisher metric for on-policy losses;
- box ``[0, 1]`` (mixture θ): L-BFGS-B, then Newton on the free coordinates (active set);
- simplex (direct probabilities): SLSQP, then Newton on the face in the null space of the
  per-context sum constraint, with the multiplier check that releases wrongly active zeros.

It stops on a first-order residual ``‖x − Π(x − ∇f)‖ ≤ gtol`` (default 1e-12) and reports it,
so callers can say whether "exact" really was.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bandit_lab.infra import export_cache, precision
from bandit_lab.core.objective import Objective


class ExactResult(NamedTuple):
    params: object
    policy: np.ndarray  # [X, K]
    value: float
    residual: float  # ‖x − Π(x − ∇f)‖ at the returned point
    converged: bool
    iterations: int
    grad: object = None  # gradient pytree at ``params`` (free parameterizations)


class ExactBatch(Sequence):
    """The exact results of one objective over a grid, as columns: ``policy`` [B, X, K],
    ``value``, ``residual``, ``converged`` [B], ``params`` and ``grad`` pytrees whose leaves carry
    the points on a leading axis, ``iterations`` (shared). A sequence of :class:`ExactResult`
    (``batch[j]`` builds point j's on demand), so per-point code keeps working; sweep code reads
    the columns and does nothing per point in Python (issue 22: 24,576 ExactResults of the
    4,096-point weight-decay sweep cost 0.4 s of CPU to build and read one by one)."""

    __slots__ = ("params", "policy", "value", "residual", "converged", "iterations", "grad")

    def __init__(self, params, policy, value, residual, converged, iterations, grad=None):
        self.params, self.policy, self.grad = params, np.asarray(policy), grad
        self.value, self.residual = np.asarray(value, dtype=float), np.asarray(residual, dtype=float)
        self.converged, self.iterations = np.asarray(converged, dtype=bool), int(iterations)

    def __len__(self) -> int:
        return int(self.policy.shape[0])

    def __getitem__(self, j):
        pick = lambda t: None if t is None else jax.tree_util.tree_map(lambda a: a[j], t)  # noqa: E731
        if isinstance(j, slice):
            return ExactBatch(pick(self.params), self.policy[j], self.value[j], self.residual[j], self.converged[j],
                              self.iterations, pick(self.grad))
        j = range(len(self))[j]  # IndexError past the end, negative indices
        return ExactResult(pick(self.params), self.policy[j], float(self.value[j]), float(self.residual[j]),
                           bool(self.converged[j]), self.iterations, pick(self.grad))


def column(results, field: str) -> np.ndarray:
    """``field`` of every result as one array [B, …]: the column of an :class:`ExactBatch`, or
    stacked from a sequence of :class:`ExactResult`."""
    if isinstance(results, ExactBatch):
        return np.asarray(getattr(results, field))
    return np.stack([np.asarray(getattr(r, field)) for r in results])


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
NEWTON_BLOCK = 4096  # points per batched dense Newton call (memory: NEWTON_BLOCK × rows × n per evaluation)
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
        # kept on disk too when the objective has a stable signature (bandit_lab.infra.export_cache)
        stable = getattr(objective, "stable_signature", lambda: None)()
        skey = None if stable is None else ("solver", kind, stable)
        f = lambda z, hp, c: objective.value(unravel(z), hp, consts=c)  # noqa: E731
        if kind == "vg":  # value and gradient over a batch of rows (shared constants)
            fn = export_cache.jit(jax.vmap(jax.value_and_grad(f), in_axes=(0, 0, None)), skey, compile_bound=True)
        elif kind == "policy":
            fn = export_cache.jit(jax.vmap(lambda z, c: objective.policy(unravel(z), c), in_axes=(0, None)), skey, compile_bound=True)
        else:  # "fgh": value, gradient, Hessian at one point (constrained path)
            fn = export_cache.jit(lambda z, hp, c: (f(z, hp, c), jax.grad(f)(z, hp, c), jax.hessian(f)(z, hp, c)), skey,
                                  compile_bound=True)
        _CACHE[key] = fn
    return _CACHE[key]


DENSE_MAX = 256  # parameters: above this, Newton is matrix-free (newton_krylov)


FISHER_PROBES = 32  # Rademacher probes of the Fisher-diagonal estimate (metric="fisher")
MAX_RADIUS = 1e3  # largest trust radius, in the metric's norm


def metric_kind(objective) -> str:
    """The trust-region metric :func:`newton_krylov` uses by default: ``"fisher"`` when the loss
    is an expectation under the policy itself (``LossSpec.kind`` ``"policy"`` — RLHF — or
    ``"onpolicy"``), ``"euclidean"`` for losses of fixed preference data (``"pairwise"``).

    Why: for reverse-KL RLHF, ``f(θ) − f* = β·KL(π_θ ‖ π*)`` exactly, so the Hessian *at the
    optimum* is ``β·F(θ*)``, the Fisher information of the policy — in a token tree that is
    block-diagonal, one ``ρ(s)·(diag π_s − π_s π_sᵀ)`` block per state, with reach probabilities
    ``ρ(s)`` spanning many decades. A data loss's curvature lives in the data's measure instead;
    there plain logits were measured better conditioned (V = 4, T = 5 DPO: 503 CG iterations
    Euclidean vs 3,392 with a reference-weighted Fisher). A stack takes each part's own."""
    if hasattr(objective, "objectives"):
        kinds = {metric_kind(o) for o in objective.objectives}
        return kinds.pop() if len(kinds) == 1 else "mixed"
    return "fisher" if getattr(objective.loss, "kind", "pairwise") in ("policy", "onpolicy") else "euclidean"


def _metric_diag(objective, params, consts, key, kind: str | None = None):
    """Diagonal of the trust-region metric at ``params``, a pytree like ``params``: ``kind``
    (``"fisher"``/``"euclidean"``) for every part, or each part's :func:`metric_kind` if None.

    ``"fisher"``: ``diag F`` with ``F = Σ_x Σ_y π(y|x) ∇log π(y|x) ∇log π(y|x)ᵀ`` (the score has
    mean zero, so no centring term), estimated without forming the Jacobian ``J = ∂ log π/∂θ``:
    for Rademacher signs ``u`` over responses, ``E[(Jᵀ(√π ⊙ u))_i²] = Σ_y π_y J_yi² = F_ii``.
    One vector-Jacobian product of ``log π`` per probe; the estimate is nonnegative and its
    relative error (≈ √(2/probes)) is the same for every coordinate, however rarely its state is
    reached — unlike a Hutchinson estimate of ``diag H``, whose off-diagonal noise swamps the
    curvature of rare states. ``"euclidean"``: ones."""
    if hasattr(objective, "objectives"):
        keys = jax.random.split(key, len(objective.objectives))
        return tuple(_metric_diag(o, p, c, k, kind) for o, p, c, k in zip(objective.objectives, params, consts, keys))
    if (kind or metric_kind(objective)) != "fisher":
        return jax.tree_util.tree_map(jnp.ones_like, params)
    logp, vjp = jax.vjp(lambda q: objective.param.log_probs(q, consts["param"]), params)
    w = jnp.exp(0.5 * logp)
    U = jax.random.rademacher(key, (FISHER_PROBES,) + logp.shape, dtype=logp.dtype)
    rows = jax.lax.map(lambda u: vjp(w * u)[0], U)
    return jax.tree_util.tree_map(lambda r: jnp.mean(r * r, axis=0), rows)


def _steihaug(hvp, g, m, radius, rtol, maxiter):
    """Approximate minimiser of the model ``gᵀp + ½ pᵀHp`` over ``‖p‖_M ≤ radius``, ``M = diag(m)``:
    Steihaug–Toint preconditioned conjugate gradients (Steihaug 1983; Conn, Gould & Toint,
    *Trust-Region Methods*, 2000, Alg. 7.5.1), preconditioner ``M`` — the norm of the trust
    region, as that algorithm requires (its iterates then grow monotonically in ``‖·‖_M``).

    Stops at a relative residual ``‖g + Hp‖ ≤ rtol·‖g‖`` (flag 0), on the boundary (1), along a
    direction of non-positive curvature, followed to the boundary (2), or after ``maxiter``
    products (3). Returns ``(p, Hp, products, flag)``. One ``lax.while_loop``: no Python per product."""
    minv = 1.0 / m

    def to_boundary(p, d):  # τ ≥ 0 with ‖p + τd‖_M = radius
        a, b, c = jnp.sum(m * d * d), 2.0 * jnp.sum(m * p * d), jnp.sum(m * p * p) - radius**2
        return (-b + jnp.sqrt(jnp.maximum(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)

    gn = jnp.linalg.norm(g)
    y = minv * g

    def body(s):
        p, Hp, r, d, ry, k, _ = s
        Hd = hvp(d)
        kappa = d @ Hd
        alpha = ry / kappa
        p_in = p + alpha * d
        negative = kappa <= 0.0
        outside = jnp.sum(m * p_in * p_in) >= radius**2
        edge = negative | outside
        tau = to_boundary(p, d)
        r_new = r + alpha * Hd
        y_new = minv * r_new
        ry_new = r_new @ y_new
        k = k + 1
        flag = jnp.where(negative, 2, jnp.where(outside, 1, jnp.where(jnp.linalg.norm(r_new) <= rtol * gn, 0,
                                                                      jnp.where(k >= maxiter, 3, -1))))
        return (jnp.where(edge, p + tau * d, p_in), jnp.where(edge, Hp + tau * Hd, Hp + alpha * Hd), r_new,
                -y_new + (ry_new / ry) * d, ry_new, k, flag)

    zero = jnp.zeros_like(g)
    p, Hp, _, _, _, k, flag = jax.lax.while_loop(lambda s: s[-1] < 0, body, (zero, zero, g, -y, g @ y, 0, -1))
    return p, Hp, k, flag


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
        def step(z, hp, c, g0, m, radius, rtol, maxiter):
            hvp = jax.linearize(lambda y: g(y, hp, c), z)[1]
            return _steihaug(hvp, g0, m, radius, rtol, maxiter)

        def metric(z, c, kind):
            return ravel_pytree(_metric_diag(objective, unravel(z), c, jax.random.PRNGKey(0), kind))[0]

        _CACHE[key] = (jax.jit(jax.value_and_grad(f)), jax.jit(step), jax.jit(metric, static_argnums=2),
                       jax.jit(lambda z, c: objective.policy(unravel(z), c)))
    return _CACHE[key]


# Exact solvers run in float64 whatever the caller's precision (``precision.float64``): under
# ``bandit-lab --float32`` training is float32 but the "exact" columns must stay exact (measured
# before: the α = 0.1 table's exact RLHF policy was 1e-4 off in float32).
@precision.float64
def newton_krylov(objective, hp: dict, init=None, *, gtol: float = 1e-12, iters: int = NEWTON_ITERS,
                  metric: str | None = None) -> ExactResult:
    """Exact minimiser of an unconstrained objective without forming its Hessian.

    Trust-region Newton (Conn, Gould & Toint 2000, Alg. 6.1.1) whose subproblems are solved by
    Steihaug–Toint preconditioned CG (:func:`_steihaug`) on exact Hessian-vector products
    (forward-over-reverse autodiff of the gradient, linearised once per iterate). The trust region
    and the preconditioner are one diagonal metric ``M`` (:func:`metric_kind`,
    :func:`_metric_diag`): the policy's Fisher information for losses that are expectations
    under the policy — a trust region in KL, ``‖p‖²_F ≈ 2·KL(π_θ ‖ π_{θ+p})``, as in natural-gradient
    and TRPO steps, which near the optimum of reverse-KL RLHF is the Newton step itself — or
    plain logits for preference-data losses. ``metric`` overrides (``"fisher"``/``"euclidean"``).

    - CG stops at the Eisenstat–Walker forcing tolerance ``min(½, √‖g‖)`` (loose far away, tight
      near the optimum: superlinear convergence), on the boundary, or along negative curvature.
    - Steps are also capped at ``STEP_CAP`` per coordinate, in parameter units: a KL ball allows
      large moves of logits the policy rarely uses, and one such move can starve a softmax into
      saturation, where gradient and curvature of the starved logits are ``≈ π ≈ 0`` (measured on a
      V = 4, T = 7 tree without it: a point with ‖∇f‖ = 1.4e-11 but a TV of 7e-5 from the optimum).
    - Radius: ×¼ of the step when the actual/predicted decrease ``ρ < ¼``, ×2 when ``ρ > ¾`` on the
      boundary; a step is taken when ``ρ > 1e-4``. Endgame: once the predicted decrease is below
      the rounding of ``f`` (``1e-13·(1 + |f|)``), values cannot certify progress, and ``ρ`` is
      taken on the merit ``‖∇f‖²`` instead (actual over model decrease ``‖g‖² − ‖g + Hp‖²``).
    - Deterministic: the whole CG loop is one compiled ``lax.while_loop`` and the Fisher probes come
      from a fixed key, so identical calls give identical bits (``tests/test_scale.py``; SciPy's
      trust-krylov, used before, did not: its GLTR solver took 41, 57 and 50 iterations on three
      identical V = 4, T = 6 calls).

    Stops at ``‖∇f‖ ≤ gtol``; ``converged`` certifies ``‖∇f‖ ≤ max(100·gtol, 1e-10)``."""
    hpj = {k: jnp.asarray(float(v)) for k, v in {**objective.hp, **hp}.items()}
    template = jax.tree_util.tree_map(np.asarray, objective.param.init() if init is None else init)
    z0, unravel = ravel_pytree(template)
    if metric not in (None, "fisher", "euclidean"):
        raise ValueError(f"unknown metric {metric!r}: expected 'fisher' or 'euclidean'")
    vg, step, metric_fn, pol = _krylov_fns(objective, unravel)
    c = objective.consts()
    z = jnp.asarray(np.asarray(z0, dtype=np.float64))
    n = int(z.size)
    maxiter = max(50, min(5 * n, 5000))  # rounding: CG on ill-conditioned H needs more than n products
    f0, g0 = vg(z, hpj, c)
    f0 = float(f0)
    radius, m, rejected = 1.0, None, 0
    it = 0
    for it in range(1, iters + 1):
        gn = float(jnp.linalg.norm(g0))
        if gn <= gtol or not np.isfinite(gn) or rejected > 30:  # 30 rejections: radius ×4⁻³⁰
            break
        if m is None:  # at a new iterate
            m = metric_fn(z, c, metric)
            # floor: coordinates the policy never reaches (π underflows) get a finite metric
            m = jnp.maximum(m, 1e-14 * jnp.maximum(jnp.max(m), 1e-300))
        p, Hp, _, flag = step(z, hpj, c, g0, m, radius, min(0.5, np.sqrt(gn)), maxiter)
        scale = min(1.0, STEP_CAP / max(float(jnp.max(jnp.abs(p))), 1e-300))
        p, Hp = scale * p, scale * Hp
        pred = -float(g0 @ p + 0.5 * (p @ Hp))
        fn, gn_ = vg(z + p, hpj, c)
        fn = float(fn)
        size = float(jnp.sqrt(jnp.sum(m * p * p)))
        if not np.isfinite(fn):
            rho, ok = -1.0, False
        elif pred <= 1e-13 * (1.0 + abs(f0)):
            # endgame: values cannot certify progress; the merit is ‖∇f‖², whose model decrease is
            # ‖g‖² − ‖g + Hp‖² (the CG residual), and the same ratio test drives the radius
            want = gn**2 - float(jnp.sum((g0 + Hp) ** 2))
            rho = (gn**2 - float(jnp.sum(gn_**2))) / want if want > 0 else -1.0
            ok = rho > 1e-4
        else:
            rho = (f0 - fn) / pred
            ok = rho > 1e-4
        if rho < 0.25:
            radius = 0.25 * size
        elif rho > 0.75 and int(flag) in (1, 2) and scale == 1.0:
            radius = min(2.0 * radius, MAX_RADIUS)
        if ok:
            z, f0, g0, m, rejected = z + p, fn, gn_, None, 0
        else:
            rejected += 1
    r = float(jnp.linalg.norm(g0))
    zn, gnp = np.asarray(z), np.asarray(g0)
    return ExactResult(unravel(zn), np.asarray(pol(z, c)), f0, r, bool(r <= max(gtol * 100, 1e-10)), it, unravel(gnp))


@precision.float64
def newton_free(objective, hps: list[dict], init=None, *, gtol: float = 1e-12, iters: int = NEWTON_ITERS,
                arrays: dict | None = None, columnar: bool = False) -> list[ExactResult] | ExactBatch:
    """Exact minimisers of an unconstrained objective at every hyperparameter point in ``hps``
    (see the module docstring). Works for :class:`~bandit_lab.core.objective.Stack` too. Above
    ``DENSE_MAX`` parameters each point is solved matrix-free by :func:`newton_krylov`.

    ``arrays``: a dict filled with the batch as arrays — ``z`` [B, n] (raveled parameters),
    ``g`` [B, n], ``H`` [B, n, n] (the coloured finite-difference Hessian *at the returned point*,
    from the final evaluation's rows, which cost nothing extra) — for a batched certificate
    (:mod:`bandit_lab.solvers.sweep_certificate`). Dense path only (left empty above ``DENSE_MAX``).
    ``columnar``: return one :class:`ExactBatch` (the same numbers, as columns) instead of a list."""
    template = objective.param.init() if init is None else init
    template = jax.tree_util.tree_map(np.asarray, template)
    z0, unravel = ravel_pytree(template)
    n = z0.size
    if n > DENSE_MAX:
        out = [newton_krylov(objective, h, template, gtol=gtol, iters=iters) for h in hps]
        return _to_batch(out) if columnar else out
    if len(hps) > NEWTON_BLOCK:
        # blocks of NEWTON_BLOCK points: memory bounded whatever the sweep's size, and one compile
        # (the last block is padded with copies of its last point, dropped after)
        out: list = []
        parts: list = []
        for i in range(0, len(hps), NEWTON_BLOCK):
            part = list(hps[i:i + NEWTON_BLOCK])
            k = len(part)
            part += [part[-1]] * (NEWTON_BLOCK - k)
            sub = None if arrays is None else {}
            out.append(newton_free(objective, part, init, gtol=gtol, iters=iters, arrays=sub, columnar=True)[:k])
            parts.append((sub, k))
        if arrays is not None:
            arrays.update({key: np.concatenate([sub[key][:k] for sub, k in parts]) for key in parts[0][0]})
        cat = lambda *xs: None if xs[0] is None else jax.tree_util.tree_map(lambda *a: np.concatenate(a), *xs)  # noqa: E731
        batch = ExactBatch(cat(*[b.params for b in out]), *(np.concatenate([getattr(b, f) for b in out])
                                                            for f in ("policy", "value", "residual", "converged")),
                           max(b.iterations for b in out), cat(*[b.grad for b in out]))
        return batch if columnar else list(batch)
    B = len(hps)
    sizes = _member_sizes(objective, template, n)
    ends = np.cumsum(sizes)
    block = np.repeat(np.arange(len(sizes)), sizes)  # member of each coordinate
    color = np.concatenate([np.arange(m) for m in sizes])  # its index within the member
    nb = max(sizes)
    same = block[:, None] == block[None, :]  # [k, i]: coordinates of one member
    R = 2 * nb + 1  # rows per point in every call (Hessian; the line search reuses the shape): one compile
    base = objective.hp  # a Stack merges its members' hp on every access: once, not per point
    full = [{**base, **h} for h in hps]
    keys = sorted({k for h in full for k in h})
    hp_rows = {k: np.repeat([float(h[k]) for h in full], R) for k in keys}
    vg = _compiled(objective, unravel, "vg")
    consts = objective.consts()

    def evaluate(Z):  # Z: [B, R, n] → values [B, R], grads [B, R, n]
        v, g = vg(Z.reshape(B * R, n), hp_rows, consts)
        return np.asarray(v).reshape(B, R), np.asarray(g).reshape(B, R, n)

    z = np.tile(np.asarray(z0, dtype=np.float64), (B, 1))
    ts = 0.5 ** np.arange(_LS_STEPS)
    onehot = (color[None, :] == np.arange(nb)[:, None]).astype(np.float64)  # [colour, coordinate]
    def rows(z):  # the point and its coloured ±eps perturbations: [B, R, n], eps [B, n]
        eps = 1e-5 * np.maximum(1.0, np.abs(z))  # [B, n]
        Z = np.repeat(z[:, None, :], R, axis=1)
        Z[:, 1 : 1 + nb, :] += onehot[None] * eps[:, None, :]
        Z[:, 1 + nb : 1 + 2 * nb, :] -= onehot[None] * eps[:, None, :]
        return Z, eps

    def hessian(g, eps):  # central differences of the exact gradients at rows(z)
        D = g[:, 1 : 1 + nb, :] - g[:, 1 + nb : 1 + 2 * nb, :]  # [B, colour, i]
        H = np.where(same[None], D[:, color, :], 0.0) / (2 * eps[:, :, None])  # [B, k, i] = ∂g_i/∂z_k
        return 0.5 * (H + np.swapaxes(H, 1, 2))

    it = 0
    # the evaluation at rows(z) when the previous iteration already made it: the full step t = 1 is
    # evaluated *with its Hessian rows* (rows(z + d)), so a point that accepts it (most, most of the
    # time) needs no second call at the next iterate — one call per iteration instead of two; the
    # iterates are the same to the last bit (the same candidates, in the same order)
    cache = None
    for it in range(1, iters + 1):
        if cache is None:
            Z, eps = rows(z)
            v, g = evaluate(Z)
        else:
            v, g, eps = cache
        cache = (v, g, eps)
        f0, g0 = v[:, 0], g[:, 0]
        if np.all(np.linalg.norm(g0, axis=1) <= gtol):
            break
        H = hessian(g, eps)
        # the Hessian is block-diagonal (one block per member of a stack): its eigen-decomposition
        # is the blocks' (M decompositions of n_m × n_m instead of one of n × n: 6·3³ vs 18³ flops
        # for the six weight-decay objectives); the floor below is over all blocks, as before
        eig = [np.linalg.eigh(H[:, e - k:e, e - k:e]) for e, k in zip(ends, sizes)]
        # floor 1e-20: an all-zero Hessian (piecewise-linear loss, e.g. hinge) gives a finite
        # steepest-descent-like step (then capped) instead of g/1e-309 = inf and NaN
        scale = np.maximum(np.max([np.abs(lam).max(axis=1) for lam, _ in eig], axis=0)[:, None], 1e-20)
        d = np.concatenate([-np.einsum("bij,bj->bi", V, np.einsum("bji,bj->bi", V, g0[:, e - k:e]) / np.maximum(np.abs(lam), 1e-9 * scale))
                            for (lam, V), e, k in zip(eig, ends, sizes)], axis=1)
        # Trust radius: no coordinate moves more than STEP_CAP per iteration. An uncapped first
        # step can throw a softmax into saturation, where gradient *and* curvature of the
        # starved logits are ~π_i ≈ 0 and the solve stalls far from the optimum (seen on
        # reverse-KL RLHF with small β). Near the optimum steps are small and uncapped.
        d = d * np.minimum(1.0, STEP_CAP / np.maximum(np.abs(d).max(axis=1), 1e-300))[:, None]
        slope = np.minimum(np.einsum("bi,bi->b", g0, d), 0.0)
        # Armijo backtracking over t = 1, 1/2, …, 2^-39: the first acceptable t. The full step
        # always (with its Hessian rows, for the next iterate; its gradient is the endgame's),
        # then the others R at a time only if some point accepted none yet
        # (points in the endgame below, or already converged, need no search: their t is decided)
        tiny = -slope <= 1e-13 * (1.0 + np.abs(f0))
        t = np.zeros(B)
        found = tiny | (np.linalg.norm(g0, axis=1) <= gtol)
        Zn, eps_n = rows(z + d)
        vn, gn = evaluate(Zn)
        g_full = gn[:, 0]  # the gradient after the full step
        ok1 = np.isfinite(vn[:, 0]) & (vn[:, 0] <= f0 + 1e-4 * ts[0] * slope) & (vn[:, 0] <= f0)
        t = np.where(~found & ok1, 1.0, t)
        found |= ok1
        for s0 in range(1, _LS_STEPS, R):
            if found.all():
                break
            tt = np.zeros(R)
            m = min(R, _LS_STEPS - s0)
            tt[:m] = ts[s0 : s0 + m]
            vc, gc = evaluate(z[:, None, :] + tt[None, :, None] * d[:, None, :])
            ok = np.isfinite(vc) & (vc <= f0[:, None] + 1e-4 * tt[None] * slope[:, None]) & (vc <= f0[:, None])
            ok[:, m:] = False
            new = ~found & ok.any(axis=1)
            t = np.where(new, tt[np.argmax(ok, axis=1)], t)
            found |= new
        # Endgame: once the predicted decrease −g·d is below the rounding of f, values can no
        # longer certify progress; take the full step if it shrinks the (exact) gradient.
        better = np.linalg.norm(g_full, axis=1) < np.linalg.norm(g0, axis=1)
        t = np.where(tiny, np.where(better, 1.0, 0.0), t)
        z = z + t[:, None] * d
        full, stay = t == 1.0, (t == 0.0) & np.all(np.isfinite(d), axis=1)
        cache = ((np.where(full[:, None], vn, v), np.where(full[:, None, None], gn, g), np.where(full[:, None], eps_n, eps))
                 if np.all(full | stay) else None)
    if cache is None:
        Zf, eps = rows(z)  # row 0 is the point; the others give the Hessian there, for a certificate
        v, g = evaluate(Zf)
    else:
        v, g, eps = cache
    if arrays is not None:
        arrays.update(z=z, g=g[:, 0], H=hessian(g, eps))
    policies = np.asarray(_compiled(objective, unravel, "policy")(z, consts))
    # columns (per point, NumPy views of them: ravel_pytree's unravel is a JAX call per point,
    # 3.3 s for the 8,192 unravels of a 4,096-point weight-decay sweep)
    res = np.linalg.norm(g[:, 0], axis=1)
    ok = res <= max(gtol * 100, 1e-10)
    tree = _batched_tree(template)
    batch = ExactBatch(tree(z), policies, v[:, 0], res, ok, it, tree(g[:, 0]))
    return batch if columnar else list(batch)


def _to_batch(results) -> ExactBatch:
    """A list of :class:`ExactResult` (one objective) as one :class:`ExactBatch`."""
    stack = lambda f: None if getattr(results[0], f) is None else jax.tree_util.tree_map(  # noqa: E731
        lambda *a: np.stack([np.asarray(x) for x in a]), *[getattr(r, f) for r in results])
    return ExactBatch(stack("params"), np.stack([np.asarray(r.policy) for r in results]), [r.value for r in results],
                      [r.residual for r in results], [r.converged for r in results], max(r.iterations for r in results),
                      stack("grad"))


def _batched_tree(template):
    """``Z [B, n] → pytree``: the inverse of ``ravel_pytree`` for a batch of rows, each leaf with
    the points on a leading axis (NumPy views, nothing per point)."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    shapes = [np.shape(x) for x in leaves]
    dtypes = [np.asarray(x).dtype for x in leaves]
    ends = np.cumsum([int(np.prod(sh, dtype=np.int64)) for sh in shapes])

    def tree(Z):
        Z = np.asarray(Z)
        return jax.tree_util.tree_unflatten(treedef, [
            Z[:, e - int(np.prod(sh, dtype=np.int64)):e].reshape((Z.shape[0],) + sh).astype(dt, copy=False)
            for e, sh, dt in zip(ends, shapes, dtypes)])

    return tree


def _member_sizes(objective, template, n: int) -> list[int]:
    """Hessian columns by central differences, coloured: the objectives of a Stack are separable
    (value = Σ_m f_m(θ_m)), so coordinate j of *every* member can be perturbed in the same row
    and each member's block read from its own gradient — 2·max_m n_m + 1 rows per point instead
    of 2n + 1 (7 instead of 37 for the six weight-decay objectives). One objective: one block."""
    sizes = [int(np.size(ravel_pytree(jax.tree_util.tree_map(np.asarray, p))[0])) for p in template] \
        if hasattr(objective, "objectives") and isinstance(template, tuple) else [n]
    return sizes if sum(sizes) == n else [n]


def _unravel_batch(template):
    """``Z [B, n] → [pytree of row b for b in range(B)]``: the inverse of ``ravel_pytree`` (leaves
    in ``tree_flatten`` order, each raveled in C order) for a batch of rows, as NumPy views."""
    tree = _batched_tree(template)

    def split(Z):
        leaves, treedef = jax.tree_util.tree_flatten(tree(Z))
        return [jax.tree_util.tree_unflatten(treedef, [p[b] for p in leaves]) for b in range(np.shape(Z)[0])]

    return split


@precision.float64
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
