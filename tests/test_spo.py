"""SPO losses, the SPO theorems, the IPO lemma and the three experiments (issue 4, items 1–3, 6).

References are independent of the code under test: plain-NumPy formulas of SPO Eq. 8–12 and
Eq. 24, central finite differences, closed forms (softmax(r/α), 1/(2β)), explicit loops.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.checks import ipo_notes
from bandit_lab.checks import spo as spo_checks
from bandit_lab.core.data import PreferenceData, population
from bandit_lab.losses import spo
from bandit_lab.losses import LossInputs, get
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.solvers.solver import solve_exact


# ----------------------------------------------------------------------------- numpy reference

def np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_spo_pref(logp, W, alpha, weight="uniform", gamma=0.5, logp_ref=None, mu_logp=None):
    """Eq. 10/11 by explicit loops; μ from ``mu_logp`` (defaults to logp: the weights' policy)."""
    X, K = logp.shape
    lm = logp if mu_logp is None else mu_logp
    pm = np.exp(lm)
    norm = sum(W[x, i, j] * gamma * np.log(pm[x, i] + pm[x, j]) for x in range(X) for i in range(K) for j in range(K) if W[x, i, j] > 0)
    total = 0.0
    for x in range(X):
        for i in range(K):
            for j in range(K):
                if W[x, i, j] == 0:
                    continue
                d = logp[x, i] - logp[x, j]
                if alpha > 0:
                    pw, pl = np.exp(alpha * logp[x, i]), np.exp(alpha * logp[x, j])
                    ell = -np.log(pw / (pw + pl)) / alpha if abs(alpha * d) < 30 else -(-np.log1p(np.exp(-alpha * d))) / alpha
                else:
                    ell = -0.5 * d
                if weight == "uniform":
                    mu = 1.0
                elif weight == "reference":
                    mu = np.exp(logp_ref[x, i]) + np.exp(logp_ref[x, j])
                elif weight == "power":
                    mu = (pm[x, i] + pm[x, j]) ** gamma
                else:
                    mu = 1.0 / (1.0 + np.exp(-(gamma * np.log(pm[x, i] + pm[x, j]) - norm)))
                total += W[x, i, j] * mu * ell
    return total


def _instance(seed, X=2, K=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (X, K))
    W = rng.uniform(0, 1, (X, K, K)) * (1 - np.eye(K))
    W = W / W.sum()
    ref = np_log_softmax(rng.normal(0, 1, (X, K)))
    cw = np.full(X, 1.0 / X)
    return logits, W, ref, cw


def _inputs(logits, W, ref, cw):
    return LossInputs(jax.nn.log_softmax(logits, -1), jnp.asarray(ref), PreferenceData(jnp.asarray(W)), None, jnp.asarray(cw))


@pytest.mark.parametrize("weight", spo.WEIGHTS)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, 2.5])
def test_pref_value_matches_numpy(weight, alpha):
    logits, W, ref, cw = _instance(1)
    val = float(spo.spo_pref(_inputs(jnp.asarray(logits), W, ref, cw), {"alpha": alpha, "gamma": 0.7}, weight=weight))
    want = np_spo_pref(np_log_softmax(logits), W, alpha, weight, 0.7, ref)
    assert val == pytest.approx(want, rel=1e-12, abs=1e-13)


def test_full_spo_value_is_pref_plus_beta_kl():
    logits, W, ref, cw = _instance(2)
    lp = np_log_softmax(logits)
    kl = np.sum(cw * np.sum(np.exp(lp) * (lp - ref), -1))
    val = float(spo.spo(_inputs(jnp.asarray(logits), W, ref, cw), {"alpha": 0.8, "beta": 0.3, "gamma": 0.5}))
    assert val == pytest.approx(np_spo_pref(lp, W, 0.8) + 0.3 * kl, rel=1e-12)


