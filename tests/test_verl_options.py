"""verl 0.9.1 / OpenRLHF 0.11.2 config names verbatim (issue 21): translation, refusals naming the
field, and the stationary point of each supported combination checked against an independent
computation (closed form, a hand-written field equation, or bandit-lab's native algorithm).

Default tier: the expected update (the field F, ∇ of the surrogate with the state built from the
same parameters, detached) is evaluated *at* the closed-form point and must vanish to 1e-12 (one
gradient per configuration, no solve), and must not vanish at the closed form of a neighbouring
configuration (> 1e-3: the check discriminates). Slow tier: the project's field solver finds the
point from π_ref, certified at ‖F‖ ≤ 1e-10, and it matches the closed form in TV to 1e-8."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import make_objective
from bandit_lab.onpolicy import verl as vl
from bandit_lab.onpolicy.stationary import solve
from bandit_lab.solvers.oracles import rlhf_optimum


@pytest.fixture(scope="module")
def pb():
    # two contexts, K = 4, rewards of both signs (a BT reward from a reward matrix)
    pi_ref = np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    reward = np.array([[0.5, -0.2, 1.0, -1.1], [0.3, 0.1, -0.6, 0.9]])
    return _problem(pi_ref, reward)


def _problem(pi_ref, reward):
    from bandit_lab.spec import build

    obj, *_ = build({"pi_ref": pi_ref.tolist(), "preference": {"reward": reward.tolist()}, "pairs": "uniform",
                     "loss": "dpo", "loss_params": {"beta": 1.0}})
    return obj.problem


def _point(pb, lib, lp):
    s = solve(make_objective(pb, lib, lp))
    assert s.status == "attracting", (lp, s.status, s.note)
    assert s.result.residual <= 1e-10
    return np.asarray(s.result.policy)


def _tv(pb, a, b):
    return float(metrics.tv(a, b, pb.context_weight))


# --------------------------------------------------------------------------- translation

def test_defaults_are_the_libraries():
    pb = _problem(np.array([[0.5, 0.5]]), np.array([[0.0, 1.0]]))
    o = make_objective(pb, "verl", {})
    assert o.static["advantage"] == "critic" and o.static["post"] == "whiten" and o.static["group_size"] == 1
    assert o.static["kl_loss"] == "none" and o.static["kl_reward"] == "none" and o.hp["clip_c"] == 3.0
    # a verl field given: the rest take verl's defaults; dotted paths and nested dicts read the same
    a = make_objective(pb, "verl", {"actor_rollout_ref.actor.use_kl_loss": True, "algorithm.adv_estimator": "grpo",
                                    "actor_rollout_ref.rollout.n": 5})
    b = make_objective(pb, "verl", {"actor_rollout_ref": {"actor": {"use_kl_loss": True}, "rollout": {"n": 5}},
                                    "algorithm": {"adv_estimator": "grpo"}})
    assert a.static == b.static and a.hp == b.hp
    assert a.static["kl_loss"] == "k3" and a.hp["beta"] == 0.001 and a.static["group_size"] == 5
    assert a.static["advantage"] == "group_std" and a.hp["std_eps"] == 1e-6
    o = make_objective(pb, "openrlhf", {})
    assert o.static["kl_reward"] == "k1" and o.hp["beta_reward"] == 0.01 and o.hp["reward_clip"] == 10.0
    assert o.static["post"] == "whiten_clamp" and o.hp["clip_c"] == 0.0


@pytest.mark.parametrize("lib, lp, words", [
    ("verl", {"gamma": 0.99}, ("gamma", "cannot matter on a bandit")),
    ("verl", {"algorithm.lam": 0.95}, ("algorithm.lam", "cannot matter")),
    ("verl", {"adv_estimator": "gdpo"}, ("gdpo", "not implemented")),
    ("verl", {"adv_estimator": "grpo_passk"}, ("grpo_passk", "group of ≥ 2")),
    ("verl", {"adv_estimator": "nope"}, ("adv_estimator", "grpo")),
    ("verl", {"policy_loss": {"loss_mode": "kl_cov", "kl_cov_ratio": 0.0}}, ("policy_loss.kl_cov_ratio", "(0, 1]")),
    ("verl", {"policy_loss": {"loss_mode": "kl_cov", "kl_cov_ratio": 1.5}}, ("policy_loss.kl_cov_ratio", "(0, 1]")),
    ("verl", {"policy_loss.kl_cov_ratio": float("nan")}, ("policy_loss.kl_cov_ratio", "(0, 1]")),  # checked in any mode
    ("verl", {"policy_loss": {"loss_mode": "kl_cov", "ppo_kl_coef": -0.1}}, ("policy_loss.ppo_kl_coef", "≥ 0")),
    ("verl", {"policy_loss": {"loss_mode": "kl_cov", "ppo_kl_coef": "x"}}, ("policy_loss.ppo_kl_coef", "number")),
    ("verl", {"policy_loss": {"loss_mode": "geo_mean"}, "use_kl_loss": True}, ("use_kl_loss", "micro-batch")),
    ("verl", {"policy_loss": {"loss_mode": "geo_mean"}, "entropy_coeff": 0.1}, ("entropy_coeff", "micro-batch")),
    ("verl", {"policy_loss": {"loss_mode": "sapo"}, "tau_neg": 0.0}, ("tau_neg", "> 0")),
    ("verl", {"use_kl_loss": True, "kl_loss_type": "full"}, ("kl_loss_type", "NotImplementedError")),
    ("verl", {"use_kl_in_reward": True, "kl_ctrl": {"type": "adaptive"}}, ("kl_ctrl.type", "adaptive")),
    ("verl", {"clip_ratio_c": 1.0}, ("clip_ratio_c", "> 1")),
    ("verl", {"use_kl_loss": "yes"}, ("use_kl_loss", "true or false")),
    ("verl", {"kl_loss_cof": 0.1}, ("kl_loss_cof",)),
    ("verl", {"kl_loss_coef": "x"}, ("kl_loss_coef", "number")),  # checked even with use_kl_loss false
    ("verl", {"kl_ctrl": {"kl_coef": -1.0}}, ("kl_ctrl.kl_coef", "≥ 0")),
    ("openrlhf", {"algo.advantage.estimator": "rloo"}, ("n_samples_per_prompt", "≥ 2")),
    ("openrlhf", {"algo.kl.target": 0.1}, ("algo.kl.target", "adaptive")),
    ("openrlhf", {"algo.advantage.gamma": 0.9}, ("algo.advantage.gamma", "cannot matter")),
    ("openrlhf", {"algo.kl.estimator": "k4"}, ("algo.kl.estimator",)),
    ("openrlhf", {"algo": {"kl": {"unknown": 1}}}, ("algo.kl.unknown",)),
    ("openrlhf", {"algo.advantage.is_correction_mode": "clip"}, ("is_correction_mode", "not implemented")),
    ("openrlhf", {"reward.stop_properly_penalty_coef": -0.5}, ("stop_properly_penalty_coef", "not implemented")),
    ("openrlhf", {"train.seed": 1}, ("train.seed", "cannot matter")),
])
def test_refusals_name_the_field(lib, lp, words):
    pb = _problem(np.array([[0.5, 0.5]]), np.array([[0.0, 1.0]]))
    with pytest.raises(BanditError) as e:
        make_objective(pb, lib, lp)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_openrlhf_switched_off_options_at_their_defaults_pass():
    """OpenRLHF 0.11.2's is_correction_* / overlong / stop-properly / dynamic-filtering-range options act
    only behind a switch that must stay off; at their defaults (train_ppo_ray.py) they are accepted."""
    pb = _problem(np.array([[0.5, 0.5]]), np.array([[0.0, 1.0]]))
    lp = {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 2, "algo.advantage.is_correction_mode": "mask",
          "algo.advantage.is_correction_gating": "ratio", "algo.advantage.is_correction_threshold": [0.5, 5.0],
          "reward.overlong_penalty_factor": 1, "reward.stop_properly_penalty_coef": None,
          "algo.dynamic_filtering_range": [0, 1]}
    a = make_objective(pb, "openrlhf", lp)
    b = make_objective(pb, "openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 2})
    assert a.static == b.static and a.hp == b.hp


def test_translation_is_idempotent():
    p = vl.translate_verl({"adv_estimator": "rloo", "n": 3, "use_kl_loss": True, "kl_loss_type": "k3+"})
    assert vl.translate_verl(p) == p
    q = vl.translate_openrlhf({"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 4})
    assert vl.translate_openrlhf(q) == q


# --------------------------------------------------------------------------- closed forms

def _gibbs(pb, beta):
    return rlhf_optimum(pb.pi_ref, pb.reward, beta)


def _field(pb, lib, lp, policy):
    """The expected update at the softmax logits log π (gauge: logits = log-probabilities)."""
    import jax
    import jax.numpy as jnp

    o = make_objective(pb, lib, lp)
    return np.asarray(jax.grad(lambda z: o.value(z, o.hp))(jnp.log(jnp.asarray(policy))))


BETA, G = 0.4, 4


def _entropy_point(pb, beta, alpha):
    """E r − β KL(π‖π_ref) + α H(π) is maximised by π ∝ π_ref^{β/(β+α)} e^{r/(β+α)}."""
    lg = (beta * np.log(pb.pi_ref) + pb.reward) / (beta + alpha)
    w = np.exp(lg - lg.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


# (library, loss_params, the closed form's name). Why each holds (single-token responses):
# - leave-one-out (rloo), REINFORCE++ (whitening is affine with a positive scale, one context mean),
#   ReMax (the greedy baseline is constant per context) have expected update ∝ ∇E_π[r̃]; with k1 in
#   the reward r̃ = r − β log(π/π_ref): Gibbs at β (OpenRLHF subtracts the KL after the baseline:
#   the same expectation);
# - a straight-through KL loss (verl 'k3+', 'k1+', 'abs+'; k2 = 'mse'; OpenRLHF unbiased_gradient)
#   has E_π[∇] = Σ π (log π − log π_ref) ∇log π = ∇KL(π‖π_ref): Gibbs at β with RLOO;
# - the group-mean baseline (verl grpo without std, opo with unit lengths, gpg with α = 1 when no
#   score is 0 — none is here; see test_gpg_alpha_with_zero_scores; OpenRLHF dr_grpo) scales ∇E r by (n−1)/n: Gibbs at β·n/(n−1);
# - on-policy the ratio is 1, so the vanilla / dual-clip / GSPO / CISPO / GPG surrogates agree;
# - an entropy bonus α: π ∝ π_ref^{β/(β+α)} e^{r/(β+α)}.
_RLOO_R = {"adv_estimator": "rloo", "n": 3, "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}
_ST = {"use_kl_loss": True, "kl_loss_type": "k3+", "kl_loss_coef": BETA}
CASES = [
    ("verl", _RLOO_R, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "gspo"}}, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "cispo"}}, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "gpg"}}, "gibbs"),
    ("verl", {**_RLOO_R, "clip_ratio_c": 10.0, "clip_ratio_high": 0.28, "loss_agg_mode": "seq-mean-token-mean"}, "gibbs"),
    ("verl", {"adv_estimator": "reinforce_plus_plus", "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}, "gibbs"),
    ("verl", {"adv_estimator": "remax", "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}, "gibbs"),
    ("verl", {"adv_estimator": "gae", "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}, "gibbs"),
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST}, "gibbs"),
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "kl_loss_type": "k1+"}, "gibbs"),
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "kl_loss_type": "abs+"}, "gibbs"),
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "kl_loss_type": "mse"}, "gibbs"),
    ("verl", {"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": False, "n": G, **_ST}, "gibbs_G"),
    ("verl", {"adv_estimator": "opo", "n": G, **_ST}, "gibbs_G"),
    ("verl", {"adv_estimator": "gpg", "n": G, **_ST}, "gibbs_G"),
    ("verl", {**_RLOO_R, "entropy_coeff": 0.2}, "entropy"),
    ("openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 3, "algo.kl.init_coef": BETA}, "gibbs"),
    ("openrlhf", {"algo.advantage.estimator": "reinforce", "algo.kl.init_coef": BETA}, "gibbs"),
    ("openrlhf", {"algo.advantage.estimator": "gae", "algo.kl.init_coef": BETA, "actor.dual_clip": 3.0}, "gibbs"),
    ("openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 2, "algo.kl.use_loss": True,
                  "algo.kl.estimator": "k3", "algo.kl.unbiased_gradient": True, "algo.kl.init_coef": BETA}, "gibbs"),
    ("openrlhf", {"algo.advantage.estimator": "dr_grpo", "rollout.n_samples_per_prompt": G, "algo.kl.use_loss": True,
                  "algo.kl.estimator": "k2", "algo.kl.init_coef": BETA}, "gibbs_G"),
    # OpenRLHF subtracts the KL *after* the group-mean baseline: only the reward part is scaled by
    # (n−1)/n, so the point is Gibbs at β·n/(n−1); verl subtracts it before: Gibbs at β
    ("openrlhf", {"algo.advantage.estimator": "reinforce_baseline", "rollout.n_samples_per_prompt": G,
                  "algo.kl.init_coef": BETA}, "gibbs_G"),
    ("openrlhf", {"algo.advantage.estimator": "dr_grpo", "rollout.n_samples_per_prompt": G, "algo.kl.init_coef": BETA}, "gibbs_G"),
    ("verl", {"adv_estimator": "reinforce_plus_plus_baseline", "n": G, "use_kl_in_reward": True, "kl_ctrl.kl_coef": BETA}, "gibbs"),
    # GMPO and SAPO on-policy (ρ = 1): GMPO's clipped exp(log ρ') and SAPO's gate σ(τ(ρ−1))·4/τ have
    # slope 1 there, so with the KL in the reward they are REINFORCE/RLOO (up to a positive factor)
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "geo_mean"}}, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "sapo"}, "tau_pos": 2.0, "tau_neg": 3.0}, "gibbs"),
    # token-sum: the sum over ppo_mini_batch_size·n responses = that many times token-mean, KL loss included
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "loss_agg_mode": "token-sum", "ppo_mini_batch_size": 16}, "gibbs"),
    # DPPO-Binary TV/KL and DRO on-policy (ρ = 1, π = π_old): every trust mask holds (|π − π_old| = 0, binary KL 0),
    # the truncated detached ratio is 1 and DRO's ½β_dro·(log π − log π_old)² has gradient 0: vanilla's update
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "dppo_tv"}}, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "dppo_kl"}, "clip_ratio_low": 0.05}, "gibbs"),
    ("verl", {**_RLOO_R, "policy_loss": {"loss_mode": "dro", "dro_beta": 2.0}}, "gibbs"),
    ("verl", {"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": False, "n": G, **_ST,
              "policy_loss": {"loss_mode": "dro", "dro_beta": 0.5}}, "gibbs_G"),
    # bypass mode (π_rollout = π_old): on-policy log r = 0, so every rejection statistic is 0 (kept when the k1 window
    # holds ratio 1) and the IS weight is min(1, TIS bound): ppo_clip is vanilla; reinforce with a TIS bound 0.5 puts
    # 0.5 on the policy term, so a KL *loss* acts as β/0.5 (Gibbs at 2β), a KL in the reward does not move
    ("verl", {**_RLOO_R, "rollout_correction": {"bypass_mode": True}}, "gibbs"),
    ("verl", {**_RLOO_R, "rollout_correction": {"bypass_mode": True, "loss_type": "reinforce", "rollout_is": "token",
                                                "rollout_is_threshold": 0.5, "rollout_rs": "token_k1,seq_max_k3",
                                                "rollout_rs_threshold": "0.5_2.0,0.3"}}, "gibbs"),
    ("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "rollout_correction": {
        "bypass_mode": True, "loss_type": "reinforce", "rollout_is": "sequence", "rollout_is_threshold": 0.5}}, "gibbs_2b"),
]


def _closed(pb, name):
    return {"gibbs": lambda: _gibbs(pb, BETA), "gibbs_G": lambda: _gibbs(pb, BETA * G / (G - 1)), "gibbs_2b": lambda: _gibbs(pb, 2 * BETA),
            "entropy": lambda: _entropy_point(pb, BETA, 0.2)}[name]()


@pytest.mark.parametrize("lib, lp, name", CASES)
def test_expected_update_vanishes_at_the_closed_form(pb, lib, lp, name):
    f = _field(pb, lib, lp, _closed(pb, name))
    assert np.max(np.abs(f)) < 1e-12, f
    other = {"gibbs": "gibbs_G", "gibbs_G": "gibbs", "entropy": "gibbs", "gibbs_2b": "gibbs"}[name]
    assert np.max(np.abs(_field(pb, lib, lp, _closed(pb, other)))) > 1e-3


def test_gpg_alpha_with_zero_scores():
    """verl gpg: α = bsz/#nonzero scores → 1/P_π(r ≠ 0) in the large-batch limit, a factor on the
    reward part only: the point is Gibbs at β·n/((n−1)·α(π)), a scalar fixed point (iterated here)."""
    pb0 = _problem(np.array([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]]),
                   np.array([[0.5, 0.0, 1.0, -1.1], [0.3, 0.0, -0.6, 0.9]]))
    a = 1.0
    for _ in range(200):
        q = rlhf_optimum(pb0.pi_ref, pb0.reward, BETA * G / ((G - 1) * a))
        a = 1.0 / np.sum(pb0.context_weight[:, None] * q * (pb0.reward != 0))
    assert a > 1.05
    lp = {"adv_estimator": "gpg", "n": G, **_ST}
    assert np.max(np.abs(_field(pb0, "verl", lp, q))) < 1e-12
    assert np.max(np.abs(_field(pb0, "verl", lp, _gibbs(pb0, BETA * G / (G - 1))))) > 1e-3


def test_pathwise_k3_does_not_land_on_gibbs(pb):
    """verl's default low_var_kl differentiated (no '+'): E_π[∇k3] = Σ (π − π_ref)∇log π = ∇KL(π_ref‖π),
    not ∇KL(π‖π_ref); OpenRLHF's k3 without unbiased_gradient likewise."""
    for lib, lp in (("verl", {"adv_estimator": "rloo", "n": 2, **_ST, "kl_loss_type": "low_var_kl"}),
                    ("openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 2, "algo.kl.use_loss": True,
                                  "algo.kl.estimator": "k3", "algo.kl.init_coef": BETA})):
        assert np.max(np.abs(_field(pb, lib, lp, _gibbs(pb, BETA)))) > 1e-3


