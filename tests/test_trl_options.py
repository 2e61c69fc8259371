"""TRL 1.16 option names verbatim (issue 21): ``LossSpec.translate`` maps GRPOConfig/RLOOConfig
fields onto the native on-policy options; the translated objective is the native one (same static
options, same hyperparameters, same stationary point); refusals name the field."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bandit_lab import metrics
from bandit_lab.errors import BanditError
from bandit_lab.objective import make_objective
from bandit_lab.random_problems import random_problem


def _pb(seed=0):
    return random_problem(np.random.default_rng(seed), k=3, contexts=1, preference="reward", pairs="uniform")


@pytest.mark.parametrize("trl, native", [
    ({"loss_type": "dr_grpo", "scale_rewards": "none", "num_generations": 3, "beta": 0.5, "use_bias_correction_kl": False},
     {"length_norm": "constant", "normalize": "group_mean", "group_size": 3, "beta": 0.5}),
    ({"loss_type": "grpo", "epsilon": 0.1, "importance_sampling_level": "sequence", "num_iterations": 2},
     {"length_norm": "sequence", "clip": 0.1, "clip_high": 0.1, "ratio_level": "sequence", "epochs": 2}),
    ({"loss_type": "dapo", "epsilon": 0.2, "epsilon_high": 0.28, "scale_rewards": "group"},
     {"length_norm": "token", "clip": 0.2, "clip_high": 0.28, "normalize": "group_std"}),
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
    ("grpo", {"temperature": 0.7}, ("temperature", "cannot matter")),
    ("grpo", {"loss_type": "sapo"}, ("sapo", "not implemented")),
    ("grpo", {"loss_type": "nope"}, ("loss_type", "dr_grpo")),
    ("grpo", {"scale_rewards": "batch"}, ("batch",)),
    ("grpo", {"loss_type": "dapo", "beta": 0.04}, ("use_bias_correction_kl",)),  # TRL default bias correction is on
    ("grpo", {"delta": 4.0}, ("delta",)),
    ("grpo", {"not_a_field": 1}, ("not_a_field",)),
    ("rloo", {"normalize_advantages": True}, ("normalize_advantages",)),
])
def test_refusals_name_the_field(loss, lp, words):
    with pytest.raises(BanditError) as e:
        make_objective(_pb(), loss, lp)
    assert all(w in str(e.value) for w in words), str(e.value)


def test_cli_refuses_with_one_line(tmp_path):
    spec = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "grpo",
            "loss_params": {"num_generations": 3, "use_vllm": True}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    bad = subprocess.run([sys.executable, "-m", "cli.main", "solve", str(p)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "use_vllm" in bad.stderr and "Traceback" not in bad.stderr