@pytest.mark.parametrize("weight", spo.WEIGHTS)
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_gradient_is_weighted_gradient_with_weights_frozen(weight, alpha):
    """Eq. 12: ∇L = E[μ ∇ℓ] with μ held fixed. Reference: central differences of the numpy loss
    whose μ is frozen at the current policy (for π-independent μ this is just the loss)."""
    logits, W, ref, cw = _instance(3, X=1, K=4)
    hp = {"alpha": alpha, "beta": 0.2, "gamma": 0.9}
    g = np.asarray(jax.grad(lambda z: spo.spo(_inputs(z, W, ref, cw), hp, weight=weight))(jnp.asarray(logits)))
    lp0 = np_log_softmax(logits)

    def frozen(z):
        lp = np_log_softmax(z)
        kl = np.sum(cw * np.sum(np.exp(lp) * (lp - ref), -1))
        return np_spo_pref(lp, W, alpha, weight, 0.9, ref, mu_logp=lp0) + 0.2 * kl

    eps = 1e-6
    fd = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        e = np.zeros_like(logits)
        e[idx] = eps
        fd[idx] = (frozen(logits + e) - frozen(logits - e)) / (2 * eps)
    assert np.allclose(g, fd, atol=1e-8, rtol=1e-6)
    if weight in ("power", "soft_importance"):
        # …and it is *not* the gradient of the value (μ's own dependence on π is cut)
        def live(z):
            return np_spo_pref(np_log_softmax(z), W, alpha, weight, 0.9, ref) + 0.2 * np.sum(cw * np.sum(np.exp(np_log_softmax(z)) * (np_log_softmax(z) - ref), -1))

        fd_live = np.array([(live(logits + eps * np.eye(4)[k][None]) - live(logits - eps * np.eye(4)[k][None])) / (2 * eps) for k in range(4)])
        assert np.abs(fd_live - g[0]).max() > 1e-4


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 0.5, 3.0])
@pytest.mark.parametrize("weight", spo.WEIGHTS)
def test_finite_at_extreme_margins(alpha, weight):
    logits = jnp.asarray([[1e3, -1e3, 0.0, 5e2]])
    _, W, ref, cw = _instance(4, X=1, K=4)
    f = lambda z: spo.spo(_inputs(z, W, ref, cw), {"alpha": alpha, "beta": 0.1, "gamma": 0.5}, weight=weight)  # noqa: E731
    v, g = jax.value_and_grad(f)(logits)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    v, g = jax.value_and_grad(f)(-logits)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))


def test_alpha_to_zero_gradient_continuity():
    """L^α = log2/α + L^0 + O(α): gradients of Eq. 8 tend to those of Eq. 9."""
    logits, W, ref, cw = _instance(5)
    grad = lambda a: np.asarray(jax.grad(lambda z: spo.spo_pref(_inputs(z, W, ref, cw), {"alpha": a}))(jnp.asarray(logits)))  # noqa: E731
    assert np.abs(grad(1e-7) - grad(0.0)).max() < 1e-6


def test_optimum_is_softmax_r_over_alpha():
    rng = np.random.default_rng(7)
    for _ in range(5):
        pb = random_problem(rng, k=int(rng.choice([3, 5])), preference="reward")
        a = float(np.exp(rng.uniform(np.log(0.1), np.log(3.0))))
        res = solve_exact(make_objective(pb, "spo_pref", {"alpha": a}))
        assert metrics.tv(res.policy, spo.softmax_r_over_alpha(pb.reward, a), pb.context_weight) < 1e-6


def test_numpy_field_matches_jax_gradient():
    """The π-space field of the Thm 2 check (numpy) equals −∇_π of the registered loss (JAX)."""
    rng = np.random.default_rng(8)
    pb = random_problem(rng, k=5, contexts=1, preference="reward")
    W = np.asarray(population(pb).weight)
    p = dirichlet(rng, (1, 5))
    m = rng.uniform(0.2, 2, (5, 5))
    for weight in spo_checks.MU_KINDS:
        got = np.asarray(spo_checks._field(jnp.asarray(p), 0.7, 0.8, weight, PreferenceData(jnp.asarray(W)), np.log(pb.pi_ref), (m + m.T)[None]))[0]
        want = spo_checks.field_np(p[0], 0.7, 0.8, weight, W[0], m + m.T)
        assert np.allclose(got, want, rtol=1e-11, atol=1e-12)


