"""Kong et al. theorem checks (App. C: Prop. 3.1; App. D: Prop. 3.2; App. A.2: Prop. A.1).

Every check draws random float64 instances from a seed and compares the core losses / the exact
optimum of a constrained problem with an independent reference (a closed form, ``metrics.kl``,
a second solver). Findings about the printed equations are in ``docs/kong-a.md``:

- Eq. 48 (the ratio constraint is active) and Eq. 53 (IPO's constrained ratio π₁/π₃) hold;
- Eq. 49 (RLHF's constrained ratio) as printed (a square root of π*₁π*₂k, k = π*₂/π*₁ + ε) does
  not hold; the KKT system Eq. 43–47 it comes from gives
  ``π₁/π₃ = (π*₁/π*₃)^{1/(1+k)} · (π*₂/(k·π*₃))^{k/(1+k)}`` — checked here;
- Prop. 3.2 is an existence claim ("we can have ≠") and it holds: the constrained optima differ
  for every k ≠ 1. What fails is the *last step of its proof*: at ε = 1 − π*₂/π*₁ (k = 1) the two
  constrained optima coincide exactly, so App. D's final "comparing (49) and (53)" does not show
  ≠ for every ε of the construction (Eq. 40) — it needs k ≠ 1;
- Prop. A.1 read literally is vacuous: Eq. 25 only asks for *some* level ℓ̄, and any
  ℓ̄ ≤ inf ℓ_η makes the sublevel set empty. Its content is a level ℓ̄ > inf ℓ_η, and that needs
  three conditions the statement does not give: (i) Eq. 24's monotonicity reversed — η
  *decreasing* in π(y_w) and increasing in π(y_l) (as printed, the infimum sits at π(y_w) = 0,
  where DPO = +∞, contradicting footnote 5's "optimal policy π(y_w) = 1"); (ii) strictly (a
  flat-bottomed η, a hinge, breaks it); (iii) a starting policy that is not already DPO-optimal
  (π⁽⁰⁾(y_l|x) > 0; the paper's "ℓ_η(π⁽⁰⁾) > arg min ℓ_η", read as > min, does not exclude
  π⁽⁰⁾(y_l|x) = 0, where DPO(π⁽⁰⁾) = 0 = inf DPO and no policy does better). The checks draw
  π⁽⁰⁾ in the open simplex (every prompt not DPO-optimal, which the level construction of
  :func:`a1_level` uses) and assert ℓ̄ > inf ℓ_η; tests/test_kong_a.py shows each condition failing.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from bandit_lab.core import metrics
from bandit_lab.checks import Check
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import ipo_optimum
from bandit_lab.core.params import Simplex
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet

N_POLICIES = 8  # random π_θ per instance at which an identity is evaluated


# ----------------------------------------------------------------------------- Prop. 3.1 (App. C)

def _prop31_instance(rng, k: int = 2):
    """App. C's assumptions: uniform π_ref over the responses (K = 2), pairs from π_ref⊗π_ref
    (uniform over distinct pairs; ties only add a constant), BT preferences of a random interior
    π*, β = 1; 1 or 3 contexts with random weights."""
    X = int(rng.choice([1, 3]))
    pb = Problem.create(np.full((X, k), 1.0 / k), pi_star=dirichlet(rng, (X, k)), pairs="uniform",
                        context_weight=rng.dirichlet(np.ones(X)))
    return pb, make_objective(pb, "dpo", {"beta": 1.0})


_JIT: dict = {}


def _cached(key, make):
    """One compile per objective *signature* (the problem's arrays are passed as arguments)."""
    if key not in _JIT:
        _JIT[key] = make()
    return _JIT[key]


def _values(obj, policies: np.ndarray) -> np.ndarray:
    f = _cached(("values", obj.signature()),
                lambda: jax.jit(jax.vmap(lambda lp, hp, c: obj.value(lp, hp, consts=c), in_axes=(0, None, None))))
    hp = {k: jnp.asarray(v) for k, v in obj.hp.items()}
    return np.asarray(f(jnp.log(jnp.asarray(policies)), hp, obj.consts()))  # softmax logits = log π


def prop31_dpo_forward_kl(n: int, seed: int) -> float:
    """max |DPO(π) − [Σ_x ρ_x KL(π*‖π) + H(π*)]| over random π (App. C Eq. 37–38: the constant
    is the entropy of π*, so the difference does not depend on π)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb, o = _prop31_instance(rng)
        P = np.stack([dirichlet(rng, pb.pi_ref.shape) for _ in range(N_POLICIES)])
        d = _values(o, P) - np.array([metrics.kl(pb.pi_star, p, pb.context_weight) for p in P])
        worst = max(worst, float(np.max(np.abs(d - metrics.entropy(pb.pi_star, pb.context_weight)))))
    return worst


def prop31_rlhf_reverse_kl(n: int, seed: int) -> float:
    """max |RLHF(π; r = log π*) − [Σ_x ρ_x KL(π‖π*) + log K]| (App. C Eq. 32–36, uniform π_ref, β = 1)."""
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        pb, o = _prop31_instance(rng)
        c = o.counterpart()
        P = np.stack([dirichlet(rng, pb.pi_ref.shape) for _ in range(N_POLICIES)])
        d = _values(c, P) - np.array([metrics.kl(p, pb.pi_star, pb.context_weight) for p in P])
        worst = max(worst, float(np.max(np.abs(d - np.log(pb.n_responses)))))
    return worst


def prop31_needs_two_responses(n: int, seed: int) -> float:
    """The DPO identity is specific to App. C's two responses: with K = 3 (uniform π_ref, β = 1)
    DPO(π) − KL(π*‖π) varies with π. Returns the smallest spread over instances (must be > 0)."""
    rng = np.random.default_rng(seed)
    smallest = np.inf
    for _ in range(n):
        pb, o = _prop31_instance(rng, k=3)
        P = np.stack([dirichlet(rng, pb.pi_ref.shape) for _ in range(N_POLICIES)])
        d = _values(o, P) - np.array([metrics.kl(pb.pi_star, p, pb.context_weight) for p in P])
        smallest = min(smallest, float(d.max() - d.min()))
    return smallest


# ----------------------------------------------------------------------------- Prop. 3.2 (App. D)

def eq49_corrected(ps: np.ndarray, k: float) -> float:
    """π₁/π₃ of min KL(π‖π*) s.t. π₂ = k·π₁ (KKT Eq. 43–47 solved): (π*₁/π*₃)^{1/(1+k)}(π*₂/(kπ*₃))^{k/(1+k)}."""
    return float((ps[0] / ps[2]) ** (1.0 / (1.0 + k)) * (ps[1] / (k * ps[2])) ** (k / (1.0 + k)))


def eq49_as_printed(ps: np.ndarray, k: float) -> float:
    """Eq. 49 as legible in the paper: ((k + 1)/π*₁)·sqrt(π*₁·π*₂·k). Does not hold (see module doc)."""
    return float((k + 1.0) / ps[0] * np.sqrt(ps[0] * ps[1] * k))


def eq53(P: np.ndarray, k: float) -> float:
    """π₁/π₃ of constrained IPO (Eq. 53, λ = 1): k^{−½}·exp((P₁ + P₂ − 2P₃)/2), P_i = p*(y_i ≻ μ)."""
    return float(k ** -0.5 * np.exp(0.5 * (P[0] + P[1] - 2.0 * P[2])))


def _prop32_instance(rng, k_one: bool = False):
    """App. D: three responses, uniform π_ref = μ, β = 1, preferences in (0, 1) (BT from a random
    π*, or a random — generally intransitive — matrix); constraint π₂/π₁ ≥ π*₂/π*₁ + ε with π* the
    common unconstrained optimum softmax(r_IPO) and ε ∈ [0.1, 1]."""
    ref = np.full(3, 1.0 / 3)
    if rng.random() < 0.5:
        pb = Problem.create(ref, pi_star=dirichlet(rng, (3,)), pairs="uniform")
    else:
        a = rng.uniform(0.05, 0.95, (3, 3))
        m = np.triu(a, 1)
        m = m + (1 - m).T * np.tril(np.ones((3, 3)), -1)
        np.fill_diagonal(m, 0.5)
        pb = Problem.create(ref, matrix=m, pairs="uniform")
    ipo = make_objective(pb, "ipo", {"beta": 1.0})
    ps = ipo_optimum(pb, 1.0)[0]
    if k_one:  # ε = 1 − π*₂/π*₁ (> 0 needs π*₁ > π*₂: relabel y₁ ↔ y₂ otherwise) ⇒ k = 1
        if ps[1] >= ps[0]:
            perm = [1, 0, 2]
            pb = Problem.create(ref, matrix=pb.pref[0][np.ix_(perm, perm)], pairs="uniform")
            ipo = make_objective(pb, "ipo", {"beta": 1.0})
            ps = ipo_optimum(pb, 1.0)[0]
        return pb, ipo, ipo.counterpart(), ps, 1.0
    k = ps[1] / ps[0] + float(rng.uniform(0.1, 1.0))
    return pb, ipo, ipo.counterpart(), ps, k


def _face_optimum(obj, k: float) -> np.ndarray:
    """Minimiser on the face π₂ = k·π₁ (π = [t, kt, 1 − (1+k)t]): root of d/dt of the core
    objective by Brent (the objective is convex along the face: KL in π, IPO's quadratic in
    log-ratios, so the stationary point is the minimiser)."""
    def pol(t, k):
        return jnp.stack([t, k * t, 1.0 - (1.0 + k) * t])[None]

    dfdt = _cached(("face", obj.signature()),
                   lambda: jax.jit(jax.grad(lambda t, k, hp, c: obj.value(jnp.log(pol(t, k)), hp, consts=c))))
    hp = {kk: jnp.asarray(v) for kk, v in obj.hp.items()}
    c = obj.consts()
    tmax = 1.0 / (1.0 + k)
    t = optimize.brentq(lambda t: float(dfdt(t, k, hp, c)), 1e-12 * tmax, tmax * (1 - 1e-12), xtol=1e-300, rtol=1e-15, maxiter=500)
    return np.asarray(pol(t, k))[0]


def _simplex_optimum(obj, k: float) -> np.ndarray:
    """Second, independent solver: SLSQP over the whole simplex with the *inequality*
    π₂ − kπ₁ ≥ 0 (no assumption that it is active), on the same core objective."""
    pb = obj.problem
    o = make_objective(pb, obj.loss.name, {**{kk: v for kk, v in obj.hp.items() if kk != "weight_decay"}, **obj.static}, param=Simplex(pb))
    vg0 = _cached(("slsqp", o.signature()),
                  lambda: jax.jit(jax.value_and_grad(lambda p, hp, c: o.value(p.reshape(1, 3), hp, consts=c))))
    hp = {kk: jnp.asarray(v) for kk, v in o.hp.items()}
    cs = o.consts()
    vg = lambda p: vg0(jnp.asarray(p), hp, cs)  # noqa: E731
    f = lambda p: float(vg(p)[0])  # noqa: E731
    g = lambda p: np.asarray(vg(p)[1])  # noqa: E731
    cons = [{"type": "eq", "fun": lambda p: p.sum() - 1.0, "jac": lambda p: np.ones(3)},
            {"type": "ineq", "fun": lambda p: p[1] - k * p[0], "jac": lambda p: np.array([-k, 1.0, 0.0])}]
    res = optimize.minimize(f, np.array([0.2, 0.5, 0.3]), jac=g, method="SLSQP", bounds=[(1e-9, 1.0)] * 3,
                            constraints=cons, options={"maxiter": 1000, "ftol": 1e-15})
    return res.x / res.x.sum()


def _prop32(n: int, seed: int, k_one: bool = False):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        pb, ipo, rlhf, ps, k = _prop32_instance(rng, k_one)
        yield pb, ps, k, _face_optimum(ipo, k), _face_optimum(rlhf, k), ipo, rlhf


def prop32_ipo_eq53(n: int, seed: int) -> float:
    """max relative error of constrained IPO's π₁/π₃ (exact, on the active face) vs Eq. 53."""
    worst = 0.0
    for pb, ps, k, pi_ipo, _, _, _ in _prop32(n, seed):
        P = pb.r_ipo[0]  # p*(y ≻ μ) with μ = π_ref uniform
        worst = max(worst, abs(pi_ipo[0] / pi_ipo[2] / eq53(P, k) - 1.0))
    return worst


def prop32_rlhf_eq49(n: int, seed: int) -> float:
    """max relative error of constrained RLHF(r_IPO)'s π₁/π₃ (exact, active face) vs the
    corrected Eq. 49 (module docstring)."""
    worst = 0.0
    for pb, ps, k, _, pi_rl, _, _ in _prop32(n, seed):
        worst = max(worst, abs(pi_rl[0] / pi_rl[2] / eq49_corrected(ps, k) - 1.0))
    return worst


def prop32_active(n: int, seed: int) -> float:
    """Eq. 48 (the ratio constraint is active for both): max TV between the face solutions and a
    full-simplex SLSQP solve with the inequality constraint, for IPO and RLHF(r_IPO)."""
    worst = 0.0
    for _, _, k, pi_ipo, pi_rl, ipo, rlhf in _prop32(n, seed):
        worst = max(worst, metrics.tv(_simplex_optimum(ipo, k), pi_ipo), metrics.tv(_simplex_optimum(rlhf, k), pi_rl))
    return float(worst)


def prop32_differ(n: int, seed: int) -> float:
    """Prop. 3.2: smallest |log(ρ_RLHF/ρ_IPO)| / |log k| over instances, ρ = π₁/π₃ of the exact
    constrained optima (face solves accurate to ~1e-15). The separation is proportional to
    |log k|: at uniform π* ρ is ``k^{−½}`` (IPO) vs ``k^{−k/(1+k)}`` (RLHF), and in general both
    closed forms (Eq. 53, corrected Eq. 49) agree at k = 1 — see :func:`prop32_coincide_at_k1`."""
    return float(min(abs(np.log((b[0] / b[2]) / (a[0] / a[2]))) / abs(np.log(k)) for _, _, k, a, b, _, _ in _prop32(n, seed)))


def prop32_coincide_at_k1(n: int, seed: int) -> float:
    """Counterexample to the last step of App. D's proof ("comparing (49) and (53)"), not to
    Prop. 3.2 (which only claims that the optima *can* differ, and they do for k ≠ 1,
    :func:`prop32_differ`): with ε = 1 − π*₂/π*₁ (k = 1) the constrained IPO and RLHF(r_IPO)
    optima are *equal* — both give π₁/π₃ = √(π*₁π*₂)/π*₃, because π* = softmax(P) makes
    exp((P₁+P₂−2P₃)/2) = √(π*₁π*₂)/π*₃. Returns the largest TV."""
    return float(max(metrics.tv(a, b) for _, _, _, a, b, _, _ in _prop32(n, seed, k_one=True)))


# ----------------------------------------------------------------------------- Prop. A.1 (App. A.2)

def _eta_family(rng):
    """A random η(u, v) (u = π(y_w), v = π(y_l)), continuous, strictly *decreasing* in u and
    strictly increasing in v on (0, 1] × [0, 1], so its infimum is η(1, 0) (Eq. 24 with the
    monotonicity that footnote 5's proof uses)."""
    kind = int(rng.integers(4))
    if kind == 0:  # SimPO-like: −log σ(a·log(u/v) − m)
        a, m = rng.uniform(0.5, 3.0), rng.uniform(-1.0, 1.0)
        return lambda u, v: np.logaddexp(0.0, -(a * (np.log(u) - np.log(np.maximum(v, 1e-300))) - m))
    if kind == 1:  # −u^p + v^q
        p, q = rng.uniform(0.3, 3.0, 2)
        return lambda u, v: -(u**p) + v**q
    if kind == 2:  # squared error to (1, 0)
        return lambda u, v: (1.0 - u) ** 2 + v**2
    b = rng.uniform(0.1, 5.0)  # cross-entropy on y_w plus a linear penalty on y_l
    return lambda u, v: -np.log(u) + b * v


def _a1_instance(rng):
    """Single labelled pair per prompt (footnote 4: p(y_w ≻ y_l | x) = 1), random π_ref > 0, β,
    context weights, initial policy π⁽⁰⁾ and η."""
    X = int(rng.choice([1, 3, 5]))
    K = int(rng.choice([2, 3, 5]))
    ref = dirichlet(rng, (X, K))
    pi0 = dirichlet(rng, (X, K))
    rho = rng.dirichlet(np.ones(X))
    w = np.array([rng.choice(K, 2, replace=False) for _ in range(X)])
    W = np.zeros((X, K, K))
    W[np.arange(X), w[:, 0], w[:, 1]] = rho
    beta = float(np.exp(rng.uniform(np.log(0.2), np.log(3.0))))
    return ref, pi0, rho, w, W, beta, _eta_family(rng)


def a1_level(pi0, rho, w, eta) -> tuple[float, float]:
    """(ℓ̄, inf ℓ_η). DPO depends on context x only through c = π(y_l)/π(y_w), so DPO(π) <
    DPO(π⁽⁰⁾) whenever every c_x < c⁽⁰⁾_x. Per context ℓ̄_x = min η on {v ≥ c⁽⁰⁾_x u} (attained
    on the ray v = c⁽⁰⁾_x u, by monotonicity) and ``ℓ̄ = inf ℓ_η + min_x ρ_x(ℓ̄_x − η(1, 0))``:
    ℓ_η(π) < ℓ̄ forces η_x(π) − η(1, 0) < ℓ̄_x − η(1, 0) in every context, hence c_x < c⁽⁰⁾_x."""
    X = len(rho)
    inf = float(np.sum(rho * eta(1.0, 0.0)))
    slack = np.inf
    for x in range(X):
        u0, v0 = pi0[x, w[x, 0]], pi0[x, w[x, 1]]
        c = v0 / u0
        umax = 1.0 / (1.0 + c)
        grid = np.linspace(umax * 1e-6, umax, 2001)
        j = int(np.argmin(eta(grid, c * grid)))
        lo, hi = grid[max(j - 1, 0)], grid[min(j + 1, grid.size - 1)]
        r = optimize.minimize_scalar(lambda u: float(eta(u, c * u)), bounds=(lo, hi), method="bounded", options={"xatol": 1e-14})
        lbar_x = min(float(r.fun), float(eta(grid[j], c * grid[j])))
        slack = min(slack, rho[x] * (lbar_x - float(eta(1.0, 0.0))))
    return inf + slack, inf


def dpo_np(P: np.ndarray, ref: np.ndarray, rho: np.ndarray, w: np.ndarray, beta: float) -> np.ndarray:
    """Plain-NumPy DPO on one labelled pair per context (Kong Eq. 6), for a batch ``P [S, X, K]``:
    ``Σ_x ρ_x log(1 + exp(−β·(log(π_w/ref_w) − log(π_l/ref_l))))``. (The tests hold it to the
    core :func:`bandit_lab.losses.dpo`.)"""
    X = len(rho)
    hw = np.log(P[..., np.arange(X), w[:, 0]]) - np.log(ref[np.arange(X), w[:, 0]])
    hl = np.log(P[..., np.arange(X), w[:, 1]]) - np.log(ref[np.arange(X), w[:, 1]])
    return np.sum(rho * np.logaddexp(0.0, -beta * (hw - hl)), axis=-1)


def propA1_level(n: int, seed: int) -> float:
    """Smallest (ℓ̄ − inf ℓ_η)/(ℓ_η(π⁽⁰⁾) − inf ℓ_η) over instances: > 0 means a level *above the
    infimum* (so the sublevel set is not empty and Eq. 25 is not vacuous) and below the initial
    η-loss exists under which every policy has a lower DPO loss (Prop. A.1, Eq. 25), for η
    continuous and strictly decreasing in π(y_w), strictly increasing in π(y_l) (Eq. 24 reversed)
    and π⁽⁰⁾ in the open simplex (not DPO-optimal in any prompt)."""
    rng = np.random.default_rng(seed)
    smallest = np.inf
    for _ in range(n):
        ref, pi0, rho, w, W, beta, eta = _a1_instance(rng)
        lbar, inf = a1_level(pi0, rho, w, eta)
        l0 = float(np.sum(rho * eta(pi0[np.arange(len(rho)), w[:, 0]], pi0[np.arange(len(rho)), w[:, 1]])))
        smallest = min(smallest, (lbar - inf) / (l0 - inf))
    return float(smallest)


def propA1_sublevel(n: int, seed: int, n_samples: int = 4000) -> float:
    """Same conditions as :func:`propA1_level`. max over instances and over random policies π
    with ℓ_η(π) < ℓ̄ of DPO(π) − DPO(π⁽⁰⁾)
    (plain-NumPy DPO, :func:`dpo_np`): must be < 0. Policies are drawn close to the joint optimum (mass 1 − 10^−U
    on y_w, U ~ U(0.5, 10) per context) and kept if they lie in the sublevel set."""
    rng = np.random.default_rng(seed)
    worst = -np.inf
    for _ in range(n):
        ref, pi0, rho, w, W, beta, eta = _a1_instance(rng)
        X, K = ref.shape
        lbar, _ = a1_level(pi0, rho, w, eta)
        Q = rng.dirichlet(np.ones(K), size=(n_samples, X))
        s = 1.0 - 10.0 ** (-rng.uniform(0.5, 10.0, (n_samples, X, 1)))
        onehot = np.zeros((X, K))
        onehot[np.arange(X), w[:, 0]] = 1.0
        P = (1.0 - s) * Q + s * onehot
        u = P[:, np.arange(X), w[:, 0]]
        v = P[:, np.arange(X), w[:, 1]]
        keep = np.sum(rho * eta(u, v), axis=1) < lbar
        if not keep.any():
            return np.inf  # no policy drawn from the sublevel set: the check cannot vouch
        d0 = float(dpo_np(pi0, ref, rho, w, beta))
        worst = max(worst, float(np.max(dpo_np(P[keep], ref, rho, w, beta))) - d0)
    return worst


CHECKS = [
    Check("kong-prop31-dpo-fkl", "App. C (Prop. 3.1): K=2, uniform π_ref, β=1 ⇒ DPO(π) = KL(π*‖π) + H(π*) for every π (Eq. 37–38)", 1e-12, prop31_dpo_forward_kl),
    Check("kong-prop31-rlhf-rkl", "App. C (Prop. 3.1): uniform π_ref, β=1 ⇒ RLHF(π; log π*) = KL(π‖π*) + log K for every π (Eq. 32–36)", 1e-12, prop31_rlhf_reverse_kl),
    Check("kong-prop31-needs-k2", "App. C: with K=3 DPO − KL(π*‖π) varies with π (the identity needs two responses): smallest spread", 1e-3, prop31_needs_two_responses, direction="≥"),
    Check("kong-prop32-active", "App. D Eq. 48: the ratio constraint π₂/π₁ ≥ π*₂/π*₁+ε is active for IPO and RLHF(r_IPO) (SLSQP on the simplex vs exact face solve, TV)", 1e-6, prop32_active),
    Check("kong-prop32-ipo-eq53", "App. D Eq. 53: constrained IPO ratio π₁/π₃ = k^{-1/2}·exp((P₁+P₂−2P₃)/2) (relative error)", 1e-9, prop32_ipo_eq53),
    Check("kong-prop32-rlhf-eq49", "App. D Eq. 49 (corrected; the printed form fails): constrained RLHF(r_IPO) π₁/π₃ = (π*₁/π*₃)^{1/(1+k)}(π*₂/kπ*₃)^{k/(1+k)}", 1e-9, prop32_rlhf_eq49),
    Check("kong-prop32-differ", "Prop. 3.2 (Eq. 12, an existence claim) holds: constrained IPO ≠ RLHF(r_IPO) optimum for k = π*₂/π*₁+ε ≠ 1 (random ε): min |log(ρ_RLHF/ρ_IPO)|/|log k|, ρ = π₁/π₃",
          1e-3, prop32_differ, direction="≥"),
    Check("kong-prop32-k1-equal", "Prop. 3.2's proof, last step (App. D, 49 vs 53) fails at k = 1 (ε = 1 − π*₂/π*₁): the constrained optima coincide (max TV); the proposition still holds",
          1e-12, prop32_coincide_at_k1),
    Check("kong-propA1-level", "Prop. A.1 non-vacuous (ℓ̄ > inf ℓ_η) needs Eq. 24 reversed and strict (η ↓ in π(y_w), ↑ in π(y_l)), π⁽⁰⁾ not DPO-optimal: such ℓ̄ exists (relative margin)",
          1e-6, propA1_level, direction="≥"),
    Check("kong-propA1-sublevel", "Prop. A.1 (same conditions): every sampled π with ℓ_η(π) < ℓ̄ has DPO(π) < DPO(π⁽⁰⁾): max DPO(π) − DPO(π⁽⁰⁾) ≤ 0", 0.0, propA1_sublevel),
]
