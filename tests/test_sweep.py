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


def test_exact_solve_beside_the_training_is_bit_identical(monkeypatch):
    """`runner.train_and_solve` runs the stacked exact solve in a thread beside the training
    (`_solve_beside`); it must give the same exact optima, gradients and certificates, bit for bit,
    as the solve after the training (`BANDIT_LAB_OVERLAP=0`), and re-raise the thread's errors."""
    from bandit_lab.runner import _solve_beside, train_and_solve
    from bandit_lab.errors import BanditError

    pb = Problem.create([0.5, 0.3, 0.2], pi_star=[0.2, 0.5, 0.3], pairs="uniform")
    objs = [make_objective(pb, n, {"beta": 0.5}) for n in ("dpo", "ipo", "rlhf")]
    cfg = TrainConfig(steps=50, log_steps=(0, 50), loss_every_step=False)
    hps = [[{**o.hp, "weight_decay": a, "lr": 0.05} for a in (0.0, 0.03, 0.5)] for o in objs]
    assert _solve_beside(objs, hps, None) is not None  # this grid is solved beside the training
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("BANDIT_LAB_OVERLAP", flag)
        runs[flag] = train_and_solve(objs, cfg, hps, certify=True)
    (t0, e0, c0), (t1, e1, c1) = runs["0"], runs["1"]
    for a, b in zip(t0, t1):
        assert np.array_equal(a.policy, b.policy)
    for per0, per1 in zip(e0, e1):
        for r0, r1 in zip(per0, per1):
            assert np.array_equal(np.asarray(r0.policy), np.asarray(r1.policy))
            assert np.array_equal(np.ravel(np.asarray(r0.grad)), np.ravel(np.asarray(r1.grad)))
    assert c0 is not None and c1 is not None
    for k0, k1 in zip(c0, c1):
        for key in k0._fields:
            assert np.array_equal(np.asarray(getattr(k0, key)), np.asarray(getattr(k1, key)), equal_nan=True), key

    def boom(*a, **k):
        raise BanditError("exact: boom")

    monkeypatch.setattr("bandit_lab.runner.solve_certified", boom)
    with pytest.raises(BanditError, match="exact: boom"):
        train_and_solve(objs, cfg, hps)


@pytest.mark.parametrize("every", [False, True])
def test_start_and_end_logged_only_records_the_same(every):
    """With only steps 0 and the end logged (a sweep's default) the step has no record branch: the
    end's π and loss are the final ones, recorded once after the loop. Same iterates, and the same
    records as a run that also logs a step in between (there the end is recorded inside the step)."""
    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1])
    o = make_objective(pb, "dpo")
    ends = TrainConfig(steps=200, log_steps=(0, 200), loss_every_step=every)
    mid = TrainConfig(steps=200, log_steps=(0, 7, 200), loss_every_step=every)
    (a,), (b,) = (run_many([make_train(o, c)], [_hp(0.05)]) for c in (ends, mid))
    assert np.array_equal(a.params, b.params) and np.array_equal(a.policy, b.policy)
    assert np.array_equal(a.policies, b.policies[:, [0, 2]])
    assert np.array_equal(a.policies[:, -1], a.policy)
    if every:
        assert np.array_equal(a.loss, b.loss)
    else:
        np.testing.assert_allclose(a.loss, b.loss[:, [0, 2]], rtol=1e-15, atol=0)