def _k3_root(pb, beta):
    """The root of π_k(r_k − E_π r) = β(π_k − π_ref,k) (RLOO + pathwise k3, unclamped) per context,
    by bisection on the scalar λ = E_π r: π_k = β π_ref,k/(β − r_k + λ), Σ π_k = 1 (λ > max r − β)."""
    out = []
    for ref, r in zip(pb.pi_ref, pb.reward):
        lo, hi = np.max(r) - beta + 1e-15, np.max(r) + 10.0
        for _ in range(200):
            lam = 0.5 * (lo + hi)
            s = np.sum(beta * ref / (beta - r + lam))
            lo, hi = (lam, hi) if s > 1 else (lo, lam)
        p = beta * ref / (beta - r + 0.5 * (lo + hi))
        out.append(p / p.sum())
    return np.asarray(out)


def test_low_var_kl_root_and_its_clamp(pb):
    """At the unclamped root of RLOO + k3 (independent: bisection on λ) verl's field vanishes when
    the ±10 clamp is inactive there (π_ref/π < 12.9)... and does not where it is active: the clamp
    zeroes k3's gradient for responses with π_ref/π ≳ 12.9, so nothing holds their mass up."""
    beta = 0.5
    q = _k3_root(pb, beta)
    assert np.max(pb.pi_ref / q) < 12.0
    lp = {"adv_estimator": "rloo", "n": 2, "use_kl_loss": True, "kl_loss_coef": beta}
    assert np.max(np.abs(_field(pb, "verl", lp, q))) < 1e-12
    small = _problem(np.array([[1 / 3, 1 / 3, 1 / 3]]), np.array([[1.0, 0.0, -3.0]]))
    q = _k3_root(small, 0.1)
    assert np.max(small.pi_ref / q) > 12.9
    f = _field(small, "verl", {**lp, "kl_loss_coef": 0.1}, q)
    assert f[0, 2] > 1e-3  # the gradient of the loss pushes y3's logit down: not a stationary point
    native = make_objective(small, "rloo", {"group_size": 2, "beta": 0.1, "kl_estimator": "k3", "kl_placement": "loss"})
    import jax
    import jax.numpy as jnp

    assert np.max(np.abs(np.asarray(jax.grad(lambda z: native.value(z, native.hp))(jnp.log(jnp.asarray(q)))))) < 1e-12