def test_thm2_flow_soft_importance_monotone():
    rng = np.random.default_rng(9)
    pb = random_problem(rng, k=3, contexts=1, preference="reward")
    target = spo.softmax_r_over_alpha(pb.reward, 0.8)
    d, p = spo_checks._flow("soft_importance", dirichlet(rng, (1, 3)), 0.8, np.asarray(population(pb).weight), None, target)
    live = d[:-1] > 1e-9
    assert np.all(d[1:][live] < d[:-1][live]) and metrics.tv(p, target) < 1e-8


def test_thm2_flow_lsoda_agrees_with_scipys_radau():
    """``spo-thm2-flow`` integrates with LSODA (compiled ODEPACK; 7.7× less CPU than SciPy's Python
    Radau over the check's flows, issue 22). The independent integrator, SciPy's implicit Radau
    IIA, gives the same flow to its tolerance (distances within 1e-8 at rtol 1e-9 on an O(1)
    state) and the same check value, the smallest relative decrease 1 − d_{t+1}/d_t, to 1e-9
    (values here 7e-6 … 8e-5), K = 3 and 5, every weighting."""
    rng = np.random.default_rng(10)

    def decrease(d):
        m = d[:-1] > 1e-9
        return float(np.min(1.0 - d[1:][m] / d[:-1][m]))

    for k in (3, 5):
        pb = random_problem(rng, k=k, contexts=1, preference="reward")
        target = spo.softmax_r_over_alpha(pb.reward, 0.6)
        m = rng.uniform(0.2, 2.0, (k, k))
        p0 = dirichlet(rng, (1, k), floor=0.05)
        for weight in spo_checks.MU_KINDS:
            args = (weight, p0, 0.6, np.asarray(population(pb).weight), (m + m.T)[None], target)
            d1, p1 = spo_checks._flow(*args, t_end=1e2, n_eval=40)
            d2, p2 = spo_checks._flow(*args, t_end=1e2, n_eval=40, method="Radau")
            assert np.max(np.abs(d1 - d2)) <= 1e-8 and np.max(np.abs(p1 - p2)) <= 1e-8, weight
            assert decrease(d1) > 0 and abs(decrease(d1) - decrease(d2)) <= 1e-9, weight
            assert d1[-1] < 1e-3 * d1[0]  # a real flow, not a trivial one
    with pytest.raises(ValueError, match="method"):
        spo_checks._flow(*args, method="RK45")


