"""The audit rows of issue 21 that had no check (docs/onpolicy-libraries.md, "Every variant → the
check of its stationary point"): TRL RLOO ``normalize_advantages``, RLOO with k3 in the reward (TRL
PR #7096), verl's ``kl_penalty`` k2/k3/low_var_kl in the reward and ``kl``/``abs`` as the KL loss,
and verl ``grpo_passk``. Each puts what bandit-lab reports (the solver's point, or its runaway
certificate's numbers) against an independent NumPy computation written here from the libraries'
definitions: closed forms, enumeration of every ordered group, bisection, a MINPACK root.

One problem throughout, Kong et al. App. B: π_ref = (0.4, 0.4, 0.2), r = log(0.6, 0.3, 0.1), β = ½.
Sign convention: bandit-lab's field F is the gradient of the surrogate *loss* (descent), and the
certificate's ``u = F/π`` per unit of mass (``u_k > 0``: response k is pushed down).

Derivations (single-token responses, on-policy ρ = 1; LOO baseline: E[A | focal k] = s_k − E_π s):

- **RLOO + normalize_advantages** (TRL 1.16 RLOOTrainer: ``(A − A.mean())/(A.std() + 1e-4)`` over
  the batch): the batch mean → E[A] = 0 (and a constant c has E_π[c∇log π] = 0), the std →
  σ(π) = sqrt(E[A²]) > 0, so the expected update is RLOO's divided by σ(π) + 1e-4, a positive scalar.
  With k1 in the reward the KL sits inside that update: the zeros are RLOO's, Gibbs at β (not a
  rescaled β).
- **k-estimator in the reward** (detached, before the LOO baseline): the ascent field is
  ``π_k(s_k − s̄)`` with ``s = r − β·k̂``, which is ∇_θ of ``J = E_π r − β·Σ π_ref f(π/π_ref)`` with
  ``f' = k̂`` as a function of t = π/π_ref. k3 (f' = 1/t − 1 + log t) gives J = E r − β[KL(π‖π_ref) −
  KL(π_ref‖π)], unbounded above as any π_k → 0 (β·π_ref,k·log(1/π_k)): the vanishing responses'
  per-mass push is ``u_k = s̄ − r_k + β·k3_k ≈ β·π_ref,k/π_k → +∞`` (F_k = π_k·u_k → β·π_ref,k, a
  finite force that never turns). k2 (f' = ½log²t): u_k ≈ (β/2)·log²π_k → +∞. verl clamps k3 at 10:
  u_k → s̄ − r_k + 10β, a constant > 0 here. In all three, J's only interior critical point on Kong's
  bandit (all sign patterns of h_k = log π_k/π_ref,k enumerated, bisection on the level c of
  r_k − β·f'(t_k) = c) is a local *minimum* of J — a source — so the flow from π_ref runs away.
- **k1 as a loss** (differentiated): E_π[∇log(π/π_ref)] = 0, no regulariser: u_k → r_1 − r_k.
- **abs as a loss**: F_j = π_j[(r̄ − r_j) + β(sgn h_j − E_π sgn h)], discontinuous at h_j = 0; on
  Kong's bandit (r_1 − r_2 < 2β < r_1 − r_3) y3 vanishes and y2 slides on π_2 = π_ref,2 (the field
  points back to it from both sides): the limit is (1 − π_ref,2, π_ref,2, 0), which the solver's flow does
  not reach; its runaway verdict finds it as a sliding point on the face (tests/test_runaway_limits.py).
- **grpo_passk** (verl: ``torch.topk(rewards, 2)``; the best gets r_max − r_second, ÷ (std + 1e-6)
  when norm_adv_by_std_in_grpo): its ascent field is E[(1/G)Σ_i A_i(e_{y_i} − π)], enumerated here
  over all K^G ordered groups; with k3+ (KL(π‖π_ref)) the root is found by MINPACK (scipy ``root``).
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq, root

from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.onpolicy.stationary import solve

PI_REF = np.array([0.4, 0.4, 0.2])
R = np.log([0.6, 0.3, 0.1])
BETA = 0.5
Q = np.array([0.2, 0.5, 0.3])  # an arbitrary policy


@pytest.fixture(scope="module")
def kong():
    return Problem.create(PI_REF.tolist(), reward=R.tolist(), pairs="uniform")


def _field(pb, loss, lp, policy):
    """bandit-lab's expected update (∇ of the loss, state built from the same logits log π)."""
    o = make_objective(pb, loss, lp)
    return np.asarray(jax.grad(lambda z: o.value(z, o.hp))(jnp.log(jnp.asarray(policy))[None]))[0]