def test_verl_grpo_matches_native_grpo_field(pb):
    """A second implementation: verl's grpo + low_var_kl (clamp inactive) and bandit-lab's native
    ``grpo`` (group std, ε = 1e-6, ddof 1, k3 in the loss without TRL's correction) have the same
    expected update at an arbitrary policy (1e-12)."""
    import jax
    import jax.numpy as jnp

    q = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.3, 0.2]])
    a = _field(pb, "verl", {"adv_estimator": "grpo", "n": 3, "use_kl_loss": True, "kl_loss_coef": 0.5}, q)
    o = make_objective(pb, "grpo", {"group_size": 3, "beta": 0.5, "std_eps": 1e-6, "kl_bias_correction": False,
                                    "length_norm": "token"})
    b = np.asarray(jax.grad(lambda z: o.value(z, o.hp))(jnp.log(jnp.asarray(q))))
    assert np.max(np.abs(a - b)) < 1e-12


def test_sampled_state_converges_to_the_exact_state(pb):
    """Sampled mode (N groups per context) estimates the exact expected state: the advantage parts
    c± and frequencies agree with the exact enumeration to Monte-Carlo accuracy (4/√N)."""
    import jax

    lp = {"adv_estimator": "grpo", "n": 3, "use_kl_in_reward": True, "kl_ctrl.kl_coef": 0.3, "sampling": {"samples": 40000}}
    o = make_objective(pb, "verl", lp)
    params = o.param.init()
    exact = o.loss.state_init(o, params, o.hp, None, o.consts())
    samp = o.loss.state_init(o, params, o.hp, jax.random.PRNGKey(0), o.consts())
    for k in ("cp", "cm", "ckl"):
        assert np.max(np.abs(np.asarray(samp[k]) - np.asarray(exact[k]))) < 4 / np.sqrt(40000), k


