"""TRL 1.16's A*-PO (``trl.experimental.a2po``) on a bandit: exact expected update and fixed point.

Derivation: the loss is E_{y∼π}[(β₂ h(y) − r(y) + V*)²], h = log π/π_ref, samples detached. With
softmax logits ∇h(y) = 1_y − π, so the expected update is 2β₂·Σ_y π_y (β₂h_y − r_y + V*)(1_y − π)
= 2β₂·∇_θ[β₂·KL(π‖π_ref) − E_π r] (the constant V* drops: Σ_y π_y (1_y − π) = 0). Its unique zero is
Gibbs at β₂, π_ref·e^{r/β₂}/Z, for every β₁ and every number of reference samples. Checked: the
stationary solver lands there (closed form, 1e-8); the field equals 2β₂ × the autodiff gradient of
β₂·KL(π‖π_ref) − E_π r at random logits (1e-12); β₁ does not change the field (1e-12).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core.objective import make_objective
from bandit_lab.onpolicy.stationary import solve
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.core.random_problems import random_problem


@pytest.fixture(scope="module")
def pb():
    return random_problem(np.random.default_rng(3), k=4, contexts=2, preference="reward", pairs="uniform")


def test_a2po_fixed_point_is_gibbs_at_beta2(pb):
    beta2 = 0.3
    s = solve(make_objective(pb, "a2po", {"beta2": beta2, "beta1": 0.5, "num_value_samples": 8}))
    want = rlhf_optimum(pb.pi_ref, pb.reward, beta2)
    assert s.status == "attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy) - want)) < 1e-8


def test_a2po_field_is_the_rlhf_gradient_and_ignores_beta1(pb):
    from bandit_lab.losses.base import LossInputs
    from bandit_lab.losses.onpolicy import onpolicy_loss

    beta2 = 0.3
    r = jnp.asarray(pb.reward)
    lref = jnp.log(jnp.asarray(pb.pi_ref))
    theta = jnp.asarray(np.random.default_rng(0).normal(size=np.shape(pb.pi_ref)))

    def field(beta1):
        q = jax.nn.softmax(theta, -1)
        st = {"ckl": q}  # exact on-policy state: y ~ π(θ), detached

        def L(t):
            inp = LossInputs(logp=jax.nn.log_softmax(t, -1), logp_ref=lref, data=None, reward=r,
                             context_weight=jnp.asarray(pb.context_weight), state=st)
            return onpolicy_loss(inp, {"beta": beta2, "beta1": beta1}, algo="a2po")
        return np.asarray(jax.grad(L)(theta))

    def rlhf(t):
        p = jax.nn.softmax(t, -1)
        lp = jax.nn.log_softmax(t, -1)
        return jnp.sum(jnp.asarray(pb.context_weight) * jnp.sum(p * (beta2 * (lp - lref) - r), -1))

    want = 2 * beta2 * np.asarray(jax.grad(rlhf)(theta))
    np.testing.assert_allclose(field(0.5), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(field(0.05), want, rtol=0, atol=1e-12)


def test_a2po_sampled_state_is_unbiased(pb):
    """Sampled mode (one completion per prompt from π, N draws): the mean over keys of the sampled
    frequencies is π (6 standard errors), and the loss is linear in them, so the sampled gradient is
    an unbiased estimate of the exact expected update."""
    o = make_objective(pb, "a2po", {"beta2": 0.3, "sampling": {"samples": 64}})
    th = jnp.log(jnp.asarray(pb.pi_ref)) + 0.3
    ex = o.init_state(th, o.hp, None)
    keys = jax.random.split(jax.random.key(1), 400)
    st = jax.vmap(lambda k: o.init_state(th, o.hp, k))(keys)
    w = np.asarray(st["ckl"])
    se = w.std(0) / np.sqrt(w.shape[0])
    assert np.all(np.abs(w.mean(0) - np.asarray(ex["ckl"])) <= 6 * se + 1e-12)
    np.testing.assert_allclose(np.asarray(ex["ckl"]), np.asarray(pb.pi_ref), atol=1e-15)
