"""On-policy algorithms (issue 12): expected updates, stationary points, sampled mode, CLI."""
from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import ipo_optimum, loss_oracle, rlhf_optimum
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import random_problem
from conftest import count_compiles, sampled_states_match_exact  # noqa: E402


def _pb(seed=0, k=3, x=2):
    return random_problem(np.random.default_rng(seed), k=k, contexts=x, preference="reward", pairs="uniform")


def _solve(o):
    from bandit_lab.onpolicy.stationary import solve

    return solve(o)


def test_reinforce_and_rloo_land_on_gibbs():
    """Closed form π_ref·e^{r/β}/Z (independent NumPy) vs the root of the expected update, and the
    exact-mode Adam run lands there too."""
    pb = _pb(1)
    gibbs = rlhf_optimum(pb.pi_ref, pb.reward, 0.7)
    for name, lp in (("reinforce", {}), ("rloo", {"group_size": 3}), ("reinforce", {"kl_estimator": "exact", "kl_placement": "loss"})):
        s = _solve(make_objective(pb, name, {"beta": 0.7, **lp}))
        assert s.status == "attracting" and s.result.residual < 1e-10
        assert metrics.tv(s.result.policy, gibbs, pb.context_weight) < 1e-10


def test_expected_reinforce_update_is_rlhf_gradient():
    pb = _pb(2)
    th = np.random.default_rng(0).normal(size=pb.pi_ref.shape)
    o = make_objective(pb, "reinforce", {"beta": 0.4})
    r = make_objective(pb, "rlhf", {"beta": 0.4})
    f = jax.grad(lambda p: o.value(p, o.hp))(jnp.asarray(th))
    g = jax.grad(lambda p: r.value(p, r.hp))(jnp.asarray(th))
    np.testing.assert_allclose(f, g, atol=1e-13)


def test_kl_estimator_table():
    """Tang & Munos: the divergence each (estimator, placement) differentiates — checked against
    jax.grad of the named functional."""
    from bandit_lab.checks.onpolicy import kl_gradient_table

    pb = _pb(3)
    tab = kl_gradient_table(pb, np.random.default_rng(1).normal(size=pb.pi_ref.shape))
    assert max(v["error"] for v in tab.values()) < 1e-12
    assert tab[("k1", "reward")]["bias"] < 1e-12 and tab[("k2", "loss")]["bias"] < 1e-12
    assert tab[("k1", "loss")]["bias"] == pytest.approx(1.0) and tab[("k3", "loss")]["bias"] > 1e-2


def test_grpo_matches_vojnovic_yun_and_differs_from_gibbs():
    from bandit_lab.onpolicy.closed_forms import abar, grpo_fixed_point

    pb = _pb(4, x=1)
    o = make_objective(pb, "grpo", {"beta": 0.8, "group_size": 3})
    s = _solve(o)
    pi_o, res, _ = grpo_fixed_point(pb.pi_ref[0], pb.reward[0], 0.8, 3)
    assert res < 1e-12 and metrics.tv(s.result.policy[0], pi_o) < 1e-10
    a = abar(s.result.policy[0], pb.reward[0], 3, "group_std")
    np.testing.assert_allclose(s.result.policy[0], pb.pi_ref[0] / (1 - a / 0.8), atol=1e-10)
    assert metrics.tv(pi_o, rlhf_optimum(pb.pi_ref, pb.reward, 0.8)[0]) > 1e-3
    orc, note = loss_oracle(pb, "grpo", o.hp, o.static)
    assert "Vojnovic" in note and metrics.tv(orc, s.result.policy) < 1e-10


def test_binary_and_pairs_closed_forms_agree_with_enumeration():
    from bandit_lab.onpolicy.closed_forms import abar, abar_pairs, binary_abar

    pi = np.array([0.2, 0.5, 0.3])
    r = np.array([1.3, -0.4, 0.2])
    np.testing.assert_allclose(abar_pairs(pi, r), abar(pi, r, 2, "group_std"), atol=1e-14)
    rb = np.array([1.0, 0.0, 1.0])
    a1, a0 = binary_abar(0.5, 5)
    np.testing.assert_allclose(abar(pi, rb, 5, "group_std"), [a1, a0, a1], atol=1e-13)


def test_nash_md_mixture_one_is_ipo_with_reference_pairs():
    pb = random_problem(np.random.default_rng(5), k=3, contexts=1, preference="matrix", pairs="reference")
    s = _solve(make_objective(pb, "nash_md", {"beta": 0.5, "mixture": 1.0}))
    assert metrics.tv(s.result.policy, ipo_optimum(pb, 0.5)) < 1e-10


def test_sampled_state_is_unbiased_for_the_exact_one():
    """Average of the sampled surrogate coefficients over many keys → the exact expectation
    (GRPO with groups, dynamic sampling off): a Monte Carlo test at 6 standard errors."""
    pb = _pb(6, x=1)
    o = make_objective(pb, "grpo", {"beta": 0.5, "group_size": 3, "sampling": {"samples": 256}})
    th = jnp.log(jnp.asarray(pb.pi_ref))
    assert sampled_states_match_exact(o, th, 400)[2]


def test_exact_enumeration_refuses_with_the_count():
    pb = Problem.create(np.full(8, 1 / 8), reward=np.arange(8.0))
    o = make_objective(pb, "grpo", {"beta": 0.5, "group_size": 16})
    with pytest.raises(BanditError, match="170,544 compositions"):
        o.value(o.param.init(), o.hp)


def test_bad_options_are_one_clear_error():
    pb = _pb(0)
    for lp, msg in (({"sampling": {"samples": 0}}, "sampling"), ({"kl_estimator": "k4"}, "kl_estimator"),
                    ({"group_size": 1}, "group_size"), ({"normalize": "whiten"}, "normalize")):
        with pytest.raises(BanditError, match=msg):
            make_objective(pb, "grpo", lp)


