"""The practical loss zoo and the fixed-points table, against independent references:
plain-Python per-triple formulas (values), central finite differences of those (gradients), closed
forms and a linear programme (optima), and Adam vs the exact solver (training)."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bandit_lab import fixed_points as fp
from bandit_lab import losses
from bandit_lab.core import metrics
from bandit_lab.core.data import PreferenceData
from bandit_lab.errors import BanditError
from bandit_lab.losses import LossInputs
from bandit_lab.losses import zoo
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum, softmax_np
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.runner import train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.core.train import TrainConfig

ZOO = ["hinge", "cdpo", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "apo_zero", "apo_down",
       "discopop", "simpo", "cpo", "orpo", "kto", "eta_sigmoid", "eta_linear",
       # added with TRL conformance (issue 10)
       "apo_zero_unpaired", "sft", "alphapo", "chipo", "dpop", "caldpo"]


# --------------------------------------------------------------------------- plain-Python reference

def _softplus(u):
    return max(u, 0.0) + math.log1p(math.exp(-abs(u)))


def _sig(u):
    return 1.0 / (1.0 + math.exp(-u)) if u >= 0 else math.exp(u) / (1.0 + math.exp(u))


def _triple(name, hp, hw, hl, lw, ll, pw, pl, stat):
    """One triple's loss, written from the papers' formulas (see zoo docstrings)."""
    b = hp.get("beta", 1.0)
    u = b * (hw - hl)
    if name == "hinge":
        return max(0.0, 1.0 - u)
    if name == "cdpo":
        e = hp["label_smoothing"]
        return -(1 - e) * math.log(_sig(u)) - e * math.log(_sig(-u))
    if name == "robust":
        e = hp["label_smoothing"]
        return (-(1 - e) * math.log(_sig(u)) + e * math.log(_sig(-u))) / (1 - 2 * e)
    if name == "exo_pair":
        e = hp["label_smoothing"]
        q = _sig(u)
        return q * (math.log(q) - math.log(1 - e)) + (1 - q) * (math.log(1 - q) - math.log(e))
    if name == "discopop":
        m = _sig(u / hp["tau"])
        return (1 - m) * -math.log(_sig(u)) + m * math.exp(-u)
    if name == "nca_pair":
        return -math.log(_sig(b * hw)) - 0.5 * math.log(_sig(-b * hw)) - 0.5 * math.log(_sig(-b * hl))
    if name == "bco_pair":
        return -math.log(_sig(b * hw - stat)) - math.log(_sig(-(b * hl - stat)))
    if name == "sppo_hard":
        return (hw - 0.5 / b) ** 2 + (hl + 0.5 / b) ** 2
    if name == "apo_zero":
        return (1 - _sig(b * hw)) + _sig(b * hl)
    if name == "apo_down":
        return _sig(b * hw) + (1 - _sig(b * (hw - hl)))
    if name in ("simpo", "cpo", "alphapo"):
        # TRL CPOTrainer.cpo_loss: reward log π, or AlphaPO's (1 − π^−α)/α; + cpo_alpha·NLL(y_w)
        a = hp.get("alpha", 0.0)
        r = (lambda lp: lp) if a == 0 else (lambda lp: (1 - math.exp(-a * lp)) / a)
        u = r(lw) - r(ll)
        e = hp.get("label_smoothing", 0.0)
        kind = "sigmoid" if name == "cpo" else "simpo"
        m = b * u - (hp["gamma"] if kind == "simpo" else 0.0)
        return (1 - e) * _softplus(-m) + e * _softplus(m) - hp["cpo_alpha"] * lw
    if name == "orpo":
        odds = lambda p: p / (1 - p)  # noqa: E731
        return -lw - hp["lam"] * math.log(_sig(math.log(odds(pw)) - math.log(odds(pl))))
    if name == "kto":
        # TRL's reduction (default): the mean over the 2 examples of a pair
        return 0.5 * (hp["desirable_weight"] * (1 - _sig(b * (hw - stat))) + hp["undesirable_weight"] * (1 - _sig(b * (stat - hl))))
    if name == "eta_sigmoid":
        return -math.log(_sig(b * (pw - pl)))
    if name == "eta_linear":
        return pl - pw
    if name == "apo_zero_unpaired":  # TRL KTOTrainer: mean over the two unpaired examples
        return 0.5 * (hp["desirable_weight"] * (1 - _sig(b * hw)) + hp["undesirable_weight"] * _sig(b * hl))
    if name == "sft":
        return -lw
    if name == "chipo":  # Huang et al. 2024: φ(z) = z + log z, margin clipped at ±2R
        phi = lambda h: math.exp(h) + h  # noqa: E731
        m = b * (phi(hw) - phi(hl))
        R = 2 * hp["r_max"]
        return _softplus(-min(max(m, -R), R))
    if name == "dpop":  # Pal et al. 2024
        return _softplus(-b * (hw - hl - hp["lam"] * max(0.0, -hw)))
    if name == "caldpo":  # Xiao et al. 2024
        c = 0.5 / b
        return _softplus(-(hw - hl)) + (hw - c) ** 2 + (hl + c) ** 2
    raise KeyError(name)


def _stat(name, hp, logp, logp_ref, W, rho, mean=False):
    """BCO's δ: 0 by default (TRL's bco_pair), E_D[β(h_w + h_l)/2] for delta=mean (``mean=True``);
    KTO's z_ref = max(0, Σ_x ρ_x KL(π‖π_ref))."""
    h = logp - logp_ref
    X, K = logp.shape
    if name == "bco_pair":
        if not mean:
            return 0.0
        return sum(W[x, i, j] * hp["beta"] * (h[x, i] + h[x, j]) / 2 for x in range(X) for i in range(K) for j in range(K))
    if name == "kto":
        return max(0.0, sum(rho[x] * sum(math.exp(logp[x, y]) * h[x, y] for y in range(K)) for x in range(X)))
    return None


