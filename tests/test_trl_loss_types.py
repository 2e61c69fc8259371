"""TRL 1.16's eight GRPO loss types, ``delta`` and ``scale_rewards="batch"``: exact stationary
points against closed forms (issue 21).

Derivation (single-token responses, on-policy ρ = 1; TRL's GRPOTrainer._compute_loss): with
A = r − group mean (``scale_rewards="none"``), E[A·∇log π] = ((G−1)/G)·∇E_π r, and k3 × the
differentiable ratio (``use_bias_correction_kl``) has expected gradient ∇KL(π‖π_ref). Every
aggregation (grpo/sapo per-sequence mean, dapo/bnpo/cispo/vespo token mean, dr_grpo /max length,
luspo per-sequence sum) divides policy and KL terms alike by a constant on a bandit. At ρ = 1 the
clip surrogate's gradient is A∇ρ = A∇log π; sapo's (4/τ)σ(τ(ρ−1)) has slope 1 at ρ = 1; vespo's
φ(1) = e^{λ}·1·e^{−λ} = 1. So all of them share the update ((G−1)/G)·∇[E_π r − β·G/(G−1)·KL(π‖π_ref)]
and its unique zero, Gibbs at β·G/(G−1). cispo's weight is the detached min(ρ, ε_high) = min(1,
ε_high) on-policy: Gibbs at β·G/((G−1)·min(1, ε_high)) — with TRL's default ε_high (None → ε = 0.2)
the KL weight is effectively 5β. ``delta`` caps ρ > 1 only, inert at ρ = 1: same point.
Each point is solved by :func:`bandit_lab.onpolicy.stationary.solve` (Newton on the field) and
compared with the NumPy closed form to 1e-8 (max |Δπ|).
"""
from __future__ import annotations

import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.core.objective import make_objective
from bandit_lab.onpolicy.stationary import solve
from bandit_lab.core.random_problems import random_problem

G, BETA = 3, 0.6


@pytest.fixture(scope="module")
def pb():
    return random_problem(np.random.default_rng(11), k=4, contexts=2, preference="reward", pairs="uniform")


def _gibbs(pb, beta):
    g = np.asarray(pb.pi_ref) * np.exp(np.asarray(pb.reward) / beta)
    return g / g.sum(-1, keepdims=True)


_slow = pytest.mark.slow  # one compile of the stationary solver per surrogate: ≈ 15 s each under load


@pytest.mark.parametrize("loss_type, extra, scale", [
    pytest.param("grpo", {}, 1.0, marks=_slow), pytest.param("bnpo", {}, 1.0, marks=_slow),
    pytest.param("dapo", {}, 1.0, marks=_slow), pytest.param("dr_grpo", {}, 1.0, marks=_slow),
    pytest.param("luspo", {}, 1.0, marks=_slow),
    ("sapo", {"sapo_temperature_pos": 0.7, "sapo_temperature_neg": 2.5}, 1.0),
    pytest.param("vespo", {"vespo_k_pos": 1.5, "vespo_lambda_neg": 1.0}, 1.0, marks=_slow),
    pytest.param("dapo", {"delta": 1.5, "num_iterations": 2}, 1.0, marks=_slow),
    pytest.param("cispo", {"epsilon_high": 5.0}, 1.0, marks=_slow),
    ("cispo", {}, 0.2),  # TRL's default epsilon_high: None → epsilon = 0.2
    pytest.param("cispo", {"epsilon_high": 0.5}, 0.5, marks=_slow),
])
def test_unscaled_bias_corrected_point_is_gibbs(pb, loss_type, extra, scale):
    lp = {"loss_type": loss_type, "scale_rewards": "none", "num_generations": G, "beta": BETA, **extra}
    s = solve(make_objective(pb, "grpo", lp))
    want = _gibbs(pb, BETA * G / ((G - 1) * scale))
    assert s.status == "attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy) - want)) < 1e-8
    if scale != 1.0:  # not the point of the un-scaled policy gradient
        assert metrics.tv(s.result.policy, _gibbs(pb, BETA * G / (G - 1)), pb.context_weight) > 1e-3


