"""Issue 10 beyond the per-triple formulas of test_zoo.py: the batch-coupled and composite losses
against NumPy references and finite differences, the convention options, the exact solvers for
kinked losses (QP vs Adam vs a generic SciPy solve), TR-DPO's moving fixed point, the token
losses on trees, and the (loss, f) check."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bandit_lab.core import divergences, metrics
from bandit_lab import losses
from bandit_lab import fixed_points as fp
from bandit_lab.core.data import PreferenceData
from bandit_lab.errors import BanditError
from bandit_lab.solvers.exact_solvers import stationarity
from bandit_lab.losses import LossInputs
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum, softmax_np
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet, random_problem
from bandit_lab.runner import train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.core.train import TrainConfig

APP_B = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])


def _case(seed, X=2, K=4):
    rng = np.random.default_rng(seed)
    theta = rng.normal(0, 1.0, (X, K))
    lref = np.log(dirichlet(rng, (X, K)))
    W = rng.uniform(0.1, 1.0, (X, K, K)) * (1 - np.eye(K))
    W /= W.sum()
    return theta, lref, W


def _lsm(t):
    return t - np.log(np.exp(t - t.max(-1, keepdims=True)).sum(-1, keepdims=True)) - t.max(-1, keepdims=True)


def _vg(name, params, theta, lref, W):
    spec = losses.get(name)
    hp, static = losses.split_params(spec, params)
    fn = losses.bind(spec, static)

    def f(th):
        return fn(LossInputs(jax.nn.log_softmax(th, -1), jnp.asarray(lref), PreferenceData(jnp.asarray(W)), None,
                             jnp.asarray(W.sum((1, 2)))), hp)

    v, g = jax.value_and_grad(f)(jnp.asarray(theta))
    return float(v), np.asarray(g)


def _fd(ref, theta, eps=1e-6):
    g = np.zeros_like(theta)
    for i in np.ndindex(theta.shape):
        d = np.zeros_like(theta)
        d[i] = eps
        g[i] = (ref(theta + d) - ref(theta - d)) / (2 * eps)
    return g


def _sp(u):
    return np.logaddexp(0.0, u)


# --------------------------------------------------------------------------- sorted losses

def _np_quantile(a, b, w, ell):
    """∫₀¹ ℓ(F_a⁻¹(q) − F_b⁻¹(q)) dq for two discrete laws on the same weights, by merging the
    breakpoints of the two sorted cumulative weights (plain NumPy, independent of the JAX code)."""
    ia, ib = np.argsort(a, kind="stable"), np.argsort(b, kind="stable")
    ca, cb = np.cumsum(w[ia]), np.cumsum(w[ib])
    cuts = np.unique(np.concatenate([[0.0], ca, cb]))
    tot = 0.0
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        if hi - lo <= 0:
            continue
        q = 0.5 * (lo + hi)
        n = len(a) - 1  # the two totals agree up to rounding: a last sliver of ~1e-17 maps to the top atoms
        tot += (hi - lo) * ell(a[ia][min(np.searchsorted(ca, q), n)] - b[ib][min(np.searchsorted(cb, q), n)])
    return tot


@pytest.mark.parametrize("name", ["aot", "aot_unpaired"])
def test_aot_against_numpy_quantile_coupling(name):
    theta, lref, W = _case(3)
    beta, eps = 0.8, 0.15

    def ref(th):
        lp = _lsm(th)
        live = W > 0
        if name == "aot":
            a = (lp[:, :, None] - lp[:, None, :])[live]
            b = (lref[:, :, None] - lref[:, None, :])[live]
        else:
            h = lp - lref
            a = np.broadcast_to(h[:, :, None], W.shape)[live]
            b = np.broadcast_to(h[:, None, :], W.shape)[live]
        return _np_quantile(a, b, W[live], lambda u: (1 - eps) * _sp(-beta * u) + eps * _sp(beta * u))

    v, g = _vg(name, {"beta": beta, "label_smoothing": eps}, theta, lref, W)
    assert v == pytest.approx(ref(theta), rel=1e-12)
    np.testing.assert_allclose(g, _fd(ref, theta), rtol=1e-6, atol=1e-9)


def test_aot_on_one_triple_is_cdpo():
    theta, lref, _ = _case(4, X=1)
    W = np.zeros((1, 4, 4))
    W[0, 2, 1] = 1.0
    a = _vg("aot", {"beta": 1.3, "label_smoothing": 0.2}, theta, lref, W)
    b = _vg("cdpo", {"beta": 1.3, "label_smoothing": 0.2}, theta, lref, W)
    assert a[0] == pytest.approx(b[0], rel=1e-14)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-15)


# --------------------------------------------------------------------------- mixtures, WPO, options

def _np_dpo(lp, lref, W, beta):
    h = lp - lref
    return float(np.sum(W * _sp(-beta * (h[:, :, None] - h[:, None, :]))))


def test_mixture_mpo_wpo_against_numpy():
    theta, lref, W = _case(5)
    beta = 0.9

    def mpo(th):
        lp = _lsm(th)
        h = lp - lref
        bco = np.sum(W * (_sp(-beta * h[:, :, None]) + _sp(beta * h[:, None, :])))
        sft = -np.sum(W * lp[:, :, None])
        return 0.8 * _np_dpo(lp, lref, W, beta) + 0.2 * bco + 1.0 * sft

    v, g = _vg("mpo", {"beta": beta}, theta, lref, W)
    assert v == pytest.approx(mpo(theta), rel=1e-12)
    np.testing.assert_allclose(g, _fd(mpo, theta), rtol=1e-6, atol=1e-9)

    lp0 = _lsm(theta)
    wts = np.exp(lp0 - np.log(np.sum(np.exp(2 * lp0), -1, keepdims=True)))  # WPO: π(y)/Σπ², detached

    def wpo(th):
        lp = _lsm(th)
        return _np_dpo(lp, lref, W * wts[:, :, None] * wts[:, None, :], beta)

    v, g = _vg("wpo", {"beta": beta}, theta, lref, W)
    assert v == pytest.approx(wpo(theta), rel=1e-12)
    np.testing.assert_allclose(g, _fd(wpo, theta), rtol=1e-6, atol=1e-9)

    # sft_weighting: TRL's E[w_w w_l]·NLL vs per-pair weighting
    pw = wts[:, :, None] * wts[:, None, :]
    for mode, want in (("trl", np.sum(W * pw) * -np.sum(W * lp0[:, :, None])), ("pair", -np.sum(W * pw * lp0[:, :, None]))):
        v, _ = _vg("mixture", {"terms": ["sft"], "use_weighting": True, "sft_weighting": mode}, theta, lref, W)
        assert v == pytest.approx(want, rel=1e-12), mode


def test_mixture_divergence_rules():
    with pytest.raises(BanditError, match="no f-divergence generalisation.*λ\\(x\\)"):
        make_objective(APP_B, "mixture", {"terms": ["nca_pair"], "divergence": "js"})
    with pytest.raises(BanditError, match="WPO weighting is not defined"):
        make_objective(APP_B, "mixture", {"terms": ["aot"], "use_weighting": True})
    with pytest.raises(BanditError):
        make_objective(APP_B, "mixture", {"terms": ["dpo", "dpo"]})
    # hinge with JS scores = hinge on the JS f' differences (TRL's f_divergence_type for hinge)
    theta, lref, W = _case(6)

    def ref(th):
        h = _lsm(th) - lref
        s = np.log(2.0) + h - np.logaddexp(0.0, h)
        return float(np.sum(W * np.maximum(0.0, 1.0 - 1.1 * (s[:, :, None] - s[:, None, :]))))

    v, _ = _vg("mixture", {"terms": ["hinge"], "divergence": "js", "beta": 1.1}, theta, lref, W)
    assert v == pytest.approx(ref(theta), rel=1e-12)


def test_bco_delta_and_kto_options():
    theta, lref, W = _case(7)
    lp = _lsm(theta)
    h = lp - lref
    b = 1.2
    d = np.sum(W * b * (h[:, :, None] + h[:, None, :]) / 2)
    for delta, dd in (("none", 0.0), ("mean", d)):
        v, _ = _vg("bco_pair", {"beta": b, "delta": delta}, theta, lref, W)
        assert v == pytest.approx(np.sum(W * (_sp(-(b * h[:, :, None] - dd)) + _sp(b * h[:, None, :] - dd))), rel=1e-12)
    rho = W.sum((1, 2))
    mu = 0.5 * (W.sum(-1) + W.sum(-2)).sum(0)
    for rp, z in (("kl", max(0.0, np.sum(rho * np.sum(np.exp(lp) * h, -1)))), ("data", max(0.0, np.sum(rho[:, None] * mu[None] * h)))):
        per = 1 - 1 / (1 + np.exp(-b * (h[:, :, None] - z))) + 1 - 1 / (1 + np.exp(-b * (z - h[:, None, :])))
        for red, c in (("example", 0.5), ("pair", 1.0)):
            v, _ = _vg("kto", {"beta": b, "reference_point": rp, "reduction": red}, theta, lref, W)
            assert v == pytest.approx(c * np.sum(W * per), rel=1e-12), (rp, red)


def test_fdpo_reverse_kl_is_dpo_exactly_at_extreme_margins():
    W = np.zeros((1, 2, 2))
    W[0, 0, 1] = 1.0
    lref = np.log(np.array([[0.5, 0.5]]))
    for m in (-1e3, -700.0, 700.0, 1e3):
        th = np.array([[m / 2, -m / 2]])
        a = _vg("fdpo", {"divergence": "reverse_kl"}, th, lref, W)
        b = _vg("dpo", {}, th, lref, W)
        assert a[0] == b[0] and np.array_equal(a[1], b[1])
        assert b[0] == pytest.approx(np.logaddexp(0.0, -m), rel=1e-15)
    # the guard leaves f' unchanged wherever its exponent is ≤ 700
    h = jnp.linspace(-699.0, 699.0, 41)
    np.testing.assert_array_equal(np.asarray(divergences.fprime("forward_kl", h)), np.asarray(-jnp.exp(-h)))
    np.testing.assert_array_equal(np.asarray(divergences.fprime("js", jnp.asarray([-1e3, 1e3]))),
                                  np.asarray(jnp.log(2.0) + jnp.asarray([-1e3, 1e3]) - jnp.logaddexp(0.0, jnp.asarray([-1e3, 1e3]))))


def test_chi_mix_oracle_and_chipo_fixed_point():
    """χ²-mix f': u + log u; its inverse (Lambert W) and the f-RLHF stationarity β f'(π/π_ref) = r − λ."""
    t = np.linspace(-30, 30, 61)
    u = divergences.fprime_inv("chi_mix", t)
    np.testing.assert_allclose(u + np.log(u), t, rtol=1e-13, atol=1e-13)
    rng = np.random.default_rng(8)
    pb = random_problem(rng, k=4, contexts=1, preference="pi_star", pairs="uniform")
    pi = rlhf_optimum(pb.pi_ref, pb.reward, 0.7, "chi_mix")
    lam = pb.reward - 0.7 * (pi / pb.pi_ref + np.log(pi / pb.pi_ref))
    assert np.ptp(lam) < 1e-12 and abs(pi.sum() - 1) < 1e-15
    ex = solve_exact(make_objective(pb, "chipo", {"beta": 0.7})).policy
    assert metrics.tv(ex, pi).max() < 1e-10


def test_spo_beta_zero_is_its_preference_loss():
    a = solve_exact(make_objective(APP_B, "spo", {"beta": 0.0})).policy
    b = solve_exact(make_objective(APP_B, "spo_pref")).policy
    assert metrics.tv(a, b).max() < 1e-12
    with pytest.raises(BanditError, match="beta must be > 0"):
        make_objective(APP_B, "dpo", {"beta": 0.0})


# --------------------------------------------------------------------------- exact solvers for kinked losses

@pytest.mark.parametrize("wd", [0.1, 0.5])
def test_hinge_with_weight_decay_qp_beats_adam_and_scipy(wd):
    """The QP answer's objective is no higher than Adam's (20000 steps) or a generic SciPy solve
    (Powell, derivative-free), and it is certified: min-norm subgradient ≈ 0; Adam's own point
    counts as converged under that measure (its projected gradient does not vanish at a kink)."""
    rng = np.random.default_rng(9)
    for pb in (APP_B, random_problem(rng, k=4, contexts=2, preference="pi_star", pairs="uniform")):
        o = make_objective(pb, "hinge", weight_decay=wd)
        r = solve_exact(o)
        assert r.converged and r.residual < 1e-12
        value = jax.jit(o.value)  # Powell calls it ~5,000 times: eager dispatch was 14 s of CPU, jitted 1 s
        f = lambda z: float(value(jnp.asarray(z.reshape(pb.pi_ref.shape)), o.hp))  # noqa: E731
        pw = optimize.minimize(f, np.log(pb.pi_ref).ravel(), method="Powell", options={"xtol": 1e-12, "ftol": 1e-15, "maxiter": 200000})
        (t,) = train_batch([o], TrainConfig(steps=20000, log_steps=(0, 20000)), [[{**o.hp, "lr": 0.05}]])
        adam = float(t.loss[0, -1])
        assert r.value <= pw.fun + 1e-15 and r.value <= adam + 1e-15
        if pb is APP_B:  # Adam converges here (measured: TV 2e-7 after 3000 steps) ...
            assert adam - r.value < 1e-8 and metrics.tv(np.asarray(t.policy[0]), r.policy) < 1e-6
            assert stationarity(o, jnp.asarray(t.params[0])) < 1e-6
            if wd == 0.1:  # ... onto a kink, where the plain gradient norm stays O(0.1)
                assert float(t.grad_norm[0]) > 1e-2


def test_stationarity_is_the_gradient_norm_for_smooth_losses():
    o = make_objective(APP_B, "dpo", weight_decay=0.1)
    th = jnp.asarray([[0.3, -0.2, 0.1]])
    g = jax.grad(lambda p: o.value(p, o.hp))(th)
    assert stationarity(o, th) == pytest.approx(float(jnp.linalg.norm(g)), rel=1e-14)


def test_cpo_hinge_and_mixture_with_hinge_exact():
    for o in (make_objective(APP_B, "cpo", {"loss_type": "hinge", "cpo_alpha": 0.0}, weight_decay=0.2),
              make_objective(APP_B, "cpo", {"loss_type": "hinge"}, weight_decay=0.2),
              make_objective(APP_B, "mixture", {"terms": ["hinge", "sft"]}, weight_decay=0.1)):
        r = solve_exact(o)
        assert r.converged and r.residual < 1e-10, o.loss.name
        (t,) = train_batch([o], TrainConfig(steps=20000, log_steps=(0, 20000)), [[{**o.hp, "lr": 0.05}]])
        assert r.value <= float(t.loss[0, -1]) + 1e-15


def test_dpop_exact_on_its_kinks():
    """DPOP's optimum sits on kinks h_y = 0: λ = 50 pins π = π_ref on App. B (every response is chosen
    somewhere and the mass cannot rise everywhere); λ = 1 leaves y₁ exactly at π_ref(y₁)."""
    r = solve_exact(make_objective(APP_B, "dpop"))
    assert r.converged and metrics.tv(r.policy, APP_B.pi_ref).max() < 1e-12
    r1 = solve_exact(make_objective(APP_B, "dpop", {"lam": 1.0}))
    assert r1.converged and abs(r1.policy[0, 1] - 0.4) < 1e-12
    o = make_objective(APP_B, "dpop", {"lam": 1.0})
    (t,) = train_batch([o], TrainConfig(steps=20000, log_steps=(0, 20000)), [[{**o.hp, "lr": 0.05}]])
    assert r1.value <= float(t.loss[0, -1]) + 1e-15 and metrics.tv(np.asarray(t.policy[0]), r1.policy) < 1e-5


# --------------------------------------------------------------------------- TR-DPO

def test_trdpo_synced_fixed_point_closed_form_and_adam():
    """With α‖θ‖²: the synced fixed point θ* = β n/(4α) (n = net win weight), found by the exact
    solver and reached by Adam with a soft sync every 4 steps; the moving reference ends at θ*."""
    for wd, beta in ((0.1, 1.0), (0.3, 0.5)):
        o = make_objective(APP_B, "trdpo", {"beta": beta, "mixup_alpha": 0.5, "sync_steps": 4}, weight_decay=wd)
        W = np.asarray(o.data.weight)
        want = beta * (W.sum(-1) - W.sum(-2)) / (4 * wd)
        r = solve_exact(o)
        assert r.converged and np.abs(np.asarray(r.params) - want).max() < 1e-12
        (t,) = train_batch([o], TrainConfig(steps=6000, log_steps=(0, 6000)), [[{**o.hp, "lr": 0.05}]])
        assert np.abs(np.asarray(t.params[0]) - want).max() < 1e-6


def test_trdpo_moving_optimum_is_rlhf_at_shrinking_beta():
    """Exact inner solves between syncs (BT, no weight decay): after k soft syncs the optimum is the
    RLHF optimum at β/(1 + kα) — the fixed point moves towards argmax r."""
    beta, a = 1.0, 0.6
    ref = APP_B.pi_ref.copy()
    for k in range(4):
        pb = Problem.create(ref[0], pi_star=[0.6, 0.3, 0.1])
        opt = solve_exact(make_objective(pb, "dpo", {"beta": beta})).policy
        want = rlhf_optimum(APP_B.pi_ref, APP_B.reward, beta / (1 + k * a))
        assert metrics.tv(opt, want).max() < 1e-10, k
        ref = softmax_np(a * np.log(opt) + (1 - a) * np.log(ref))  # TRL's mix (softmax logits)
    res = fp.fixed_points(only=["trdpo"])
    row = res["records"][0]
    assert row["finite"] is False and row["policy"][0][0] == 1.0


def test_trdpo_runaway_certificate_is_the_constant_synced_field():
    """Without weight decay TR-DPO has no synced fixed point: its certificate is that the field at
    θ_ref = θ is the constant −(β/2)n. Independently of the row's own check: n from Kong App. B's
    BT preferences by hand (uniform pairs, p_ij = π*_i/(π*_i + π*_j)), and the DPO gradient against
    a frozen reference equal to the current policy by central differences at a random θ — the
    same vector, up to the loss's normalisation (one positive factor), wherever θ is."""
    row = fp.fixed_points(only=["trdpo"])["records"][0]
    cert = row["verdict"]["certificate"]
    ps = np.array([0.6, 0.3, 0.1])
    P = ps[:, None] / (ps[:, None] + ps[None, :])
    n = (P - P.T).sum(1)  # Σ_j p_ij − p_ji (diagonal 0); up to the pair weight's normalisation
    got = np.asarray(cert["net_win"][0])
    assert np.abs(got / np.abs(got).max() - n / np.abs(n).max()).max() < 1e-12
    assert cert["stability"] == "runaway" and cert["field_deviation"] < 1e-12 and row["verdict"]["limit"] == [[1.0, 0.0, 0.0]]
    assert "y2, y3" in row["status"] and row["method"] == "field"

    rng = np.random.default_rng(3)
    for _ in range(2):
        th = rng.normal(0.0, 3.0, 3)
        lp0 = th - np.logaddexp.reduce(th)  # the frozen reference = the current policy
        synced = make_objective(Problem.create(np.exp(lp0), pi_star=[0.6, 0.3, 0.1]), "dpo", {"beta": 1.0})

        def value(t):
            return float(synced.value(jnp.asarray(t)[None], synced.hp))

        g = np.array([(value(th + h) - value(th - h)) / 2e-5 for h in 1e-5 * np.eye(3)])
        g -= g.mean()
        want = -0.5 * n
        want -= want.mean()
        c = (g @ want) / (want @ want)
        assert c > 0 and np.abs(g - c * want).max() < 1e-8 * np.abs(want).max()


