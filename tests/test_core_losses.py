"""Losses against plain-NumPy formulas, gradients against central differences, extreme margins,
and the closed-form oracles against their defining stationarity conditions and a second solver."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize

from bandit_lab import Problem, losses
from bandit_lab.core import divergences
from bandit_lab.core.data import PreferenceData, population
from bandit_lab.solvers.oracles import ipo_optimum, rlhf_optimum
from bandit_lab.core.random_problems import dirichlet, random_problem

DIVS = [("reverse_kl", 0.5), ("forward_kl", 0.5), ("js", 0.5), ("alpha", 0.3)]


# ---------------------------------------------------------------- plain NumPy references
def np_fprime(name, u, a):
    return {"reverse_kl": np.log(u) + 1, "forward_kl": -1 / u, "js": np.log(2 * u / (1 + u)), "alpha": (1 - u ** (-a)) / a}[name]


def np_f(name, u, a):
    return {
        "reverse_kl": u * np.log(u),
        "forward_kl": -np.log(u),
        "js": u * np.log(u) - (1 + u) * np.log((1 + u) / 2),
        "alpha": (u ** (1 - a) - (1 - a) * u - a) / (a * (a - 1)),
    }[name]


def np_pairwise(logp, lref, W, fn):
    total = 0.0
    X, K = logp.shape
    for x in range(X):
        for i in range(K):
            for j in range(K):
                if W[x, i, j] > 0:
                    total += W[x, i, j] * fn(logp[x, i] - lref[x, i], logp[x, j] - lref[x, j])
    return total


def np_loss(name, logp, lref, W, r, cw, beta, div="forward_kl", a=0.5):
    if name == "dpo":
        return np_pairwise(logp, lref, W, lambda hw, hl: np.log1p(np.exp(-beta * (hw - hl))))
    if name == "ipo":
        return np_pairwise(logp, lref, W, lambda hw, hl: (hw - hl - 1 / (2 * beta)) ** 2)
    if name == "fdpo":
        return np_pairwise(logp, lref, W, lambda hw, hl: np.log1p(np.exp(-beta * (np_fprime(div, np.exp(hw), a) - np_fprime(div, np.exp(hl), a)))))
    if name == "rlhf":
        p, ref = np.exp(logp), np.exp(lref)
        return float(np.sum(cw * (-(p * r).sum(-1) + beta * (ref * np_f(div, p / ref, a)).sum(-1))))
    raise ValueError(name)


def jax_loss(name, logp, lref, W, r, cw, beta, div="forward_kl", a=0.5):
    spec = losses.get(name)
    static = {"divergence": div} if "divergence" in spec.static else {}
    inp = losses.LossInputs(jnp.asarray(logp), jnp.asarray(lref), PreferenceData(jnp.asarray(W)),
                            jnp.asarray(r), jnp.asarray(cw))
    return losses.bind(spec, static)(inp, {"beta": beta, "f_alpha": a})


CASES = [("dpo", "reverse_kl", 0.5), ("ipo", "reverse_kl", 0.5)] + [("fdpo", d, a) for d, a in DIVS] + [("rlhf", d, a) for d, a in DIVS]


@pytest.mark.parametrize("name, div, a", CASES)
def test_loss_matches_numpy_and_finite_differences(name, div, a):
    rng = np.random.default_rng(hash((name, div)) % 2**32)
    for _ in range(3):
        pb = random_problem(rng, k=4, contexts=2)
        W = np.asarray(population(pb).weight)
        r = pb.reward if pb.reward is not None else np.zeros_like(pb.pi_ref)
        lref = np.log(pb.pi_ref)
        theta = rng.normal(0, 1, pb.pi_ref.shape)
        logp = np.asarray(jax.nn.log_softmax(theta, -1))
        beta = float(rng.uniform(0.3, 2.0))
        ref_val = np_loss(name, logp, lref, W, r, pb.context_weight, beta, div, a)
        f = lambda th: jax_loss(name, jax.nn.log_softmax(th, -1), lref, W, r, pb.context_weight, beta, div, a)  # noqa: E731
        assert float(f(jnp.asarray(theta))) == pytest.approx(ref_val, rel=1e-12, abs=1e-13)
        g = np.asarray(jax.grad(f)(jnp.asarray(theta)))
        h = 1e-6
        fd = np.zeros_like(theta)
        for idx in np.ndindex(theta.shape):
            e = np.zeros_like(theta)
            e[idx] = h
            fd[idx] = (float(f(jnp.asarray(theta + e))) - float(f(jnp.asarray(theta - e)))) / (2 * h)
        np.testing.assert_allclose(g, fd, atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize("name, div, a", [("dpo", "reverse_kl", 0.5), ("ipo", "reverse_kl", 0.5)] + [("fdpo", d, a) for d, a in DIVS])
@pytest.mark.parametrize("margin", [-1e3, -300.0, 0.0, 300.0, 1e3])
def test_extreme_margins_stay_finite(name, div, a, margin):
    """|βΔ| up to 1e3 (β = 1, Δ = h_w − h_l split symmetrically): finite value and gradient."""
    W = np.zeros((1, 2, 2))
    W[0, 0, 1] = 1.0
    lref = np.log(np.array([[0.5, 0.5]]))

    def f(h):
        return jax_loss(name, lref + h, lref, W, np.zeros((1, 2)), np.ones(1), 1.0, div, a)

    h = jnp.asarray([[margin / 2, -margin / 2]])
    v, g = jax.value_and_grad(f)(h)
    assert np.isfinite(float(v)) and np.all(np.isfinite(np.asarray(g)))
    if name == "dpo":  # −log σ(m) ≈ softplus(−m): exact asymptotics
        assert float(v) == pytest.approx(np.logaddexp(0.0, -margin), rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_fdpo_reverse_kl_is_dpo(seed):
    """f'(u) = log u + 1 for reverse KL: the +1 cancels, so f-DPO(reverse KL) ≡ DPO (Wang et al. 2024)."""
    rng = np.random.default_rng(seed)
    pb = random_problem(rng, k=3, contexts=1)
    W = np.asarray(population(pb).weight)
    logp = np.log(dirichlet(rng, (1, 3)))
    lref = np.log(pb.pi_ref)
    beta = float(rng.uniform(0.1, 5))
    a = float(jax_loss("fdpo", logp, lref, W, pb.reward, pb.context_weight, beta, "reverse_kl"))
    b = float(jax_loss("dpo", logp, lref, W, pb.reward, pb.context_weight, beta))
    assert a == pytest.approx(b, rel=1e-13)