def test_no_kl_is_a_runaway_not_an_exact_point():
    pb = _pb(7, x=1)
    s = _solve(make_objective(pb, "dapo", {}))  # DAPO's default β = 0
    assert s.status == "runaway" and not s.result.converged


def test_epochs_change_the_path_not_the_fixed_point():
    """PPO with 4 epochs per batch, clip 0.2, learned critic: Adam in exact mode ends on the same
    stationary point (Gibbs with k1 in the reward)."""
    from bandit_lab.runner import train_batch
    from bandit_lab.core.train import TrainConfig

    pb = _pb(8)
    o = make_objective(pb, "ppo", {"beta": 0.8})
    gibbs = rlhf_optimum(pb.pi_ref, pb.reward, 0.8)
    s = _solve(o)
    assert s.status == "attracting" and metrics.tv(s.result.policy, gibbs, pb.context_weight) < 1e-10
    # the trained path converges more slowly (stale batches, a critic learning at rate 0.1):
    # measured TV 3.7e-6 after 3000 Adam steps, 10× closer than after 1000
    cfg = lambda n: TrainConfig(steps=n, log_steps=(0, n))  # noqa: E731
    (t1,) = train_batch([o], cfg(1000), [[{**o.hp, "lr": 0.05}]])
    (t3,) = train_batch([o], cfg(3000), [[{**o.hp, "lr": 0.05}]])
    d1, d3 = (metrics.tv(t.policy[0], gibbs, pb.context_weight) for t in (t1, t3))
    assert d3 < 1e-5 and d3 < d1


def test_runner_solve_batch_uses_the_root_solver():
    from bandit_lab.runner import solve_batch

    pb = _pb(9)
    o = make_objective(pb, "reinforce", {"beta": 1.0})
    (rows,) = solve_batch([o], [[{"beta": 1.0}, {"beta": 2.0}]])
    for r, b in zip(rows, (1.0, 2.0)):
        assert r.converged and metrics.tv(r.policy, rlhf_optimum(pb.pi_ref, pb.reward, b), pb.context_weight) < 1e-10


def test_token_tree_reinforce_lands_on_sequence_gibbs():
    from bandit_lab.tokens import make_param, random_tree_problem

    tp = random_tree_problem(np.random.default_rng(0), vocab=3, horizon=2, eos=True, contexts=1)
    pb = tp.problem
    s = _solve(make_objective(pb, "reinforce", {"beta": 1.0}, param=make_param(tp)))
    assert s.result.converged and metrics.tv(s.result.policy, rlhf_optimum(pb.pi_ref, pb.reward, 1.0)) < 1e-10


_compiles = count_compiles  # tests/conftest.py: removes only its own listener


def test_beta_sweep_compiles_once():
    """A β sweep of GRPO in exact mode is one compiled jit(vmap(scan)): 64 points cost one compile
    of the trainer, like 8 (the grid is a vmapped axis, not a loop), and running it again none."""
    from bandit_lab.runner import train_batch
    from bandit_lab.core.train import TrainConfig

    pb = _pb(10)
    o = make_objective(pb, "grpo", {"group_size": 4})
    cfg = TrainConfig(steps=300, log_steps=(0, 300))
    sweep = lambda n: train_batch([o], cfg, [[{**o.hp, "beta": b, "lr": 0.05} for b in np.geomspace(0.1, 10, n)]])  # noqa: E731
    c8 = _compiles(lambda: sweep(8))  # the first call also compiles a small program of its own (`stage`)
    c64 = _compiles(lambda: sweep(64))  # one block of 64 points (train.chunk_size() = 256 ≥ 64): a new block shape, one compile
    again = _compiles(lambda: sweep(64))
    assert 1 <= c64 <= c8 and again == 0
    if jax.default_backend() == "cpu":
        # the absolute counts are per platform: on a GPU, JAX may compile more small device
        # programs around the sweep (argument transfers and conversions)
        assert c64 == 1 and c8 <= 2
    t = time.perf_counter()
    sweep(64)
    assert time.perf_counter() - t < 10.0


def test_cli_solve_sampling_and_bad_input(tmp_path, capsys, cli):
    """``solve`` in-process (a real process's contract: tests/test_bad_input.py::test_a_few_real_subprocesses)."""
    from cli.main import main

    spec = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "loss": "reinforce",
            "loss_params": {"beta": 1.0}, "sampling": {"samples": 4096, "seed": 1}, "optimizer": {"steps": 1500}}
    p = tmp_path / "s.json"
    p.write_text(json.dumps(spec))
    with pytest.raises(SystemExit) as e:
        main(["solve", str(p), "--json"])
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    res = json.loads(out)
    assert res["stationary_status"] == "attracting" and res["exact_vs_reference_tv"]["gibbs"] < 1e-10
    assert res["adam_vs_exact_tv"] < 1e-2
    spec["sampling"] = {"samples": -3}
    p.write_text(json.dumps(spec))
    err = cli(["solve", str(p)], code=2)  # one line on stderr, exit 2, no traceback, no file written
    assert "sampling" in err and "Traceback" not in err


def test_beta_zero_allowed_for_onpolicy_only():
    """base.split_params: β = 0 (no KL penalty, TRL's GRPO default) is valid for on-policy
    algorithms, still an error for preference losses and for online DPO / Nash-MD."""
    pb = _pb(0)
    assert make_objective(pb, "grpo").hp["beta"] == 0.0
    for name in ("dpo", "online_dpo", "nash_md"):
        with pytest.raises(BanditError, match="beta"):
            make_objective(pb, name, {"beta": 0.0})
