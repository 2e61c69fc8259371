"""The `check-loss` battery (issue 15, item 3): built-in losses pass with the numbers their theory
predicts (checked against independent NumPy references), deliberately broken user losses fail
the right row, and the CLI maps the outcome to exit codes 0 / 1 / 2."""
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bandit_lab import fixed_points, loss_check, losses
from bandit_lab.infra import precision
from bandit_lab.errors import BanditError
from bandit_lab.losses import base as loss_base
from bandit_lab.losses.base import LossSpec, expect, log_ratios
from cli.main import main

PI_REF = np.array([0.4, 0.4, 0.2])  # Kong et al. App. B, Eq. 28
PI_STAR = np.array([0.6, 0.3, 0.1])  # Eq. 26


@pytest.fixture
def user_loss():
    """Register user losses for one test (unique names: compiled code is cached by loss name)."""
    added = []

    def add(name, fn, **kw):
        losses.registry()
        loss_base.register(LossSpec(name=name, fn=fn, defaults=kw.pop("defaults", {"beta": 1.0}), **kw))
        added.append(name)
        return name

    yield add
    for n in added:
        loss_base.REGISTRY.pop(n, None)


def _dpo_like(per_margin):
    def fn(inputs, hp):
        hw, hl = log_ratios(inputs)
        return expect(inputs.data, per_margin(hp["beta"] * (hw - hl)))
    return fn


def _tv(p, q):
    return 0.5 * np.abs(np.asarray(p, dtype=float).ravel() - np.asarray(q, dtype=float).ravel()).sum()


def _bt(pi_star):
    return pi_star[:, None] / (pi_star[:, None] + pi_star[None, :])


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


# --------------------------------------------------------------------------- built-in losses

def test_dpo_passes_with_its_closed_form_and_is_convex():
    rep = loss_check.check_loss("dpo", constraints=False)
    assert rep.passed and rep.applicable
    assert rep.row("finite").value == 0
    assert rep.row("gradient").value <= 1e-8  # float64 central differences at their best step
    assert rep.row("counterpart").passed and rep.row("counterpart").value <= 1e-12
    fp = rep.fact("fixed_point").value
    rlhf = PI_REF * PI_STAR / (PI_REF * PI_STAR).sum()  # π_ref·e^{r/β}/Z, r = log π*, β = 1 (Kong Eq. 5)
    assert fp["finite"] and _tv(fp["policy"], rlhf) <= 1e-9 and fp["shares_dpo"] is True
    assert rep.fact("large_margins").value is True
    cv = rep.fact("convexity").value
    assert cv["convex"] is True and cv["tests"] > 100 and cv["counterexample"] is None


def test_ipo_counterpart_and_fixed_point_match_r_ipo():
    rep = loss_check.check_loss("ipo", constraints=False)
    assert rep.passed
    assert rep.row("counterpart").value <= 1e-12  # IPO ↔ RLHF with r_IPO (Azar et al. Prop. 4)
    r_ipo = _bt(PI_STAR).mean(1)  # uniform pairs: μ = 1/K; the diagonal's ½ shifts every r equally
    ref = PI_REF * np.exp(r_ipo) / (PI_REF * np.exp(r_ipo)).sum()
    fp = rep.fact("fixed_point").value
    assert _tv(fp["policy"], ref) <= 1e-9 and fp["shares_dpo"] is False
    assert rep.fact("convexity").value["convex"] is True


def _forward_kl_rlhf(beta=1.0):
    """π = β·π_ref/(λ − r), λ > max r from Σπ = 1 (Wang et al. 2024 Thm 1), by brentq."""
    r = np.log(PI_STAR)
    lam = optimize.brentq(lambda l: np.sum(beta * PI_REF / (l - r)) - 1.0, r.max() + 1e-12, r.max() + 100, xtol=1e-15)
    return beta * PI_REF / (lam - r)


def test_fdpo_counterpart_is_forward_kl_rlhf():
    rep = loss_check.check_loss("fdpo", constraints=False)
    assert rep.passed and rep.row("counterpart").value <= 1e-9
    fp = rep.fact("fixed_point").value
    assert _tv(fp["policy"], _forward_kl_rlhf()) <= 1e-9


