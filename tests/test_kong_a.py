"""Kong et al. experiments, part A: early stopping (Fig. 3), mode seeking (§3.3), the simplex
view, and the App. C / D / A.2 theorem checks. References are independent of the code under
test: closed forms derived by hand, central finite differences, plain NumPy, a second solver."""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab import experiments
from bandit_lab.checks import kong, run_check
from bandit_lab.core.data import PreferenceData, make_data
from bandit_lab.errors import BanditError
from bandit_lab.experiments import early_stopping as es
from bandit_lab.experiments import mode_seeking as ms
from bandit_lab.experiments import simplex_view as sv
from bandit_lab.losses import LossInputs, dpo
from bandit_lab.solvers.solver import solve_exact


# ----------------------------------------------------------------------------- early stopping

@pytest.fixture(scope="module")
def early():
    return es.run(es.Settings(steps=1500, n_log=20, compare_constant=False))


def test_early_stopping_converges_and_starts_apart(early):
    labels = ["dpo", "fdpo[forward_kl]", "ipo"]
    assert sorted(early["final_distance"]) == sorted(labels)
    for lab in labels:
        assert early["final_distance"][lab] < 1e-6  # issue: < 1e-6 at convergence
        assert early["initial_distance"][lab] > 1e-2  # after one Adam step the pairs differ
        assert early["peak_distance"][lab] > 2e-2
        assert early["final_gap_to_exact"][lab] < 1e-6
        # the "exact curve": the two exactly-converged optima coincide at α = 0 and equal the closed forms
        assert early["exact"][lab]["exact_distance"] < 1e-12
        assert early["exact"][lab]["exact_vs_closed_form"] < 1e-10
    step0 = [r for r in early["records"] if r["step"] == 0]
    assert all(r["distance"] == 0.0 for r in step0)  # both start at π_ref


def test_early_stopping_dpo_closed_form_by_hand(early):
    # RLHF optimum of App. B: π ∝ π_ref·π* = [0.24, 0.12, 0.02]/0.38 (β = 1)
    want = np.array([0.24, 0.12, 0.02]) / 0.38
    got = np.array(early["exact"]["dpo"]["exact"])
    assert np.abs(got - want).max() < 1e-10


# ----------------------------------------------------------------------------- mode seeking

def test_dpo_optimum_is_exactly_two_fifths():
    # L'(θ)·(2+θ)(1+2θ)(1−θ) = 7.5θ − 3 (the θ² terms cancel) ⇒ θ = 0.4; central differences agree
    h = 1e-6
    slope = (ms.dpo_landscape_beta1(0.4 + h) - ms.dpo_landscape_beta1(0.4 - h)) / (2 * h)
    assert abs(slope) < 1e-8
    dpo_obj, _ = ms.objectives(1.0)
    ex = solve_exact(dpo_obj, init=jnp.asarray([0.5]))
    assert abs(float(np.asarray(ex.params)[0]) - 0.4) < 1e-6
    # the core loss on the family equals the hand-derived landscape/3 up to a constant
    th = np.linspace(0.0, 0.95, 9)
    core = np.array([float(dpo_obj.value(jnp.asarray([t]), dpo_obj.hp)) for t in th])
    diff = core - ms.dpo_landscape_beta1(th) / 3.0
    assert np.ptp(diff) < 1e-12
    # the analytic slope used in the gap analysis vs a central difference of the core loss
    f = lambda t: float(dpo_obj.value(jnp.asarray([t]), dpo_obj.hp))  # noqa: E731
    assert abs(ms.dpo_slope(0.44, 1.0) - (f(0.44 + 1e-6) - f(0.44 - 1e-6)) / 2e-6) < 1e-7


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_dpo_family_closed_form_other_beta(beta):
    dpo_obj, _ = ms.objectives(beta)
    ex = solve_exact(dpo_obj, init=jnp.asarray([0.5]))
    assert abs(float(np.asarray(ex.params)[0]) - ms.theta_dpo_closed(beta)) < 1e-8


@pytest.mark.parametrize("floor", [1e-2, 1e-6, 1e-12])
def test_rlhf_floor_closed_form(floor):
    _, rl = ms.objectives(1.0, floor)
    th = float(np.asarray(solve_exact(rl, init=jnp.asarray([0.5])).params)[0])
    s = np.sqrt(0.5 / floor)
    assert abs(th - (s - 1) / (s + 2)) < 1e-8