# --------------------------------------------------------------------------- token trees

def test_sigmoid_norm_and_lddpo_on_a_tree():
    from bandit_lab.tokens.param import make_param
    from bandit_lab.tokens.tree import random_tree_problem

    rng = np.random.default_rng(10)
    tp = random_tree_problem(rng, vocab=3, horizon=3, eos=True)
    param = make_param(tp)
    tree = tp.tree
    lens = np.array([len(s) for s in tree.sequences])
    assert len(set(lens)) > 1
    params = jnp.asarray(rng.normal(0, 1, param.shape))
    for name, hp in (("sigmoid_norm", {"beta": 0.8}), ("lddpo", {"beta": 0.8, "ld_alpha": 0.3})):
        o = make_objective(tp.problem, name, hp, param=param)
        v = float(o.value(params, o.hp))
        lps = np.asarray(jax.nn.log_softmax(params, -1))
        lr = np.asarray(tp.ref_logp)
        W = np.asarray(o.data.weight)
        tot = 0.0
        for x, i, j in zip(*np.nonzero(W)):
            def tok(lp, k, upto):  # Σ_t log π(y_t|s_t) with token t (1-based) weighted by 1 or α past `upto`
                out, s = 0.0, 0
                for t, a in enumerate(tree.sequences[k], start=1):
                    c = 1.0 if t <= upto else hp.get("ld_alpha", 1.0)
                    out += c * lp[x, s, a]
                    s = tree.child[s, a]
                return out
            if name == "sigmoid_norm":
                d = (tok(lps, i, 99) - tok(lr, i, 99)) / lens[i] - (tok(lps, j, 99) - tok(lr, j, 99)) / lens[j]
            else:
                m = min(lens[i], lens[j])
                d = (tok(lps, i, m) - tok(lr, i, m)) - (tok(lps, j, m) - tok(lr, j, m))
            tot += W[x, i, j] * np.logaddexp(0.0, -0.8 * d)
        assert v == pytest.approx(tot, rel=1e-12), name


# --------------------------------------------------------------------------- (loss, f) table

def test_fdiv_table_one_instance():
    from bandit_lab.checks import fdiv_table

    assert fdiv_table._difference("hinge")(1, 0) < 1e-10
    assert fdiv_table._difference("ipo")(1, 0) < 1e-10
    assert fdiv_table._per_response("nca_pair")(1, 0) > 1e-4


def test_list_and_fixed_points_show_new_losses():
    names = set(losses.registry())
    for n in ("aot", "aot_unpaired", "sft", "mixture", "mpo", "wpo", "apo_zero_unpaired", "trdpo", "alphapo", "chipo", "dpop",
              "caldpo", "sigmoid_norm", "lddpo"):
        assert n in names
    labels = {c[0] for c in fp.configurations()}
    assert {"aot", "mpo", "wpo", "chipo", "dpop", "caldpo", "trdpo", "sft"} <= labels
    assert math.isfinite(stationarity(make_objective(APP_B, "mpo"), jnp.log(jnp.asarray(APP_B.pi_ref))))
