"""GSPO (TRL 1.16 ``importance_sampling_level="sequence"``) with the bias-corrected k3
(``use_bias_correction_kl=True``, TRL's default) on a token tree: no closed form, so its stationary
point gets an independent second computation.

The second computation is NumPy only. The expected update is written from TRL's
``GRPOTrainer._compute_loss``, on-policy (ρ = 1). The sequence ratio is ρ(y) =
exp(mean_t log(π/π_old)), so ∇ρ = ∇log π(y)/|y|. The per-token loss is −ρ(y)·A + β·k3_t·ρ(y)
(k3 × the ratio: ``per_token_kl * coef_1``). It is aggregated by loss type: grpo takes the mean over
a completion's tokens, then over the group; dapo sums over the batch's tokens and divides by their
expected number. The update is then, for each ordered group (y_1..y_G) of i.i.d. draws from π:

    F = E[(1/G) Σ_i n_i·( −A_i·∇log π(y_i) + β·(K3(y_i)/|y_i|)·∇log π(y_i) + β·Σ_t (1 − π_ref/π)_t·∇log π(a_t|s_t) )]

Here A_i = (r_i − mean)/(std + 1e-4) (ddof 1, the group's std), K3(y) = Σ_t k3_t, and
n_i = 1/|y_i| (grpo) or 1/E|y| (dapo). The expectation is a brute-force sum over all G^K ordered
groups, not bandit-lab's multinomial compositions. Its root in the tree's full per-state
parameterisation is found by ``scipy.optimize.root`` (MINPACK hybrd), with one gauge logit per
state fixed, started after 4000 NumPy Euler steps of the flow θ̇ = −F from π_ref. The check: it equals the stationary solver's point to **1e-8**
(max |Δπ| over the 7 sequences). bandit-lab's field at the NumPy root is ≤ 1e-10, and the NumPy
field equals bandit-lab's at a random θ to 1e-12 (measured 1.8e-14).
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bandit_lab.core.objective import make_objective
from bandit_lab.onpolicy.stationary import solve
from bandit_lab.tokens import make_param, random_tree_problem

G, BETA = 3, 0.5


@pytest.fixture(scope="module")
def tp():
    return random_tree_problem(np.random.default_rng(4), vocab=3, horizon=2, eos=True, contexts=1)


def numpy_field(theta, tp, loss_type):
    """The expected update of TRL's GSPO + bias-corrected k3 (module docstring), NumPy, [S, V]."""
    t = tp.tree
    S, V = t.n_states, t.vocab
    z = theta - theta.max(-1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))  # per-state log π
    ref = tp.ref_logp[0]
    p = np.exp(lp)
    K = t.n_responses
    lens = t.mask.sum(-1)
    logpi = np.array([sum(lp[t.states_at[k, j], t.tokens[k, j]] for j in range(lens[k])) for k in range(K)])
    q = np.exp(logpi)
    r = tp.problem.reward[0]
    # ∇_θ log π(y) [K, S, V] and the per-token (1 − π_ref/π)·∇log π(a|s) summed along y
    glog = np.zeros((K, S, V))
    gk3 = np.zeros((K, S, V))
    K3 = np.zeros(K)
    for k in range(K):
        for j in range(lens[k]):
            s, a = t.states_at[k, j], t.tokens[k, j]
            g = -p[s].copy()
            g[a] += 1.0
            glog[k, s] += g
            u = np.exp(ref[s, a] - lp[s, a])
            gk3[k, s] += (1.0 - u) * g
            K3[k] += u - 1.0 - np.log(u)
    norm = 1.0 / lens if loss_type == "grpo" else np.full(K, 1.0 / np.sum(q * lens))
    per = np.zeros((K, S, V))  # the bracket for a member with response k and advantage 0
    per += BETA * (K3 / lens)[:, None, None] * glog + BETA * gk3
    ys = np.array(list(itertools.product(range(K), repeat=G)))  # every ordered group [K^G, G]
    P = np.prod(q[ys], -1)
    rr = r[ys]
    A = (rr - rr.mean(-1, keepdims=True)) / (rr.std(-1, ddof=1, keepdims=True) + 1e-4)
    w_pg = np.zeros(K)  # E[(1/G) Σ_i 1{y_i = k}·A_i]
    np.add.at(w_pg, ys.ravel(), (P[:, None] / G * A).ravel())
    # −ρA summed over |y| tokens: −A·|y|·∇ρ = −A·∇log π; the KL bracket weighs each k by q_k
    F = np.einsum("k,ksv->sv", norm * -w_pg, glog) + np.einsum("k,ksv->sv", norm * q, per)
    return F


def _objective(tp, loss_type):
    return make_objective(tp.problem, "grpo", {"loss_type": loss_type, "importance_sampling_level": "sequence",
                                               "beta": BETA, "num_generations": G}, param=make_param(tp))


@pytest.mark.parametrize("loss_type", ["grpo", pytest.param("dapo", marks=pytest.mark.slow)])
def test_gspo_corrected_k3_tree_point_matches_an_independent_root(tp, loss_type):
    o = _objective(tp, loss_type)
    assert o.static["ratio_level"] == "geometric" and o.static["kl_bias_correction"]
    S, V = tp.tree.n_states, tp.tree.vocab

    # the fields agree at a random point (the NumPy one is an independent transcription of TRL's loss)
    th = np.random.default_rng(7).normal(0, 1.0, (S, V))
    mine = np.asarray(jax.grad(lambda p: o.value(p, o.hp))(jnp.asarray(th[None])))[0]
    np.testing.assert_allclose(mine, numpy_field(th, tp, loss_type), rtol=0, atol=1e-12)

    def eqs(u):  # unknowns: the first V − 1 logits of every state (the last fixed at 0: the gauge)
        theta = np.concatenate([u.reshape(S, V - 1), np.zeros((S, 1))], -1)
        return numpy_field(theta, tp, loss_type)[:, : V - 1].ravel()  # each state's row of F sums to 0

    theta = tp.ref_logp[0].copy()  # start: the algorithm's own flow θ̇ = −F from π_ref (Euler, NumPy); Newton-type
    for _ in range(4000):          # root finders started at π_ref run off to logits of −50 (rarely visited states)
        theta -= 0.5 * numpy_field(theta, tp, loss_type)
    sol = optimize.root(eqs, (theta[:, : V - 1] - theta[:, V - 1:]).ravel(), method="hybr", tol=1e-14)
    # the claim is the residual; MINPACK's own flag may say "xtol too small" once the step is at the
    # rounding of θ (status 3 — seen on one CPU with the residual at 2.1e-17), which is convergence here
    assert sol.status in (1, 3) and np.max(np.abs(sol.fun)) < 1e-12, (sol.message, np.max(np.abs(sol.fun)))
    theta = np.concatenate([sol.x.reshape(S, V - 1), np.zeros((S, 1))], -1)
    pol_np = np.exp(tp.tree.seq_logp(theta[None] - np.log(np.exp(theta).sum(-1, keepdims=True))[None]))[0]

    s = solve(o)
    assert s.status == "attracting" and s.result.converged, s.note
    assert np.max(np.abs(np.asarray(s.result.policy)[0] - pol_np)) < 1e-8
    f_at_np = np.asarray(jax.grad(lambda p: o.value(p, o.hp))(jnp.asarray(theta[None])))
    assert np.max(np.abs(f_at_np)) < 1e-10