def _softmax(z):
    z = np.asarray(z, float).ravel()
    lp = z - np.logaddexp.reduce(z)
    return np.exp(lp), lp


def _gibbs(beta):
    a = np.log(PI_REF) + R / beta
    return np.exp(a - np.logaddexp.reduce(a))


# --- NumPy shaped rewards (the libraries' estimators; h = log π − log π_ref) ---

def _k3(lp):  # TRL / bandit-lab native k3 = u − 1 − log u, u = π_ref/π (no clamp)
    lu = np.log(PI_REF) - lp
    return np.expm1(lu) - lu


def _k3_verl(lp):  # verl kl_penalty_forward low_var_kl / k3: log-ratio clamped ±20, value ±10
    lu = np.clip(np.log(PI_REF) - lp, -20, 20)
    return np.clip(np.exp(lu) - lu - 1, -10, 10)


def _k2(lp):
    return 0.5 * (lp - np.log(PI_REF)) ** 2


def _u_reward(z, kl):
    """Per-mass descent field of RLOO with ``β·kl`` in the reward: u_k = s̄ − s_k."""
    p, lp = _softmax(z)
    s = R - BETA * kl(lp)
    return float(np.sum(p * s)) - s


def _ray_check(s, u_of):
    """The runaway certificate's numbers against NumPy: ``u`` at the solver's logits (t = 0) and at
    the ray's far probe (the vanishing responses' logits lowered by t_far), candidates only."""
    c = s.certificate
    z = np.asarray(s.result.params, float).ravel()
    cand = np.array([i for i in range(3) if f"y{i + 1}" in s.note.split("→")[0]])
    far = z.copy()
    far[cand] -= c["ray_t"][1]
    assert np.allclose(c["ray_out_first"], u_of(z)[cand], rtol=1e-9, atol=0), (c["ray_out_first"], u_of(z)[cand])
    assert np.allclose(c["ray_out_far"], u_of(far)[cand], rtol=1e-9, atol=0), (c["ray_out_far"], u_of(far)[cand])
    assert abs(c["ray_far_logp"] - _softmax(far)[1][cand].max()) < 1e-9
    return cand, far


# =========================================================================== 1. RLOO normalize_advantages

def test_rloo_normalize_advantages_matches_trl():
    """TRL 1.16's own advantage code (tests/data/trl_onpolicy_reference.json, entry
    normalize_advantages=True, generated by TRL): its values are the leave-one-out advantages of the
    β = 0.05 entry whitened by bandit-lab's ``batch_normalize`` (unbiased std, ε = 1e-4), 1e-12."""
    from bandit_lab.losses.onpolicy import batch_normalize

    data = json.loads((Path(__file__).parent / "data" / "trl_onpolicy_reference.json").read_text())
    ents = data["rloo_advantages"]
    plain = next(e for e in ents if e["config"] == {"beta": 0.05})
    norm = next(e for e in ents if e["config"] == {"beta": 0.05, "normalize_advantages": True})
    a = np.ravel(plain["advantages"])
    n = a.size
    ours = np.asarray(batch_normalize(jnp.asarray(a), jnp.full(n, 1.0 / n), 1e-4, bessel=n / (n - 1)))
    assert np.max(np.abs(ours - np.ravel(norm["advantages"]))) < 1e-12
    assert np.max(np.abs(a - np.ravel(norm["advantages"]))) > 1e-2  # the normalisation does something


def _loo_sigma(policy, G, beta):
    """σ(π) of the LOO advantage of RLOO + k1 in the reward, by enumeration of every ordered group."""
    s = R - beta * (np.log(policy) - np.log(PI_REF))
    m2 = 0.0
    for g in itertools.product(range(3), repeat=G):
        pg = np.prod(policy[list(g)])
        a = s[g[0]] - np.mean(s[list(g[1:])])
        m2 += pg * a * a
    return np.sqrt(m2)


@pytest.mark.parametrize("G", [2, 4])
def test_rloo_normalize_advantages_divides_the_update_by_sigma(kong, G):
    """At an arbitrary policy the whitened update is RLOO's divided by σ(π) + 1e-4 (σ by NumPy
    enumeration of all 3^G ordered groups), 1e-12 relative: a positive scalar, so the zeros agree."""
    lp = {"num_generations": G, "beta": BETA}
    f0 = _field(kong, "rloo", lp, Q)
    f1 = _field(kong, "rloo", {**lp, "normalize_advantages": True}, Q)
    want = f0 / (_loo_sigma(Q, G, BETA) + 1e-4)
    assert np.max(np.abs(f1 - want)) < 1e-12 * np.max(np.abs(want))


