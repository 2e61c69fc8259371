"""TRL 1.16 option names verbatim (issue 21): ``LossSpec.translate`` maps GRPOConfig/RLOOConfig
fields onto the native on-policy options; the translated objective is the native one (same static
options, same hyperparameters, same stationary point); refusals name the field."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import random_problem


def _pb(seed=0):
    return random_problem(np.random.default_rng(seed), k=3, contexts=1, preference="reward", pairs="uniform")


@pytest.mark.parametrize("trl, native", [
    ({"loss_type": "dr_grpo", "scale_rewards": "none", "num_generations": 3, "beta": 0.5, "use_bias_correction_kl": False},
     {"length_norm": "constant", "normalize": "group_mean", "group_size": 3, "beta": 0.5}),
    ({"loss_type": "grpo", "epsilon": 0.1, "importance_sampling_level": "sequence", "num_iterations": 2},
     {"length_norm": "sequence", "clip": 0.1, "clip_high": 0.1, "ratio_level": "geometric", "epochs": 2, "kl_bias_correction": True}),
    ({"loss_type": "cispo", "epsilon_high": 5.0, "scale_rewards": "batch"},  # batch = group: one prompt per generation batch
     {"surrogate": "cispo", "length_norm": "token", "clip": 0.2, "clip_high": 5.0, "normalize": "group_std", "kl_bias_correction": True}),
    ({"loss_type": "sapo", "sapo_temperature_neg": 2.0},
     {"surrogate": "sapo", "length_norm": "sequence", "sapo_temperature_neg": 2.0, "kl_bias_correction": True}),
    ({"loss_type": "luspo", "importance_sampling_level": "sequence", "delta": 4.0},
     {"length_norm": "sum", "ratio_level": "geometric", "delta": 4.0, "kl_bias_correction": True}),
    ({"loss_type": "vespo", "vespo_k_pos": 1.5},
     {"surrogate": "vespo", "length_norm": "token", "vespo_k_pos": 1.5, "kl_bias_correction": True}),
    ({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "scale_rewards": "group"},
     {"length_norm": "token", "clip": 0.2, "clip_high": 0.28, "normalize": "group_std", "kl_bias_correction": True}),
])
def test_grpo_fields_translate_to_native(trl, native):
    pb = _pb()
    a, b = make_objective(pb, "grpo", trl), make_objective(pb, "grpo", native)
    assert a.static == b.static and a.hp == b.hp


def test_translated_grpo_has_the_native_stationary_point():
    from bandit_lab.onpolicy.stationary import solve

    pb = _pb(4)
    a = solve(make_objective(pb, "grpo", {"num_generations": 3, "beta": 0.8, "use_bias_correction_kl": False})).result.policy
    b = solve(make_objective(pb, "grpo", {"group_size": 3, "beta": 0.8})).result.policy
    assert metrics.tv(a, b, pb.context_weight) < 1e-12


def test_rloo_fields():
    pb = _pb()
    a = make_objective(pb, "rloo", {"num_generations": 4, "beta": 0.3, "normalize_advantages": False, "reward_clip_range": None})
    b = make_objective(pb, "rloo", {"group_size": 4, "beta": 0.3})
    assert a.static == b.static and a.hp == b.hp


@pytest.mark.parametrize("loss, lp, words", [
    ("grpo", {"use_vllm": True}, ("use_vllm", "cannot matter on a bandit")),
    ("grpo", {"temperature": 0.7}, ("temperature", "reparametrised")),
    ("grpo", {"log_completions": True}, ("log_completions", "cannot matter")),
    ("grpo", {"loss_type": "sapo", "delta": 4.0}, ("delta", "sapo")),
    ("grpo", {"delta": 0.9}, ("delta", "> 1")),
    ("grpo", {"top_p": 0.9}, ("top_p", "truncated")),
    ("grpo", {"use_adaptive_entropy": True}, ("use_adaptive_entropy",)),
    ("grpo", {"multi_objective_aggregation": "normalize_then_sum"}, ("multi_objective_aggregation",)),
    ("grpo", {"num_generations": 4, "group_size": 4}, ("group_size", "num_generations")),
    ("grpo", {"scale_rewards": "batch", "per_device_train_batch_size": 16}, ("batch", "couples")),
    ("grpo", {"loss_type": "nope"}, ("loss_type", "dr_grpo")),
    ("grpo", {"use_bias_correction_kl": "yes"}, ("use_bias_correction_kl",)),
    ("grpo", {"not_a_field": 1}, ("not_a_field",)),
    ("rloo", {"normalize_advantages": "yes"}, ("normalize_advantages", "true or false")),
    ("rloo", {"reward_clip_range": [2.0, 1.0]}, ("reward_clip",)),
])
def test_refusals_name_the_field(loss, lp, words):
    with pytest.raises(BanditError) as e:
        make_objective(_pb(), loss, lp)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_cli_refuses_with_one_line(tmp_path, cli):
    """In-process (a real process's contract: tests/test_bad_input.py::test_a_few_real_subprocesses)."""
    spec = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "grpo",
            "loss_params": {"num_generations": 3, "use_vllm": True}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    err = cli(["solve", str(p)], code=2)  # one line on stderr, exit 2, no traceback, no file written
    assert "use_vllm" in err and "Traceback" not in err


def test_dr_grpo_unscaled_bias_corrected_k3_is_gibbs_at_beta_G_over_G_minus_1():
    """Derivation: with A = r − group mean, E[A ∇log π] = (G−1)/G · ∇E_π r (the focal sample's own
    share of the mean cancels 1/G of it); bias-corrected k3 (k3·ρ, ρ = π/π_old) has expected gradient
    ∇KL(π‖π_ref). So the expected update is ((G−1)/G)·∇[E_π r − β·G/(G−1)·KL(π‖π_ref)], whose
    unique maximiser is π_ref·e^{r(G−1)/(Gβ)}/Z (independent NumPy closed form, 1e-8). With the
    correction off (plain k3: ∇ of KL(π_ref‖π)-like, Tang & Munos) the point is not Gibbs."""
    from bandit_lab.solvers.oracles import rlhf_optimum
    from bandit_lab.onpolicy.stationary import solve

    pb = random_problem(np.random.default_rng(7), k=4, contexts=2, preference="reward", pairs="uniform")
    G, beta = 3, 0.6
    lp = {"loss_type": "dr_grpo", "scale_rewards": "none", "num_generations": G, "beta": beta}
    s = solve(make_objective(pb, "grpo", lp))
    r = np.asarray(pb.reward)
    gibbs = np.asarray(pb.pi_ref) * np.exp(r * (G - 1) / (G * beta))
    gibbs /= gibbs.sum(-1, keepdims=True)
    np.testing.assert_allclose(gibbs, rlhf_optimum(pb.pi_ref, pb.reward, beta * G / (G - 1)), atol=1e-14)
    assert s.status == "attracting"
    assert np.max(np.abs(np.asarray(s.result.policy) - gibbs)) < 1e-8
    off = solve(make_objective(pb, "grpo", {**lp, "use_bias_correction_kl": False}))
    assert metrics.tv(off.result.policy, gibbs, pb.context_weight) > 1e-3


def test_every_grpo_config_field_of_trl_1_16_is_handled():
    """Every GRPOConfig / RLOOConfig field of TRL 1.16.0 (the list printed by
    ``dataclasses.fields`` in /work/venv-trl, minus TrainingArguments') at its TRL default is either
    translated or accepted as neutral — a config as TRL writes it is read, never refused for a
    default — and the neutral/refused sets name no field TRL 1.16 lacks."""
    from bandit_lab.onpolicy import trl

    grpo_fields = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "trl_onpolicy_reference.json")
                             .read_text())["config_fields"]
    for loss, fields in grpo_fields.items():
        known = (set(trl.GRPO_DEFAULTS if loss == "grpo" else trl.RLOO_DEFAULTS) | set(trl._NO_EFFECT) | set(trl._NOT_YET)
                 | set(trl._INERT_WITH) | set(trl._BATCH))
        missing = set(fields) - known
        assert not missing, (loss, missing)
        neutral = {k: v for k, v in fields.items() if k not in trl._NO_EFFECT}
        make_objective(_pb(), loss, neutral)  # TRL's own defaults: accepted
    every = set(grpo_fields["grpo"]) | set(grpo_fields["rloo"]) | {"logging_steps", "output_dir", "report_to", "save_steps",
                                                                  "seed", "gradient_checkpointing", "use_liger_kernel",
                                                                  "torch_empty_cache_steps", "bf16", "fp16", "remove_unused_columns",
                                                                  "per_device_train_batch_size", "gradient_accumulation_steps"}
    assert not (set(trl._NO_EFFECT) | set(trl._NOT_YET) | set(trl._INERT_WITH)) - every
    for k, v in trl.GRPO_DEFAULTS.items():
        assert grpo_fields["grpo"][k] == v, k
    for k, v in trl.RLOO_DEFAULTS.items():
        assert grpo_fields["rloo"][k] == v, k