def ref_loss(name, hp, theta, logp_ref, W, rho, stat=None):
    """Σ_triples W·ℓ with ``logp = log softmax(θ)`` computed in NumPy; ``stat`` frozen if given."""
    logp = theta - np.log(np.sum(np.exp(theta - theta.max(-1, keepdims=True)), -1, keepdims=True)) - theta.max(-1, keepdims=True)
    s = _stat(name, hp, logp, logp_ref, W, rho) if stat is None else stat
    X, K = logp.shape
    tot = 0.0
    for x in range(X):
        for i in range(K):
            for j in range(K):
                if W[x, i, j] > 0:
                    hw, hl = logp[x, i] - logp_ref[x, i], logp[x, j] - logp_ref[x, j]
                    tot += W[x, i, j] * _triple(name, hp, hw, hl, logp[x, i], logp[x, j], math.exp(logp[x, i]), math.exp(logp[x, j]), s)
    return tot


def _random_case(seed, X=2, K=4, scale=1.0):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, scale, (X, K))
    logp_ref = np.log(dirichlet(rng, (X, K)))
    W = rng.uniform(0.1, 1.0, (X, K, K)) * (1 - np.eye(K))
    W /= W.sum()
    rho = W.sum((1, 2))
    return rng, theta, logp_ref, W, rho


def _hp(name, rng):
    """Defaults with the float hyperparameters jittered (β ∈ [0.3, 3], ε ∈ (0, 0.3), …)."""
    hp = dict(losses.get(name).defaults)
    for k in hp:
        if k == "label_smoothing":
            hp[k] = float(rng.uniform(0.02, 0.3))
        elif k == "gamma":
            hp[k] = float(rng.uniform(-1, 1))
        else:
            hp[k] = float(np.exp(rng.uniform(np.log(0.3), np.log(3.0))))
    return hp


_VG: dict = {}