def test_columnar_exact_results_are_the_per_point_results():
    """`newton_free(..., columnar=True)` (an ExactBatch: what a stacked sweep's exact solve returns,
    `runner.solve_certified`) holds the very numbers of the per-point list, bit for bit, and is a
    sequence of ExactResult (indexing, negative indices, slices, iteration); `solver.column` reads
    a column from either form. Across NEWTON_BLOCK blocks too (monkeypatched to 2 points)."""
    import jax
    from bandit_lab.solvers import solver
    from bandit_lab.core.objective import Stack
    from bandit_lab.runner import solve_certified

    pb = Problem.create([0.5, 0.3, 0.2], pi_star=[0.2, 0.5, 0.3], pairs="uniform")
    objs = [make_objective(pb, n, {"beta": 0.5}) for n in ("dpo", "ipo")]
    hps = [{**objs[0].hp, **objs[1].hp, "weight_decay": a} for a in (0.0, 0.03, 0.5)]
    for block in (solver.NEWTON_BLOCK, 2):
        solver.NEWTON_BLOCK, old = block, solver.NEWTON_BLOCK
        try:
            rows = solver.newton_free(Stack(tuple(objs)), hps)
            cols = solver.newton_free(Stack(tuple(objs)), hps, columnar=True)
        finally:
            solver.NEWTON_BLOCK = old
        assert isinstance(cols, solver.ExactBatch) and len(cols) == len(rows) == 3
        for j in (0, 1, 2, -1):
            a, b = rows[j], cols[j]
            assert np.array_equal(a.policy, b.policy) and a.value == b.value and a.residual == b.residual
            assert a.converged == b.converged and a.iterations == b.iterations
            for x, y in zip(jax.tree_util.tree_leaves((a.params, a.grad)), jax.tree_util.tree_leaves((b.params, b.grad))):
                assert np.array_equal(x, y)
        assert [r.residual for r in cols[1:]] == [r.residual for r in rows[1:]]
        assert np.array_equal(solver.column(cols, "policy"), solver.column(rows, "policy"))
        with pytest.raises(IndexError):
            cols[3]
    exact, _ = solve_certified(objs, [[{**o.hp, "weight_decay": h["weight_decay"]} for h in hps] for o in objs])
    for i, per in enumerate(exact):  # the members' columns: each point's residual is its own gradient's norm
        assert isinstance(per, solver.ExactBatch)
        for r in per:
            # the column is norm(axis=1) of the batch; a 1-D norm is BLAS ddot (FMA): equal to 2 ulp
            np.testing.assert_allclose(r.residual, np.linalg.norm(np.ravel(np.asarray(r.grad))), rtol=4.5e-16, atol=0)
            assert r.converged == (r.residual <= 1e-10)
            assert np.isnan(r.value)


@pytest.mark.parametrize("stack", [False, True])
def test_no_stationarity_norm_changes_nothing_else(stack):
    """`TrainConfig(stationarity=False)` (a weight-decay sweep's: its exact solve certifies every
    point) drops the final gradient from the program: grad_norm is NaN, every iterate, record and
    logged loss is the same bit for bit — for one loss and for the weight-decay sweep's stack of six
    (DPO, f-DPO, IPO, their RLHF counterparts). Without a per-step loss both evaluate the objective
    at θ₀ and θ_T as one vmapped pair after the loop (``make_train``'s ``paired``); the end's value
    from that pair equals the final gradient's value (stationarity on) bit for bit."""
    from bandit_lab.core.objective import Stack
    from bandit_lab.experiments import with_counterpart

    pb = Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    if stack:
        members = []
        for name, extra in (("dpo", {}), ("fdpo", {"divergence": "forward_kl"}), ("ipo", {})):
            loss, counterpart, _ = with_counterpart(make_objective(pb, name, {"beta": 1.0, **extra}))
            members += [loss, counterpart]
        o = Stack(tuple(members))
    else:
        o = make_objective(pb, "ipo")
    for every in (False,) if stack else (False, True):  # the stack: the paired program only (4.1 → 2 s)
        on = TrainConfig(steps=100, log_steps=(0, 100), loss_every_step=every)
        off = TrainConfig(steps=100, log_steps=(0, 100), loss_every_step=every, stationarity=False)
        (a,), (b,) = (run_many([make_train(o, c)], [_hp(0.05)]) for c in (on, off))
        assert np.array_equal(a.params, b.params) and np.array_equal(a.policies, b.policies)
        assert np.array_equal(a.loss, b.loss)
        assert np.all(np.isfinite(a.grad_norm)) and np.all(np.isnan(b.grad_norm))