@pytest.mark.slow
def test_dpo_weight_decay_and_early_stopping_facts():
    rep = loss_check.check_loss("dpo")
    wd = {r["alpha"]: r for r in rep.fact("weight_decay").value}
    assert wd[0.0]["tv_exact"] <= 1e-12
    assert abs(wd[0.1]["tv_exact"] - 3.910e-2) < 5e-5  # README: dpo vs rlhf[reverse_kl] at α = 0.1 (Kong Fig. 2)
    assert all(r["adam_gap"] <= 1e-8 for r in wd.values())
    es = rep.fact("early_stopping").value
    assert es[0]["step"] == 1 and es[0]["tv_trained"] > 1e-3 and es[-1]["tv_trained"] <= 1e-12


def test_discopop_is_not_convex_with_a_reverified_counterexample():
    rep = loss_check.check_loss("discopop", constraints=False)
    cv = rep.fact("convexity").value
    assert cv["convex"] is False
    ce = cv["counterexample"]
    beta, tau = ce["hp"]["beta"], ce["hp"]["tau"]
    W, ref = np.asarray(ce["weight"])[0], np.asarray(ce["pi_ref"])[0]

    def f(theta):  # DiscoPOP (Lu et al. 2024 Eq. 5) in NumPy, independently of bandit_lab
        th = np.asarray(theta)[0]
        h = th - np.logaddexp.reduce(th) - np.log(ref)
        u = beta * (h[:, None] - h[None, :])
        per = np.exp(-np.logaddexp(0, u / tau)) * np.logaddexp(0, -u) + np.exp(-np.logaddexp(0, -u / tau) - u)
        return float(np.sum(np.where(W > 0, W * per, 0.0)))

    a, b = np.asarray(ce["theta_a"]), np.asarray(ce["theta_b"])
    gap = f(0.5 * (a + b)) - 0.5 * (f(a) + f(b))
    assert gap > 1e-6 and abs(gap - ce["gap"]) <= 1e-10 * (1 + abs(f(a)) + abs(f(b)))


def test_token_losses_are_not_applicable_with_a_reason():
    rep = loss_check.check_loss("tdpo1")
    assert not rep.applicable and rep.passed and "token_tree" in rep.reason
    assert "not applicable" in loss_check.report(rep)


def test_detached_losses_compare_against_frozen_differences():
    kto = loss_check.check_loss("kto", constraints=False)
    assert kto.passed and kto.row("gradient").value <= 1e-8 and "field" in kto.row("gradient").note


@pytest.mark.slow
def test_stateful_losses_compare_against_frozen_differences():
    grpo = loss_check.check_loss("grpo", constraints=False)
    assert grpo.passed and grpo.row("gradient").value <= 1e-8 and "per-step state" in grpo.row("gradient").note
    assert grpo.fact("convexity").value is None