def _value_and_grad(name, hp, theta, logp_ref, W, rho):
    """jit(value_and_grad) of the registered loss in the softmax logits, hp traced (one compile
    per loss and shape)."""
    if name not in _VG:
        fn = losses.bind(losses.get(name), losses.get(name).static)

        def f(theta, hp, logp_ref, W, rho):
            logp = jax.nn.log_softmax(theta, -1)
            return fn(LossInputs(logp, logp_ref, PreferenceData(W), None, rho), hp)

        _VG[name] = jax.jit(jax.value_and_grad(f))
    v, g = _VG[name](jnp.asarray(theta), {k: jnp.asarray(v) for k, v in hp.items()}, jnp.asarray(logp_ref), jnp.asarray(W), jnp.asarray(rho))
    return float(v), np.asarray(g)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", ZOO)
def test_value_and_gradient_match_reference(name, seed):
    rng, theta, logp_ref, W, rho = _random_case(100 * seed + ZOO.index(name))
    hp = _hp(name, rng)
    v, g = _value_and_grad(name, hp, theta, logp_ref, W, rho)
    assert v == pytest.approx(ref_loss(name, hp, theta, logp_ref, W, rho), rel=1e-12, abs=1e-13)
    # gradient: central differences of the reference with any detached statistic frozen at θ
    logp0 = np.asarray(jax.nn.log_softmax(theta, -1))
    stat = _stat(name, hp, logp0, logp_ref, W, rho)
    eps = 1e-6
    fd = np.zeros_like(theta)
    for idx in np.ndindex(theta.shape):
        d = np.zeros_like(theta)
        d[idx] = eps
        fd[idx] = (ref_loss(name, hp, theta + d, logp_ref, W, rho, stat) - ref_loss(name, hp, theta - d, logp_ref, W, rho, stat)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(g), fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ZOO)
def test_finite_at_extreme_margins(name):
    """|βΔ| up to 1e3 both ways (all ordered pairs carry weight): value and gradient finite."""
    K = 4
    W = (1 - np.eye(K))[None] / (K * (K - 1))
    logp_ref = np.log(np.full((1, K), 1 / K))
    rho = np.ones(1)
    hp = dict(losses.get(name).defaults)
    for beta, theta in ((1.0, [[500.0, 0.0, -500.0, 0.0]]), (1e3, [[0.5, 0.0, -0.5, 0.0]]), (1e3, [[1.0, -1.0, 0.0, 0.0]])):
        if "beta" in hp:
            hp["beta"] = beta
        v, g = _value_and_grad(name, hp, np.asarray(theta), logp_ref, W, rho)
        assert np.isfinite(v), (name, beta)
        assert np.all(np.isfinite(g)), (name, beta)


def test_label_smoothing_zero_is_dpo_and_bad_values_rejected():
    rng, theta, logp_ref, W, rho = _random_case(7)
    d = _value_and_grad("dpo", {"beta": 0.7}, theta, logp_ref, W, rho)[0]
    for name in ("cdpo", "robust"):
        v = _value_and_grad(name, {"beta": 0.7, "label_smoothing": 0.0}, theta, logp_ref, W, rho)[0]
        assert v == pytest.approx(d, rel=1e-14)
    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])
    for name, lp in (("robust", {"label_smoothing": 0.5}), ("cdpo", {"label_smoothing": -0.1}), ("exo_pair", {"label_smoothing": 0.0}),
                     ("discopop", {"tau": 0.0}), ("orpo", {"lam": -1.0}), ("kto", {"desirable_weight": float("nan")})):
        with pytest.raises(BanditError):
            make_objective(pb, name, lp)


# --------------------------------------------------------------------------- optima

APP_B = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])


