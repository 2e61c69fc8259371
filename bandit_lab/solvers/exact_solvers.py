"""Exact solvers for the losses the generic Newton solver cannot certify, and one stationarity
measure for every objective.

This module sits *below* :mod:`bandit_lab.fixed_points` and *above* the losses: the losses'
``LossSpec.exact`` hooks import it lazily (a callback into the solver layer), it imports
:mod:`bandit_lab.solvers.solver`, and never imports :mod:`bandit_lab.fixed_points` or a loss family, so
there is no import circle.

Piecewise-linear ("kinked") losses. ``hinge`` (``max(0, 1 − βΔ)``) and the reference-free
``cpo[loss_type=hinge]`` are sums of hinge terms ``w_t·max(0, 1 − m_t(θ))`` over the labelled
triples, with a margin ``m_t`` that is *linear* in the parameters for the softmax and log-linear
policies (the log-normaliser cancels in ``log π_w − log π_l``). Their minimiser sits on kinks, where
no gradient vanishes, so:

- **stationarity** is the norm of the *min-norm subgradient* (:func:`stationarity`): with
  ``S`` the smooth rest of the objective, triples with ``m_t < 1 − tol`` contribute their slope,
  those with ``|m_t − 1| ≤ tol`` any ``λ_t ∈ [0, w_t]`` of it; the measure is
  ``min_λ ‖∇S − Σ_{m<1} w_t ∇m_t − Σ_{kink} λ_t ∇m_t‖`` (a bounded least-squares problem,
  ``scipy.optimize.lsq_linear``); DPO-Positive's kinks ``max(0, −h_w)`` inside its sigmoid are
  handled the same way (:func:`_dpop_sites`). It is 0 exactly at a minimiser of a convex kinked objective
  and equals ``‖∇f‖`` where the objective is smooth. Without kinks it is the projected-gradient
  norm ``‖x − Π(x − ∇f)‖`` the trainer and the solver already use;
- **exact solve**: without weight decay, the linear programme of :func:`hinge_lp` (SciPy's
  HiGHS); with ``α‖θ‖²`` on the parameters the problem is the convex **QP**
  ``min α‖θ‖² + Σ w_t ξ_t`` s.t. ``ξ_t ≥ 1 − m_t(θ)``, ``ξ ≥ 0`` in ``(θ, ξ)``, solved by HiGHS's
  active-set QP solver (``highspy``, the HiGHS project's own bindings: SciPy ships HiGHS's LP/MIP
  but not its QP interface); with any other smooth part (an NLL term, ``α‖π‖²``) the same slack
  formulation is a smooth NLP with linear constraints (SciPy SLSQP). Each answer is then
  *polished* by Newton's method on its KKT system with the active kinks as equality constraints
  and their multipliers checked to lie in ``[0, w_t]`` (:func:`_kkt_polish`), so the returned
  point has a min-norm subgradient at rounding level — that residual is what is reported.

Detached statistics: :func:`self_consistent` (``bco_pair[delta=mean]``'s δ, ``kto``'s z_ref);
see :mod:`bandit_lab.losses.zoo`.
"""
from __future__ import annotations

import contextlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bandit_lab.solvers.oracles import softmax_np
from bandit_lab.solvers.solver import ExactResult, newton_free

KINK_TOL = 1e-6  # |m_t − 1| below which a hinge term counts as on its kink (an ε-subdifferential)
LINEAR_PARAMS = ("softmax", "loglinear")  # log π affine in θ up to the normaliser


# --------------------------------------------------------------------------- kink structure

def _hinge_margins(obj, hp):
    """``[(margin_fn(params) -> [X,K,K], weight [X,K,K]), ...]`` of every hinge term of the
    objective's loss (each term ``weight·max(0, 1 − margin)``), or ``[]`` if it has none, or
    None if its loss reads a kinked term we cannot describe (then no exact method applies)."""
    name, static = obj.loss.name, obj.static
    W = np.asarray(obj.data.weight)

    def ratio_margin(params):
        inp = obj.inputs(jnp.asarray(params) if not isinstance(params, tuple) else params)
        h = inp.logp - inp.logp_ref
        return hp["beta"] * (h[..., :, None] - h[..., None, :])

    def free_margin(params):
        lp = obj.param.log_probs(params)
        return hp["beta"] * (lp[..., :, None] - lp[..., None, :])

    if name == "hinge":
        return [(ratio_margin, W)]
    if name == "cpo" and static.get("loss_type") == "hinge":
        if hp.get("alpha", 0.0) != 0.0:
            return None  # AlphaPO reward: margin not linear in θ
        return [(free_margin, W)]
    if name == "mixture":
        if static.get("use_weighting") or static.get("divergence", "reverse_kl") != "reverse_kl":
            return None
        out = []
        for term in static.get("terms", ()):
            sub = obj.with_loss(term, {k: v for k, v in hp.items() if k in _spec_defaults(term)})
            parts = _hinge_margins(sub, {**sub.hp, **hp})
            if parts is None:
                return None
            w = hp.get(f"w_{term}", 1.0)
            out += [(fn, w * wt) for fn, wt in parts]
        return out
    return []