# --------------------------------------------------------------------------- the solver finds them

@pytest.mark.slow
@pytest.mark.parametrize("i", [0, 8, 12, 16, 19, -6, -4, -2, -1])
def test_solver_finds_the_closed_form(pb, i):
    lib, lp, name = CASES[i]
    s = solve(make_objective(pb, lib, lp))
    assert s.status == "attracting" and s.result.residual <= 1e-10, (s.status, s.note)
    assert float(metrics.tv(s.result.policy, _closed(pb, name), pb.context_weight)) < 1e-8


def test_oracle_is_the_closed_form_of_each_case(pb):
    """``LossSpec.oracle`` (what ``solve`` reports as the closed form) agrees with the cases' closed
    forms, and the expected update vanishes at it for the Vojnovic–Yun and forward-KL rows too."""
    from bandit_lab.losses.libraries import oracle

    for lib, lp, name in CASES:
        o = make_objective(pb, lib, lp)
        pol, note = oracle(pb, o.hp, o.static)
        assert pol is not None, (lp, note)
        assert np.max(np.abs(pol - _closed(pb, name))) < 1e-12, (lp, note)
    # (grpo + pathwise low_var_kl: the forward-KL Vojnovic–Yun point; closed_forms.grpo_fixed_point
    # stopped at a spurious boundary point here — residual 0.2 — until round 3 session 4)
    for lp in ({"adv_estimator": "grpo", "n": 3, **_ST},
               {"adv_estimator": "grpo", "n": G, "use_kl_loss": True, "kl_loss_type": "low_var_kl", "kl_loss_coef": BETA},
               {"adv_estimator": "rloo", "n": 2, "use_kl_loss": True, "kl_loss_coef": 0.5}):
        o = make_objective(pb, "verl", lp)
        pol, note = oracle(pb, o.hp, o.static)
        assert pol is not None, note
        assert np.max(np.abs(_field(pb, "verl", lp, pol))) < 1e-11, (lp, note)
    o = make_objective(pb, "verl", {})  # verl defaults: gae, no KL anywhere
    assert oracle(pb, o.hp, o.static)[0] is None