def test_rloo_normalize_advantages_lands_on_gibbs(kong):
    """The solver's point (certified attracting) is Gibbs at β — not a rescaled β — to 1e-10; the
    oracle says so; the field is not zero at Gibbs at 2β (the check can fail)."""
    lp = {"num_generations": 2, "beta": BETA, "normalize_advantages": True}
    s = solve(make_objective(kong, "rloo", lp))
    assert s.status == "attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy)[0] - _gibbs(BETA))) < 1e-10
    assert np.max(np.abs(_field(kong, "rloo", lp, _gibbs(2 * BETA)) / _gibbs(2 * BETA))) > 1e-3


def test_rloo_normalize_advantages_sampled_state_converges(kong):
    """Sampled mode (N = 40000 groups, the batch's own mean and unbiased std) estimates the exact
    state (the large-batch limit): c± and frequencies within Monte-Carlo accuracy 4/√N. Rewards
    5·r so that σ ≈ 3 and the unnormalised state is far outside that accuracy (the check can fail)."""
    pb = Problem.create(PI_REF.tolist(), reward=(5 * R).tolist(), pairs="uniform")
    lp = {"num_generations": 2, "beta": BETA, "normalize_advantages": True, "sampling": {"samples": 40000}}
    o = make_objective(pb, "rloo", lp)
    params = jnp.log(jnp.asarray(Q))[None]
    exact = o.loss.state_init(o, params, o.hp, None, o.consts())
    samp = o.loss.state_init(o, params, o.hp, jax.random.PRNGKey(0), o.consts())
    for k in ("cp", "cm", "ckl"):
        assert np.max(np.abs(np.asarray(samp[k]) - np.asarray(exact[k]))) < 4 / np.sqrt(40000), k
    plain = make_objective(pb, "rloo", {**lp, "normalize_advantages": False})
    raw = plain.loss.state_init(plain, params, plain.hp, None, plain.consts())
    assert np.max(np.abs(np.asarray(raw["cp"]) - np.asarray(exact["cp"]))) > 0.1


def test_explain_rloo_normalize_advantages():
    """``bandit-lab explain rloo`` with normalize_advantages on Kong's bandit: the update in words
    names the batch std, the point is attracting and its TV to Gibbs at β is ≤ 1e-10."""
    from bandit_lab.explain import explain

    r = explain("rloo", {"normalize_advantages": True, "beta": BETA})
    assert "batch std" in r["objective"] and r["status"] == "attracting", r
    assert r["tv_gibbs"] < 1e-10


def test_rloo_normalize_advantages_oracle(kong):
    """The closed form ``solve`` reports: Gibbs at β with k1 in the reward (1e-12); none with the KL
    in the loss (the batch std then rescales β)."""
    from bandit_lab.onpolicy.closed_forms import oracle

    o = make_objective(kong, "rloo", {"num_generations": 2, "beta": BETA, "normalize_advantages": True})
    pol, _ = oracle(kong, "rloo", o.hp, o.static)
    assert np.max(np.abs(np.asarray(pol)[0] - _gibbs(BETA))) < 1e-12
    o = make_objective(kong, "rloo", {"num_generations": 2, "beta": BETA, "normalize_advantages": True,
                                      "kl_estimator": "exact", "kl_placement": "loss"})
    pol, note = oracle(kong, "rloo", o.hp, o.static)
    assert pol is None and "rescales" in note


# =========================================================================== 2. RLOO + k3 in the reward

K3_REWARD = {"group_size": 2, "beta": BETA, "kl_estimator": "k3", "kl_placement": "reward"}


def test_k3_reward_field_is_the_gradient_of_the_unbounded_potential(kong):
    """The update is π_k(s_k − s̄), s = r − β·k3 (NumPy), 1e-12; and it is ∇_θ of J = E r −
    β[KL(π‖π_ref) − KL(π_ref‖π)] (central finite differences of J, 1e-8), which → +∞ as π_k → 0."""
    p, lp = _softmax(np.log(Q))
    s = R - BETA * _k3(lp)
    asc = p * (s - np.sum(p * s))
    assert np.max(np.abs(-_field(kong, "rloo", K3_REWARD, Q) - asc)) < 1e-12

    def J(z):
        p, lp = _softmax(z)
        return np.sum(p * R) - BETA * (np.sum(p * (lp - np.log(PI_REF))) - np.sum(PI_REF * (np.log(PI_REF) - lp)))

    z, h = np.log(Q), 1e-5
    fd = np.array([(J(z + h * e) - J(z - h * e)) / (2 * h) for e in np.eye(3)])
    assert np.max(np.abs(fd - asc)) < 1e-8
    assert J(np.log([1.0, 1e-200, 1e-200])) > 100  # unbounded above at the boundary


