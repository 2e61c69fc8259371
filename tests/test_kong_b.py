"""Kong et al. §5.2–5.3: Eq. 20 (thresholding, Table 1), one gradient step (Fig. 5), Eq. 21 (Fig. 6).

Every number is checked against an independent reference: central finite differences, SciPy
minimisers that only see the loss value, a bisection on max L' that never uses the closed-form
s(θ), the core DPO loss on the core Mixture parameterization and the core trainer, a plain-numpy
Adam, and hand arithmetic.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from bandit_lab.solvers import thresholding_loss
from bandit_lab.errors import BanditError
from bandit_lab.experiments import get, make_settings
from bandit_lab.experiments import noise_adaptive as na
from bandit_lab.core.objective import make_objective
from bandit_lab.core.params import Mixture
from bandit_lab.core.problems import Problem
from bandit_lab.core.train import TrainConfig, make_train

RATIOS = thresholding_loss.PAPER_RATIOS


def L(t, c, a=1.0):
    """Plain-Python Eq. 20 + a·θ² (independent of thresholding_loss.loss)."""
    return math.log(math.sqrt(c) + math.sqrt((1 - t) / t)) + a * t * t


# --------------------------------------------------------------------------- derivatives

@settings(max_examples=60, deadline=None)
@given(st.floats(0.02, 0.98), st.floats(-3, 2), st.sampled_from([0.0, 1.0, 0.3]))
def test_dloss_matches_central_differences(t, log10c, a):
    c = 10.0**log10c
    h = 1e-6
    fd = (L(t + h, c, a) - L(t - h, c, a)) / (2 * h)
    assert abs(float(thresholding_loss.dloss(t, c, a, np)) - fd) <= 1e-6 * max(1.0, abs(fd))


@settings(max_examples=60, deadline=None)
@given(st.floats(0.02, 0.98), st.floats(-3, 2))
def test_d2loss_matches_central_differences(t, log10c):
    c = 10.0**log10c
    h = 1e-5
    fd = (float(thresholding_loss.dloss(t + h, c, 1.0, np)) - float(thresholding_loss.dloss(t - h, c, 1.0, np))) / (2 * h)
    assert abs(float(thresholding_loss.d2loss(t, c, 1.0)) - fd) <= 1e-5 * max(1.0, abs(fd))


def test_derivative_is_minus_infinity_not_nan_at_the_ends():
    g = thresholding_loss.dloss(jnp.asarray([0.0, 1.0]), 0.3, 1.0)
    assert np.all(np.isneginf(np.asarray(g)))
    # projected GD started on the boundary stays there, without NaN
    th, tr = thresholding_loss.pgd([0.3, 0.01], [1.0, 1.0], 0.05, 20)
    assert np.all(tr == 1.0)


# --------------------------------------------------------------------------- Eq. 20 is DPO

@pytest.mark.parametrize("c", [0.05, 0.5, 5.0])
def test_eq20_is_core_dpo_on_mixture_and_core_trainer_agrees_inside(c):
    """Eq. 20 + θ² = core DPO (β = ½) + weight decay 1 on the Mixture θ, up to log √c; the core
    projected-SGD trainer follows the same trajectory wherever θ stays below 1."""
    pb = Problem.create([1 / (1 + c), c / (1 + c)], matrix=[[0.5, 1.0], [0.0, 0.5]])
    par = Mixture.create(pb, [0.0, 1.0], [1.0, 0.0])
    o = make_objective(pb, "dpo", {"beta": 0.5}, weight_decay=1.0, param=par)
    for t in (0.2, 0.55, 0.9):
        assert float(o.value(jnp.asarray([t]), o.hp)) == pytest.approx(L(t, c) - math.log(math.sqrt(c)), abs=1e-12)
    tr = make_train(o, TrainConfig(optimizer="sgd", schedule="constant", steps=300, log_steps=tuple(range(301))), init=par.init(1 / (1 + c)))
    core = np.asarray(jax.jit(tr)({"lr": 0.01}).policies[:, 0, 0])
    _, ours = thresholding_loss.pgd([c], [1 / (1 + c)], 0.01, 300)
    if c < 0.2:
        # below c* θ reaches 1, where the Mixture's log floor zeroes the DPO gradient: the core
        # trainer bounces 1 ↔ 1 − 2·lr (why thresholding_loss uses the exact one-sided derivative)
        assert ours[0, -1] == 1.0 and ours[0, -2] == 1.0
        assert {round(v, 12) for v in core[-4:]} == {1.0, round(1 - 2 * 0.01, 12)}
    else:
        np.testing.assert_allclose(core, ours[0], atol=1e-12)


# --------------------------------------------------------------------------- Table 1

def _independent_descent_limit(c, a=1.0):
    """Where descent from θ₀ = 1/(1+c) ends, from loss values only: L-BFGS-B with bounds and
    finite-difference gradients, then a bounded Brent search around it."""
    t0 = 1 / (1 + c)
    res = optimize.minimize(lambda x: L(min(max(x[0], 1e-12), 1.0), c, a), [t0], method="L-BFGS-B",
                            bounds=[(1e-9, 1.0)], options={"ftol": 1e-15, "gtol": 1e-12, "eps": 1e-9})
    x = float(res.x[0])
    if x > 1 - 1e-6:
        return 1.0
    r = optimize.minimize_scalar(lambda t: L(t, c, a), bounds=(max(x - 0.05, 1e-6), min(x + 0.05, 1 - 1e-9)),
                                 method="bounded", options={"xatol": 1e-12})
    return float(r.x)


@pytest.fixture(scope="module")
def table1():
    c = np.asarray(RATIOS)
    theta, traj = thresholding_loss.pgd(c, thresholding_loss.init_theta(c), 0.01, 500)
    return theta, traj


def test_converged_theta_per_ratio_pinned(table1):
    theta, _ = table1
    expected = [1.0, 1.0, 1.0, 0.5635775, 0.5, 0.3830347, 0.3403627]  # pinned
    for c, t, e in zip(RATIOS, theta, expected):
        assert t == pytest.approx(_independent_descent_limit(c), abs=1e-6)
        assert t == pytest.approx(e, abs=1e-6)
    # c = 1 has the closed form θ = ½: L'(½) = −1/(2·½·√½·(√½+√½)) + 1 = 0
    assert float(thresholding_loss.dloss(0.5, 1.0, 1.0, np)) == pytest.approx(0.0, abs=1e-14)


def test_table1_agreement_and_the_disagreement_at_0_1(table1):
    theta, _ = table1
    for c, t, p in zip(RATIOS, theta, thresholding_loss.PAPER_THETA):
        if c == 0.1:
            assert abs(t - p) >= 0.1  # printed 0.77, converged 1.0
        else:
            assert abs(t - p) <= 0.01, (c, t, p)


def test_c_0_1_has_negative_derivative_everywhere_so_0_77_is_not_stationary():
    t = np.linspace(1e-6, 1 - 1e-9, 400001)
    assert np.max(thresholding_loss.dloss(t, 0.1, 1.0, np)) < -0.2
    assert thresholding_loss.stationary_points(0.1) == []
    # monotone: θ never decreases from θ₀ = 1/1.1 > 0.77, for any step size
    for lr in (1e-4, 1e-3, 1e-2, 1e-1):
        _, tr = thresholding_loss.pgd([0.1], [1 / 1.1], lr, 500)
        assert np.all(np.diff(tr[0]) >= 0) and tr[0].min() > 0.9


def test_critical_ratio_against_bisection_on_max_derivative():
    c_star, t_star = thresholding_loss.critical_ratio(1.0)

    def max_dL(c):  # never uses s(θ): the largest L' on (0, 1), by bounded Brent on −L'
        r = optimize.minimize_scalar(lambda t: -float(thresholding_loss.dloss(t, c, 1.0, np)), bounds=(0.3, 0.99),
                                     method="bounded", options={"xatol": 1e-13})
        return -r.fun, r.x

    c_ref = optimize.brentq(lambda c: max_dL(c)[0], 0.1, 0.5, xtol=1e-14)
    assert c_star == pytest.approx(c_ref, abs=1e-9)
    assert t_star == pytest.approx(max_dL(c_ref)[1], abs=1e-5)
    assert c_star == pytest.approx(0.2007437868, abs=1e-9)
    # L' = L'' = 0 at (θ*, c*)
    assert abs(float(thresholding_loss.dloss(t_star, c_star, 1.0, np))) < 1e-10
    assert abs(float(thresholding_loss.d2loss(t_star, c_star, 1.0))) < 1e-5
    assert thresholding_loss.stationary_points(c_star * 0.999) == []
    pts = thresholding_loss.stationary_points(c_star * 1.001)
    assert [p["type"] for p in pts] == ["min", "max"]


def test_stationary_points_and_global_minimiser():
    pts = thresholding_loss.stationary_points(0.5)
    assert [p["type"] for p in pts] == ["min", "max"]
    for p in pts:
        assert abs(float(thresholding_loss.dloss(p["theta"], 0.5, 1.0, np))) < 1e-9
        assert (p["curvature"] > 0) == (p["type"] == "min")
    # c = 0.5: the interior minimum is only local — L(1) = log √0.5 + 1 is lower
    g = thresholding_loss.global_min(0.5)
    assert g["theta"] == 1.0 and L(pts[0]["theta"], 0.5) > math.log(math.sqrt(0.5)) + 1
    g10 = thresholding_loss.global_min(10.0)
    assert g10["theta"] == pytest.approx(0.3403627, abs=1e-6)
    # independent global minimum on a dense grid (θ = 1 included)
    for c in (0.5, 1.0, 5.0):
        t = np.linspace(1e-4, 1.0, 1_000_001)
        v = thresholding_loss.loss(t, c, 1.0, np)
        assert thresholding_loss.global_min(c)["theta"] == pytest.approx(t[np.argmin(v)], abs=2e-6)
    c_g = thresholding_loss.global_switch_ratio(1.0)
    assert thresholding_loss.global_min(c_g * 0.999)["theta"] == 1.0 and thresholding_loss.global_min(c_g * 1.001)["theta"] < 1.0


def test_mirrored_init_diagnostic_reproduces_the_printed_row():
    c = np.asarray(RATIOS)
    theta, _ = thresholding_loss.pgd(c, thresholding_loss.init_theta(c, "mirrored"), 0.0027, 500)
    assert np.max(np.abs(np.round(theta, 2) - np.asarray(thresholding_loss.PAPER_THETA))) <= 0.01 + 1e-12
    assert theta[2] == pytest.approx(0.775, abs=0.005)


def test_bad_inputs_raise_bandit_error():
    exp = get("thresholding")
    with pytest.raises(BanditError):
        make_settings(exp, {"ratio": (0.1, -1.0)})
    with pytest.raises(BanditError):
        make_settings(exp, {"init": "1.5"})
    with pytest.raises(BanditError):
        make_settings(exp, {"lr": 0.0})
    with pytest.raises(BanditError):
        make_settings(get("noise-adaptive"), {"low": 60.0, "high": 40.0})


def test_thresholding_run_records():
    exp = get("thresholding")
    res = exp.run(make_settings(exp, {}))
    assert res["critical_ratio"] == pytest.approx(0.2007437868, abs=1e-9)
    assert res["n_agree"] == 6 and res["n_paper"] == 7
    r = {x["ratio"]: x for x in res["records"]}
    assert r[0.1]["theta"] == 1.0 and r[0.1]["paper"] == 0.77 and r[0.1]["stationary_points"] == []
    assert all(x["converged"] for x in res["records"])


# --------------------------------------------------------------------------- Fig. 5

def test_single_step_by_hand():
    # c = 1: θ₀ = ½, ℓ'(θ₀) = −(1+1)²/4 = −1, θ₁ = ½ + lr
    lr = 0.01
    t0, t1, l0, l1, d0, d1 = thresholding_loss.one_step([1.0, 4.0], lr)
    assert t1[0] == pytest.approx(0.51, abs=1e-15)
    assert l0[0] - l1[0] == pytest.approx(math.log(2) - math.log(1 + math.sqrt(0.49 / 0.51)), abs=1e-14)
    # c = 4: θ₀ = 0.2, ℓ'(θ₀) = −25/16, θ₁ = 0.2 + lr·25/16
    th1 = 0.2 + lr * 25 / 16
    assert t1[1] == pytest.approx(th1, abs=1e-15)
    abs_dec = math.log(2 * 2) - math.log(2 + math.sqrt((1 - th1) / th1))
    assert l0[1] - l1[1] == pytest.approx(abs_dec, abs=1e-14)
    assert d0[1] == pytest.approx(math.log(2), abs=1e-15)
    assert (l0[1] - l1[1]) / l0[1] == pytest.approx(abs_dec / math.log(4), abs=1e-14)


def test_single_step_experiment_claims():
    exp = get("single-step")
    res = exp.run(make_settings(exp, {}))
    recs = res["records"]
    assert res["small_end_larger"] and not res["abs_decrease_monotone"]
    assert res["argmin_ratio"] == pytest.approx(1.0, rel=1e-9)
    # ℓ'(θ₀) = −(1+c)²/(4c) (invariant under c ↦ 1/c)
    for r in recs:
        c = r["ratio"]
        assert r["grad0"] == pytest.approx(-(1 + c) ** 2 / (4 * c), rel=1e-12)
    # at c = 1/4 the printed Eq. 20 is zero at θ₀: relative decrease singular, sign flips
    below = [r for r in recs if r["ratio"] < 0.25]
    above = [r for r in recs if r["ratio"] > 0.25]
    assert all(r["rel_decrease"] < 0 for r in below) and all(r["rel_decrease"] > 0 for r in above)


# --------------------------------------------------------------------------- §5.3, Eq. 21

def _numpy_adam_delta(beta, lr, steps, X, b1=0.9, b2=0.999, eps=1e-12):
    """Tabular softmax, 2 responses: every context has the same ∂/∂θ_w = −β σ(−β δ)/X = −∂/∂θ_l
    where δ = (θ_w − θ_l) − (θ_w − θ_l)_ref. Plain-numpy Adam on that one coordinate pair."""
    tw = tl = 0.0
    mw = vw = ml = vl = 0.0
    for k in range(1, steps + 1):
        d = tw - tl
        gw = -beta / (1 + math.exp(beta * d)) / X
        gl = -gw
        mw, vw = b1 * mw + (1 - b1) * gw, b2 * vw + (1 - b2) * gw * gw
        ml, vl = b1 * ml + (1 - b1) * gl, b2 * vl + (1 - b2) * gl * gl
        tw -= lr * (mw / (1 - b1**k)) / (math.sqrt(vw / (1 - b2**k)) + eps)
        tl -= lr * (ml / (1 - b1**k)) / (math.sqrt(vl / (1 - b2**k)) + eps)
    return tw - tl


def test_group_stats_average_ranks_by_hand():
    vals = np.array([0.1, 0.3, 0.3, 0.9, 0.5, 0.2])
    log_r = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    g = na.group_stats(np.log(vals), log_r, 34.0, 66.0)  # low: r ≤ 1.7 → {0,1}; high: ≥ 3.3 → {4,5}
    # combined [0.1, 0.3 | 0.5, 0.2] → ranks 1, 3 | 4, 2
    assert (g["n_low"], g["n_high"]) == (2, 2)
    assert g["avg_rank_low"] == 2.0 and g["avg_rank_high"] == 3.0
    assert g["U"] == 1.0  # U of the low group = #pairs (low, high) with low > high: only 0.3 > 0.2


def _run_na(**kw):
    exp = get("noise-adaptive")
    return exp.run(make_settings(exp, kw))


def test_noise_adaptive_default_size():
    """Default size (4000 contexts): low-ratio group suppressed more, p < 1e-6 (~6 s)."""
    res = _run_na()
    r = {x["param"]: x for x in res["records"]}
    assert res["n_contexts"] == 4000
    assert r["loglinear"]["p_value"] < 1e-6 and r["loglinear"]["avg_rank_low"] < r["loglinear"]["avg_rank_high"]
    assert r["softmax"]["p_value"] == 1.0 and r["softmax"]["spearman_eq21_vs_ratio"] is None
    for x in res["records"]:
        assert x["init_max_abs_log_eq21"] < 1e-12  # Eq. 21 = 1 at initialisation
    # tabular softmax: Eq. 21 is the same in every context and equals a plain-numpy Adam run
    delta = _numpy_adam_delta(0.1, 1e-3, 150, 4000)
    assert math.log(r["softmax"]["median_eq21_low"]) == pytest.approx(-delta, abs=1e-9)
    # direct probabilities (simplex), no parameter shared between contexts: the effect is complete
    # (U = 0: every low-ratio context below every high-ratio one) and already there at step 1,
    # while no context sits on the boundary π(y_l) = 0 yet
    sx = r["simplex"]
    assert sx["U"] == 0.0 and sx["p_value"] < 1e-60 and sx["avg_rank_low"] < sx["avg_rank_high"]
    assert sx["first_step_effect"] == 1 and sx["first_step_at_floor"] == 2
    step1 = next(x for x in sx["timeline"] if x["step"] == 1)
    assert step1["at_floor"] == 0 and step1["U"] == 0.0 and step1["min_pi_yl"] > 0
    assert r["softmax"]["first_step_effect"] is None  # tabular logits: never, at any logged step
    # reproducible bit for bit from the seed (a separate compile: loglinear alone)
    again = {x["param"]: x for x in _run_na(param=("loglinear",))["records"]}
    assert again["loglinear"]["U"] == r["loglinear"]["U"] and again["loglinear"]["p_value"] == r["loglinear"]["p_value"]


def _numpy_simplex_first_step(pi_ref, w, beta, lr, eps):
    """One projected-Adam step on direct probabilities from π_ref, in plain NumPy: at π_ref the
    DPO gradient is ∂L/∂π_w = −wβ/(2π_w), ∂L/∂π_l = +wβ/(2π_l) (σ(0) = ½); Adam's first update
    is −lr·g/(|g| + eps); then the Euclidean projection of the 2-vector onto the simplex."""
    g = np.stack([-w * beta / (2 * pi_ref[:, 0]), w * beta / (2 * pi_ref[:, 1])], 1)
    q = pi_ref - lr * g / (np.abs(g) + eps)
    q = q - (q.sum(1, keepdims=True) - 1.0) / 2.0
    return np.where(q[:, 1:] < 0, [1.0, 0.0], np.where(q[:, :1] < 0, [0.0, 1.0], q))


def test_noise_adaptive_simplex_shows_effect_without_sharing_and_without_the_boundary():
    """The README's earlier reading of Kong §5.3, "the effect needs shared parameters", is refuted by
    direct probabilities: with a step so small that no context ever reaches π(y_l) = 0, the simplex
    parameterisation separates the groups completely (U = 0) while tabular logits show nothing (p = 1). Mechanism, checked
    against plain NumPy: after one Adam step every context moved by ≈ lr in probability, so
    log Eq. 21 ≈ −lr(1 + r)²/r, increasing in the ratio r below 1."""
    res = _run_na(n_contexts=1000, lr=5e-6, param=("softmax", "simplex"))
    r = {x["param"]: x for x in res["records"]}
    assert r["softmax"]["p_value"] == 1.0 and r["softmax"]["U"] == r["softmax"]["n_low"] * r["softmax"]["n_high"] / 2
    sx = r["simplex"]
    assert sx["U"] == 0.0 and sx["p_value"] < 1e-15 and sx["first_step_effect"] == 1
    assert all(x["at_floor"] == 0 for x in sx["timeline"]) and sx["first_step_at_floor"] is None
    # independent reference for step 1, every context
    s = make_settings(get("noise-adaptive"), {"n_contexts": 1000, "lr": 5e-6})
    pb, log_r, _ = na.make_problem(s)
    from bandit_lab.core.data import population

    w = np.asarray(population(pb).weight)[:, 0, 1]
    q = _numpy_simplex_first_step(pb.pi_ref, w, s.beta, s.lr, TrainConfig().eps)
    o = make_objective(pb, "dpo", {"beta": s.beta}, param=na.Simplex(pb))
    tr = jax.jit(make_train(o, TrainConfig(steps=1, schedule="constant", log_steps=(0, 1))))({**o.hp, "lr": s.lr})
    e1 = na.eq21_log(np.asarray(tr.policy), pb)
    assert np.allclose(e1, na.eq21_log(q, pb), rtol=0, atol=1e-10)
    # to first order log Eq. 21 = −lr(1/π_ref(y_l) + 1/π_ref(y_w)) = −lr(1 + r)²/r: increasing in r
    # below r = 1 (and symmetric under r ↔ 1/r); the default range is lopsided (10⁻³ … 10), so the
    # low group is far more extreme and the groups cannot overlap
    r_ = np.exp(log_r)
    assert np.allclose(e1, -s.lr * (1 + r_) ** 2 / r_, rtol=1e-2, atol=0)
    below = np.argsort(log_r)[: int(np.sum(r_ < 1))]
    assert np.all(np.diff(e1[below]) > 0)
    lo, hi = log_r <= np.percentile(log_r, s.low), log_r >= np.percentile(log_r, s.high)
    assert e1[lo].max() < e1[hi].min()
