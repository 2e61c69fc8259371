"""Divergence detection: a run that produced a non-finite loss or policy is an error, never a result.

:func:`check_training` runs after every compiled training program (called by
:func:`bandit_lab.runner.train_batch`), :func:`check_exact` after every exact solve
(:func:`bandit_lab.runner.solve_batch`, ``spec.solve``). Each raises
:class:`~bandit_lab.errors.DivergenceError` (exit code 4) naming the run — the objective's label
and its hyperparameters — the first non-finite step (``Trajectory.loss`` holds one value per
step: index ``t`` is the objective before update ``t``, the last entry the value at the end) and
the likely cause:

- non-finite already at step 0: the inputs are at the edge of float64 (β, α, rewards or the
  initial point), not the optimiser;
- finite at first, non-finite later: the learning rate is too large for this objective (the
  iterates overflowed), more so when the loss grew before it blew up.

:func:`first_nonfinite` is the last line of defence of the CLI: a result about to be printed
that still holds a NaN or an infinity is reported as a divergence, with its path, instead of
being printed (or turned into ``null`` by ``runner.jsonable``).
"""
from __future__ import annotations

import math

import numpy as np

from bandit_lab.errors import DivergenceError


def _hp_text(hp: dict) -> str:
    keep = [(k, v) for k, v in hp.items() if k != "seed" or v]
    return ", ".join(f"{k}={float(v):g}" if np.ndim(v) == 0 else f"{k}=…" for k, v in keep)


def _cause(loss: np.ndarray, first: int, hp: dict, optimizer: str) -> str:
    lr = hp.get("lr")
    if first == 0:
        return ("the objective is already non-finite at the initial point: β, α, the rewards or the initialisation are "
                "out of the range float64 can represent for this loss")
    head = loss[:first]
    grew = head.size > 1 and np.isfinite(head).all() and head[-1] > head[0] + 1.0
    if lr is not None:
        return (f"the learning rate lr={float(lr):g} is too large for {optimizer} on this objective (the iterates overflowed"
                + ("; the loss was growing before it did" if grew else "") + "): lower lr")
    return "the iterates overflowed: lower the learning rate, or bring β, α or the rewards into range"


def _label(obj) -> str:
    parts = getattr(obj, "objectives", None)  # a Stack: name its members
    if parts is not None:
        return " + ".join(_label(o) for o in parts)
    return getattr(obj, "label", type(obj).__name__)


def check_training(objectives, config, hps, trajectories):
    """Raise if any run's loss or final policy is non-finite (see the module docstring);
    return ``trajectories`` unchanged otherwise."""
    for obj, hs, traj in zip(objectives, hps, trajectories):
        loss = np.asarray(traj.loss, dtype=float)
        loss = loss.reshape(-1, loss.shape[-1]) if loss.ndim else loss.reshape(1, 1)
        pol = np.asarray(traj.policy, dtype=float).reshape(loss.shape[0], -1) if np.size(traj.policy) else np.zeros((loss.shape[0], 0))
        bad_loss = ~np.isfinite(loss)
        bad_pol = ~np.isfinite(pol).all(axis=-1)
        for j in np.nonzero(bad_loss.any(axis=-1) | bad_pol)[0]:
            hp = {**getattr(obj, "hp", {}), **(hs[j] if j < len(hs) else {})}
            label = _label(obj)
            steps = loss.shape[-1] - 1
            logged = None if getattr(config, "loss_every_step", True) else np.asarray(traj.steps).reshape(-1, np.shape(traj.steps)[-1])[0]
            if logged is not None:  # the loss kept at the logged steps only (TrainConfig.loss_every_step)
                steps = int(getattr(config, "steps", logged[-1]))
            if bad_loss[j].any():
                first = int(np.argmax(bad_loss[j]))
                at = first if logged is None else int(logged[first])
                where = (f"the loss is {loss[j, first]} at step {at} of {steps}" + (" (the final value)" if at == steps else "")
                         + ("" if logged is None else f" (the first of the {logged.size} logged steps where it is)"))
                # _cause reads the values before the first bad one: the logged ones, when only those were kept
                first = first if logged is None or first > 0 or at == 0 else 1
            else:
                first = steps
                where = f"the final policy is non-finite after {steps} steps"
            raise DivergenceError(f"training diverged: {label} ({_hp_text(hp)}): {where}; likely cause: "
                                  + _cause(loss[j], first, hp, getattr(config, "optimizer", "the optimizer")))
    return trajectories


def check_exact(objectives, hps, results):
    """Raise if an exact solve returned a non-finite policy; return ``results`` unchanged otherwise.

    (``ExactResult.value`` is NaN by design for objectives solved as one stack, and ``residual``
    for solvers where a first-order residual is undefined — the LP of a piecewise-linear loss —
    so neither is checked here.)"""
    from bandit_lab.solvers.solver import ExactBatch

    for obj, hs, rs in zip(objectives, hps, results):
        if isinstance(rs, ExactBatch):  # columns: the first non-finite point, if any, without a loop
            bad = ~np.isfinite(rs.policy.reshape(len(rs), -1)).all(axis=1)
            points = np.nonzero(bad)[0][:1]
        else:
            points = [j for j, r in enumerate(rs) if not np.isfinite(np.asarray(r.policy, dtype=float)).all()][:1]
        for j in points:
            hp = {k: v for k, v in {**getattr(obj, "hp", {}), **(hs[j] if j < len(hs) else {})}.items() if k != "lr"}
            raise DivergenceError(f"the exact solver diverged: {_label(obj)} ({_hp_text(hp)}): non-finite policy; "
                                  "likely cause: β, α or the rewards are out of the range float64 can represent for this loss")
    return results


def first_nonfinite(obj, path: str = "") -> str | None:
    """Path (``records[3].policy[1]``) of the first NaN/±inf float in a result, or ``None``."""
    stack = [(path, obj)]
    while stack:
        p, o = stack.pop()
        if isinstance(o, dict):
            stack.extend(reversed([(f"{p}.{k}" if p else str(k), v) for k, v in o.items()]))
        elif isinstance(o, (list, tuple)):
            stack.extend(reversed([(f"{p}[{i}]", v) for i, v in enumerate(o)]))
        elif isinstance(o, np.ndarray):
            if o.dtype.kind in "fc" and not np.isfinite(o).all():
                idx = np.argwhere(~np.isfinite(o))[0]
                return p + "".join(f"[{i}]" for i in idx)
        elif isinstance(o, (float, np.floating)) and not math.isfinite(float(o)):
            return p or "(the result)"
        elif hasattr(o, "tolist") and not isinstance(o, (str, bytes)):
            stack.append((p, np.asarray(o)))
    return None


def check_result(result, what: str) -> None:
    """Raise if a result about to be printed holds a non-finite number."""
    p = first_nonfinite(result)
    if p is not None:
        raise DivergenceError(f"{what} produced a non-finite value at {p}; the run diverged (a learning rate too large, or "
                              "β, α or rewards out of range) — nothing was printed")
