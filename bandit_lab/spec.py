"""User-defined bandits from a JSON/TOML spec (``bandit-lab solve SPEC``).

The format is defined once, by the typed schema :class:`bandit_lab.schema.Spec` (``bandit-lab
schema`` prints it as JSON Schema). Sketch (all keys but ``pi_ref`` and ``preference`` optional;
nested lists = several contexts)::

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
     "batch": {"size": 9, "replacement": true},          # a fresh mini-batch of B pairs each step
     "optimizer": {"name": "adam", "lr": 0.01, "steps": 3000, "schedule": "cosine"},
     "sampling": "exact" | {"samples": N, "seed": s},   # on-policy losses only (default exact)
     "seed": 0}

This module only reads files, checks the budget (:mod:`bandit_lab.infra.budget`) and turns a
validated spec into library objects; :func:`solve` trains, solves exactly and guards both
(:mod:`bandit_lab.infra.guards`).
"""
from __future__ import annotations

import json
import os
import tomllib

import jax
import numpy as np

from bandit_lab.infra import budget, guards, progress
from bandit_lab.core import metrics
from bandit_lab import schema
from bandit_lab.core import params as params_mod
from bandit_lab.core.data import make_data
from bandit_lab.certificates import onpolicy_verdict, verdict_of
from bandit_lab.solvers.exact_solvers import stationarity
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import loss_oracle
from bandit_lab.core.problems import Problem
from bandit_lab.runner import to_list, train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.core.train import TrainConfig
from bandit_lab.verdict import Kind, Verdict

