"""The live half of ``bandit-lab explore --serve``: one request = one problem, solved on the server.

A request names π*, π_ref (points of the simplex, K ≥ 3), α, β, the step budget, the learning
rate and the objectives; :func:`answer` re-solves every objective exactly (the stacked batched
Newton of :func:`bandit_lab.runner.solve_batch`) and re-trains it (the same compiled Adam scan as
``bandit-lab solve``) and returns JSON. The problem enters the compiled programs as *arguments*
(the library compiles one executable per shape), so moving π*, π_ref, α, β or the learning rate
never recompiles: only a new K, a new set of objectives or a new step budget does
(``tests/test_explore_live.py`` counts XLA compiles).

Every input is validated here (:func:`parse`): a point off the simplex, a non-finite number or an
unknown loss is a :class:`~bandit_lab.errors.BanditError` whose one line the server returns as
``{"error": ...}`` with status 400 — the page shows it; no stack trace ever leaves the server.
The budget check of :mod:`bandit_lab.infra.budget` bounds the step budget like every other command.

On-policy algorithms (``onpolicy=``: registered on-policy losses such as ``grpo``, ``rloo``,
``ppo``, ``NAME[key=value]``, or a library preset from :data:`bandit_lab.explain.PRESETS`, read
through its config reader) are answered by their exact stationary point — a root of the expected
update, :func:`bandit_lab.onpolicy.stationary.solve_batch`, the solver ``bandit-lab solve`` uses —
with the solver's own classification (attracting / not attracting / runaway / not converged) and
its TV to the reverse-KL RLHF optimum (Gibbs, π_ref·e^{r/β}/Z when α = 0) and to DPO's optimum
(:func:`bandit_lab.onpolicy.stationary.references`). The page's β, α and, where given, the group
size ``G`` and the KL placement override a preset's (a preset fixes the algorithm, the page moves
the numbers); an option typed in brackets (``grpo[group_size=4]``) beats the page's. β, α, π*, π_ref are arguments of the compiled programs; a new ``G`` or placement is a
new program (compiled once, then cached).
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np

from bandit_lab.errors import BanditError

MAX_K = 16  # the page draws a simplex (K = 3) or bars; a live request is a small problem
SIMPLEX_TOL = 1e-9
_COMPILED: set = set()  # on-policy objectives whose stationary programs are all compiled
_lock = threading.Lock()  # one solve at a time: JAX is thread-safe, but the 2-core machine is not bigger for it


def _number(q: dict, key: str, default: float | None = None, *, positive: bool = False, nonneg: bool = False) -> float:
    v = q.get(key, default)
    if v is None:
        raise BanditError(f"{key}: missing")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise BanditError(f"{key}: expected a number, got {v!r}") from None
    if not math.isfinite(x):
        raise BanditError(f"{key}: must be finite, got {v!r}")
    if positive and not x > 0:
        raise BanditError(f"{key}: must be > 0, got {v!r}")
    if nonneg and not x >= 0:
        raise BanditError(f"{key}: must be ≥ 0, got {v!r}")
    return x


def _point(q: dict, key: str) -> list[float]:
    v = q.get(key)
    if isinstance(v, str):
        v = [s for s in v.split(",") if s.strip()]
    if not isinstance(v, (list, tuple)) or not 3 <= len(v) <= MAX_K:
        raise BanditError(f"{key}: expected 3 to {MAX_K} probabilities, got {v!r}")
    p = [_number({key: x}, key) for x in v]
    if min(p) <= 0:
        raise BanditError(f"{key}: every probability must be > 0 (an interior point of the simplex), got {p}")
    if abs(sum(p) - 1) > 1e-6:
        raise BanditError(f"{key}: probabilities must sum to 1 (a point of the simplex), got sum {sum(p):.6g}")
    return [x / sum(p) for x in p]


def onpolicy_names() -> list[str]:
    """The registry's on-policy algorithms (``LossSpec.kind == "onpolicy"``)."""
    from bandit_lab import losses

    return sorted(n for n, spec in losses.registry().items() if spec.kind == "onpolicy")


def presets() -> dict:
    """The library presets (:data:`bandit_lab.explain.PRESETS`, read at request time: presets
    registered later appear) as ``{name: {"loss": …, "loss_params": …}}`` through their readers."""
    from bandit_lab.explain import PRESETS, READERS

    from bandit_lab import losses

    out = {}
    for name, (reader, cfg) in PRESETS.items():
        try:
            loss, lp = READERS[reader](dict(cfg))
            if losses.get(loss).kind != "onpolicy":  # the page answers presets by a stationary point
                continue
        except BanditError:  # a preset its reader refuses is left off the page, not a failed page
            continue
        out[name] = {"reader": reader, "loss": loss, "loss_params": lp}
    return out


