"""SPO Theorems 1 and 2 (Sharifnassab et al., Soft Preference Optimization, §3–4, App. A).

Setting of both theorems: Bradley–Terry preferences with reward r, data with full support on
distinct pairs (population data of a uniform or reference pair law), a tabular policy.
π^α = softmax(r/α); π^0 = the argmax vertex.

- ``spo-thm1-minimiser``: the exact solver, started from 4 random logit vectors per instance,
  lands on softmax(r/α) (largest TV over instances and starts; the issue's 1e-6 done-when).
- ``spo-thm1-landscape``: K = 3, the tangent (projected) gradient field of L_pref^α over a fine
  grid of the open simplex (step 1/150) points strictly towards π^α at every grid point:
  the smallest cosine between Π_T(−∇_π L) and π^α − π is > 0, so the field has no zero but π^α.
  One instance in four has α = 0 (Eq. 9) with π^0 the argmax vertex: in the *open* simplex the
  field points at that vertex everywhere (−∇L^0 · (π − e*) = −c(y*)/(2π(y*)) < 0). That is how
  α = 0 is checked; α = 0 has no minimiser to solve for (L^0 is unbounded below on the boundary).
- ``spo-alpha0-borda`` (finding): the α = 0 flow does not end at the argmax. It reaches the
  boundary in finite time and stops at π ∝ max(c, 0), c(y) = Σ_y' D(y,y') − D(y',y) the net
  score (see :func:`borda_fixed_point`): the argmax vertex only when one response has c > 0.
  Value: largest TV between the end of the flow (projected Euler, 20 000 steps of 0.01) and
  that point, on 20 random K = 3 instances.
- ``spo-alpha0-rate``: how often that happens (:func:`alpha0_off_argmax_count`). On random
  bandits (π_ref = :func:`~bandit_lab.core.random_problems.dirichlet`, r ~ N(0, 1.5²) i.i.d., uniform
  or reference pair law) the fraction with ≥ 2 positive net scores is exactly ½ at K = 3 — the
  middle response has c > 0 iff it is nearer the top reward than the bottom one, and r → −r swaps
  the two gaps — and rises with K. Value: the two-sided binomial p-value of the K = 3 count under
  ½ (must not be tiny), or 0 if the rates at K = 3, 4, 5, 6, 8 do not increase strictly.
- L^0 itself has no minimiser: L^0(π) = −½ Σ_y c(y) log π(y) with Σ_y c(y) = 0, so a response
  with c(y) < 0 sends L^0 to −∞ linearly as log π(y) → −∞ (tests/test_spo.py pins the slope).
- ``spo-thm2-flow``: the projected flow π̇ = Π_simplex(−∇_π L^{α,μ}) (μ detached, re-evaluated
  at every point) for α ∈ [0.2, 3]. In the open simplex (which the flow never leaves for α > 0)
  the projection of the velocity is the tangent projection; the ODE is stiff (curvature ~ 1/π²)
  and is integrated by LSODA (ODEPACK via ``scipy.integrate.odeint``: BDF once stiff; rtol 1e-9,
  cross-checked against SciPy's implicit Radau in the tests) with the field in plain NumPy
  (:func:`field_np`, tested against the JAX loss). The Euclidean distance to π^α must decrease
  between any two of 300 log-spaced sampled times in [1e-4, 1e4]: the value is the smallest
  relative decrease 1 − d_{t+1}/d_t over samples with d_t > 1e-9 (must be > 0).
  Weightings μ: uniform, a random fixed symmetric positive matrix, power (π_w+π_l)^γ, and the
  π-dependent SoftImportance (Eq. 24), γ = 1 — four, each on all instances (K = 3 and 5).
- ``spo-thm2-absorbing``: the same flows end within 1e-6 TV of π^α.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import metrics
from bandit_lab.checks import Check
from bandit_lab.core.data import PreferenceData, population
from bandit_lab.losses.spo import pref_per_triple, softmax_r_over_alpha, spo_pref
from bandit_lab.losses import LossInputs, expect
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.solvers.solver import solve_exact


def _alpha(rng, lo=0.1, hi=3.0) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def thm1_minimiser(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb = random_problem(rng)
        a = _alpha(rng)
        o = make_objective(pb, "spo_pref", {"alpha": a})
        target = softmax_r_over_alpha(pb.reward, a)
        for _s in range(4):
            init = jnp.asarray(rng.normal(0.0, 3.0, pb.pi_ref.shape))
            res = solve_exact(o, init=init)
            worst = max(worst, metrics.tv(res.policy, target, pb.context_weight))
    return worst


# ----------------------------------------------------------------------------- π-space field

MU_KINDS = ("uniform", "fixed", "power", "soft_importance")


def _field(p, alpha, gamma, weight, data, logp_ref, mu_fixed):
    """−∇_π L_pref^{α,μ} at π = p (one context, [1, K]); μ detached (Eq. 12)."""

    def loss(q):
        inp = LossInputs(jnp.log(jnp.maximum(q, 1e-300)), logp_ref, data)  # zero coordinates: zero velocity
        if weight == "fixed":
            return expect(data, mu_fixed * pref_per_triple(inp.logp, alpha))
        return spo_pref(inp, {"alpha": alpha, "gamma": gamma}, weight=weight)

    return -jax.grad(loss)(p)


def _tangent(v):
    return v - v.mean(-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def _grid_fn(weight: str):
    def cosines(P, alpha, gamma, w, logp_ref, mu_fixed, target):
        data = PreferenceData(w)

        def one(p):
            v = _tangent(_field(p[None], alpha, gamma, weight, data, logp_ref, mu_fixed))[0]
            e = target[0] - p
            return jnp.dot(v, e) / (jnp.linalg.norm(v) * jnp.linalg.norm(e))

        return jax.vmap(one)(P)

    return jax.jit(cosines)


def _simplex_grid(m: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(1, m), np.arange(1, m), indexing="ij")
    k = m - i - j
    keep = k >= 1
    return np.stack([i[keep], j[keep], k[keep]], -1) / m


def thm1_landscape(n: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    P = _simplex_grid(150)
    worst = np.inf
    for t in range(n):
        pb = random_problem(rng, k=3, contexts=1, preference="reward")
        a = 0.0 if t % 4 == 0 else _alpha(rng)
        target = softmax_r_over_alpha(pb.reward, a)
        far = np.linalg.norm(P - target, axis=-1) > 1e-9
        c = _grid_fn("uniform")(P, a, 0.0, population(pb).weight, np.log(pb.pi_ref), np.ones((1, 3, 3)), target)
        worst = min(worst, float(np.min(np.asarray(c)[far])))
    return worst


@functools.lru_cache(maxsize=None)
def _field_fn(weight: str):
    def f(p, alpha, gamma, w, logp_ref, mu_fixed):
        return _tangent(_field(p, alpha, gamma, weight, PreferenceData(w), logp_ref, mu_fixed))

    return jax.jit(f)


def field_np(p: np.ndarray, alpha: float, gamma: float, weight: str, W: np.ndarray, mu_fixed: np.ndarray | None = None) -> np.ndarray:
    """Plain-NumPy ``−∇_π L_pref^{α,μ}`` for one context (``p [K]``, ``W [K, K]`` data weights),
    written from SPO Eq. 12 with μ held fixed: ``−∂L/∂π(y) = (1/π(y)) [Σ_l D μ(y,l) e(y,l) −
    Σ_w D μ(w,y) e(w,y)]``, ``e(w,l) = π_l^α/(π_w^α + π_l^α)`` (= ½ at α = 0). Independent of
    the JAX loss (used for the flow, and the tests compare the two)."""
    lp = np.log(p)
    d = lp[:, None] - lp[None, :]
    e = 0.5 * (1.0 - np.tanh(0.5 * alpha * d))  # σ(−α d)
    if weight == "uniform":
        mu = 1.0
    elif weight == "fixed":
        mu = mu_fixed
    elif weight == "power":
        mu = np.exp(gamma * np.logaddexp(lp[:, None], lp[None, :]))  # (π_w + π_l)^γ
    elif weight == "soft_importance":
        z = gamma * np.logaddexp(lp[:, None], lp[None, :])
        mu = 1.0 / (1.0 + np.exp(-(z - np.sum(W * z))))
    else:
        raise ValueError(weight)
    g = W * mu * e
    add = np.add.reduce  # = ndarray.sum (numpy's _methods._sum calls it) without the Python wrapper: hot in the flows
    return (add(g, 1) - add(g, 0)) / p


def _flow(weight, p0, a, w, mu_fixed, target, t_end=1e4, n_eval=300, method="LSODA"):
    """Integrate π̇ = Π_T(−∇_π L^{α,μ}), α > 0. In the open simplex the projection of the
    velocity onto the simplex is the tangent projection, and the flow never leaves it
    (v(y) → +∞ as π(y) → 0). Stiff (curvature ~ 1/π²): rtol 1e-9, atol 1e-14; distances to π^α
    at log-spaced times.

    ``method``: ``"LSODA"`` (default; ODEPACK's LSODA through :func:`scipy.integrate.odeint`, which
    switches between Adams and BDF as the flow stiffens; its step loop is compiled Fortran) or
    ``"Radau"`` (SciPy's implicit Radau IIA, ``solve_ivp``: the independent cross-check, whose
    step loop is Python — 7.7× the CPU time over the check's 80 flows, issue 22). The two agree
    to the tolerance (``tests/test_spo.py``); the check's value, 1 − d_{t+1}/d_t, agreed to
    6e-16 at ``--seed 0`` (docs/performance.md)."""
    W = np.asarray(w)[0]
    mf = None if mu_fixed is None else np.asarray(mu_fixed)[0]

    def v(y):
        f = field_np(y, a, 1.0, weight, W, mf)
        return f - np.add.reduce(f) / f.size  # = f − f.mean() to the bit (np.mean is this sum over the count), without its overhead

    ts = np.concatenate([[0.0], np.geomspace(1e-4, t_end, n_eval)])
    if method == "LSODA":
        from scipy.integrate import odeint

        P, info = odeint(lambda y, t: v(y), p0[0], ts, rtol=1e-9, atol=1e-14, mxstep=100_000, full_output=True)
        if info["message"] != "Integration successful.":  # LSODA gave up: no distances, so the check fails (NaN), never passes
            P = np.full((ts.size, np.size(p0[0])), np.nan)
    elif method == "Radau":
        from scipy.integrate import solve_ivp

        P = solve_ivp(lambda t, y: v(y), (0.0, t_end), p0[0], method="Radau", t_eval=ts, rtol=1e-9, atol=1e-14).y.T
    else:
        raise ValueError(f"method: 'LSODA' or 'Radau', got {method!r}")
    return np.linalg.norm(P - target[0], axis=-1), P[-1][None]


@functools.lru_cache(maxsize=4)
def _flows(n: int, seed: int) -> tuple:
    """(distances along the flow, final TV) for every instance × weighting (cached: two checks)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        k = 3 if t % 2 == 0 else 5
        pb = random_problem(rng, k=k, contexts=1, preference="reward", pairs=str(rng.choice(["uniform", "reference"])))
        a = _alpha(rng, 0.2, 3.0)
        target = softmax_r_over_alpha(pb.reward, a)
        m = rng.uniform(0.2, 2.0, (k, k))
        mu_fixed = (m + m.T)[None]
        p0 = dirichlet(rng, (1, k), floor=0.05)
        for weight in MU_KINDS:
            d, p = _flow(weight, p0, a, np.asarray(population(pb).weight), mu_fixed, target)
            out.append((d, float(metrics.tv(p, target))))
    return tuple(out)


def borda_fixed_point(weight: np.ndarray) -> np.ndarray:
    """Where the projected flow of L_pref^0 (Eq. 9, μ = 1) stops: ``π ∝ max(c, 0)`` with the net
    score ``c(y) = Σ_y' D(y, y') − D(y', y)``. Derivation: ``−∂L^0/∂π(y) = c(y)/(2π(y))``; on the
    face where exactly the responses with ``c > 0`` live, the tangent field vanishes iff
    ``c(y)/π(y)`` is constant, and the velocity of every dead response (``c < 0``) is −∞ (it
    stays dead) — a KKT point of the flow. It is the argmax vertex only when a single response
    has a positive net score."""
    W = np.asarray(weight)
    c = (W - np.swapaxes(W, -1, -2)).sum(-1)
    cp = np.maximum(c, 0.0)
    return cp / cp.sum(-1, keepdims=True)


@functools.lru_cache(maxsize=None)
def _alpha0_flow_fn(steps: int, eta: float):
    import optax

    fn = _field_fn("uniform")

    def flow(p0, w, logp_ref):
        def step(p, _):
            v = fn(p, 0.0, 0.0, w, logp_ref, jnp.ones_like(w))
            return jax.vmap(optax.projections.projection_simplex)(p + eta * v), None

        p, _ = jax.lax.scan(step, p0, None, length=steps)
        return p

    return jax.jit(flow)


def alpha0_flow(n: int, seed: int, *, return_details: bool = False):
    """Largest TV between the end of the α = 0 projected flow (Euler, step 0.01, 20 000 steps)
    and :func:`borda_fixed_point` — *not* the argmax vertex of SPO Thm 1."""
    rng = np.random.default_rng(seed)
    worst, details = 0.0, []
    for _ in range(n):
        pb = random_problem(rng, k=3, contexts=1, preference="reward", pairs=str(rng.choice(["uniform", "reference"])))
        w = np.asarray(population(pb).weight)
        p0 = dirichlet(rng, (1, 3), floor=0.05)
        p = np.asarray(_alpha0_flow_fn(20000, 0.01)(p0, w, np.log(pb.pi_ref)))
        pred = borda_fixed_point(w)
        worst = max(worst, float(metrics.tv(p, pred)))
        details.append((p, pred, softmax_r_over_alpha(pb.reward, 0.0)))
    return (worst, details) if return_details else worst


RATE_KS = (3, 4, 5, 6, 8)


def alpha0_off_argmax_count(k: int, n: int, seed: int, pairs: str) -> int:
    """Number of ``n`` random bandits (one context each; the distribution of
    ``random_problem(k=k, contexts=1, preference="reward", pairs=pairs)``: π_ref from
    ``dirichlet``, r ~ N(0, 1.5²) i.i.d.) on which the α = 0 flow stops off the argmax vertex, i.e.
    ≥ 2 responses have a positive net score (:func:`borda_fixed_point`). Drawn as one problem with
    ``n`` contexts (same per-context law, one vectorised pass)."""
    from bandit_lab.core.problems import Problem

    rng = np.random.default_rng(seed)
    ref = dirichlet(rng, (n, k))
    r = rng.normal(0.0, 1.5, (n, k))
    pb = Problem.create(ref, reward=r, pairs=pairs, context_weight=np.full(n, 1.0 / n))
    W = np.asarray(population(pb).weight)
    c = (W - np.swapaxes(W, -1, -2)).sum(-1)
    return int(np.sum(np.sum(c > 0, axis=-1) >= 2))


def alpha0_rate(n: int, seed: int) -> float:
    """``n × 250`` bandits per pair law and K (10 000 per K at n = 20): two-sided binomial p-value
    of the K = 3 count under rate ½, or 0 when the rate does not rise strictly with K."""
    from scipy import stats

    m = n * 250
    counts = [sum(alpha0_off_argmax_count(k, m, seed + 7919 * i + 104729 * j, pl) for i, pl in enumerate(("uniform", "reference")))
              for j, k in enumerate(RATE_KS)]
    if not all(a < b for a, b in zip(counts, counts[1:])):
        return 0.0
    return float(stats.binomtest(counts[0], 2 * m, 0.5).pvalue)


def thm2_monotone(n: int, seed: int) -> float:
    """Smallest relative decrease ``1 − d_{t+1}/d_t`` of the distance to π^α between consecutive
    sampled times (while d_t > 1e-9): must stay positive."""
    worst = np.inf
    for d, _ in _flows(n, seed):
        live = d[:-1] > 1e-9
        if live.any():
            worst = min(worst, float(np.min(1.0 - d[1:][live] / d[:-1][live])))
    return worst


def thm2_absorbing(n: int, seed: int) -> float:
    worst = 0.0
    for _, tv in _flows(n, seed):
        worst = max(worst, tv)
    return worst


CHECKS = [
    Check("spo-thm1-minimiser", "exact minimiser of L_pref^α from 4 random starts = softmax(r/α) (SPO Thm 1, Eq. 8)", 1e-6, thm1_minimiser),
    Check("spo-thm1-landscape", "K=3 grid: projected −∇L_pref^α points at softmax(r/α) (argmax at α=0) everywhere: min cos (SPO Thm 1)",
          1e-6, thm1_landscape, direction="≥"),
    Check("spo-thm2-flow", "projected flow of L^{α,μ}, 4 symmetric μ incl. SoftImportance: min 1 − d_{t+1}/d_t to softmax(r/α) (SPO Thm 2)",
          1e-12, thm2_monotone, direction="≥"),
    Check("spo-alpha0-borda", "finding: α=0 (Eq. 9) projected flow stops at π ∝ max(c,0), c = net score, not at argmax r (cf. SPO Thm 1)",
          1e-8, alpha0_flow),
    Check("spo-alpha0-rate", "α=0 flow ends off the argmax on a fraction of random bandits exactly ½ at K=3 (r→−r symmetry), rising with K: binomial p of the K=3 count under ½",
          1e-3, alpha0_rate, direction="≥"),
    Check("spo-thm2-absorbing", "the same flows end within TV 1e-6 of softmax(r/α), α>0 (SPO Thm 2, globally absorbing)", 1e-6, thm2_absorbing),
]