CONVERGED_GRAD = 1e-6
MAX_SPEC_BYTES = 64 * 2**20


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise BanditError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read(path: str) -> object:
    """Decode a spec file (JSON, or TOML by extension) without validating it."""
    if not os.path.isfile(path):
        raise BanditError(f"spec file not found: {path}" if not os.path.exists(path) else f"spec {path} is not a regular file")
    try:
        size = os.path.getsize(path)
        if size > MAX_SPEC_BYTES:
            raise BanditError(f"spec {path} is {budget.fmt_bytes(size)}; a spec is limited to {budget.fmt_bytes(MAX_SPEC_BYTES)}")
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise BanditError(f"cannot read spec {path}: {e.strerror or e}") from None
    try:
        if path.endswith(".toml"):
            return tomllib.loads(raw.decode())
        return json.loads(raw, object_pairs_hook=_no_duplicates)
    except BanditError as e:
        raise BanditError(f"malformed spec {path}: {e}") from None
    except RecursionError:
        raise BanditError(f"malformed spec {path}: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, TOMLDecodeError, a 5000-digit integer
        hint = ""
        if not path.endswith(".toml") and isinstance(e, json.JSONDecodeError) and _has_comment(raw):
            hint = ("; JSON allows no comments (// or /* */): remove them, or write the spec in TOML, "
                    "whose # comments are allowed (examples/annotated.toml)")
        raise BanditError(f"malformed spec {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}{hint}") from None


def _has_comment(raw: bytes) -> bool:
    """Whether a JSON text has a // or /* comment outside its strings (JSONC, which JSON is not)."""
    text, i, in_str = raw.decode(errors="replace"), 0, False
    while i < len(text) - 1:
        c = text[i]
        if in_str:
            i += 2 if c == "\\" else 1
            in_str = in_str and c != '"'
            continue
        if c == '"':
            in_str = True
        elif text[i:i + 2] in ("//", "/*"):
            return True
        i += 1
    return False


def load(path: str) -> dict:
    """Read and validate a spec file; return the decoded object (errors name the file and field)."""
    raw = read(path)
    schema.parse(raw, path)
    return raw


def cost(s: schema.Spec) -> budget.Cost:
    """Memory and work of training and solving ``s`` (see :mod:`bandit_lab.infra.budget`)."""
    from bandit_lab import losses

    X, K = s.contexts, s.responses
    pairwise = losses.get(s.loss).kind != "policy" or not isinstance(s.data, str)
    c = budget.problem(X, K, pairwise)
    if not isinstance(s.data, str):
        c = c + budget.sampling(s.data.sampled, K, X)
    if s.sampling is not None and not isinstance(s.sampling, str):  # on-policy draws: N (groups of G) per context and step
        G = int(s.loss_params.get("group_size", losses.get(s.loss).static.get("group_size", 1)))
        draws = budget.array(2.0 * s.sampling.samples * G * X * K, f"the on-policy draws ({s.sampling.samples} × G = {G} per context and step)")
        draws.work *= s.optimizer.steps
        c = c + draws
    if s.batch is not None:  # per step: B uniforms and binary searches (or a permutation of the n-pair dataset)
        per = float(s.batch.size) + (0.0 if s.batch.replacement or isinstance(s.data, str) else float(s.data.sampled))
        n = per * float(s.optimizer.steps)
        c = c + budget.Cost(8.0 * 2 * per, 20.0 * n, "the mini-batch draws of one step", f"{n:.3g} mini-batch draws")
    train = budget.training(steps=s.optimizer.steps, responses=K, contexts=X, params=s.n_params, pairwise=pairwise)
    constraint = "free" if s.parameterization.name in ("softmax", "loglinear") else "box"
    return c + (train | budget.exact(constraint, params=s.n_params, responses=K, contexts=X, pairwise=pairwise))


def _pairs(p):
    if isinstance(p, str):
        return p
    _, per_context, lists = p
    rows = [[[i, j, w] for i, j, w in lst] for lst in lists]
    return rows if per_context else rows[0]


def build(spec):
    """Spec (a dict or a validated :class:`~bandit_lab.schema.Spec`) → (objective, TrainConfig,
    lr, init, seed, population?)."""
    s = schema.parse(spec)
    budget.check(cost(s), "this spec")
    pref = s.preference
    problem = Problem.create(s.pi_ref, **{pref.kind: getattr(pref, pref.kind)}, pairs=_pairs(s.pairs),
                             context_weight=s.context_weight, reward_floor=s.reward_floor)
    par = s.parameterization
    options = {k: getattr(par, k) for k in ("pi0", "pi1", "features") if hasattr(par, k)}
    param = params_mod.make(par.name, problem, **options)
    data = make_data(problem) if isinstance(s.data, str) else make_data(problem, "sampled", s.data.sampled, s.seed)
    seed = s.seed
    if s.sampling is not None:  # on-policy algorithms: exact expected update or N samples per context per step
        if not isinstance(s.sampling, str) and s.sampling.seed is not None:
            seed = s.sampling.seed  # keys the training draws
    try:
        obj = make_objective(problem, s.loss, s.all_loss_params, weight_decay=s.weight_decay, penalty=s.penalty, param=param, data=data)
    except BanditError as e:  # a refusal that names its own field (bandit_lab.core.support: pi_ref) keeps it
        raise BanditError(str(e) if str(e).startswith(("pi_ref: ", "preference.reward: ")) else f"loss: {e}") from None
    opt = s.optimizer
    batch = {} if s.batch is None else {"batch_size": s.batch.size, "batch_replacement": s.batch.replacement,
                                        "batch_pool": 0 if isinstance(s.data, str) else s.data.sampled}
    config = TrainConfig(optimizer=opt.name, steps=opt.steps, schedule=opt.schedule, log_steps=(0, opt.steps), **batch).validate()
    init = s.init
    if init is None and par.name == "mixture":
        init = 0.5
    init_params = param.init() if init is None else param.init(init)
    try:  # trace the objective once (shapes only, no arithmetic): a loss that cannot run on this spec says so now
        jax.eval_shape(lambda p: obj.value(p, obj.hp), init_params)
    except BanditError as e:
        raise BanditError(f"loss: {s.loss}: {e}") from None
    return obj, config, opt.lr, init_params, seed, isinstance(s.data, str)


def solve(spec) -> dict:
    with progress.bar("solve: building the problem") as bar:
        obj, config, lr, init, seed, pop = build(spec)
        hp = {**obj.hp, "lr": lr}
        bar.update(f"solve: training {obj.label} ({config.optimizer}, {config.steps} steps)")
        (traj,) = train_batch([obj], config, [[hp]], seed=seed, inits=[init])
        bar.update(f"solve: exact solve of {obj.label}")
        w = obj.problem.context_weight
        extra = {}
        if obj.stateful:  # on-policy: the exact answer is a stationary point of the expected update
            from bandit_lab.onpolicy.stationary import references, solve as stationary

            st = stationary(obj, init=init)
            ex = st.result
            refs = references(obj)
            st_cert = st.certificate
            extra = {"stationary_status": st.status, "stationary_note": st.note,
                     "reference_policies": {k: to_list(v) for k, v in refs.items()},
                     "exact_vs_reference_tv": {k: float(metrics.tv(ex.policy, v, w)) for k, v in refs.items()}}
        else:
            ex = solve_exact(obj, init=init)
        guards.check_exact([obj], [[obj.hp]], [[ex]])
    policy = traj.policy[0]
    # min-norm-subgradient stationarity: a kinked loss (hinge) at its minimiser counts as converged
    station = stationarity(obj, jax.tree_util.tree_map(lambda a: a[0], traj.params), obj.hp)
    oracle, note = loss_oracle(obj.problem, obj.loss.name, obj.hp, obj.static, population_data=pop)
    unconstrained = obj.hp["weight_decay"] == 0 and obj.param.name in ("softmax", "simplex")
    # issue 20: every exact answer carries a certified verdict (bandit_lab.certificates) — a minimiser,
    # a set, a limit (no finite minimiser: the limit policy is reported, not the point on the
    # runaway where an absolute-gradient test stopped), a stationary point, or "not certified"
    if obj.stateful:
        verdict = onpolicy_verdict(extra["stationary_status"], extra["stationary_note"], ex.residual, ex.converged,
                                   st_cert)
    else:
        verdict = verdict_of(obj, ex, note=note if unconstrained else None)
    runaway = verdict.limit is not None  # no finite minimiser / a runaway field: the answer is the limit
    exact_policy = np.asarray(verdict.limit) if runaway else np.asarray(ex.policy)
    if verdict.kind is Kind.SET and verdict.certificate.get("shown_policy") is not None:
        exact_policy = np.asarray(verdict.certificate["shown_policy"])  # the set's member nearest π_ref
    if runaway:
        extra["runaway_point"] = to_list(ex.policy)
    res = {**extra,
        "loss": obj.label,
        "hp": obj.hp,
        "parameterization": obj.param.name,
        "policy": to_list(policy),
        "exact": to_list(exact_policy),
        "oracle": None if oracle is None else to_list(oracle),
        "oracle_note": note,
        "oracle_applies": bool(oracle is not None and unconstrained),
        "adam_vs_exact_tv": float(metrics.tv(policy, exact_policy, w)),
        "exact_vs_oracle_tv": None if oracle is None else float(metrics.tv(exact_policy, oracle, w)),
        "adam_vs_exact_tv": float(metrics.tv(policy, ex.policy, w)),
        "exact_vs_oracle_tv": None if oracle is None else float(metrics.tv(ex.policy, oracle, w)),
        "adam_vs_oracle_tv": None if oracle is None else float(metrics.tv(policy, oracle, w)),
        "final_objective": float(traj.loss[0, -1]),
        "exact_objective": ex.value,
        "grad_norm": station,
        # None where a first-order residual is undefined (the LP solver of a piecewise-linear loss)
        "exact_residual": ex.residual if np.isfinite(ex.residual) else None,
        # Adam's stationarity below the threshold is convergence only where a minimiser exists: on
        # a runaway (no finite minimiser) the gradient underflows while the logits keep moving
        "converged": bool(station <= CONVERGED_GRAD and not runaway),
        "optimizer": config.optimizer,
        # a finite exact answer, certified (a minimiser or set; on-policy: a reached stationary point)
        "exact_converged": verdict.finite,
        "verdict": verdict.as_json(),
    }
    guards.check_result(res, "solve")
    return res


def unconstrained_of(res: dict) -> bool:
    return res["hp"].get("weight_decay", 0.0) == 0 and res["parameterization"] in ("softmax", "simplex")


def _exact_line(res: dict, fmt, residual, onp: bool) -> str:
    """The exact answer's line: a stationary point, a certified optimum, the limit of the infimum
    (no finite minimiser: the solver's point on the runaway is not the answer) or, uncertified,
    the solver's point said so."""
    kind = res["verdict"]["kind"]
    if onp:
        return f"stationary point      {fmt(res['exact'])}   (‖expected update‖ {residual or '—'}; {res['stationary_status']})"
    if "runaway_point" in res:
        return f"limit of the infimum  {fmt(res['exact'])}   (no finite minimiser; the solver stopped on the runaway at {fmt(res['runaway_point'])})"
    if kind == Kind.NOT_CERTIFIED.value:
        return f"exact solver's point  {fmt(res['exact'])}   (NOT certified" + (f"; residual {residual})" if residual else ")")
    return (f"exact constrained opt {fmt(res['exact'])}   "
            + (f"(residual {residual})" if residual else "(this solver has no first-order residual)"))


def report(res: dict) -> str:
    def fmt(p):
        a = np.asarray(p)
        rows = a if a.ndim == 2 else a[None]
        return "; ".join("[" + ", ".join(f"{v:.6f}" for v in r) + "]" for r in rows)

    onp = "stationary_status" in res
    residual = f"{res['exact_residual']:.1e}" if res["exact_residual"] is not None else None
    lines = [
        f"loss {res['loss']}  hp {', '.join(f'{k}={v:g}' for k, v in res['hp'].items())}  parameterization {res['parameterization']}",
        f"trained policy        {fmt(res['policy'])}",
        _exact_line(res, fmt, residual, onp),
        f"verdict               {Verdict.from_json(res['verdict']).line()}",
        f"closed-form oracle    {fmt(res['oracle']) if res['oracle'] is not None else '— (' + res['oracle_note'] + ')'}",
        f"TV(trained, exact)    {res['adam_vs_exact_tv']:.3e}",
    ]
    if res["oracle"] is not None:
        tag = "" if res["oracle_applies"] else "  (constrained run: the oracle is the unconstrained answer, a gap is expected)"
        lines.append(f"TV(exact, oracle)     {res['exact_vs_oracle_tv']:.3e}{tag}")
    if onp:
        if res["stationary_status"] != "attracting":
            lines.append(f"NOTE                  {res['stationary_note']}")
        for k, v in res["exact_vs_reference_tv"].items():
            lab = {"gibbs": "TV(stationary, RLHF optimum π_ref·e^(r/β)/Z)", "dpo": "TV(stationary, DPO's optimum)"}[k]
            lines.append(f"{lab:<44} {v:.3e}" + ("" if unconstrained_of(res) else "  (same constraint)"))
    if "runaway_point" in res:
        lines.append(f"converged             no: there is no finite minimiser to converge to (final stationarity "
                     f"{res['grad_norm']:.1e} only says the gradient vanishes along the runaway)")
    else:
        lines.append(f"converged             {'yes' if res['converged'] else 'NO'} (final stationarity {res['grad_norm']:.1e}, threshold {CONVERGED_GRAD:g})")
    if not res["converged"] and res["parameterization"] == "simplex" and res["optimizer"] == "adam":
        lines.append("note: projected Adam stalls on the simplex — its per-coordinate step sizes and the Euclidean projection "
                     "have fixed points that are not KKT points; use \"optimizer\": {\"name\": \"sgd\"} (projected GD)")
    return "\n".join(lines)