_INTS = ("group_size", "epochs", "std_ddof")


def _onpolicy_entry(entry: str) -> tuple[str, str, dict]:
    """``"grpo[group_size=4]"`` or a preset name → (shown name, loss, loss_params)."""
    from bandit_lab.explore.build import parse_objective

    table = presets()
    if entry in table:
        return entry, table[entry]["loss"], dict(table[entry]["loss_params"])
    name, params = parse_objective(entry)
    if name not in onpolicy_names():
        raise BanditError(f"onpolicy: {entry!r} is neither an on-policy algorithm ({', '.join(onpolicy_names())}) "
                          f"nor a preset ({', '.join(table)})")
    for k, v in list(params.items()):
        if k in _INTS and isinstance(v, float) and v == int(v):
            params[k] = int(v)
        elif v in ("true", "false"):
            params[k] = v == "true"
    return entry, name, params


def parse(q: dict) -> dict:
    """Validate a request (a dict of strings or JSON values) into the problem it names."""
    from bandit_lab.explore.build import OBJECTIVES, parse_objective, split_losses

    pi_star, pi_ref = _point(q, "pi_star"), _point(q, "pi_ref")
    if len(pi_star) != len(pi_ref):
        raise BanditError(f"pi_star has {len(pi_star)} responses, pi_ref {len(pi_ref)}")
    losses = q.get("losses", ",".join(OBJECTIVES))
    losses = split_losses(losses) if isinstance(losses, str) else tuple(losses)
    onp = q.get("onpolicy", "")
    onp = split_losses(onp) if isinstance(onp, str) else tuple(onp)
    # an on-policy algorithm typed among the losses is answered as one (its stationary point and verdict)
    onp = onp + tuple(e for e in losses if parse_objective(e)[0] in onpolicy_names())
    losses = tuple(e for e in losses if parse_objective(e)[0] not in onpolicy_names())
    if not losses and not onp:
        raise BanditError("losses: give at least one objective")
    G = str(q.get("G", "") or "").strip()
    if G:
        g = _number({"G": G}, "G")
        if g != int(g) or not 2 <= g <= 64:
            raise BanditError(f"G: the group size (num_generations) is a whole number from 2 to 64, got {G!r}")
        G = int(g)
    place = str(q.get("kl_placement", "") or "").strip()
    if place not in ("", "loss", "reward"):
        raise BanditError(f"kl_placement: loss, reward or empty (each algorithm's own), got {place!r}")
    steps = _number(q, "steps", 3000, positive=True)
    if steps != int(steps) or steps > 10**6:
        raise BanditError(f"steps: a whole number from 1 to 1000000 on the live page, got {q.get('steps')!r}")
    return {"pi_star": pi_star, "pi_ref": pi_ref, "alpha": _number(q, "alpha", 0.0, nonneg=True),
            "beta": _number(q, "beta", 1.0, positive=True), "lr": _number(q, "lr", 0.05, positive=True),
            "steps": int(steps), "entries": [parse_objective(e) for e in losses],
            "onpolicy": [_onpolicy_entry(e) for e in onp], "G": G or None, "kl_placement": place or None}


def _verdict(r, flag: bool | None = None, why: str = "") -> dict:
    """What the solver says about an exact answer: its ``verdict`` if it attaches one (``Verdict``:
    kind and one-line certificate); otherwise its own flag, as ``bandit-lab solve --json`` reports
    it (``exact_converged``) — never called certified: without a verdict the line says so."""
    v = getattr(r, "verdict", None)
    if v is not None:
        try:
            d = v.as_json()
            d["line"] = v.line()
            return d
        except Exception:  # noqa: BLE001 - a verdict we cannot print is reported as absent
            pass
    ok = bool(r.converged if flag is None else flag)
    if not ok:
        return {"kind": "not certified", "exact_converged": False,
                "line": f"not certified: {why or 'no exact method reached a stationary point'} (gradient norm {r.residual:.2g})"}
    return {"kind": "no certificate", "exact_converged": True,
            "line": f"no certificate attached: a stationary point, gradient norm {r.residual:.2g}"}


def _exact_converged(problem, o, hp: dict, r) -> tuple[bool, str]:
    """``bandit-lab solve``'s ``exact_converged`` for this answer (spec.solve: the solver's flag,
    withdrawn where the loss's own closed form says it has no finite minimiser)."""
    from bandit_lab.solvers.oracles import loss_oracle

    if not r.converged:
        return False, "no exact method reached a stationary point"
    if hp.get("weight_decay", 0.0) == 0:
        oracle, note = loss_oracle(problem, o.loss.name, hp, o.static, population_data=True)
        if oracle is None and "no finite minimiser" in (note or ""):
            return False, "the loss has no finite minimiser, this is a point on the runaway"
    return True, ""


