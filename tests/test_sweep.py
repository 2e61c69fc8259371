"""Large sweeps (issue 22): the per-step loss kept at the logged steps only
(``TrainConfig.loss_every_step=False``) changes no iterate, and the divergence guard still names
the run and a step; the batched exact solver's per-point results are views of its batch."""
import numpy as np
import pytest

from bandit_lab.infra import guards
from bandit_lab.errors import DivergenceError
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.core.train import TrainConfig, make_train, run_many


def _hp(lr, n=3):
    return {"beta": np.full(n, 1.0), "weight_decay": np.geomspace(1e-3, 1.0, n), "lr": np.full(n, lr)}


def test_logged_loss_keeps_every_iterate_and_the_logged_values():
    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])
    o = make_objective(pb, "dpo")
    every = TrainConfig(steps=200, log_steps=(0, 7, 200))
    logged = TrainConfig(steps=200, log_steps=(0, 7, 200), loss_every_step=False)
    (a,), (b,) = (run_many([make_train(o, c)], [_hp(0.05)]) for c in (every, logged))
    assert np.array_equal(a.params, b.params) and np.array_equal(a.policies, b.policies) and np.array_equal(a.policy, b.policy)
    assert a.loss.shape == (3, 201) and b.loss.shape == (3, 3)
    np.testing.assert_allclose(b.loss, a.loss[:, [0, 7, 200]], rtol=1e-15, atol=0)


def test_guard_names_a_logged_step_when_only_those_were_kept():
    pb = Problem.create([0.4, 0.4, 0.2], reward=[1.0, 0.0, -1.0])
    o = make_objective(pb, "ipo")
    cfg = TrainConfig(optimizer="sgd", steps=100, schedule="constant", log_steps=(0, 50, 100), loss_every_step=False)
    (traj,) = run_many([make_train(o, cfg)], [{"beta": np.array([1.0]), "weight_decay": np.array([0.0]), "lr": np.array([1e3])}])
    assert np.isfinite(traj.loss[0, 0]) and not np.isfinite(traj.loss[0, -1])
    at = 50 if not np.isfinite(traj.loss[0, 1]) else 100
    with pytest.raises(DivergenceError, match=rf"at step {at} of 100.*logged steps"):
        guards.check_training([o], cfg, [[{"lr": 1e3}]], [traj])