def _spec_defaults(name):
    from bandit_lab import losses

    return losses.get(name).defaults


def _flat(obj, params):
    z, unravel = ravel_pytree(jax.tree_util.tree_map(jnp.asarray, params))
    return np.asarray(z, dtype=np.float64), unravel


def _kinks(obj, params, hp):
    """Rows of the linearised hinge terms at ``params``: ``(m [T], A [T, n], w [T])`` for the
    live triples (margins, their gradients in the flat parameters, weights), or None."""
    parts = _hinge_margins(obj, hp)
    if parts is None:
        return None
    z, unravel = _flat(obj, params)
    ms, As, ws = [], [], []
    for fn, wt in parts:
        live = np.asarray(wt) > 0
        f = lambda zz: fn(unravel(zz))[live]  # noqa: E731
        ms.append(np.asarray(f(jnp.asarray(z))))
        As.append(np.asarray(jax.jacobian(f)(jnp.asarray(z))))
        ws.append(np.asarray(wt)[live])
    if not ms:
        return np.zeros(0), np.zeros((0, z.size)), np.zeros(0)
    return np.concatenate(ms), np.concatenate(As), np.concatenate(ws)


def _smooth_grad(obj, params, hp, kinks):
    """∇ of the objective minus its hinge terms (JAX's relu gradient at 0 is 0, and the hinge part
    is subtracted with the same convention, so this is ∇S exactly)."""
    z, unravel = _flat(obj, params)
    g = np.asarray(jax.grad(lambda zz: obj.value(unravel(zz), hp))(jnp.asarray(z)))
    m, A, w = kinks
    g_hinge = -(A.T @ (w * (m < 1.0)))  # JAX's choice at exactly m = 1 is the 0 side
    return g - g_hinge


def _dpop_g(obj, params, rho, beta, lam, wd, c):
    """DPO-Positive with its kink argument as a variable (Pal et al. 2024):
    ``G(θ, ρ) = E_D[softplus(−β(Δ − λρ_{y_w}))] + wd·penalty``, increasing in every ``ρ_y``; DPOP is
    ``G(θ, max(0, −h))``. ``rho``: an array, or a function of the log-ratios ``h`` (one evaluation
    of ``h`` for both). ``c``: the objective's constants (:meth:`Objective.consts`)."""
    W = c["data"].weight
    inp = obj.inputs(params, consts=c)
    h = inp.logp - inp.logp_ref
    rho = rho(h) if callable(rho) else rho
    d = h[..., :, None] - h[..., None, :]
    per = jax.nn.softplus(-beta * (d - lam * rho[..., :, None]))
    live = W > 0
    return jnp.sum(jnp.where(live, W * jnp.where(live, per, 0.0), 0.0)) + wd * obj.penalty_value(params, consts=c)


_DPOP_SITES: dict = {}