def test_thm2_flow_that_lsoda_cannot_finish_gives_nan_not_a_pass(monkeypatch):
    """When LSODA gives up ("Excess work done", forced here by a step budget of 3), odeint still
    returns an array — its rows after the failure are uninitialised memory (finite numbers like
    6.9e-310, which would read as a flow that reached π^α). ``_flow`` returns NaN distances
    instead, so ``spo-thm2-flow``'s value is NaN and the check fails."""
    import warnings

    import scipy.integrate

    real = scipy.integrate.odeint
    monkeypatch.setattr(scipy.integrate, "odeint", lambda *a, **k: real(*a, **{**k, "mxstep": 3}))
    pb = random_problem(np.random.default_rng(3), k=3, contexts=1, preference="reward")
    target = spo.softmax_r_over_alpha(pb.reward, 0.6)
    p0 = dirichlet(np.random.default_rng(4), (1, 3), floor=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d, p = spo_checks._flow("uniform", p0, 0.6, np.asarray(population(pb).weight), None, target, t_end=1e2, n_eval=10)
    assert np.all(np.isnan(d)) and np.all(np.isnan(p))


def test_alpha0_flow_stops_at_net_score_point_not_argmax():
    """Finding (docs/spo.md): K = 3, r = (1, 0.9, −3), uniform pairs: responses 0 and 1 both beat
    the rest on net, so the α = 0 flow ends at π ∝ c⁺, with mass on both — not at argmax r."""
    from bandit_lab.core.problems import Problem

    pb = Problem.create([1 / 3] * 3, reward=[1.0, 0.9, -3.0], pairs="uniform")
    W = np.asarray(population(pb).weight)
    p = np.asarray(spo_checks._alpha0_flow_fn(20000, 0.01)(np.array([[0.2, 0.3, 0.5]]), W, np.log(pb.pi_ref)))
    c = (W[0] - W[0].T).sum(1)
    assert c[0] > 0 and c[1] > 0 and c[2] < 0
    assert np.allclose(p[0], np.maximum(c, 0) / np.maximum(c, 0).sum(), atol=1e-10)
    assert p[0, 1] > 0.3  # far from the argmax vertex [1, 0, 0]


# Off-argmax rate of the α = 0 flow (docs/spo.md): counts per (pair law, K) on 20 000 bandits each,
# seed 0, measured with spo_checks.alpha0_off_argmax_count; the docs quote them with their exact
# (Clopper–Pearson) 95 % intervals.
ALPHA0_COUNTS = {("uniform", 3): 9992, ("uniform", 4): 17275, ("uniform", 5): 19521, ("uniform", 6): 19951, ("uniform", 8): 20000,
                 ("reference", 3): 9913, ("reference", 4): 15494, ("reference", 5): 17965, ("reference", 6): 19158, ("reference", 8): 19854}


def test_alpha0_off_argmax_rate_pinned_and_reproduced_on_fresh_bandits():
    """The documented rates are what the counter gives (seed 0), and a fresh sample (seed 1) of the
    same size agrees with each within 4 standard errors of the difference of two binomials; at
    K = 3 both pair laws are consistent with exactly ½ (two-sided binomial p > 1e-3)."""
    from scipy import stats

    n = 20000
    for (pl, k), m in ALPHA0_COUNTS.items():
        assert spo_checks.alpha0_off_argmax_count(k, n, 0, pl) == m
        m1 = spo_checks.alpha0_off_argmax_count(k, n, 1, pl)
        p = (m + m1) / (2 * n)
        assert abs(m - m1) / n <= 4 * np.sqrt(2 * p * (1 - p) / n) + 1 / n
    for pl in ("uniform", "reference"):
        assert stats.binomtest(ALPHA0_COUNTS[(pl, 3)], n, 0.5).pvalue > 1e-3
        rates = [ALPHA0_COUNTS[(pl, k)] for k in spo_checks.RATE_KS]
        assert all(a < b for a, b in zip(rates, rates[1:])) or rates[-1] == n


def test_alpha0_counter_agrees_with_the_flow_on_random_problem_draws():
    """The vectorised counter's criterion (≥ 2 positive net scores) is where the α = 0 flow itself
    ends off the argmax: on 12 bandits drawn by random_problem, the flow's endpoint is the argmax
    vertex exactly when the criterion says so."""
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(12):
        pb = random_problem(rng, k=3, contexts=1, preference="reward", pairs=str(rng.choice(["uniform", "reference"])))
        W = np.asarray(population(pb).weight)
        c = (W[0] - W[0].T).sum(1)
        off = int(np.sum(c > 0)) >= 2
        p = np.asarray(spo_checks._alpha0_flow_fn(20000, 0.01)(dirichlet(rng, (1, 3), floor=0.05), W, np.log(pb.pi_ref)))
        at_argmax = bool(p[0, int(np.argmax(pb.reward[0]))] > 1 - 1e-9)
        assert at_argmax == (not off)
        seen.add(off)
    assert seen == {True, False}


def test_alpha0_loss_is_unbounded_below_so_no_minimiser_exists():
    """L⁰(π) = −½ Σ_y c(y) log π(y) with Σ_y c(y) = 0 (c the net score): a response with c(y) < 0
    drives L⁰ → −∞. Along π_t(y⁻) = e^{−t}, the rest uniform on 1 − e^{−t}, the core loss falls
    with slope exactly ½·c(y⁻) < 0 per unit t (closed form above)."""
    pb = random_problem(np.random.default_rng(5), k=4, contexts=1, preference="reward")
    o = make_objective(pb, "spo_pref", {"alpha": 0.0})
    W = np.asarray(population(pb).weight)[0]
    c = (W - W.T).sum(1)
    assert abs(c.sum()) < 1e-15 and c.min() < 0
    neg = int(np.argmin(c))

    def policy(t):
        p = np.full(4, (1 - np.exp(-t)) / 3)
        p[neg] = np.exp(-t)
        return p

    ts = (10.0, 20.0, 40.0, 80.0)
    v = [float(o.value(jnp.asarray(np.log(policy(t)))[None], o.hp)) for t in ts]
    for t, val in zip(ts, v):
        assert val == pytest.approx(-0.5 * float(np.dot(c, np.log(policy(t)))), rel=1e-12, abs=1e-14)
    assert np.all(np.diff(v) < 0)
    assert (v[3] - v[2]) / 40.0 == pytest.approx(0.5 * c[neg], rel=1e-12)  # e^{−40} corrections are below rounding


# ----------------------------------------------------------------------------- App. B estimator

def test_sampled_kl_exact_in_expectation():
    logits, W, ref, cw = _instance(10)
    inp = _inputs(jnp.asarray(logits), W, ref, cw)
    q = dirichlet(np.random.default_rng(0), logits.shape)
    exact = lambda z: spo.exact_kl(_inputs(z, W, ref, cw))  # noqa: E731
    est = lambda z: spo.sampled_kl(_inputs(z, W, ref, cw), jnp.log(q), jnp.asarray(q))  # noqa: E731
    assert float(est(jnp.asarray(logits))) == pytest.approx(float(spo.exact_kl(inp)), rel=1e-12)
    assert np.allclose(jax.grad(est)(jnp.asarray(logits)), jax.grad(exact)(jnp.asarray(logits)), atol=1e-12)


def test_sampled_kl_trainer_lands_near_exact_optimum():
    from bandit_lab.core.train import TrainConfig

    pb = random_problem(np.random.default_rng(11), k=5, contexts=1, preference="reward")
    o = make_objective(pb, "spo", {"alpha": 0.7, "beta": 0.5})
    tr = jax.jit(spo.make_train_sampled_kl(o, TrainConfig(steps=3000, log_steps=(0, 3000)), refresh_every=8, n_samples=256))({"lr": 0.05, "seed": 3})
    ex = solve_exact(o)
    assert metrics.tv(np.asarray(tr.policy), ex.policy) < 0.02


# ----------------------------------------------------------------------------- IPO notes

def test_lemma_3_1_difference_is_the_predicted_constant():
    """(9) − (10) = E[T9²] − E[T10²] for every θ (the cross terms cancel, notes Eq. 13–14);
    (9), (10) recomputed by explicit loops."""
    rng = np.random.default_rng(12)
    K = 4
    v = ipo_notes.random_matrix(rng, K)
    mu = dirichlet(rng, (K,))
    s = v @ mu
    const = sum(mu[i] * mu[j] * ((s[i] - s[j]) ** 2 - v[i, j] ** 2) for i in range(K) for j in range(K))
    for _ in range(5):
        q = rng.normal(0, 3, K)
        o9 = sum(mu[i] * mu[j] * (q[i] - q[j] - sum(mu[y] * (v[i, y] - v[j, y]) for y in range(K))) ** 2 for i in range(K) for j in range(K))
        o10 = sum(mu[i] * mu[j] * (q[i] - q[j] - v[i, j]) ** 2 for i in range(K) for j in range(K))
        a, b = ipo_notes.objectives_9_10(q, v, np.outer(mu, mu), mu)
        assert (a, b) == pytest.approx((o9, o10), rel=1e-12)
        assert o9 - o10 == pytest.approx(const, abs=1e-12)
    assert ipo_notes.lemma_3_1_needs_product(3, 0) > 1e-3


def test_ipo_product_law_closed_form():
    assert ipo_notes.product_law_optimum(3, 1) < 1e-8


def test_registry_has_spo():
    assert get("spo").defaults["alpha"] == 1.0 and get("spo_pref").static["weight"] == "uniform"


# ----------------------------------------------------------------------------- experiments

def _run(name, **kw):
    from bandit_lab.experiments import get as get_exp, make_settings

    exp = get_exp(name)
    return exp.run(make_settings(exp, kw))


def test_spo_softness_headlines():
    res = _run("spo-softness", n_grid=3, steps=100, grid_min=0.05, spo_alphas=(1.0,))
    assert res["max_tv_exact_closed"] < 1e-9
    assert res["dpo_entropy_at_min_beta"] < 1e-3  # deterministic as β → 0
    pref = [r for r in res["records"] if r["objective"] == "spo_pref"]
    assert all(r["tv_to_softmax_r_over_alpha"] < 1e-9 for r in pref)
    spo_b = [r for r in res["records"] if r["objective"] == "spo[α=1]"]
    assert spo_b[0]["entropy_exact"] > 1.2 and spo_b[0]["tv_to_softmax_r_over_alpha"] > 1e-2  # β>0 ≠ softmax(r/α)


def test_ipo_vs_dpo_two_responses():
    res = _run("ipo-vs-dpo", n_responses=2, n_pairs=5, steps=4000, betas=(0.5, 2.0), lr=0.1)
    for r in res["records"]:
        if r["loss"] == "ipo":
            assert r["exact_ipo_margins"][0] == pytest.approx(0.5 / r["beta"], rel=1e-8)
            assert r["final_margins"][0] == pytest.approx(0.5 / r["beta"], rel=1e-2)
        else:
            m = np.asarray(r["margins"])[:, 0]
            # the margin keeps growing (π(y_l) → 0): strictly increasing, already far past IPO's stop
            assert np.all(np.diff(m[1:]) > 0) and m[-1] > 10 * (0.5 / r["beta"])
            assert np.all(np.diff(r["pi_worst"][1:]) < 0)


def test_win_rate_dynamics_quick():
    res = _run("win-rate-dynamics", seeds=3, steps=200, n_log=11)
    for r in res["records"]:
        assert r["win_rate"][0] == pytest.approx(0.5, abs=1e-12) and 0 <= min(r["win_rate"]) and max(r["win_rate"]) <= 1
    assert res["summary"]["dpo"]["peak"]["mean"] > 0.5
    assert res["summary"]["spo"]["peak"]["mean"] > 0.5


@pytest.mark.slow
def test_win_rate_dynamics_bit_for_bit():
    a, b = (_run("win-rate-dynamics", seeds=3, steps=200, n_log=11) for _ in range(2))
    assert [r["win_rate"] for r in a["records"]] == [r["win_rate"] for r in b["records"]]


def test_loss_oracle_gives_softmax_r_over_alpha_for_spo_pref():
    """`solve` prints SPO Thm 1's closed form; it meets the exact solver on random bandits."""
    from bandit_lab.solvers.oracles import loss_oracle

    rng = np.random.default_rng(21)
    for _ in range(3):
        pb = random_problem(rng, k=5, contexts=1, preference="reward")
        a = float(rng.uniform(0.2, 2.0))
        o = make_objective(pb, "spo_pref", {"alpha": a})
        pi, note = loss_oracle(pb, "spo_pref", o.hp, o.static)
        assert "Thm 1" in note
        assert metrics.tv(solve_exact(o).policy, pi) < 1e-8
    assert loss_oracle(pb, "spo_pref", {"alpha": 0.0}, {"weight": "uniform"})[0] is None