def test_sampled_data_theta_matches_count_formula():
    # a finite dataset drawn by the core sampler; the exact box optimum on it equals θ(A/C)
    pb = ms.problem()
    data = make_data(pb, "sampled", 40, seed=3)
    dpo_obj, _ = ms.objectives(1.0, data=data)
    th = float(np.asarray(solve_exact(dpo_obj, init=jnp.asarray([0.5])).params)[0])
    assert abs(th - ms.theta_dpo_closed(1.0, ms.a_over_c(np.asarray(data.weight)[0]))) < 1e-7
    law = ms.finite_sample_law(50, 1.0)
    assert abs(law["total_probability"] - 1.0) < 1e-12


@pytest.fixture(scope="module")
def mode():
    return ms.run(ms.Settings(**ms.EXPERIMENT.quick))


def test_mode_seeking_run(mode):
    assert mode["theta_rlhf"] >= 0.99 and mode["theta_rlhf_exact"] >= 0.99
    assert abs(mode["theta_dpo_exact"] - 0.4) < 1e-6
    assert abs(mode["theta_dpo"] - mode["theta_dpo_exact"]) < 1e-3  # issue: Adam within 1e-3
    assert mode["paper"] == {"theta_rlhf": 1.00, "theta_dpo": 0.44}
    assert mode["exact_residual"] < 1e-9
    # limit study: 1 − θ_RLHF(ε) shrinks like √ε (closed form 3/(s+2), s = √(½/ε))
    f = mode["floors"]
    assert all(a["one_minus_theta"] > b["one_minus_theta"] for a, b in zip(f, f[1:]))
    g = mode["gap_analysis"]
    assert g["dpo_slope_at_0.44"] > 1e-2  # 0.44 is not stationary
    assert abs(g["beta_for_0.44"] - np.log(3) / np.log(1.88 / 0.56)) < 1e-12
    traj = [r for r in mode["records"] if r["kind"] == "trajectory" and r["loss"] == "dpo"]
    assert traj[0]["theta"] == pytest.approx(0.5)


def test_mode_seeking_bad_input():
    exp = experiments.get("mode-seeking")
    with pytest.raises(BanditError):
        experiments.make_settings(exp, {"init": 1.5})
    with pytest.raises(BanditError):
        experiments.make_settings(exp, {"reward_floor": 0.0})


# ----------------------------------------------------------------------------- simplex view

def test_barycentric_map():
    assert np.allclose(sv.to_xy([1, 0, 0]), [0, 0])
    assert np.allclose(sv.to_xy([0, 1, 0]), [1, 0])
    assert np.allclose(sv.to_xy([1 / 3] * 3), sv.VERTICES.mean(0))


def test_simplex_figure_written(tmp_path):
    res = sv.run(sv.Settings(steps=300, mode_seeking=True))
    files = sv.plot(res, str(tmp_path))
    assert files and os.path.getsize(files[0]) > 20_000
    assert res["exact_tv_to_counterpart"]["dpo"][0] < 1e-10  # α = 0: they meet
    assert res["exact_tv_to_counterpart"]["dpo"][1] > 1e-2  # α = 0.1: they part
    with pytest.raises(BanditError):
        experiments.make_settings(experiments.get("simplex"), {"pi_star": (0.25, 0.25, 0.25, 0.25)})


# ----------------------------------------------------------------------------- theorem checks

@pytest.mark.parametrize("check", kong.CHECKS, ids=lambda c: c.name)
def test_kong_checks_pass_on_a_few_instances(check):
    r = run_check(check, n=4, seed=1)
    assert r.passed, (check.name, r.value)


def test_eq49_as_printed_does_not_hold():
    rng = np.random.default_rng(0)
    errs = []
    for _ in range(5):
        pb, ipo, rl, ps, k = kong._prop32_instance(rng)
        pi = kong._face_optimum(rl, k)
        errs.append(abs(kong.eq49_as_printed(ps, k) / (pi[0] / pi[2]) - 1))
        assert abs(kong.eq49_corrected(ps, k) / (pi[0] / pi[2]) - 1) < 1e-9
    assert min(errs) > 0.05


def test_numpy_dpo_matches_core():
    rng = np.random.default_rng(2)
    ref, pi0, rho, w, W, beta, _ = kong._a1_instance(rng)
    core = float(dpo(LossInputs(jnp.log(jnp.asarray(pi0)), jnp.log(jnp.asarray(ref)), PreferenceData(jnp.asarray(W))), {"beta": beta}))
    assert abs(core - float(kong.dpo_np(pi0, ref, rho, w, beta))) < 1e-12