def _dpop_sites(obj, params, hp):
    """DPO-Positive's kinks (``max(0, −h_w)`` inside the sigmoid, Pal et al. 2024): with
    ``G(θ, ρ) = E_D[softplus(−β(Δ − λρ_{y_w}))] + penalty``, increasing in every ``ρ_y``, and
    ``ρ = max(0, a)``, ``a_y = −h_y``, the Clarke subdifferential is
    ``∂_θG + Σ_y s_y·(∂G/∂ρ_y)·∇a_y``, ``s_y ∈ [0, 1]`` at kinks (1 where ``a_y > 0``).
    Returns ``(g_base, a [T], J [T, n])`` over the (x, y) that are chosen somewhere.

    One jitted program per objective signature and parameter structure, with the problem's
    arrays and β, λ, the weight decay as arguments, kept for the process (``stationarity`` calls
    this at every iterate of DPOP's solve; differentiated eagerly it compiled a small program per
    primitive, issue 22)."""
    z, unravel = _flat(obj, params)
    chosen = np.asarray(obj.data.weight).sum(-1) > 0  # [X, K]
    key = (obj.signature(), jax.tree_util.tree_structure(params), z.size)
    if key not in _DPOP_SITES:
        if len(_DPOP_SITES) > 64:
            _DPOP_SITES.clear()

        def kernel(zz, beta, lam, wd, c):
            def h_of(q):
                inp = obj.inputs(unravel(q), consts=c)
                return inp.logp - inp.logp_ref

            def G(q, rho):
                return _dpop_g(obj, unravel(q), rho, beta, lam, wd, c)

            a = -h_of(zz)
            rho = jnp.maximum(0.0, a)
            return a, jax.grad(G, 0)(zz, rho), jax.grad(G, 1)(zz, rho), jax.jacobian(lambda q: -h_of(q))(zz)

        _DPOP_SITES[key] = jax.jit(kernel)
    a, g_base, c, Ja = (np.asarray(t) for t in _DPOP_SITES[key](jnp.asarray(z), float(hp["beta"]), float(hp["lam"]),
                                                               float(hp.get("weight_decay", 0.0)), obj.consts()))
    J = (c[..., None] * Ja)[chosen]  # Ja [X, K, n]
    return g_base, a[chosen], J


def _sites(obj, params, hp):
    """``(g_base, a, J)``: the gradient with every kink on its flat side, the kink arguments
    (``relu(a_t)``) and the gradient jump of each (module docstring); None if the loss has no
    kinks we describe."""
    if obj.loss.name == "dpop":
        return _dpop_sites(obj, params, hp)
    kinks = _kinks(obj, params, hp)
    if kinks is None or not kinks[0].size:
        return None
    m, A, w = kinks
    g = _smooth_grad(obj, params, hp, kinks)
    return g, 1.0 - m, -(w[:, None] * A)


def _min_norm_sites(g_base, a, J, tol):
    """``min_s ‖g_base + Σ_{a>tol} J_t + Σ_{|a|≤tol} s_t J_t‖``, ``s ∈ [0, 1]``."""
    from scipy import optimize

    lin = a > tol
    kink = np.abs(a) <= tol
    g0 = g_base + J[lin].sum(0)
    if not kink.any():
        return float(np.linalg.norm(g0))
    Jk = J[kink]
    res = optimize.lsq_linear(Jk.T, -g0, bounds=(np.zeros(kink.sum()), np.ones(kink.sum())), method="bvls", tol=1e-15, lsmr_tol=None)
    return float(np.linalg.norm(g0 + Jk.T @ res.x))


def stationarity(objective, params, hp: dict | None = None, *, tol: float = KINK_TOL) -> float:
    """First-order stationarity of ``objective`` at ``params`` (see the module docstring): the
    norm of the min-norm subgradient for kinked losses on a free parameterization, else the
    projected-gradient norm ``‖x − Π(x − ∇f)‖`` (``‖∇f‖`` when unconstrained). Zero at a minimiser
    of a convex objective, kinked or not; the one measure ``bandit-lab solve`` uses for
    "converged"."""
    hp = {**objective.hp, **(hp or {})}
    sites = _sites(objective, params, hp) if objective.param.constraint == "free" else None
    if sites is not None:
        return _min_norm_sites(*sites, tol)
    g = jax.grad(lambda p: objective.value(p, hp))(params)
    moved = objective.param.project(jax.tree_util.tree_map(lambda a, b: a - b, params, g))
    return float(np.sqrt(sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(moved)))))


# --------------------------------------------------------------------------- LP / QP / NLP