def test_rloo_reward_clip_range_is_gibbs_of_the_clipped_reward():
    """RLOOTrainer clamps rewards to reward_clip_range before the k1 penalty (TRL 1.16, checked
    against TRL's advantage code in test_trl_onpolicy_conformance); RLOO's expected update is
    ∇[E_π r − β·KL(π‖π_ref)], so its point is Gibbs of the clipped reward (closed form, 1e-8)."""
    from bandit_lab.solvers.oracles import rlhf_optimum
    from bandit_lab.onpolicy.stationary import solve

    pb = _pb(5)
    r = np.asarray(pb.reward)
    lo, hi = np.quantile(r, [0.3, 0.7])
    s = solve(make_objective(pb, "rloo", {"reward_clip_range": [float(lo), float(hi)], "beta": 0.4, "num_generations": 3}))
    want = rlhf_optimum(pb.pi_ref, np.clip(r, lo, hi), 0.4)
    assert s.status == "attracting" and np.max(np.abs(np.asarray(s.result.policy) - want)) < 1e-8
    assert metrics.tv(want, rlhf_optimum(pb.pi_ref, r, 0.4), pb.context_weight) > 1e-3


@pytest.mark.parametrize("lp", [{"loss_type": "cispo", "scale_rewards": "none", "num_generations": 3, "beta": 1.0},
                                {"loss_type": "luspo", "delta": 2.0, "entropy_coef": 0.1, "epsilon_high": 0.3},
                                {"reward_clip_range": [0.0, 1.0], "beta": 0.1},
                                {"reward_clip_range": [0.0, 1.0], "beta": 0.1, "normalize_advantages": True}])
def test_translation_is_idempotent(lp):
    """``LossSpec.translate`` runs on the user's dict and again on the full native hyperparameters
    (the spec path): translate(native) must give the same objective (found by a CLI solve refusing
    the native delta = 0)."""
    loss = "rloo" if "reward_clip_range" in lp else "grpo"
    a = make_objective(_pb(), loss, lp)
    hp = {k: v for k, v in a.hp.items() if k != "weight_decay"}
    b = make_objective(_pb(), loss, {**hp, **{k: v for k, v in a.static.items() if k != "sampling"}})
    assert a.static == b.static and a.hp == b.hp
