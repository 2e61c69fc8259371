"""User-defined bandits from a JSON/TOML spec (``bandit-lab solve SPEC``).

Format (all keys but ``pi_ref`` and ``preference`` optional; nested lists = several contexts)::

    {"pi_ref": [0.4, 0.4, 0.2],
     "preference": {"pi_star": [...]} | {"reward": [...]} | {"matrix": [[...]]},
     "pairs": "uniform" | "reference" | [[i, j, weight], ...],
     "context_weight": [...],
     "loss": "dpo", "loss_params": {"beta": 1.0},
     "weight_decay": 0.0, "penalty": "params" | "policy",
     "parameterization": "softmax" | "simplex" | {"name": "mixture", "pi0": [...], "pi1": [...]}
                         | {"name": "loglinear", "features": [[...]]},
     "init": "reference" | "uniform" | [...],
     "data": "population" | {"sampled": 500},
     "optimizer": {"name": "adam", "lr": 0.01, "steps": 3000, "schedule": "cosine"},
     "seed": 0}
"""
from __future__ import annotations

import json
import os
import tomllib

import jax
import numpy as np

from bandit_lab import metrics
from bandit_lab import params as params_mod
from bandit_lab.data import make_data
from bandit_lab.exact_solvers import stationarity
from bandit_lab.errors import BanditError
from bandit_lab.objective import make_objective
from bandit_lab.oracles import loss_oracle
from bandit_lab.problems import Problem
from bandit_lab.runner import to_list, train_batch
from bandit_lab.solver import solve_exact
from bandit_lab.train import TrainConfig

KEYS = {
    "pi_ref", "preference", "pairs", "context_weight", "loss", "loss_params", "weight_decay", "penalty",
    "parameterization", "init", "data", "optimizer", "seed", "reward_floor", "name", "description",
}
CONVERGED_GRAD = 1e-6