def hinge_lp(problem, weight: np.ndarray, beta: float, reference: bool = True) -> tuple[np.ndarray, bool]:
    """Exact population minimiser of the hinge loss by linear programming (HiGHS), per context:
    ``min Σ_{ordered (i,j)} w_ij ξ_ij`` s.t. ``ξ_ij ≥ 1 − β(g_i − g_j)``, ``ξ ≥ 0``, ``g_0 = 0``;
    then ``π ∝ π_ref·e^{g}`` (``e^{g}`` without a reference, CPO's hinge). Returns ``(π, solved)``."""
    from scipy import optimize

    X, K, _ = weight.shape
    out = np.empty((X, K))
    ok = True
    for x in range(X):
        trip = [(i, j, weight[x, i, j]) for i in range(K) for j in range(K) if i != j and weight[x, i, j] > 0]
        n = K + len(trip)
        c = np.concatenate([np.zeros(K), [w for _, _, w in trip]])
        A = np.zeros((len(trip), n))
        for r, (i, j, _w) in enumerate(trip):
            A[r, i], A[r, j], A[r, K + r] = -beta, beta, -1.0  # −β(g_i − g_j) − ξ ≤ −1
        bounds = [(0.0, 0.0)] + [(None, None)] * (K - 1) + [(0.0, None)] * len(trip)
        res = optimize.linprog(c, A_ub=A, b_ub=-np.ones(len(trip)), bounds=bounds, method="highs")
        ok &= bool(res.status == 0)
        g = res.x[:K] if res.status == 0 else np.full(K, np.nan)
        base = np.log(problem.pi_ref[x]) if reference else np.zeros(K)
        out[x] = softmax_np(base + g)
    return out, ok