def test_hinge_eta_breaks_prop_a1():
    # a flat-bottomed η (hinge on π_w − π_l) has minimisers with a *worse* DPO ratio than π⁽⁰⁾:
    # the level ℓ̄ collapses to inf ℓ_η, so strict monotonicity is needed
    eta = lambda u, v: np.maximum(0.0, 0.1 - (u - v))  # noqa: E731
    pi0 = np.array([[0.1, 0.05, 0.85]])
    lbar, inf = kong.a1_level(pi0, np.array([1.0]), np.array([[0, 1]]), eta)
    assert lbar - inf <= 1e-12
    worse = np.array([[0.6, 0.4, 0.0]])  # η = 0 (a minimiser) but π_l/π_w = 0.67 > 0.5
    assert eta(0.6, 0.4) == 0.0 and worse[0, 1] / worse[0, 0] > pi0[0, 1] / pi0[0, 0]


def test_prop_a1_needs_reversed_monotonicity():
    """With Eq. 24's monotonicity as printed (η increasing in π(y_w), decreasing in π(y_l)), e.g.
    η = u − v, inf ℓ_η = −1 is approached at π(y_w) → 0, π(y_l) → 1, where DPO → +∞: every
    sublevel set above the infimum holds policies with a *higher* DPO loss than π⁽⁰⁾, so no
    ℓ̄ > inf ℓ_η satisfies Eq. 25 (only the vacuous ℓ̄ ≤ inf, whose sublevel set is empty)."""
    eta = lambda u, v: u - v  # noqa: E731
    ref, rho, w = np.array([[0.3, 0.3, 0.4]]), np.array([1.0]), np.array([[0, 1]])
    pi0 = np.array([[0.4, 0.3, 0.3]])
    d0 = float(kong.dpo_np(pi0, ref, rho, w, 1.0))
    for delta in (1e-2, 1e-4, 1e-8):
        pi = np.array([[delta, 1 - delta, 0.0]])
        assert eta(pi[0, 0], pi[0, 1]) + 1.0 == pytest.approx(2 * delta)  # inside any sublevel set ℓ̄ > −1, for small δ
        assert float(kong.dpo_np(pi, ref, rho, w, 1.0)) > d0


def test_prop_a1_needs_a_start_that_is_not_dpo_optimal():
    """The paper's condition ℓ_η(π⁽⁰⁾) > min ℓ_η does not suffice: π⁽⁰⁾ = (½, 0, ½) with y_w = 0,
    y_l = 1 has ℓ_η(π⁽⁰⁾) = ¼ > 0 = inf for η = (1 − u)² + v², but DPO(π⁽⁰⁾) = 0 = inf DPO, so no
    policy has a lower DPO loss, while policies with π(y_l) > 0 sit in every sublevel set."""
    eta = lambda u, v: (1 - u) ** 2 + v**2  # noqa: E731
    ref, rho, w = np.array([[0.3, 0.3, 0.4]]), np.array([1.0]), np.array([[0, 1]])
    pi0 = np.array([[0.5, 0.0, 0.5]])
    assert eta(0.5, 0.0) == 0.25 > eta(1.0, 0.0) == 0.0
    with np.errstate(divide="ignore"):
        assert float(kong.dpo_np(pi0, ref, rho, w, 1.0)) == 0.0
    lbar, inf = kong.a1_level(pi0, rho, w, eta)
    assert lbar - inf <= 1e-12  # the level construction collapses to the infimum
    for delta in (1e-2, 1e-4, 1e-6):
        pi = np.array([[1 - 2 * delta, delta, delta]])
        assert eta(pi[0, 0], pi[0, 1]) == pytest.approx(5 * delta**2)
        assert float(kong.dpo_np(pi, ref, rho, w, 1.0)) > 0.0


# ----------------------------------------------------------------------------- property tests

from hypothesis import given, settings, strategies as st  # noqa: E402
import jax  # noqa: E402

_DPO, _RL = ms.objectives(1.0)
_grad = jax.jit(jax.grad(lambda t, hp, c, o: o.value(jnp.reshape(t, (1,)), hp, consts=c), argnums=0), static_argnums=3)


@settings(max_examples=25, deadline=None)
@given(beta=st.floats(0.2, 5.0), log10_floor=st.floats(-14.0, -2.0))
def test_family_closed_forms_are_stationary(beta, log10_floor):
    # the closed forms zero the autodiff gradient of the core objectives (interior points)
    hp = {**_DPO.hp, "beta": beta}
    g = float(_grad(ms.theta_dpo_closed(beta), hp, _DPO.consts(), _DPO))
    assert abs(g) < 1e-9
    _, rl = ms.objectives(beta, 10.0**log10_floor)
    th = ms.theta_rlhf_closed(beta, 10.0**log10_floor)
    if th < 1 - 1e-6:  # near θ = 1 the slope is dominated by rounding of log(1 − θ)
        g = float(_grad(th, {**rl.hp, "beta": beta}, rl.consts(), _RL))
        assert abs(g) < 1e-6 * (1.0 + 1.0 / (1.0 - th))
