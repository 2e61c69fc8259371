"""Glue shared by experiments and the CLI: train a set of objectives over a hyperparameter
batch in one compiled call, and solve each point exactly."""
from __future__ import annotations

import contextlib
from typing import Sequence

import jax
import jax.flatten_util
import numpy as np

from bandit_lab.infra import guards, precision, timing
from bandit_lab.core import train as train_mod
from bandit_lab.core.objective import Objective, Stack
from bandit_lab.solvers.solver import ExactBatch, ExactResult, newton_free, solve_exact


STACK_MAX_PARAMS = 48


def _shared_hp(hps: Sequence[Sequence[dict]]) -> bool:
    """Whether every objective sees the same value for every hyperparameter it shares."""
    n = len(hps[0])
    if any(len(h) != n for h in hps):
        return False
    for j in range(n):
        seen: dict = {}
        for h in hps:
            for k, v in h[j].items():
                if seen.setdefault(k, v) != v:
                    return False
    return True


def _merged(hps):
    return [{k: v for h in hps for k, v in h[j].items()} for j in range(len(hps[0]))]


def train_batch(objectives: Sequence[Objective], config: train_mod.TrainConfig, hps: Sequence[Sequence[dict]], seed: int = 0, inits=None):
    """Train ``objectives[i]`` at every hyperparameter point ``hps[i][j]``, as one compiled
    ``jit(vmap(scan))``. Objectives sharing the grid (a loss and its RLHF counterpart at the
    same α, β) are trained as one :class:`Stack`: one trace and one compile for all of them,
    each following exactly its own Adam trajectory. A point's ``hp["seed"]`` (default ``seed``)
    keys its resampled dataset: same seed ⇒ same data.

    The problem's arrays and the initial parameters are *arguments* of the compiled program and
    every hyperparameter is passed explicitly, so the executable is cached by the objectives'
    signatures (loss, options, parameterization, shapes) and the config: a second call with
    another problem of the same shapes, or other hyperparameter values, does not recompile.
    Returns ``trajectories[i]``, batched over the points of objective ``i``."""
    objectives = list(objectives)
    hps = [[{**o.hp, "seed": seed, **h} for h in hs] for o, hs in zip(objectives, hps)]
    if len(objectives) > 1 and inits is None and _shared_hp(hps):
        st = Stack(tuple(objectives))
        merged = _merged(hps)
        hp = train_mod.stack_hp(merged)
        key = ("train", st.signature(), config, tuple(sorted(hp)))
        # the same key in names only (None for a user's plugin loss): lets a new process skip tracing
        ssig = st.stable_signature()
        stable = None if ssig is None else ("train", ssig, config, tuple(sorted(hp)))
        (traj,) = train_mod.run_many([train_mod.make_train(st, config)], [hp], [(st.consts(), st.param.init())], cache_key=key,
                                     stable_key=stable)
        traj = jax.tree_util.tree_map(np.asarray, traj)
        guards.check_training([st], config, [merged], [traj])
        return [
            train_mod.Trajectory(params=traj.params[i], policy=traj.policy[:, i], steps=traj.steps, policies=traj.policies[:, :, i],
                                 loss=traj.loss, grad_norm=traj.grad_norm)
            for i in range(len(objectives))
        ]
    # an objective without an init of its own (``inits[i] is None``) starts from ``param.init()``,
    # passed as an argument too: left to the trainer it would be traced as a compile-time constant
    # (measured: XLA constant-folding the simplex projection of a [10⁵, 2] init took 1.8 s)
    p0 = [o.param.init() if inits is None or inits[i] is None else inits[i] for i, o in enumerate(objectives)]
    stacked = [train_mod.stack_hp(h) for h in hps]
    key = ("train", tuple(o.signature() for o in objectives), config, tuple(tuple(sorted(h)) for h in stacked),
           tuple(jax.tree_util.tree_structure(p) for p in p0))
    ssigs = tuple(o.stable_signature() for o in objectives)
    stable = None if None in ssigs else ("train", ssigs, config, tuple(tuple(sorted(h)) for h in stacked))
    trains = [train_mod.make_train(o, config) for o in objectives]
    out = train_mod.run_many(trains, stacked, [(o.consts(), p) for o, p in zip(objectives, p0)], cache_key=key, stable_key=stable)
    guards.check_training(objectives, config, hps, out)
    return [jax.tree_util.tree_map(np.asarray, t) for t in out]


def solve_batch(objectives: Sequence[Objective], hps: Sequence[Sequence[dict]], inits=None) -> list[list[ExactResult]]:
    """Exact optimum of every objective at every point: unconstrained objectives that share
    the grid are solved together as one :class:`Stack` by the batched Newton method."""
    return solve_certified(objectives, hps, inits)[0]