def _interior_roots(fprime, clamp=np.inf):
    """Every interior zero of π_k(s_k − s̄) with s = r − β·f'(h) (h = log π/π_ref; f' convex with
    minimum 0 at h = 0): r_k − β·f'(h_k) = c, each h_k on its negative or positive branch, Σπ = 1 —
    bisection on c for each of the 2³ sign patterns."""
    def branch(y, sign):
        if y < 0:
            return None
        if y == 0:
            return 0.0
        if sign < 0:
            return None if y >= clamp else brentq(lambda h: fprime(h) - y, -700, 0, xtol=1e-15)
        return brentq(lambda h: fprime(h) - y, 0, 1e6, xtol=1e-15)

    out = []
    for signs in itertools.product((-1, 1), repeat=3):
        def mass(c):
            hs = [branch((R[k] - c) / BETA, signs[k]) for k in range(3)]
            return np.nan if any(h is None for h in hs) else float(np.sum(PI_REF * np.exp(hs)) - 1)
        cs = np.linspace(R.min() - 30, R.max(), 4001)
        v = np.array([mass(c) for c in cs])
        for i in np.nonzero(np.isfinite(v[:-1]) & np.isfinite(v[1:]) & (v[:-1] * v[1:] < 0))[0]:
            c = brentq(mass, cs[i], cs[i + 1], xtol=1e-15)
            hs = np.array([branch((R[k] - c) / BETA, signs[k]) for k in range(3)])
            out.append(PI_REF * np.exp(hs))
    return out


def _tangent_hessian_of_J(p, fpp):
    """Hessian of J = E r − β·Σ π_ref f(π/π_ref) in π on Σπ = 1: −β·f''(t_k)/π_ref,k."""
    H = np.diag(-BETA * fpp(p / PI_REF) / PI_REF)
    T = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]).T / np.array([np.sqrt(2.0), np.sqrt(6.0)])
    return np.linalg.eigvalsh(T.T @ H @ T)


K3_FP = (lambda h: np.exp(-h) + h - 1, lambda t: (t - 1) / t**2)  # f'(h) as k3 of h; f''(t)
K2_FP = (lambda h: 0.5 * h * h, lambda t: np.log(t) / t)


def test_k3_reward_runs_away_as_derived(kong):
    """The solver's verdict: runaway, π(y2, y3) → 0; its certificate's numbers (u at the stopping
    point and at the far probe, e^−571) equal the NumPy u = s̄ − s_k to 1e-9 relative, and the far
    force F_k = π_k·u_k equals the derived asymptote β·π_ref,k (1e-9 relative)."""
    s = solve(make_objective(kong, "rloo", K3_REWARD))
    assert s.status == "runaway", s.note
    cand, far = _ray_check(s, lambda z: _u_reward(z, _k3))
    assert list(cand) == [1, 2]
    p_far = _softmax(far)[0]
    assert np.allclose(p_far[cand] * np.asarray(s.certificate["ray_out_far"]), BETA * PI_REF[cand], rtol=1e-9, atol=0)


@pytest.mark.parametrize("name, fp, clamp, lp", [
    ("rloo k3", K3_FP, np.inf, ("rloo", K3_REWARD)),
    ("verl k3", K3_FP, 10.0, ("verl", {"adv_estimator": "rloo", "n": 2, "use_kl_in_reward": True, "kl_penalty": "k3",
                                      "kl_ctrl.kl_coef": BETA})),
    ("verl low_var_kl", K3_FP, 10.0, ("verl", {"adv_estimator": "rloo", "n": 2, "use_kl_in_reward": True,
                                              "kl_penalty": "low_var_kl", "kl_ctrl.kl_coef": BETA})),
    ("verl k2", K2_FP, np.inf, ("verl", {"adv_estimator": "rloo", "n": 2, "use_kl_in_reward": True, "kl_penalty": "k2",
                                        "kl_ctrl.kl_coef": BETA})),
])
def test_reward_estimators_have_one_interior_root_a_source(kong, name, fp, clamp, lp):
    """The only interior zero (NumPy: 8 sign patterns × bisection) is where bandit-lab's field
    vanishes (per mass ≤ 1e-9; ≥ 1e-3 at Gibbs) and is a local minimum of J (tangent Hessian of J
    positive definite): a source, so no finite point attracts the flow — the runaway below."""
    roots = _interior_roots(fp[0], clamp)
    assert len(roots) == 1, roots
    p = roots[0]
    assert np.max(np.abs(_field(kong, *lp, p) / p)) < 1e-9
    assert np.max(np.abs(_field(kong, *lp, _gibbs(BETA)) / _gibbs(BETA))) > 1e-3
    assert _tangent_hessian_of_J(p, fp[1]).min() > 1.0