@contextlib.contextmanager
def _quiet_stdout():
    """HiGHS prints its banner on the first ``Highs()`` of a process, from C++: silence fd 1."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def hinge_qp(A: np.ndarray, b: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray | None:
    """``argmin_θ α‖θ‖² + Σ_t w_t max(0, 1 − (A_t θ − b_t))`` as the convex QP in ``(θ, ξ)``
    (HiGHS active-set QP via ``highspy``). ``None`` if HiGHS does not report optimal."""
    import highspy

    T, n = A.shape
    inf = highspy.kHighsInf
    with _quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + T, T
    lp.col_cost_ = np.concatenate([np.zeros(n), w])
    lp.col_lower_ = np.concatenate([np.full(n, -inf), np.zeros(T)])
    lp.col_upper_ = np.full(n + T, inf)
    lp.row_lower_ = 1.0 + b  # A_t θ + ξ_t ≥ 1 + b_t
    lp.row_upper_ = np.full(T, inf)
    M = np.hstack([A, np.eye(T)])
    cols = [np.nonzero(M[:, j])[0] for j in range(n + T)]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
    lp.a_matrix_.index_ = np.concatenate(cols).astype(np.int32)
    lp.a_matrix_.value_ = np.concatenate([M[c, j] for j, c in enumerate(cols)])
    hs = highspy.HighsHessian()  # ½ zᵀQz with Q = diag(2α on θ, 0 on ξ): lower triangle, column-wise
    hs.dim_ = n + T
    hs.format_ = highspy.HessianFormat.kTriangular
    hs.start_ = np.concatenate([np.arange(n + 1), np.full(T, n)]).astype(np.int32)
    hs.index_ = np.arange(n, dtype=np.int32)
    hs.value_ = np.full(n, 2.0 * alpha)
    model = highspy.HighsModel()
    model.lp_, model.hessian_ = lp, hs
    h.passModel(model)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return np.asarray(h.getSolution().col_value[:n], dtype=np.float64)


def _slack_nlp(obj, hp, z0, unravel, kinks0):
    """Smooth part + hinge terms as ``min S(θ) + Σ w ξ`` s.t. ``ξ ≥ 1 − m(θ)``, ``ξ ≥ 0`` (SLSQP)."""
    from scipy import optimize

    m0, A, w = kinks0
    b = A @ z0 - m0  # margins are affine: m = Aθ − b
    n, T = z0.size, m0.size

    def S(zz):
        v = obj.value(unravel(zz), hp)
        return v - jnp.sum(jnp.asarray(w) * jax.nn.relu(1.0 - (jnp.asarray(A) @ zz - jnp.asarray(b))))

    vg = jax.jit(jax.value_and_grad(S))

    def f(u):
        v, g = vg(jnp.asarray(u[:n]))
        return float(v) + float(w @ u[n:]), np.concatenate([np.asarray(g), w])

    u0 = np.concatenate([z0, np.maximum(0.0, 1.0 - m0)])
    G = np.hstack([A, np.eye(T)])
    cons = [{"type": "ineq", "fun": lambda u: G @ u - 1.0 - b, "jac": lambda u: G}]
    bounds = [(None, None)] * n + [(0.0, None)] * T
    res = optimize.minimize(f, u0, jac=True, method="SLSQP", constraints=cons, bounds=bounds, options={"maxiter": 1000, "ftol": 1e-15})
    return res.x[:n]


def _kkt_polish(obj, hp, z, unravel, iters: int = 50) -> np.ndarray:
    """Newton on the KKT system of ``min S(θ) − Σ_{m<1} w_t m_t`` with the kinks ``m_t = 1`` as
    equality constraints; terms whose multiplier leaves ``[0, w_t]`` change side. Returns the
    polished flat parameters (the input if nothing better is found)."""
    best, best_r = z, _res(obj, hp, z, unravel)
    for _ in range(iters):
        m, A, w = _kinks(obj, unravel(jnp.asarray(z)), hp)
        kink = np.abs(m - 1.0) <= 1e-6
        lin = (m < 1.0) & ~kink
        f = lambda zz: obj.value(unravel(zz), hp)  # noqa: E731
        g = np.asarray(jax.grad(f)(jnp.asarray(z)))
        H = np.asarray(jax.hessian(f)(jnp.asarray(z)))
        g_s = g + A.T @ (w * (m < 1.0))  # smooth part (JAX's relu' = 0 at m = 1 exactly)
        gl = g_s - A[lin].T @ w[lin]
        Ak = A[kink]
        r_eq = m[kink] - 1.0
        nk = Ak.shape[0]
        K = np.block([[H, Ak.T], [Ak, np.zeros((nk, nk))]])
        rhs = -np.concatenate([gl, r_eq])
        sol = np.linalg.lstsq(K, rhs, rcond=None)[0]
        z_new = z + sol[: z.size]
        lam = -sol[z.size:]  # ∇S − Σ_lin w∇m − Σ_kink λ∇m = 0 ⇒ μ = −λ
        r = _res(obj, hp, z_new, unravel)
        if r < best_r:
            best, best_r = z_new, r
        if np.all((lam >= -1e-12) & (lam <= w[kink] + 1e-12)) and np.linalg.norm(sol[: z.size]) <= 1e-15 * max(1.0, np.linalg.norm(z)):
            break
        z = z_new
        if best_r <= 1e-15:
            break
    return best


def _res(obj, hp, z, unravel) -> float:
    return stationarity(obj, unravel(jnp.asarray(z)), hp)


def solve_piecewise_linear(obj, hp: dict, init=None) -> ExactResult | None:
    """Exact minimiser of a kinked loss (module docstring); None when no exact method applies
    (constrained parameterizations other than the population LP): the generic solver runs then
    and ``solve`` reports its min-norm stationarity."""
    hp = {**obj.hp, **hp}
    wd = hp.get("weight_decay", 0.0)
    name, static = obj.loss.name, obj.static
    pure_hinge = name == "hinge" or (name == "cpo" and static.get("loss_type") == "hinge" and hp.get("cpo_alpha", 0.0) == 0.0
                                     and hp.get("alpha", 0.0) == 0.0)
    if pure_hinge and wd == 0.0 and obj.param.name in ("softmax", "simplex"):
        pi, ok = hinge_lp(obj.problem, np.asarray(obj.data.weight), hp["beta"], reference=name == "hinge")
        theta = jnp.asarray(np.log(pi) if obj.param.name == "softmax" else pi)
        r = stationarity(obj, theta, hp) if obj.param.name == "softmax" else 0.0
        return ExactResult(theta, pi, float(obj.value(theta, hp)), r, bool(ok), 0)
    if obj.param.constraint != "free":
        return None
    template = obj.param.init() if init is None else init
    z0, unravel = _flat(obj, template)
    kinks = _kinks(obj, template, hp)
    if kinks is None or not kinks[0].size:
        return None
    m0, A, w = kinks
    linear = obj.param.name in LINEAR_PARAMS
    if pure_hinge and linear and obj.penalty == "params" and wd > 0.0:
        b = A @ z0 - m0
        z = hinge_qp(A, b, w, wd)
        if z is None:
            return None
    elif linear:
        z = _slack_nlp(obj, hp, z0, unravel, kinks)
    else:
        return None
    z = _kkt_polish(obj, hp, np.asarray(z, dtype=np.float64), unravel)
    params = unravel(jnp.asarray(z))
    r = stationarity(obj, params, hp)
    pol = np.asarray(obj.policy(params))
    return ExactResult(params, pol, float(obj.value(params, hp)), r, bool(r <= 1e-10), 0)


def solve_dpop(obj, hp: dict, init=None) -> ExactResult | None:
    """DPO-Positive exactly: its kinks ``max(0, −h_y)`` enter an increasing function, so with slacks
    ``ρ_y ≥ 0``, ``ρ_y ≥ −h_y`` the loss is the smooth NLP ``min_{θ,ρ} G(θ, ρ)`` (SciPy SLSQP from
    several starts), then polished by Newton on its KKT system with the active slack constraints
    as equalities (:func:`_nlp_kkt_polish`). Certified by :func:`stationarity` (min-norm
    subgradient of DPOP itself)."""
    from scipy import optimize

    if obj.param.constraint != "free":
        return None
    hp = {**obj.hp, **hp}
    template = obj.param.init() if init is None else init
    z0, unravel = _flat(obj, template)
    X, K = np.asarray(obj.problem.pi_ref).shape
    n, m = z0.size, X * K

    def h_of(zz):
        inp = obj.inputs(unravel(zz))
        return (inp.logp - inp.logp_ref).reshape(-1)

    c = obj.consts()

    def G(u):
        return _dpop_g(obj, unravel(u[:n]), u[n:].reshape(X, K), hp["beta"], hp["lam"], hp.get("weight_decay", 0.0), c)

    vg = jax.jit(jax.value_and_grad(G))
    cons_f = jax.jit(lambda u: u[n:] + h_of(u[:n]))
    cons_j = jax.jit(jax.jacobian(lambda u: u[n:] + h_of(u[:n])))
    fun = lambda u: tuple(np.asarray(t, dtype=np.float64) for t in vg(jnp.asarray(u)))  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda u: np.asarray(cons_f(jnp.asarray(u))), "jac": lambda u: np.asarray(cons_j(jnp.asarray(u)))}]
    bounds = [(None, None)] * n + [(0.0, None)] * m
    rng = np.random.default_rng(0)
    best = None
    for k in range(6):
        zs = np.asarray(z0) + (0.0 if k == 0 else rng.normal(0.0, 1.0, n))
        u0 = np.concatenate([zs, np.maximum(0.0, -np.asarray(h_of(jnp.asarray(zs))))])
        res = optimize.minimize(lambda u: fun(u)[0], u0, jac=lambda u: fun(u)[1], method="SLSQP", constraints=cons, bounds=bounds,
                                options={"maxiter": 2000, "ftol": 1e-16})
        if best is None or res.fun < best.fun:
            best = res
    z = _dpop_polish(obj, hp, best.x[:n], unravel)
    params = unravel(jnp.asarray(z))
    r = stationarity(obj, params, hp)
    return ExactResult(params, np.asarray(obj.policy(params)), float(obj.value(params, hp)), r, bool(r <= 1e-10), 0)


def _dpop_polish(obj, hp, z, unravel, iters: int = 40):
    """Newton on DPOP's KKT system in θ: kinks ``h_y = 0`` (|h_y| ≤ 1e-6) as equality constraints
    with multipliers ``s_y·c_y``; keeps the iterate of smallest stationarity.

    The derivatives are two jitted programs, compiled once per call (the side of every kink is an
    argument, and the constraints are all chosen ``h_y`` with the multipliers of the non-kinks 0):
    differentiated eagerly, each iteration's fresh closures compiled a small program per primitive
    (≈ 4 of a solve's 6 CPU s, issue 22)."""
    chosen = np.asarray(obj.data.weight).sum(-1) > 0
    c = obj.consts()

    def h_of(zz):
        inp = obj.inputs(unravel(zz))
        return inp.logp - inp.logp_ref

    def piece(zz, mask):  # DPOP with ρ = −h where ``mask`` (the 'lin' side), 0 on the rest
        return _dpop_g(obj, unravel(zz), lambda h: jnp.where(mask, -h, 0.0), hp["beta"], hp["lam"], hp.get("weight_decay", 0.0), c)

    def cons(zz):  # every chosen h_y; the kinks among them are the equality constraints
        return h_of(zz)[chosen]

    first = jax.jit(lambda zz, mask: (jax.grad(piece)(zz, mask), cons(zz), jax.jacobian(cons)(zz)))
    hess = jax.jit(lambda zz, mask, mu: jax.hessian(lambda q: piece(q, mask) + jnp.dot(mu, cons(q)))(zz))
    best, best_r = z, stationarity(obj, unravel(jnp.asarray(z)), hp)
    for _ in range(iters):
        _, a, _ = _dpop_sites(obj, unravel(jnp.asarray(z)), hp)
        kink = np.abs(a) <= 1e-6
        mask = np.zeros(chosen.shape, bool)
        mask[chosen] = a > 1e-6
        zj = jnp.asarray(z)
        g, C, A = (np.asarray(t) for t in first(zj, jnp.asarray(mask)))
        Ck, Ak = C[kink], A.reshape(len(C), -1)[kink]
        # Lagrangian Hessian: estimate multipliers first (least squares), then include their curvature
        mu = np.linalg.lstsq(Ak.T, -g, rcond=None)[0] if len(Ck) else np.zeros(0)
        mu_all = np.zeros(len(C))
        mu_all[kink] = mu
        H = np.asarray(hess(zj, jnp.asarray(mask), jnp.asarray(mu_all)))
        nk = len(Ck)
        KKT = np.block([[H, Ak.T], [Ak, np.zeros((nk, nk))]])
        sol = np.linalg.lstsq(KKT, -np.concatenate([g + Ak.T @ mu, Ck]), rcond=None)[0]
        z = z + sol[: z.size]
        r = stationarity(obj, unravel(jnp.asarray(z)), hp)
        if r < best_r:
            best, best_r = z, r
        if best_r <= 1e-14:
            break
    return best


# --------------------------------------------------------------------------- detached statistics

def statistic(obj, params, hp: dict, detached) -> float:
    """The detached statistic ``detached = (key, fn)`` at ``params``."""
    _key, fn = detached
    return float(fn(obj.inputs(jnp.asarray(params)), {**obj.hp, **hp}))


def self_consistent(obj, hp: dict | None, detached, *, init=None, tol: float = 1e-12, iters: int = 60) -> tuple[ExactResult, float, float]:
    """Fixed point of a loss with a detached statistic ``s``: secant iterations on
    ``F(s) = s(θ*(s)) − s``, each ``θ*(s)`` the exact minimiser of ``L(·; s)`` with ``s`` frozen
    (passed as ``hp[key]``). Returns ``(result, s, |F(s)|)``."""
    key, _fn = detached
    hp = {**obj.hp, **(hp or {})}
    hp.pop(key, None)
    init = obj.param.init() if init is None else init

    def F(s, init):
        r = newton_free(obj, [{**hp, key: s}], init)[0]
        return statistic(obj, r.params, hp, detached) - s, r

    s0 = statistic(obj, init, hp, detached)
    f0, r0 = F(s0, init)
    s1 = s0 + f0
    f1, r1 = F(s1, r0.params)
    for _ in range(iters):
        if abs(f1) <= tol:
            break
        den = f1 - f0
        s2 = s1 - f1 * (s1 - s0) / den if den != 0 else s1 + f1
        if not np.isfinite(s2):
            s2 = s1 + f1
        s0, f0 = s1, f1
        s1 = s2
        f1, r1 = F(s1, r1.params)
    return r1, s1, abs(f1)


def field_residual(obj, params, hp: dict | None = None) -> float:
    """‖∇_θ L‖ with the statistic detached — the training signal Adam follows."""
    hp = {**obj.hp, **(hp or {})}
    g = jax.grad(lambda p: obj.value(p, hp))(jnp.asarray(params))
    return float(jnp.linalg.norm(g))


def solve_self_consistent(obj, hp: dict, detached, init=None) -> ExactResult | None:
    """``solve_exact`` for losses with a detached statistic: the zero of the training field; its
    residual is the largest of the Newton residual at frozen s, the self-consistency gap and the
    detached field's norm."""
    if obj.param.constraint != "free":
        return None
    key = detached[0]
    hp = {k: v for k, v in hp.items() if k != key}
    r, s, gap = self_consistent(obj, hp, detached, init=init)
    g = jax.grad(lambda p: obj.value(p, hp))(jnp.asarray(r.params))
    res = max(r.residual, gap, float(jnp.linalg.norm(g)))
    return ExactResult(r.params, r.policy, r.value, res, bool(res <= 1e-10), r.iterations, np.asarray(g))