def test_simpo_gamma0_is_softmax_r_over_beta():
    """Meng et al. Eq. 6 with γ = 0 under BT: β(log π_i − log π_j) = r_i − r_j ⇒ softmax(r/β),
    for any π_ref; equal to DPO's optimum exactly when π_ref is uniform."""
    rng = np.random.default_rng(3)
    for k in (3, 5):
        pb = random_problem(rng, k=k, contexts=1, preference="reward")
        beta = float(rng.uniform(0.3, 3))
        ex = solve_exact(make_objective(pb, "simpo", {"beta": beta, "gamma": 0.0})).policy
        assert metrics.tv(ex, softmax_np(pb.reward / beta)).max() < 1e-9
    uni = Problem.create(np.full(4, 0.25), reward=rng.normal(0, 1, 4))
    ex = solve_exact(make_objective(uni, "simpo", {"beta": 0.5, "gamma": 0.0})).policy
    assert metrics.tv(ex, rlhf_optimum(uni.pi_ref, uni.reward, 0.5)).max() < 1e-9


@pytest.mark.parametrize("name", ["cdpo", "robust", "exo_pair", "discopop", "simpo"])
def test_two_response_closed_forms(name):
    """K = 2: one pair, so the population optimum is the per-pair target m*(p):
    cDPO σ(m) = ε + (1 − 2ε)p; robust σ(m) = (p − ε)/(1 − 2ε); EXO m = (2p − 1)·log((1 − ε)/ε);
    DiscoPOP m = argmin p·ℓ(m) + (1 − p)·ℓ(−m) by a grid + Brent in this test; SimPO (γ ≠ 0) the
    root of its stationarity equation; then π_0/π_1 = (π_ref,0/π_ref,1)·e^{m/β} (no π_ref for SimPO)."""
    rng = np.random.default_rng(11)
    for _ in range(2):
        ref = dirichlet(rng, (1, 2))[0]
        p = float(rng.uniform(0.6, 0.85))
        pb = Problem.create(ref, matrix=[[0.5, p], [1 - p, 0.5]])
        beta = float(rng.uniform(0.5, 2))
        hp = {"beta": beta}
        if name == "cdpo":
            e = 0.1
            q = e + (1 - 2 * e) * p
            m = math.log(q / (1 - q))
        elif name == "robust":
            e = 0.1
            q = (p - e) / (1 - 2 * e)
            m = math.log(q / (1 - q))
        elif name == "exo_pair":
            e = 0.05
            m = (2 * p - 1) * math.log((1 - e) / e)
        elif name == "simpo":
            e = None
            g = 0.7  # root of −p·σ(γ − m) + (1 − p)·σ(γ + m) (SimPO per-pair stationarity), by Brent
            m = optimize.brentq(lambda u: -p * _sig(g - u) + (1 - p) * _sig(g + u), -30, 30, xtol=1e-15)
            hp["gamma"] = g
        else:
            e = None
            tau = 0.05
            ell = lambda u: (1 - _sig(u / tau)) * _softplus(-u) + _sig(u / tau) * math.exp(-u)  # noqa: E731
            phi = lambda u: p * ell(u) + (1 - p) * ell(-u)  # noqa: E731
            grid = np.linspace(-20, 20, 40001)
            k = int(np.argmin([phi(u) for u in grid]))
            m = optimize.minimize_scalar(phi, bracket=(grid[k - 1], grid[k], grid[k + 1]), tol=1e-14).x
            hp["tau"] = tau
        if e is not None:
            hp["label_smoothing"] = e
        obj = make_objective(pb, name, hp)
        r = fp.multistart(obj)[0]
        base = np.zeros(2) if name == "simpo" else np.log(ref)  # SimPO has no reference model
        want = softmax_np(base + np.array([m / beta, 0.0]))
        assert metrics.tv(r.policy, want[None]).max() < 1e-9, name


def test_hinge_lp_matches_hand_solution_on_app_b():
    """Kong App. B, β = 1: the hinge optimum has βΔ_01 = βΔ_12 = 1 (moving either margin below 1
    costs 2p − 1 ≥ 1/3 per unit on its own pair and saves at most 1 − p_02 = 1/7 on (0, 2)), so
    π ∝ π_ref·e^{[0, −1, −2]}."""
    w = np.asarray(make_objective(APP_B, "hinge").data.weight)
    pi, ok = fp.hinge_lp(APP_B, w, 1.0)
    want = softmax_np(np.log(APP_B.pi_ref) + np.array([0.0, -1.0, -2.0]))
    assert ok and metrics.tv(pi, want).max() < 1e-12