@pytest.mark.slow
def test_k3_reward_root_is_not_attracting_for_the_solver(kong):
    """Started at the NumPy root, the solver certifies it and classifies it as not attracting."""
    p = _interior_roots(K3_FP[0])[0]
    s = solve(make_objective(kong, "rloo", K3_REWARD), init=jnp.log(jnp.asarray(p))[None], warm=False)
    assert s.status == "not attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy)[0] - p)) < 1e-10


# =========================================================================== 3. verl kl_penalty / kl_loss_type

_VERL_R = {"adv_estimator": "rloo", "n": 2, "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}


@pytest.mark.parametrize("pen, kl", [("k2", _k2), ("k3", _k3_verl), ("low_var_kl", _k3_verl)])
def test_verl_reward_estimator_field_is_numpy(kong, pen, kl):
    """verl's k2 / k3 / low_var_kl in the reward (before the LOO baseline): the update is
    π_k(s̄ − s_k) with verl's clamped estimator (NumPy), at an arbitrary policy and at one where the
    k3 clamp (value ≤ 10) is active, 1e-12."""
    for q in (Q, np.array([0.999, 1e-6, 0.001 - 1e-6])):
        u = _u_reward(np.log(q), kl)
        f = _field(kong, "verl", {**_VERL_R, "kl_penalty": pen}, q)
        assert np.max(np.abs(f - q * u)) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("pen, kl", [("k2", _k2), ("low_var_kl", _k3_verl)])
def test_verl_reward_estimator_runs_away_as_derived(kong, pen, kl):
    """Runaway π(y2, y3) → 0 with the certificate's u equal to NumPy's (1e-9): k2's push grows like
    (β/2)·log²π (≈ 8.2e4 at e^−575); clamped k3's is the constant s̄ − r_k + 10β."""
    s = solve(make_objective(kong, "verl", {**_VERL_R, "kl_penalty": pen}))
    assert s.status == "runaway", s.note
    cand, far = _ray_check(s, lambda z: _u_reward(z, kl))
    assert list(cand) == [1, 2]
    if pen == "low_var_kl":
        p_far = _softmax(far)[0]
        assert np.allclose(s.certificate["ray_out_far"], np.sum(p_far * (R - BETA * _k3_verl(np.log(p_far)))) - R[cand] + 10 * BETA,
                           rtol=1e-12)
    else:
        assert s.certificate["ray_out_far"][0] > 0.9 * BETA / 2 * 575**2


_VERL_L = {"adv_estimator": "rloo", "n": 2, "use_kl_loss": True, "kl_loss_coef": BETA}


def test_verl_k1_loss_is_no_regulariser_and_runs_to_argmax(kong):
    """``kl_loss_type: kl`` (k1, differentiated): the field equals the KL-free RLOO field at an
    arbitrary policy (1e-12; NumPy π_k(r̄ − r_k)). The solver: runaway π(y2, y3) → 0, u = r̄ − r_k at
    both probes (1e-9 relative), → r_1 − r_k = log 2, log 6 at the far end (1e-12); its limit is the
    vertex of argmax r."""
    f = _field(kong, "verl", {**_VERL_L, "kl_loss_type": "kl"}, Q)
    assert np.max(np.abs(f - Q * (np.sum(Q * R) - R))) < 1e-12
    s = solve(make_objective(kong, "verl", {**_VERL_L, "kl_loss_type": "kl"}))
    assert s.status == "runaway", s.note

    def u(z):
        p, _ = _softmax(z)
        return np.sum(p * R) - R

    cand, far = _ray_check(s, u)
    assert list(cand) == [1, 2]
    assert np.allclose(s.certificate["ray_out_far"], [np.log(2), np.log(6)], rtol=0, atol=1e-12)
    assert "the limit is the vertex π = [1, 0, 0]" in s.note and s.certificate["limit_policy"] == [[1.0, 0.0, 0.0]]


def _u_abs(z):
    p, lp = _softmax(z)
    sg = np.sign(lp - np.log(PI_REF))
    return (np.sum(p * R) - R) + BETA * (sg - np.sum(p * sg))


def test_verl_abs_loss_field_and_its_sliding_limit(kong):
    """``kl_loss_type: abs`` (differentiated): field = π_j[(r̄ − r_j) + β(sgn h_j − E sgn h)] (NumPy,
    1e-12). At the derived limit (0.6, 0.4, 0) ± δ on y2 the field pushes y2 back to π_ref,2 from both
    sides and y3 down: Filippov sliding, no root (|u| ≥ 0.1 on both sides)."""
    f = _field(kong, "verl", {**_VERL_L, "kl_loss_type": "abs"}, Q)
    assert np.max(np.abs(f - Q * _u_abs(np.log(Q)))) < 1e-12
    for d, sign in ((1e-6, 1), (-1e-6, -1)):
        q = np.array([0.6 - d - 1e-12, 0.4 + d, 1e-12])
        u = _field(kong, "verl", {**_VERL_L, "kl_loss_type": "abs"}, q) / q
        assert np.allclose(u, _u_abs(np.log(q)), rtol=1e-9, atol=1e-12)
        assert sign * u[1] > 0.1  # above π_ref,2: pushed down; below: pushed up
        assert u[2] > 0.1  # y3 pushed down


@pytest.mark.slow
def test_verl_abs_loss_verdict(kong):
    """The solver: runaway of y3 only (the certificate's u equals NumPy's, 1e-9); its stop point is
    not the limit (y2 is still pushed back towards π_ref,2 = 0.4: spread > 0.1), and the note gives
    the limit, the sliding point (checked against NumPy in tests/test_runaway_limits.py)."""
    s = solve(make_objective(kong, "verl", {**_VERL_L, "kl_loss_type": "abs"}))
    assert s.status == "runaway", s.note
    cand, _ = _ray_check(s, _u_abs)
    assert list(cand) == [2]
    assert s.certificate["face_field_spread"] > 0.1
    assert "the limit is π = [0.6, 0.4, 0], a sliding point" in s.note


# =========================================================================== 4. verl grpo_passk

G_PK, EPS_PK = 4, 1e-6


def _passk_field(theta, std):
    """Ascent field of verl grpo_passk + k3+ (KL(π‖π_ref)) by enumeration of all 3^G ordered
    groups: A = (r_max − r_second)/(std + ε) on the top index of torch.topk (0 on a tie), token-mean."""
    p, lp = _softmax(theta)
    g = np.zeros(3)
    for grp in itertools.product(range(3), repeat=G_PK):
        rr = R[list(grp)]
        order = np.argsort(-rr, kind="stable")
        gap = rr[order[0]] - rr[order[1]]
        if std:
            gap = gap / (np.std(rr, ddof=1) + EPS_PK)
        A = np.zeros(G_PK)
        A[order[0]] = gap
        pg = np.prod(p[list(grp)])
        for i, y in enumerate(grp):
            g += pg * A[i] * (np.eye(3)[y] - p) / G_PK
    h = lp - np.log(PI_REF)
    return g - BETA * p * (h - np.sum(p * h))


def _passk_root(std):
    sol = root(lambda v: _passk_field(np.r_[0.0, v], std)[1:], np.zeros(2), method="hybr", options={"xtol": 1e-14})
    assert sol.success
    return _softmax(np.r_[0.0, sol.x])[0]


@pytest.mark.parametrize("std", [True, False])
def test_grpo_passk_point_is_the_enumerated_root(kong, std):
    """The solver's point (certified attracting) equals the MINPACK root of the enumerated field,
    1e-9 max |Δπ|; bandit-lab's field equals the enumerated one at an arbitrary policy, 1e-12."""
    lp = {"adv_estimator": "grpo_passk", "n": G_PK, "norm_adv_by_std_in_grpo": std, "use_kl_loss": True,
          "kl_loss_type": "k3+", "kl_loss_coef": BETA}
    assert np.max(np.abs(-_field(kong, "verl", lp, Q) - _passk_field(np.log(Q), std))) < 1e-12
    want = _passk_root(std)
    s = solve(make_objective(kong, "verl", lp))
    assert s.status == "attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy)[0] - want)) < 1e-9
    assert np.max(np.abs(want - _gibbs(BETA))) > 1e-3
