"""On-policy distillation (TRL 1.16 DistillationTrainer / experimental GKDTrainer) as on-policy losses.

Independent references: the closed form (the stationary point is the teacher for every β, τ, λ,
seq_kd — derived in bandit_lab/losses/distillation.py, docs/onpolicy-libraries.md), reached by the
stationary solver to 1e-10 in TV on bandits and token trees; on a bandit the expected update is the
autodiff gradient of Σ_x ρ(x)·D_β(softmax(z/τ), softmax(z_t/τ)) written here from the definitions
(1e-12); sampled training converges to the teacher (TV < 1e-6: the sampled update vanishes there).
"""
from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.core.objective import make_objective
from bandit_lab.core.random_problems import random_problem
from bandit_lab.errors import BanditError
from bandit_lab.onpolicy.stationary import solve

CASES = [("distillation", {}), ("distillation", {"beta": 0.0, "temperature": 0.5}),
         ("distillation", {"beta": 0.5, "temperature": 2.0}), ("distillation", {"beta": 0.1, "temperature": 0.7}),
         ("gkd", {}), ("gkd", {"seq_kd": True, "lmbda": 0.2, "beta": 0.9})]
_slow = pytest.mark.slow
SOLVE_CASES = [CASES[0], pytest.param(*CASES[1], marks=_slow), CASES[2], pytest.param(*CASES[3], marks=_slow),
               pytest.param(*CASES[4], marks=_slow), CASES[5]]


@pytest.fixture(scope="module")
def pb():
    return random_problem(np.random.default_rng(3), k=4, contexts=2, preference="reward", pairs="uniform")


@pytest.fixture(scope="module")
def teacher():
    return np.random.default_rng(1).dirichlet(np.ones(4), size=2)


@pytest.mark.parametrize("loss,lp", SOLVE_CASES, ids=lambda c: str(c))
def test_stationary_point_is_the_teacher_on_a_bandit(pb, teacher, loss, lp):
    o = make_objective(pb, loss, {"teacher": teacher.tolist(), **lp})
    s = solve(o)
    assert s.status == "attracting" and s.result.converged, s.note
    assert metrics.tv(np.asarray(s.result.policy), teacher, pb.context_weight) < 1e-10


TREE_CASES = [("distillation", {"beta": 0.5, "temperature": 2.0}), ("gkd", {"seq_kd": True, "lmbda": 0.3}),
              pytest.param("distillation", {"beta": 0.0, "temperature": 0.5}, marks=_slow),
              pytest.param("distillation", {}, marks=_slow)]


@pytest.mark.parametrize("loss,lp", TREE_CASES, ids=lambda c: str(c))
def test_stationary_point_is_the_teacher_on_a_token_tree(loss, lp):
    """Per-state logits, V = 3, T = 2, end token (7 responses, 3 states): student = teacher at the
    sequence level (hence at every state) for forward KL, JSD, reverse KL, τ ≠ 1 and GKD with seq_kd."""
    from bandit_lab.tokens import make_param, random_tree_problem

    tp = random_tree_problem(np.random.default_rng(0), vocab=3, horizon=2, eos=True, contexts=2)
    t = np.random.default_rng(2).dirichlet(np.ones(tp.problem.n_responses), size=2)
    s = solve(make_objective(tp.problem, loss, {"teacher": t.tolist(), **lp}, param=make_param(tp)))
    assert s.status == "attracting" and s.result.converged, s.note
    assert metrics.tv(np.asarray(s.result.policy), t, tp.problem.context_weight) < 1e-10


def _gjsd_ref(ls, lt, beta):
    """The divergence from its definition (Agarwal et al. 2024 Eq. 1 with TRL's β = 0/1 branches)."""
    ps, pt = jnp.exp(ls), jnp.exp(lt)
    if beta == 0:
        return jnp.sum(pt * (lt - ls), -1)
    if beta == 1:
        return jnp.sum(ps * (ls - lt), -1)
    m = (1 - beta) * ps + beta * pt
    return beta * jnp.sum(pt * jnp.log(pt / m), -1) + (1 - beta) * jnp.sum(ps * jnp.log(ps / m), -1)


@pytest.mark.parametrize("loss,lp", CASES, ids=lambda c: str(c))
def test_bandit_update_is_the_divergence_gradient(pb, teacher, loss, lp):
    """On a bandit the only scored position is the prompt: the expected update is ∇ of Σ ρ·D_β at the
    loss temperature (τ for DistillationTrainer, 1 for GKD), whatever the sampling law."""
    o = make_objective(pb, loss, {"teacher": teacher.tolist(), **lp})
    beta, tau = o.hp["beta"], (o.hp["temperature"] if loss == "distillation" else 1.0)
    th = jnp.asarray(np.random.default_rng(5).normal(0, 1.5, pb.pi_ref.shape))
    lt = jnp.log(jnp.asarray(teacher))
    cw = jnp.asarray(pb.context_weight)

    def ref(t):
        return jnp.sum(cw * _gjsd_ref(jax.nn.log_softmax(t / tau), jax.nn.log_softmax(lt / tau), beta))

    got = np.asarray(jax.grad(lambda p: o.value(p, o.hp))(th))
    np.testing.assert_allclose(got, np.asarray(jax.grad(ref)(th)), rtol=0, atol=1e-12)
    assert abs(float(o.value(th, o.hp)) - float(ref(th))) < 1e-12