def _certificates():
    """The solver's certificate module (issue 20: ``verdict_of``, ``onpolicy_verdict``) where this
    version of bandit-lab has one, else ``None`` (the page then shows the solver's flag)."""
    import importlib
    import importlib.util

    for name in ("bandit_lab.certificates", "bandit_lab.solvers.certificates"):
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _certified(v, converged: bool, policy) -> tuple[dict, list]:
    """A ``Verdict`` → (its JSON with ``line`` and solve's ``exact_converged``, the policy
    ``bandit-lab solve`` shows for it: the limit of a runaway, the set's shown member, else the
    solver's point) — the same rules as ``spec.solve``."""
    from bandit_lab.verdict import Kind

    d = v.as_json()
    d["line"] = v.line()
    runaway = v.limit is not None
    d["exact_converged"] = bool(v.has_minimiser or (v.kind is Kind.STATIONARY and converged and not runaway
                                                     and v.certificate.get("stability") != "runaway"))
    shown = np.asarray(v.limit) if runaway else np.asarray(policy)
    if v.kind is Kind.SET and v.certificate.get("shown_policy") is not None:
        shown = np.asarray(v.certificate["shown_policy"])
    return d, shown.reshape(-1).tolist()


def _loss_verdict(problem, o, hp: dict, r) -> tuple[dict, list]:
    """An offline objective's exact answer: the solver's verdict (``certificates.verdict_of``, with
    the closed form's note where unconstrained, as ``spec.solve`` does) where there is one; else
    the solver's flag (:func:`_verdict`)."""
    cert = _certificates()
    if cert is None:
        return _verdict(r, *_exact_converged(problem, o, hp, r)), np.asarray(r.policy).reshape(-1).tolist()
    import dataclasses

    from bandit_lab.solvers.oracles import loss_oracle

    obj = dataclasses.replace(o, hp={k: v for k, v in hp.items() if k != "lr"})  # the objective solve builds
    note = None
    if obj.hp.get("weight_decay", 0.0) == 0 and obj.param.name in ("softmax", "simplex"):
        note = loss_oracle(problem, obj.loss.name, obj.hp, obj.static, population_data=True)[1]
    return _certified(cert.verdict_of(obj, r, note=note), r.converged, r.policy)


def _stationary_verdict(st) -> dict:
    """An on-policy answer: the stationary solver's classification (a root of a field that is not a
    gradient: attracting / not attracting / runaway / not converged) with its note and ‖F‖."""
    cert = _certificates()
    if cert is not None:
        return _certified(cert.onpolicy_verdict(st.status, st.note, st.result.residual, st.result.converged, st.certificate),
                          st.result.converged, st.result.policy)[0] | {"status": st.status}
    return {"kind": "stationary point", "status": st.status, "exact_converged": bool(st.result.converged),
            "line": f"stationary point ({st.status}, ‖expected update‖ {st.result.residual:.1e}): {st.note}"}


def _onpolicy_objectives(problem, data, p: dict) -> list[tuple[str, object]]:
    """(shown name, objective) per on-policy entry, with the page's β, α and the optional G and KL
    placement in the objective itself (as ``bandit-lab solve`` builds it from the printed spec)."""
    from bandit_lab import losses
    from bandit_lab.core.objective import make_objective

    out = []
    for shown, loss, lp in p["onpolicy"]:
        spec = losses.get(loss)
        params = dict(spec.translate(lp)) if spec.translate is not None else dict(lp)  # library names → bandit-lab's
        params["beta"] = p["beta"]
        own = set() if shown in presets() else set(lp)  # NAME[key=value]: the typed option beats the page's
        if p["G"] is not None and "group_size" in spec.static and "group_size" not in own:
            params["group_size"] = p["G"]
        if p["kl_placement"] is not None and "kl_placement" in spec.static and "kl_placement" not in own:
            params["kl_placement"] = p["kl_placement"]
        try:
            o = make_objective(problem, loss, params, weight_decay=p["alpha"], data=data)
        except BanditError as e:
            raise BanditError(f"onpolicy: {shown}: {e}") from None
        out.append((shown, o))
    return out


