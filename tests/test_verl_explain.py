"""``bandit-lab explain verl|openrlhf`` (issue 21): verl's own generated trainer YAML is read as verl's
defaults, presets and configs are explained, and the two clamp findings on Kong et al.'s App. B
bandit are checked without the solver's verdict (the expected update written out at the
candidate points)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

from bandit_lab.core.objective import make_objective
from bandit_lab.explain import KONG_APP_B, PRESETS, READERS, explain
from bandit_lab.onpolicy import verl as vl
from bandit_lab.solvers.oracles import rlhf_optimum

YAML = pathlib.Path(__file__).resolve().parent / "data" / "verl_ppo_trainer_0.9.1.yaml"


@pytest.fixture(scope="module")
def kong():
    from bandit_lab.spec import build

    obj, *_ = build({**KONG_APP_B, "loss": "dpo", "loss_params": {"beta": 1.0}})
    return obj.problem


def _field(pb, lib, lp, pol):
    o = make_objective(pb, lib, lp)
    return np.asarray(jax.grad(lambda z: o.value(z, o.hp))(jnp.log(jnp.asarray(pol))))


def test_verls_generated_yaml_reads_as_verls_defaults():
    """verl 0.9.1's ``_generated_ppo_trainer.yaml`` (1,065 lines: optimiser, FSDP, rollout, critic, …)
    reads as exactly the defaults bandit-lab declares (an independent check of VERL_DEFAULTS); the
    ``rollout_n: ${oc.select:…}`` interpolation is skipped in favour of ``rollout.n``."""
    cfg = yaml.safe_load(YAML.read_text())
    loss, lp = READERS["verl"](cfg)
    assert loss == "verl" and lp == vl.VERL_DEFAULTS
    # an override in verl's dotted form, as a command line would give it
    loss, lp = READERS["verl"]({**cfg, "actor_rollout_ref.actor.use_kl_loss": True, "algorithm.adv_estimator": "grpo"})
    assert lp["use_kl_loss"] is True and lp["adv_estimator"] == "grpo"


def test_openrlhf_reader_takes_cli_names():
    loss, lp = READERS["openrlhf"]({"--algo.kl.estimator": "k3", "algo": {"advantage": {"estimator": "rloo"}},
                                    "--actor.adam.lr": 1e-6, "rollout.n_samples_per_prompt": 4})
    assert loss == "openrlhf" and lp == {"algo.kl.estimator": "k3", "algo.advantage.estimator": "rloo",
                                         "rollout.n_samples_per_prompt": 4}


def test_explain_a_verl_config_lands_on_gibbs():
    """verl's RLOO with k1 in the reward at β = 0.1: the expected update is ∇(E r − β KL(π‖π_ref)),
    its stationary point is Gibbs (TV ≤ 1e-10; measured 6e-19) and attracting."""
    r = explain("verl", PRESETS["verl-rloo-kl-in-reward-beta0.1"][1])
    assert r["status"] == "attracting" and r["tv_gibbs"] < 1e-10
    assert "KL(π‖π_ref) (k1 in the reward)" in r["divergence"] and "E_π[r] − β_r·D_r" in r["objective"]


@pytest.mark.slow  # a native stationary solve (≈ 10 s); the mechanism is in test_verl_options (default tier)
def test_verl_low_var_kl_clamp_on_kong(kong):
    """verl's default KL loss (low_var_kl = k3, value clamped to ≤ 10) with GRPO on Kong's bandit at
    β = 0.1: the unclamped-k3 GRPO stationary point (bandit-lab's native grpo, std ε = 1e-6, ddof 1)
    has π_ref/π(y3) > 12.9, where verl's clamp zeroes k3's gradient, so verl's expected update
    there pushes π(y3) further down: verl's run has no finite stationary point (``explain`` says runaway)."""
    from bandit_lab.onpolicy.stationary import solve

    native = solve(make_objective(kong, "grpo", {"group_size": 5, "beta": 0.1, "std_eps": 1e-6, "kl_bias_correction": False}))
    assert native.status == "attracting"
    q = np.asarray(native.result.policy)
    assert (kong.pi_ref / q).max() > 12.9
    lp = {"adv_estimator": "grpo", "n": 5, "use_kl_loss": True, "kl_loss_coef": 0.1}
    f = _field(kong, "verl", lp, q)
    k = int(np.argmax(kong.pi_ref / q))
    assert f[0, k] > 1e-6 * q[0, k]  # a positive loss gradient on y3's logit: descent lowers π(y3)


def test_openrlhf_k1_clamp_on_kong(kong):
    """OpenRLHF clamps every KL estimate to ±10, the k1 reward penalty too. At β = 0.1 Kong's Gibbs
    point has log(π/π_ref)(y3) < −10: verl's RLOO (k1 unclamped) has its zero there, OpenRLHF's
    does not — the penalty saturates at +β·10 and π(y3) keeps falling."""
    g = rlhf_optimum(kong.pi_ref, kong.reward, 0.1)
    assert np.log(g / kong.pi_ref).min() < -10
    assert np.abs(_field(kong, "verl", {"adv_estimator": "rloo", "n": 4, "use_kl_in_reward": True, "kl_coef": 0.1}, g)).max() < 1e-14
    f = _field(kong, "openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 4, "algo.kl.init_coef": 0.1}, g)
    k = int(np.argmin(np.log(g / kong.pi_ref)))
    assert f[0, k] > 1e-3 * g[0, k]


@pytest.mark.slow
def test_cli_explain_reads_the_yaml(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cli.main", "explain", "verl", str(YAML), "--set",
                          "algorithm.adv_estimator=rloo,actor_rollout_ref.rollout.n=4,algorithm.use_kl_in_reward=true,"
                          "algorithm.kl_ctrl.kl_coef=0.2"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "attracting" in out.stdout and "k1 in the reward" in out.stdout


@pytest.mark.slow
def test_preset_table_rows():
    """Every verl/OpenRLHF preset explains without error; where the loss's closed-form oracle exists,
    the stationary point matches it (TV ≤ 1e-8)."""
    from bandit_lab.losses.libraries import oracle
    from bandit_lab.spec import build

    obj, *_ = build({**KONG_APP_B, "loss": "dpo", "loss_params": {"beta": 1.0}})
    pb = obj.problem
    for name, (rd, cfg) in PRESETS.items():
        if rd not in ("verl", "openrlhf"):
            continue
        r = explain(rd, cfg)
        loss, lp = READERS[rd](cfg)
        o = make_objective(pb, loss, lp)
        pol, _ = oracle(pb, o.hp, o.static)
        if pol is not None and r["policy"] is not None:
            assert 0.5 * np.abs(np.asarray(r["policy"]) - pol).sum() < 1e-8, name