def test_robust_without_finite_minimiser_is_unbounded_below():
    """Chowdhury et al.: per pair the population rDPO loss is [(p − ε)ℓ(βΔ) + (1 − p − ε)ℓ(−βΔ)]/(1 − 2ε).
    On App. B with ε = 0.2 > 1 − p_02 = 1/7, sending θ_2 → −∞ (Δ_02 = Δ_12 → ∞) changes the loss
    at the asymptotic rate (1/3)·β·[(1 − p_02 − ε) + (1 − p_12 − ε)]/(1 − 2ε) = −1/252 per unit:
    unbounded below, so no finite minimiser."""
    obj = make_objective(APP_B, "robust", {"label_smoothing": 0.2})
    v = {t: float(obj.value(jnp.asarray([[0.0, 0.0, -t]]), obj.hp)) for t in (40.0, 80.0)}
    slope = (v[80.0] - v[40.0]) / 40.0
    want = (1 / 3) * ((1 - 6 / 7 - 0.2) + (1 - 0.75 - 0.2)) / 0.6
    assert want == pytest.approx(-1 / 252, rel=1e-12)
    assert slope == pytest.approx(want, rel=1e-9)


def _train_and_solve(pb, steps=8000):
    """Every zoo loss on ``pb`` trained by Adam (cosine schedule, lr 0.05) in ONE compiled Stack
    and solved exactly (Newton from the same start; LP for hinge; self-consistent δ / z_ref).
    Where the optimum is a runaway limit (π(y) → 0), Adam approaches it only like ~1/steps
    (KTO on seed 2, K = 5: TV 1.6e-3 after 4000 steps, 1.9e-5 after 16000), hence the budget."""
    k = pb.n_responses
    p = pb.pref[:, ~np.eye(k, dtype=bool)]
    eps = 0.5 * float(np.minimum(p, 1 - p).min())  # robust: keep every pair target finite
    objs = [make_objective(pb, n, {"label_smoothing": eps} if n == "robust" else {}) for n in ZOO]
    trajs = train_batch(objs, TrainConfig(steps=steps, log_steps=(0, steps)), [[{**o.hp, "lr": 0.05}] for o in objs])
    out = {}
    for n, o, t in zip(ZOO, objs, trajs):
        if zoo.detached_statistic(n, o.static) is not None:
            ex = fp.self_consistent(o)[0].policy
        elif n == "hinge":
            ex = fp.hinge_lp(pb, np.asarray(o.data.weight), o.hp["beta"])[0]
        else:
            ex = solve_exact(o).policy
        out[n] = (np.asarray(t.policy[0]), np.atleast_2d(ex), pb.context_weight)
    return out


@pytest.fixture(scope="module")
def trained_and_exact():
    """One random bandit: K = 4, 2 contexts, BT from a random π*, uniform pairs."""
    return _train_and_solve(random_problem(np.random.default_rng(2024), k=4, contexts=2, preference="pi_star", pairs="uniform"))


@pytest.mark.parametrize("name", ZOO)
def test_adam_reaches_exact_optimum(trained_and_exact, name):
    adam, ex, w = trained_and_exact[name]
    assert metrics.tv(adam, ex, w) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("seed,k,contexts,pairs", [(1, 3, 1, "reference"), (2, 5, 1, "uniform"), (3, 3, 3, "uniform")])
def test_adam_reaches_exact_optimum_more_bandits(seed, k, contexts, pairs):
    out = _train_and_solve(random_problem(np.random.default_rng(seed), k=k, contexts=contexts, preference="reward", pairs=pairs), steps=16000)
    bad = {n: metrics.tv(a, e, w) for n, (a, e, w) in out.items() if metrics.tv(a, e, w) >= 1e-3}
    assert not bad, bad