def solve_certified(objectives: Sequence[Objective], hps: Sequence[Sequence[dict]], inits=None):
    """:func:`solve_batch` and, when the objectives were solved as one stack, a batched certificate
    per objective (:func:`bandit_lab.solvers.sweep_certificate.certify_sweep`: arrays over the
    points); ``(exact, certificates or None)``."""
    objectives = list(objectives)
    if any(getattr(o, "stateful", False) for o in objectives):  # on-policy algorithms: roots of a field, not minima
        return [exact_batch(o, hps[i], None if inits is None else inits[i]) for i, o in enumerate(objectives)], None
    free = all(o.param.constraint == "free" for o in objectives)
    # Stacking saves compiles but its Newton works on the joint parameter vector (Hessian cost
    # grows with the square of the total size): worth it for small problems only.
    n_params = sum(int(np.size(jax.flatten_util.ravel_pytree(o.param.init())[0])) for o in objectives)
    if free and len(objectives) > 1 and inits is None and _shared_hp(hps) and n_params <= STACK_MAX_PARAMS:
        st = Stack(tuple(objectives))
        arrays: dict = {}
        merged = _merged(hps)
        rows = newton_free(st, merged, arrays=arrays, columnar=True)
        out = []
        for i, o in enumerate(objectives):  # member i's columns (ExactBatch): nothing per point in Python
            p, g = rows.params[i], rows.grad[i]
            res = np.linalg.norm(np.concatenate([np.reshape(a, (len(rows), -1)) for a in jax.tree_util.tree_leaves(g)], axis=1), axis=1)
            # the stacked value is a sum over objectives; per objective it is not kept
            out.append(ExactBatch(p, rows.policy[:, i], np.full(len(rows), np.nan), res, res <= 1e-10, rows.iterations, g))
        guards.check_exact(objectives, hps, out)
        from bandit_lab.solvers.sweep_certificate import certify_sweep

        return out, (certify_sweep(st, merged, arrays) if arrays else None)
    return guards.check_exact(objectives, hps, [exact_batch(o, hps[i], None if inits is None else inits[i])
                                                for i, o in enumerate(objectives)]), None


def _solve_beside(objectives, hps, inits):
    """The stacked exact solve (:func:`solve_certified`) started in a thread beside the training, or
    ``None`` when it will not be one stack, when JAX is not in float64 in this thread (the thread
    computes in the caller's precision: float64, process-wide or scoped) or with
    ``BANDIT_LAB_OVERLAP=0``. The exact solve does not read the training's results, and XLA
    releases the GIL while it compiles and runs, so on a machine with a spare core the solve
    (compile, Newton iterations, certificate) costs no wall time beside a sweep whose training
    keeps one core busy. Same programs, same inputs, same results as the solve after the training
    (bit for bit: tests/test_sweep.py). The thread's exception, if any, is re-raised by
    ``result()`` in the caller, after the training, in the order the two used to fail."""
    import os
    import threading

    if os.environ.get("BANDIT_LAB_OVERLAP", "1") == "0" or inits is not None or len(objectives) < 2:
        return None
    objectives = list(objectives)
    if any(getattr(o, "stateful", False) or o.param.constraint != "free" for o in objectives) or not _shared_hp(hps):
        return None
    if sum(int(np.size(jax.flatten_util.ravel_pytree(o.param.init())[0])) for o in objectives) > STACK_MAX_PARAMS:
        return None
    if not precision.x64_enabled():
        return None
    box: dict = {}

    def work():
        try:
            with (contextlib.nullcontext() if precision.x64_enabled() else precision.x64(True)):
                box["value"] = solve_certified(objectives, hps, None)
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=work, name="bandit-lab-exact", daemon=True)
    t.start()

    def result():
        t.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return result


def train_and_solve(objectives: Sequence[Objective], config: train_mod.TrainConfig, hps: Sequence[Sequence[dict]],
                    seed: int = 0, inits=None, *, certify: bool = False):
    """:func:`train_batch` and :func:`solve_batch` on the same grid: ``(trajectories, exact)``;
    with ``certify``, ``(trajectories, exact, certificates)`` (:func:`solve_certified`). The exact
    solve runs beside the training when it can (:func:`_solve_beside`)."""
    beside = _solve_beside(objectives, hps, inits)
    with timing.phase("train"):
        trajs = train_batch(objectives, config, hps, seed, inits)
    with timing.phase("exact"):  # with the solve beside the training: only the wait for it
        exact, certs = beside() if beside is not None else solve_certified(objectives, hps, inits)
    return (trajs, exact, certs) if certify else (trajs, exact)


def exact_batch(objective: Objective, hps: Sequence[dict], init=None) -> list[ExactResult]:
    """Exact optima of one objective over a grid (batched Newton when unconstrained; the loss's own
    ``exact`` solver first for a stateful loss — the root of an on-policy algorithm's field, which
    Newton on the value would only find by accident)."""
    if getattr(objective, "stateful", False):
        return [solve_exact(objective, h, init) for h in hps]
    if objective.param.constraint == "free":
        return newton_free(objective, list(hps), init)
    return [solve_exact(objective, h, init) for h in hps]


def to_list(a) -> list:
    """JSON-ready nested lists; single-context policies are flattened to one list."""
    a = np.asarray(a, dtype=float)
    if a.ndim >= 2 and a.shape[-2] == 1:
        a = a[..., 0, :]
    return a.tolist()


def jsonable(obj):
    """JSON-safe copy: arrays and NumPy scalars become plain lists/numbers, non-finite floats null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    from bandit_lab.infra.records import Table  # columnar records (large sweeps): their rows

    if isinstance(obj, Table):
        return jsonable(obj.rows())
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