@pytest.mark.parametrize("div, a", DIVS)
def test_rlhf_oracle_is_stationary_and_matches_a_second_solver(div, a):
    """The closed form satisfies f'(π/π_ref) = (r − λ)/β for one λ (Wang et al. Thm 1), and SLSQP on
    the simplex (an independent solver of the same objective) finds the same point."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        ref = dirichlet(rng, (1, 4))
        r = rng.normal(0, 1, (1, 4))
        beta = float(rng.uniform(0.3, 2))
        pi = rlhf_optimum(ref, r, beta, div, a)
        lam = r - beta * np_fprime(div, pi / ref, a)
        assert np.ptp(lam) < 1e-10
        obj = lambda p: -(p * r[0]).sum() + beta * (ref[0] * np_f(div, np.maximum(p, 1e-300) / ref[0], a)).sum()  # noqa: E731
        res = optimize.minimize(obj, ref[0], method="SLSQP", bounds=[(1e-12, 1)] * 4,
                                constraints=[{"type": "eq", "fun": lambda p: p.sum() - 1}], options={"ftol": 1e-15, "maxiter": 500})
        np.testing.assert_allclose(res.x, pi[0], atol=2e-6)


def test_forward_kl_oracle_closed_form():
    ref = np.array([[0.4, 0.4, 0.2]])
    r = np.log(np.array([[0.6, 0.3, 0.1]]))
    pi = rlhf_optimum(ref, r, 1.0, "forward_kl")
    lam = (r + ref / pi)[0]  # π = β π_ref / (λ − r)  ⇔  λ = r + β π_ref/π
    assert np.ptp(lam) < 1e-12


def test_ipo_oracle_solves_the_normal_equations():
    """IPO population loss is weighted least squares in h; its gradient vanishes at the oracle."""
    rng = np.random.default_rng(1)
    for pairs in ("uniform", "reference"):
        pb = random_problem(rng, k=5, contexts=1, pairs=pairs)
        beta = 0.7
        pi = ipo_optimum(pb, beta)
        W = np.asarray(population(pb).weight)
        g = jax.grad(lambda lp: jax_loss("ipo", lp, np.log(pb.pi_ref), W, pb.reward, pb.context_weight, beta))(jnp.log(jnp.asarray(pi)))
        assert np.abs(np.asarray(g)).max() < 1e-12
    explicit = Problem.create([0.3, 0.3, 0.4], reward=[0.0, 1.0, 2.0], pairs=[[0, 1, 1.0], [1, 2, 5.0]])
    assert ipo_optimum(explicit, 1.0) is None


def test_divergence_fprime_inverse_round_trip():
    for div, a in DIVS:
        u = np.geomspace(1e-4, 1e3, 50)
        t = np_fprime(div, u, a)
        np.testing.assert_allclose(divergences.fprime_inv(div, t, a), u, rtol=1e-9)
        np.testing.assert_allclose(np.asarray(divergences.fprime(div, jnp.log(u), a)), t, rtol=1e-12, atol=1e-12)