@pytest.mark.slow
@pytest.mark.parametrize("lib, lp", [
    ("verl", {"adv_estimator": "grpo", "n": 4, "use_kl_loss": True, "kl_loss_type": "k3+", "kl_loss_coef": 0.5}),
    ("openrlhf", {"algo.advantage.estimator": "reinforce_baseline", "rollout.n_samples_per_prompt": 4, "algo.kl.init_coef": 0.5}),
])
def test_sampled_training_converges_to_the_exact_point(lib, lp):
    """Sampled mode (2000 groups per context per step, Adam, 3000 steps) ends within 3e-3 in TV of
    the exact stationary point (measured 3e-4 for verl grpo + k3+, under load; the residual is the
    sampling noise of the last steps)."""
    from bandit_lab.spec import solve as solve_spec

    res = solve_spec(({"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform",
                           "loss": lib, "loss_params": lp, "sampling": {"samples": 2000, "seed": 1},
                           "optimizer": {"steps": 3000}}))
    assert res["stationary_status"] == "attracting"
    assert res["adam_vs_exact_tv"] < 3e-3, res["adam_vs_exact_tv"]
    assert res["exact_vs_oracle_tv"] < 1e-12


def test_passk_is_the_gradient_of_the_expected_max(pb):
    """verl grpo_passk without the std: only the group's strict best response gets r_max − r_second.
    That is the leave-one-out max baseline, so the expected update is (1/G)·∇E_π[max of G rewards]:
    checked at an arbitrary policy against JAX's gradient of E[max] = Σ_k r_(k)·(F_k^G − F_{k−1}^G)
    (rewards sorted, F the CDF; an independent formula), with and without a k3+ KL loss, 1e-12."""
    import jax
    import jax.numpy as jnp

    q = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.3, 0.2]])
    r = np.asarray(pb.reward)
    order = np.argsort(r, -1)

    def emax(z):
        p = jax.nn.softmax(z, -1)
        ps = jnp.take_along_axis(p, order, -1)
        F = jnp.cumsum(ps, -1)
        Fm = jnp.concatenate([jnp.zeros((2, 1)), F[:, :-1]], -1)
        return jnp.sum(jnp.asarray(pb.context_weight)[:, None] * jnp.take_along_axis(jnp.asarray(r), order, -1) * (F**G - Fm**G))

    want = -np.asarray(jax.grad(emax)(jnp.log(jnp.asarray(q)))) / G
    f = _field(pb, "verl", {"adv_estimator": "grpo_passk", "norm_adv_by_std_in_grpo": False, "n": G}, q)
    assert np.max(np.abs(f - want)) < 1e-12
    kl = _field(pb, "verl", {"adv_estimator": "rloo", "n": 2, **_ST}, q) - _field(pb, "verl", {"adv_estimator": "rloo", "n": 2}, q)
    f = _field(pb, "verl", {"adv_estimator": "grpo_passk", "norm_adv_by_std_in_grpo": False, "n": G, **_ST}, q)
    assert np.max(np.abs(f - (want + kl))) < 1e-12