def test_frozen_evaluator_freezes_stop_gradient():
    f = lambda x: jnp.sum(jax.lax.stop_gradient(x) ** 2 * x)  # noqa: E731  grad = x², derivative of the value 3x²
    x0 = jnp.array([1.0, 2.0])
    has, ff = loss_check._frozen_evaluator(f, (x0,))
    assert has
    h = 1e-5
    fd = [(ff((x0,), (x0.at[i].add(h),)) - ff((x0,), (x0.at[i].add(-h),))) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(fd, np.asarray(jax.grad(f)(x0)), rtol=1e-9)
    assert not loss_check._frozen_evaluator(lambda x: jnp.sum(x ** 3), (x0,))[0]


def test_float64_whatever_the_callers_config():
    with precision.x64(False):
        rep = loss_check.check_loss("sft", constraints=False)
    assert rep.row("gradient").value <= 1e-8  # float32 central differences could not get below ~1e-3


def test_counterpart_tolerance_is_the_share_tolerance():
    assert loss_check.COUNTERPART_TOL == fixed_points.SHARE_TOL


# --------------------------------------------------------------------------- broken user losses

def test_wrong_custom_jvp_fails_the_gradient_row(user_loss):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(0.0, x)

    @softplus.defjvp
    def _jvp(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), 1.1 * jax.nn.sigmoid(x) * t  # 10% too large

    name = user_loss("lc_wrong_jvp", _dpo_like(lambda m: softplus(-m)))
    rep = loss_check.check_loss(name, constraints=False)
    g = rep.row("gradient")
    assert g.passed is False and abs(g.value - 0.1 / 1.1) < 1e-6  # ‖0.1·g‖ / ‖1.1·g‖
    assert rep.row("finite").passed and rep.row("evaluates").passed and not rep.passed


def test_log_of_sigmoid_fails_the_finite_row_at_large_margins(user_loss):
    name = user_loss("lc_naive", _dpo_like(lambda m: -jnp.log(jax.nn.sigmoid(m))))
    rep = loss_check.check_loss(name, constraints=False)
    fin = rep.row("finite")
    assert fin.passed is False and fin.value > 0 and "|βΔ|=1000 (β=100, Δ=10)" in fin.note
    assert rep.row("gradient").passed  # fine at ordinary margins
    assert rep.fact("large_margins").value is False
    # the same margins through the library's DPO are finite
    assert loss_check.check_loss("dpo", constraints=False).row("finite").value == 0


def test_wrong_counterpart_fails_the_counterpart_row(user_loss):
    name = user_loss("lc_wrong_cp", _dpo_like(lambda m: jax.nn.softplus(-m)),
                     counterpart=lambda static: ("rlhf", {"divergence": "forward_kl", "reward": "bt"}))
    rep = loss_check.check_loss(name, constraints=False)
    cp = rep.row("counterpart")
    dpo = PI_REF * PI_STAR / (PI_REF * PI_STAR).sum()
    expect_tv = _tv(dpo, _forward_kl_rlhf())  # ≈ 0.029 on App. B
    assert cp.passed is False and cp.value >= expect_tv - 1e-9
    assert f"{expect_tv:.1e}" in cp.note


def test_a_loss_that_raises_fails_evaluates(user_loss):
    def fn(inputs, hp):
        raise TypeError("boom")

    rep = loss_check.check_loss(user_loss("lc_raises", fn), constraints=False)
    assert not rep.passed and rep.row("evaluates").passed is False and "TypeError: boom" in rep.row("evaluates").note


def test_bad_name_or_parameter_is_a_bandit_error():
    with pytest.raises(BanditError, match="unknown loss"):
        loss_check.check_loss("nope")
    with pytest.raises(BanditError, match="no parameter"):
        loss_check.check_loss("dpo", {"gamma": 1.0})


# --------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("argv, msg", [
    (["check-loss", "nope"], "unknown loss 'nope'"),
    (["check-loss", "dpo", "--param", "beta=abc"], "beta must be a number"),
    (["check-loss", "dpo", "--param", "beta=-1"], "beta must be > 0"),
    (["check-loss", "dpo", "--param", "colour=red"], "has no parameter 'colour'"),
    (["check-loss", "dpo", "--param", "beta"], "expected KEY=VALUE"),
    (["check-loss", "dpo", "--seed", "-1"], "--seed"),
    (["--max-work", "0.001s", "check-loss", "dpo"], "over the limit"),  # the budget is checked before any work
])
def test_cli_bad_input_is_one_line_exit_2(argv, msg, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_cli_pass_exit_0_and_json(capsys):
    code, out, err = run_cli(["check-loss", "sft", "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["passed"] is True and d["loss"] == "sft" and {r["name"] for r in d["rows"]} >= {"finite", "gradient", "counterpart"}
    assert all(set(r) >= {"name", "claim", "value", "tolerance", "passed"} for r in d["rows"])


def test_cli_failing_user_loss_exit_1(user_loss, capsys):
    user_loss("lc_naive_cli", _dpo_like(lambda m: -jnp.log(jax.nn.sigmoid(m))))
    code, out, err = run_cli(["check-loss", "lc_naive_cli", "--json"], capsys)
    assert code == 1
    d = json.loads(out)
    assert d["passed"] is False and [r["name"] for r in d["rows"] if r["passed"] is False] == ["finite"]
    assert err.strip().splitlines() == ["bandit-lab: check-loss lc_naive_cli: 1 check(s) failed: finite"]


def test_cli_report_is_one_page(capsys):
    code, out, err = run_cli(["check-loss", "discopop", "--param", "tau=0.1"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) <= 40 and lines[0].startswith("check-loss discopop[beta=1.0,tau=0.1]") and lines[-1].startswith("PASS")


# --------------------------------------------------------------------------- every registered loss

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(losses.registry()))
def test_every_registered_loss_passes_or_is_not_applicable(name):
    rep = loss_check.check_loss(name)
    text = loss_check.report(rep)
    assert rep.passed, text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), text
    json.dumps(loss_check.to_json(rep), allow_nan=False)
    if not rep.applicable:
        assert rep.reason
    for r in rep.rows:
        assert r.passed is not None or r.note, r
    assert len(text.splitlines()) <= 40