def answer(q: dict) -> dict:
    """Solve one request; JSON-ready. Raises :class:`BanditError` on bad input."""
    from bandit_lab.infra import budget
    from bandit_lab.core import metrics
    from bandit_lab.explore.build import Settings, _objectives, _problem
    from bandit_lab.onpolicy import stationary
    from bandit_lab.runner import solve_batch, train_batch
    from bandit_lab.core.train import TrainConfig

    p = parse(q)
    spec = {"pi_ref": p["pi_ref"], "preference": {"pi_star": p["pi_star"]}, "pairs": "uniform"}
    with _lock:
        t0 = time.perf_counter()
        problem, data, _pop, penalty, *_ = _problem(spec, Settings())
        objs, pairs = _objectives(problem, data, penalty, p["entries"]) if p["entries"] else ([], [])
        onp = _onpolicy_objectives(problem, data, p)
        K = problem.n_responses
        runs = len(objs) + 2 * len(onp)  # an on-policy answer also trains its warm start
        budget.check(budget.training(steps=max(p["steps"], stationary.WARM_STEPS), responses=K, runs=runs, params=K)
                     | budget.newton(params=K, responses=K, points=runs, stacked=max(len(objs), 1)), "this live request")
        hps = [[{**o.hp, "beta": p["beta"], "weight_decay": p["alpha"], "lr": p["lr"]}] for o in objs]
        config = TrainConfig(optimizer="adam", steps=p["steps"], schedule="cosine", log_steps=(0, p["steps"]))
        t1 = time.perf_counter()
        exact = solve_batch(objs, hps) if objs else []
        t_solve = time.perf_counter()
        verdicts = [_loss_verdict(problem, o, h[0], ex[0]) for o, h, ex in zip(objs, hps, exact)]
        t_cert = time.perf_counter()
        for _, o in onp:
            if (o.signature(), tuple(sorted(o.hp))) not in _COMPILED:  # every program its solve may need, once
                stationary.precompile(o)
                _COMPILED.add((o.signature(), tuple(sorted(o.hp))))
        stat = [stationary.solve_batch(o, [dict(o.hp)])[0] for _, o in onp]
        refs = stationary.references(onp[0][1]) if onp else {}
        t2 = time.perf_counter()
        trajs = train_batch(objs, config, hps) if objs else []
        trajs += [train_batch([o], config, [[{**o.hp, "lr": p["lr"]}]])[0] for _, o in onp]
        t3 = time.perf_counter()
    rows = []
    for o, ex, (v, shown_policy), tr in zip(objs, exact, verdicts, trajs):
        r = ex[0]
        rows.append({"label": o.label, "name": o.label, "kind": "loss", "exact": shown_policy,
                     "residual": float(r.residual), "verdict": v, "trained": np.asarray(tr.policies)[0, -1].reshape(-1).tolist()})
    w = problem.context_weight
    for (shown, o), st, tr in zip(onp, stat, trajs[len(objs):]):
        pol = np.asarray(st.result.policy)
        rows.append({"label": o.label, "name": shown, "kind": "onpolicy", "exact": pol.reshape(-1).tolist(),
                     "residual": float(st.result.residual), "verdict": _stationary_verdict(st),
                     "status": st.status, "tv_reference": {k: float(metrics.tv(pol, v, w)) for k, v in refs.items()},
                     "G": o.static.get("group_size"), "kl": f"{o.static.get('kl_estimator')} in the {o.static.get('kl_placement')}",
                     "trained": np.asarray(tr.policies)[0, -1].reshape(-1).tolist()})
    return {"request": {k: v for k, v in p.items() if k not in ("entries", "onpolicy")} | {"onpolicy": [e[0] for e in p["onpolicy"]]},
            "losses": [o.label for o in objs], "pairs": [list(x) for x in pairs], "objectives": rows,
            "references": {k: np.asarray(v).reshape(-1).tolist() for k, v in refs.items()},
            "seconds": {"setup": t1 - t0, "exact": t2 - t1, "train": t3 - t2, "total": t3 - t0,
                        # parts of "exact": the offline solve, its verdicts, the on-policy stationary points
                        "solve": t_solve - t1, "certify": t_cert - t_solve, "onpolicy": t2 - t_cert},
            "command": solve_command(p, objs) + solve_command(p, [o for _, o in onp])}


def solve_command(p: dict, objs) -> list[str]:
    """The equivalent ``bandit-lab solve`` spec per objective (one command each)."""
    import json

    out = []
    for o in objs:
        spec = {"pi_ref": p["pi_ref"], "preference": {"pi_star": p["pi_star"]}, "pairs": "uniform", "loss": o.loss.name,
                "loss_params": {**{k: v for k, v in o.hp.items() if k not in ("beta", "weight_decay", "lr")}, **o.static, "beta": p["beta"]},
                "penalty": o.penalty, "weight_decay": p["alpha"],
                "optimizer": {"name": "adam", "lr": p["lr"], "steps": p["steps"], "schedule": "cosine"}}
        out.append(f"bandit-lab solve --json <(echo '{json.dumps(spec)}')")
    return out