def test_token_sum_is_the_mini_batch_times_token_mean(pb):
    """verl agg_loss 'token-sum' (masked_sum·dp_size per micro-batch, summed over the step's
    micro-batches, DDP-averaged): the expected update is ppo_mini_batch_size·n times token-mean's."""
    lp = {"adv_estimator": "grpo", "n": 3, **_ST, "entropy_coeff": 0.05}
    q = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.1, 0.3, 0.2]])
    a = _field(pb, "verl", lp, q)
    b = _field(pb, "verl", {**lp, "loss_agg_mode": "token-sum"}, q)  # verl's default ppo_mini_batch_size: 256
    assert np.max(np.abs(b - 256 * 3 * a)) < 1e-12 * np.max(np.abs(b))


def test_sapo_with_a_kl_loss_weighs_beta_by_its_seq_mean(pb):
    """SAPO's policy term is always aggregated seq-mean-token-mean (÷ (1 + 1e-8) on one token) while
    the KL loss follows loss_agg_mode: with RLOO + a straight-through KL loss the point is Gibbs at
    β·(1 + 1e-8), not β (the field at Gibbs(β) is ~β·1e-8), and the oracle says so."""
    from bandit_lab.losses.libraries import oracle

    lp = {"adv_estimator": "rloo", "n": 2, **_ST, "policy_loss": {"loss_mode": "sapo"}}
    assert np.max(np.abs(_field(pb, "verl", lp, _gibbs(pb, BETA * (1 + 1e-8))))) < 1e-13
    assert np.max(np.abs(_field(pb, "verl", lp, _gibbs(pb, BETA)))) > 1e-10
    o = make_objective(pb, "verl", lp)
    pol, _ = oracle(pb, o.hp, o.static)
    assert np.max(np.abs(pol - _gibbs(pb, BETA * (1 + 1e-8)))) < 1e-14