def test_teacher_logits_equal_teacher_probabilities(pb, teacher):
    a = make_objective(pb, "distillation", {"teacher": teacher.tolist(), "beta": 0.5})
    b = make_objective(pb, "distillation", {"teacher_logits": (np.log(teacher) + 3.0).tolist(), "beta": 0.5})
    th = jnp.asarray(np.random.default_rng(6).normal(size=pb.pi_ref.shape))
    assert abs(float(a.value(th, a.hp)) - float(b.value(th, b.hp))) < 1e-12


@pytest.mark.slow
def test_sampled_training_converges_to_the_teacher():
    """Sampled mode (16 completions per prompt and step, token tree): at the teacher every state's
    divergence gradient is 0, so the sampled update vanishes there — Adam lands on it (TV < 1e-6)."""
    from bandit_lab.core.train import TrainConfig
    from bandit_lab.runner import train_batch
    from bandit_lab.tokens import make_param, random_tree_problem

    tp = random_tree_problem(np.random.default_rng(0), vocab=3, horizon=2, eos=True, contexts=2)
    t = np.random.default_rng(2).dirichlet(np.ones(tp.problem.n_responses), size=2)
    o = make_objective(tp.problem, "distillation", {"teacher": t.tolist(), "beta": 0.5, "temperature": 0.8,
                                                    "sampling": {"samples": 16}}, param=make_param(tp))
    cfg = TrainConfig(optimizer="adam", steps=3000, schedule="cosine", log_steps=(0, 3000))
    (traj,) = train_batch([o], cfg, [[{**o.hp, "lr": 0.05}]], seed=0)
    assert metrics.tv(np.asarray(traj.policy[0]), t, tp.problem.context_weight) < 1e-6


@pytest.mark.parametrize("lp,field", [
    ({"teacher": [0.5, 0.5, 0.0, 0.0]}, "teacher"), ({"teacher": [0.5, 0.6, 0.1, 0.1]}, "teacher"),
    ({"teacher": [0.5, 0.5]}, "teacher"), ({}, "teacher"),
    ({"teacher": [0.25] * 4, "teacher_logits": [0.0] * 4}, "teacher"),
    ({"teacher": [0.25] * 4, "beta": 1.5}, "beta"), ({"teacher": [0.25] * 4, "temperature": 0.0}, "temperature"),
    ({"teacher": [0.25] * 4, "lmbda": 0.5}, "lmbda"), ({"teacher": [0.25] * 4, "seq_kd": True}, "seq_kd"),
    ({"teacher": [0.25] * 4, "teacher_model_name_or_path": "Qwen"}, "teacher_model_name_or_path"),
    ({"teacher": [0.25] * 4, "top_p": 0.9}, "top_p"), ({"teacher": [0.25] * 4, "use_vllm": True}, "use_vllm"),
])
def test_bad_input_names_the_field(pb, lp, field):
    with pytest.raises(BanditError, match=field):
        o = make_objective(pb, "distillation", lp)
        jax.eval_shape(lambda p: o.value(p, o.hp), jnp.zeros(pb.pi_ref.shape))  # the teacher's shape meets the problem here


def test_gkd_refusals(pb):
    with pytest.raises(BanditError, match="lmbda"):
        make_objective(pb, "gkd", {"teacher": [0.25] * 4, "lmbda": 1.5})
    from bandit_lab.tokens import make_param, random_tree_problem

    tp = random_tree_problem(np.random.default_rng(0), vocab=3, horizon=2, eos=True, contexts=1)
    o = make_objective(tp.problem, "gkd", {"teacher": [1 / 7] * 7}, param=make_param(tp))
    with pytest.raises(BanditError, match="seq_kd"):
        o.value(make_param(tp).init(), o.hp)


@pytest.mark.slow
def test_cli_solve_reports_the_teacher(tmp_path):
    spec = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "distillation",
            "loss_params": {"teacher": [0.2, 0.3, 0.5], "beta": 0.5, "temperature": 2.0}, "optimizer": {"steps": 300}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    out = subprocess.run([sys.executable, "-m", "cli.main", "solve", str(p), "--json"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["stationary_status"] == "attracting" and res["exact_vs_reference_tv"]["teacher"] < 1e-10
    spec["loss_params"]["beta"] = 2.0
    p.write_text(json.dumps(spec))
    bad = subprocess.run([sys.executable, "-m", "cli.main", "solve", str(p)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "beta" in bad.stderr and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_explain_reads_trl_distillation_configs():
    """`explain distillation|gkd`: a config as TRL writes it (TrainingArguments fields are skipped),
    the divergence in words, the exact point = the teacher (closed form, TV 1e-10), its verdict."""
    from bandit_lab.explain import explain, lines

    r = explain("distillation", {"beta": 0.0, "temperature": 2.0, "learning_rate": 1e-6, "teacher": [0.2, 0.5, 0.3]})
    assert r["divergence"].startswith("KL(teacher‖student)") and r["status"] == "attracting"
    assert r["tv_teacher"] < 1e-10 and lines(r)[-1].startswith("TV to teacher")
    g = explain("gkd", {})  # GKDConfig defaults: β 0.5 (JSD), λ 0.5; teacher = Kong's π*
    assert "β = 0.5" in g["divergence"] and np.max(np.abs(np.asarray(g["policy"]) - [[0.6, 0.3, 0.1]])) < 1e-10