@pytest.mark.slow
def test_group_std_points_follow_the_on_policy_identities(pb):
    """With group-std scaling there is no closed form (Vojnovic & Yun 2025); the identities above
    still hold exactly: sapo = grpo, vespo = dapo, cispo(ε_high = ½) = dapo at 2β, scale_rewards
    batch (one prompt per generation batch) = group (1e-10 in TV)."""
    def pol(lp):
        s = solve(make_objective(pb, "grpo", {"num_generations": G, "beta": BETA, **lp}))
        assert s.status == "attracting", (lp, s.note)
        return s.result.policy

    tv = lambda a, b: metrics.tv(a, b, pb.context_weight)  # noqa: E731
    assert tv(pol({"loss_type": "sapo"}), pol({"loss_type": "grpo"})) < 1e-10
    dapo = pol({"loss_type": "dapo"})
    assert tv(pol({"loss_type": "vespo"}), dapo) < 1e-10
    assert tv(pol({"loss_type": "dapo", "scale_rewards": "batch", "per_device_train_batch_size": G}), dapo) < 1e-10
    half = pol({"loss_type": "cispo", "epsilon_high": 0.5})
    assert tv(half, pol({"loss_type": "dapo", "beta": 2 * BETA})) < 1e-10
    assert tv(half, dapo) > 1e-3


def test_rlhf_in_practice_library_presets_build():
    """``run rlhf-in-practice --library``: every TRL preset is read by its own field names (no solve
    here; the points are checked above and in docs/onpolicy-libraries.md's table)."""
    from bandit_lab.core.problems import Problem
    from bandit_lab.experiments.rlhf_in_practice import LIBRARY, Settings, objectives

    s = Settings(library=True)
    objs = dict(objectives(s, Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")))
    assert all(lab in objs for lab, _, _ in LIBRARY) and all(len(lab) < 20 for lab, _, _ in LIBRARY)
    assert objs["trl-cispo"].static["surrogate"] == "cispo" and objs["trl-cispo"].hp["clip_high"] == 0.2
    assert objs["trl-dapo(default)"].static["kl_bias_correction"] is True
    assert objs["trl-gspo"].static["ratio_level"] == "geometric" and objs["trl-a2po"].hp["beta"] == s.beta


def test_entropy_bonus_closed_form(pb):
    """TRL's entropy_coef c (loss − c·H, H the mean token entropy; one token on a bandit): with
    dr_grpo + scale_rewards none + corrected k3 the update is ∇[((G−1)/G)·E_π r − β·KL(π‖π_ref) + c·H(π)],
    whose unique maximiser is π ∝ exp((((G−1)/G)·r + β·log π_ref)/(β + c)) (closed form, 1e-8)."""
    c = 0.3
    lp = {"loss_type": "dr_grpo", "scale_rewards": "none", "num_generations": G, "beta": BETA, "entropy_coef": c}
    s = solve(make_objective(pb, "grpo", lp))
    z = ((G - 1) / G * np.asarray(pb.reward) + BETA * np.log(np.asarray(pb.pi_ref))) / (BETA + c)
    want = np.exp(z - z.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    assert s.status == "attracting", s.note
    assert np.max(np.abs(np.asarray(s.result.policy) - want)) < 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", ["cispo", "sapo", "vespo"])
def test_sampled_mode_lands_near_the_exact_point(tmp_path, loss_type):
    """``solve`` with TRL's field names in sampled mode (4096 groups per step, seed 1, 1500 Adam
    steps) ends within 1e-2 TV of the exact stationary point, which is the closed form (1e-10):
    Gibbs at β·G/((G−1)·min(1, ε_high)), ε_high = TRL's default 0.2 for cispo, 1 otherwise."""
    import json
    import subprocess
    import sys

    G_, beta = 3, 1.0
    spec = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "grpo",
            "loss_params": {"loss_type": loss_type, "scale_rewards": "none", "num_generations": G_, "beta": beta},
            "sampling": {"samples": 4096, "seed": 1}, "optimizer": {"steps": 1500}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    out = subprocess.run([sys.executable, "-m", "cli.main", "solve", str(p), "--json"], capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    scale = 0.2 if loss_type == "cispo" else 1.0
    pr, ps = np.array([0.4, 0.4, 0.2]), np.array([0.6, 0.3, 0.1])
    want = pr * ps ** ((G_ - 1) * scale / (G_ * beta))
    want /= want.sum()
    assert res["stationary_status"] == "attracting"
    assert np.max(np.abs(np.ravel(res["policy_exact"]) - want)) < 1e-10
    assert res["adam_vs_exact_tv"] < 1e-2