def test_fixed_points_table_app_b():
    res = fp.fixed_points(only=["dpo", "hinge", "simpo"])
    rows = {r["label"]: r for r in res["records"]}
    assert rows["dpo"]["shares_dpo"] and rows["dpo"]["tv_rlhf"] < 1e-12 and rows["dpo"]["tv_closed_form"] < 1e-12
    assert rows["hinge"]["method"] == "lp" and rows["hinge"]["finite"] and not rows["hinge"]["shares_dpo"]
    # SimPO γ = 0: e^{r/β}/Z = π* (r = log π*), not DPO's π_ref·π*/Z since π_ref is not uniform
    assert rows["simpo[gamma=0.0]"]["tv_closed_form"] < 1e-8
    assert metrics.tv(np.array(rows["simpo[gamma=0.0]"]["policy"]), np.array([[0.6, 0.3, 0.1]])).max() < 1e-8
    assert rows["simpo"]["closed_form"] is None and rows["simpo"]["finite"]
    assert "dpo" in res["shares_dpo"] and "hinge" in res["differs_from_dpo"]
    json.dumps(res, allow_nan=True)  # JSON-ready
    assert "share DPO's fixed point" in fp.report(res)


@pytest.mark.slow
def test_fixed_points_table_app_b_runaways():
    res = fp.fixed_points(only=["kto", "robust", "eta_linear", "apo_zero"])
    rows = {r["label"]: r for r in res["records"]}
    assert rows["kto"]["closed_form"] is None and "none known" in rows["kto"]["closed_form_note"]
    assert not rows["robust[label_smoothing=0.2]"]["finite"] and "unbounded below" in rows["robust[label_smoothing=0.2]"]["status"]
    assert rows["robust"]["finite"] and rows["eta_linear"]["finite"] is False and rows["apo_zero"]["finite"] is False
    # eta_linear's limit is the vertex of the largest net win weight: y0 on App. B
    assert rows["eta_linear"]["tv_closed_form"] < 1e-9 and rows["eta_linear"]["policy"][0][0] > 1 - 1e-9
    assert "unbounded below" not in rows["apo_zero"]["status"]  # saturating runaway: infimum finite


def test_fixed_points_self_consistent_field_vanishes():
    """bco_pair[delta=mean]: at the self-consistent δ the detached gradient field (what Adam follows) is 0."""
    obj = make_objective(APP_B, "bco_pair", {"delta": "mean"})
    r, s, gap = fp.self_consistent(obj)
    assert gap < 1e-10 and fp._field_residual(obj, r.params) < 1e-9
    assert s == pytest.approx(fp.statistic(obj, r.params, obj.hp), abs=1e-10)


def test_solve_exact_uses_the_loss_specific_solver():
    """``solve_exact`` (hence ``bandit-lab solve``) dispatches hinge to its LP and BCO/KTO to the
    self-consistent fixed point, where the plain Newton solver cannot certify anything."""
    h = solve_exact(make_objective(APP_B, "hinge"))
    want = softmax_np(np.log(APP_B.pi_ref) + np.array([0.0, -1.0, -2.0]))
    assert h.converged and metrics.tv(h.policy, want).max() < 1e-12
    k = solve_exact(make_objective(APP_B, "kto"))
    # KTO on App. B collapses onto y0; z_ref → KL(e0 ‖ π_ref) = log(1/0.4)
    assert k.converged and k.policy[0, 0] > 1 - 1e-9
    wd = solve_exact(make_objective(APP_B, "hinge", weight_decay=0.1))  # LP not applicable: Newton
    assert not np.isnan(wd.residual)


def test_fixed_points_sampled_data_has_no_population_closed_form():
    from bandit_lab.core.data import make_data

    obj = make_objective(APP_B, "ipo", {"beta": 0.5}, data=make_data(APP_B, "sampled", 50, 1))
    cf, note = fp.closed_form(obj)
    assert cf is None and "sampled" in note
    cf, note = fp.closed_form(make_objective(APP_B, "ipo", {"beta": 0.5}))
    assert cf is not None and metrics.tv(cf, softmax_np(np.log(APP_B.pi_ref) + APP_B.r_ipo / 0.5)).max() < 1e-15