def load(path: str) -> dict:
    if not os.path.isfile(path):
        raise BanditError(f"spec file not found: {path}")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        spec = tomllib.loads(raw.decode()) if path.endswith(".toml") else json.loads(raw)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BanditError(f"malformed spec {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(spec, dict):
        raise BanditError(f"malformed spec {path}: the top level must be an object")
    return spec


def build(spec: dict):
    """Spec → (objective, TrainConfig, lr, init, seed, population?)."""
    unknown = set(spec) - KEYS
    if unknown:
        raise BanditError(f"unknown spec key(s): {', '.join(sorted(unknown))}")
    if "pi_ref" not in spec or "preference" not in spec:
        raise BanditError("a spec needs 'pi_ref' and 'preference'")
    pref = spec["preference"]
    if not isinstance(pref, dict) or len(pref) != 1 or next(iter(pref)) not in ("pi_star", "reward", "matrix"):
        raise BanditError("preference must be one of {\"pi_star\": ...}, {\"reward\": ...}, {\"matrix\": ...}")
    kw = {"reward_floor": float(spec["reward_floor"])} if "reward_floor" in spec else {}
    problem = Problem.create(spec["pi_ref"], **pref, pairs=spec.get("pairs", "uniform"), context_weight=spec.get("context_weight"), **kw)
    par = spec.get("parameterization", "softmax")
    if isinstance(par, str):
        par = {"name": par}
    if not isinstance(par, dict) or "name" not in par:
        raise BanditError("parameterization must be a name or an object with 'name'")
    param = params_mod.make(par["name"], problem, **{k: v for k, v in par.items() if k != "name"})
    d = spec.get("data", "population")
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise BanditError(f"seed must be a non-negative integer; got {seed!r}")
    if d == "population":
        data = make_data(problem)
    elif isinstance(d, dict) and set(d) == {"sampled"}:
        data = make_data(problem, "sampled", int(d["sampled"]), seed)
    else:
        raise BanditError("data must be 'population' or {\"sampled\": n}")
    lp = spec.get("loss_params", {})
    if not isinstance(lp, dict):
        raise BanditError("loss_params must be an object")
    obj = make_objective(
        problem, spec.get("loss", "dpo"), lp, weight_decay=spec.get("weight_decay", 0.0),
        penalty=spec.get("penalty", "params"), param=param, data=data,
    )
    opt = dict(spec.get("optimizer", {}))
    lr = float(opt.pop("lr", 0.05))
    if not lr > 0:
        raise BanditError(f"optimizer lr must be > 0; got {lr}")
    name = opt.pop("name", "adam")
    steps = int(opt.pop("steps", 3000))
    schedule = opt.pop("schedule", "cosine")
    if opt:
        raise BanditError(f"unknown optimizer key(s): {', '.join(sorted(opt))}")
    config = TrainConfig(optimizer=name, steps=steps, schedule=schedule, log_steps=(0, steps)).validate()
    init = spec.get("init")
    if init is None and par["name"] == "mixture":
        init = 0.5
    init_params = param.init() if init is None else param.init(init)
    return obj, config, lr, init_params, seed, d == "population"


def solve(spec: dict) -> dict:
    obj, config, lr, init, seed, pop = build(spec)
    (traj,) = train_batch([obj], config, [[{**obj.hp, "lr": lr}]], seed=seed, inits=[init])
    ex = solve_exact(obj, init=init)
    policy = traj.policy[0]
    # min-norm-subgradient stationarity: a kinked loss (hinge) at its minimiser counts as converged
    station = stationarity(obj, jax.tree_util.tree_map(lambda a: a[0], traj.params), obj.hp)
    oracle, note = loss_oracle(obj.problem, obj.loss.name, obj.hp, obj.static, population_data=pop)
    unconstrained = obj.hp["weight_decay"] == 0 and obj.param.name in ("softmax", "simplex")
    w = obj.problem.context_weight
    return {
        "loss": obj.label,
        "hp": obj.hp,
        "parameterization": obj.param.name,
        "policy": to_list(policy),
        "exact": to_list(ex.policy),
        "oracle": None if oracle is None else to_list(oracle),
        "oracle_note": note,
        "oracle_applies": bool(oracle is not None and unconstrained),
        "adam_vs_exact_tv": float(metrics.tv(policy, ex.policy, w)),
        "exact_vs_oracle_tv": None if oracle is None else float(metrics.tv(ex.policy, oracle, w)),
        "adam_vs_oracle_tv": None if oracle is None else float(metrics.tv(policy, oracle, w)),
        "final_objective": float(traj.loss[0, -1]),
        "exact_objective": ex.value,
        "grad_norm": station,
        "exact_residual": ex.residual,
        "converged": bool(station <= CONVERGED_GRAD),
        "optimizer": config.optimizer,
        "exact_converged": ex.converged,
    }


def report(res: dict) -> str:
    def fmt(p):
        a = np.asarray(p)
        rows = a if a.ndim == 2 else a[None]
        return "; ".join("[" + ", ".join(f"{v:.6f}" for v in r) + "]" for r in rows)

    lines = [
        f"loss {res['loss']}  hp {', '.join(f'{k}={v:g}' for k, v in res['hp'].items())}  parameterization {res['parameterization']}",
        f"trained policy        {fmt(res['policy'])}",
        f"exact constrained opt {fmt(res['exact'])}   (residual {res['exact_residual']:.1e}"
        + ("" if res["exact_converged"] else "; NOT certified: no exact method reached a stationary point") + ")",
        f"closed-form oracle    {fmt(res['oracle']) if res['oracle'] is not None else '— (' + res['oracle_note'] + ')'}",
        f"TV(trained, exact)    {res['adam_vs_exact_tv']:.3e}",
    ]
    if res["oracle"] is not None:
        tag = "" if res["oracle_applies"] else "  (constrained run: the oracle is the unconstrained answer, a gap is expected)"
        lines.append(f"TV(exact, oracle)     {res['exact_vs_oracle_tv']:.3e}{tag}")
    lines.append(f"converged             {'yes' if res['converged'] else 'NO'} (final stationarity {res['grad_norm']:.1e}, threshold {CONVERGED_GRAD:g})")
    if not res["converged"] and res["parameterization"] == "simplex" and res["optimizer"] == "adam":
        lines.append("note: projected Adam stalls on the simplex — its per-coordinate step sizes and the Euclidean projection "
                     "have fixed points that are not KKT points; use \"optimizer\": {\"name\": \"sgd\"} (projected GD)")
    return "\n".join(lines)