@pytest.mark.parametrize("rc, want", [
    ({}, 1.0),
    ({"loss_type": "reinforce", "rollout_is": "token", "rollout_is_threshold": 0.5}, 0.5),
    ({"loss_type": "reinforce", "rollout_is": "token", "rollout_is_threshold": "1.2_3"}, 0.0),
    ({"loss_type": "reinforce", "rollout_is": "sequence", "rollout_is_threshold": "0.5_3", "rollout_rs": "token_k1",
      "rollout_rs_threshold": "1.1_2"}, 0.0),
    ({"loss_type": "reinforce", "rollout_is": "token", "rollout_is_threshold": "0.5_3", "rollout_rs": "token_k1,token_k3",
      "rollout_rs_threshold": "0.9_2,0.1"}, 1.0),
])
def test_bypass_on_policy_factor(rc, want):
    """verl bypass mode on-policy (log r = 0): the factor on the policy term, in plain Python
    (``verl.bypass_on_policy``, used by the closed form) = the JAX mask × IS weight
    (``libraries.bypass_weights``) at log r = 0 = the hand value (TIS min(1, bound); IcePop 1 inside,
    0 outside; a k1 window excluding ratio 1 rejects everything)."""
    from bandit_lab import losses
    from bandit_lab.losses.libraries import bypass_weights
    from bandit_lab.onpolicy.verl import bypass_on_policy

    hp, st = losses.split_params(losses.get("verl"), {"rollout_correction": {"bypass_mode": True, **rc}})
    keep, w = bypass_weights({k: jnp.asarray(v) for k, v in hp.items()}, st, jnp.zeros(()))
    assert bypass_on_policy(hp, st) == want == float(keep) * (float(w) if st["bypass_loss"] == "reinforce" else 1.0)
