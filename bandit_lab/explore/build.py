"""The explorer's data: every number the page shows, computed on one grid by the library.

Grid: weight decay α ∈ {0} ∪ a log grid, KL strength β, and step budgets (log-spaced steps of
one T-step run, step 0 = π_ref). Objectives: each entry of :data:`OBJECTIVES` (or the user's
``--losses``) and its RLHF counterpart (:meth:`bandit_lab.core.objective.Objective.counterpart`,
Kong et al. §3, Eq. 10–12: DPO ↔ reverse-KL RLHF with ``r = log π*``, f-DPO ↔ f-RLHF (Wang et
al. 2024 Thm 1), IPO ↔ RLHF with ``r_IPO`` (Azar et al. 2024)).

- trained: :func:`bandit_lab.runner.train_and_solve` — all objectives × all (β, α) points in one
  ``jit(vmap(scan))`` (the objectives stacked), π logged at the step budgets, so early stopping
  reads its policies off the very same runs; and the batched float64 exact solver (one Newton
  program) for the constrained optima of the same objectives at the same points;
- unconstrained closed forms: :func:`bandit_lab.solvers.oracles.loss_oracle` (one per β);
- distances (TV, KL(loss‖counterpart), distance to the closed form): :mod:`bandit_lab.core.metrics`.

The page interpolates nothing: it looks these arrays up at the slider's grid indices.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from bandit_lab.infra import budget
from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.experiments import meta
from bandit_lab.core.train import OPTIMIZERS, SCHEDULES

SCHEMA = "bandit-lab-explore/1"
# The objectives the page shows, by registered loss name with static options in brackets; each
# comes with its RLHF counterpart. This is the one list to extend (e.g. with on-policy losses
# registered in bandit_lab/losses/): a name here, or `--losses` on the command line.
OBJECTIVES = ("dpo", "fdpo[divergence=forward_kl]", "ipo")
KONG_APP_B = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform"}


@dataclasses.dataclass(frozen=True)
class Settings:
    losses: tuple = dataclasses.field(default=OBJECTIVES, metadata=meta("objectives (comma list; NAME[key=value] for static options); each comes with its RLHF counterpart"))
    n_alpha: int = dataclasses.field(default=21, metadata=meta("log-spaced positive weight decays α (α = 0 is always on the grid)"))
    alpha_min: float = dataclasses.field(default=1e-3, metadata=meta("smallest positive α"))
    alpha_max: float = dataclasses.field(default=10.0, metadata=meta("largest α"))
    betas: tuple = dataclasses.field(default=(0.25, 0.5, 1.0, 2.0, 4.0), metadata=meta("KL strengths β (comma list)"))
    steps: int = dataclasses.field(default=3000, metadata=meta("optimizer steps T of every run (the largest step budget)"))
    n_budget: int = dataclasses.field(default=24, metadata=meta("log-spaced step budgets in [1, T] (step 0 = π_ref is added)"))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate"))
    optimizer: str = dataclasses.field(default="adam", metadata=meta("adam | sgd"))
    # cosine, lr 0.05, 3000 steps = `bandit-lab solve`'s defaults: the page's policy at the full budget is solve's trained policy
    schedule: str = dataclasses.field(default="cosine", metadata=meta("cosine (default, as solve and weight-decay) | exponential (as early-stopping) | constant"))
    penalty: str = dataclasses.field(default="params", metadata=meta("params: α‖θ‖² (default) | policy: α‖π‖²"))

    def validate(self) -> "Settings":
        if not self.losses:
            raise BanditError("losses: give at least one objective")
        from bandit_lab import losses

        for entry in self.losses:
            losses.split_params(losses.get(parse_objective(entry)[0]), {k: v for k, v in parse_objective(entry)[1].items() if k != "beta"})
        if self.n_alpha < 1:
            raise BanditError(f"n_alpha must be ≥ 1; got {self.n_alpha}")
        if not (np.isfinite(self.alpha_min) and np.isfinite(self.alpha_max) and 0 < self.alpha_min <= self.alpha_max):
            raise BanditError(f"the α grid needs 0 < alpha_min ≤ alpha_max; got {self.alpha_min}, {self.alpha_max}")
        if self.n_alpha > 1 and self.alpha_min == self.alpha_max:
            raise BanditError("alpha_min = alpha_max allows one positive α only: pass --n-alpha 1")
        if not self.betas or any(not (np.isfinite(b) and b > 0) for b in self.betas):
            raise BanditError(f"betas must be > 0; got {self.betas}")
        if self.steps < 1:
            raise BanditError(f"steps must be ≥ 1; got {self.steps}")
        if self.n_budget < 1:
            raise BanditError(f"n_budget must be ≥ 1; got {self.n_budget}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise BanditError(f"lr must be > 0; got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise BanditError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise BanditError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.penalty not in ("params", "policy"):
            raise BanditError(f"penalty must be params or policy; got {self.penalty!r}")
        return self

    def alphas(self, extra=()) -> list[float]:
        pos = np.geomspace(self.alpha_min, self.alpha_max, self.n_alpha) if self.n_alpha > 1 else np.array([self.alpha_min])
        return sorted({0.0, *(float(a) for a in pos), *(float(a) for a in extra)})

    def budgets(self) -> list[int]:
        s = np.unique(np.round(np.geomspace(1, self.steps, self.n_budget)).astype(int)) if self.n_budget > 1 else np.array([self.steps])
        return [0] + sorted({int(v) for v in s} | {int(self.steps)})


_ENTRY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(.*)\])?$")


def parse_objective(entry: str) -> tuple[str, dict]:
    """``"fdpo[divergence=js,f_alpha=0.3]"`` → ``("fdpo", {"divergence": "js", "f_alpha": 0.3})``."""
    m = _ENTRY.match(str(entry).strip())
    if not m:
        raise BanditError(f"losses: cannot read {entry!r}; write NAME or NAME[key=value,...]")
    params: dict = {}
    for part in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise BanditError(f"losses: {entry!r}: options are key=value")
        try:
            params[k.strip()] = float(v)
        except ValueError:
            params[k.strip()] = v.strip()
    return m.group(1), params


def split_losses(text: str) -> tuple[str, ...]:
    """Split a comma list of objectives at the commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur.strip())
    return tuple(out)


def command(settings: Settings, spec_path: str | None, out: str | None) -> str:
    """The command that regenerates a page: the options that differ from the defaults, quoted
    for a POSIX shell (``fdpo[divergence=js]`` has glob characters); no ``out`` = ``--serve``."""
    import shlex

    fmt = lambda x: format(x, "g") if isinstance(x, float) else str(x)  # noqa: E731
    parts = ["bandit-lab explore"] + ([shlex.quote(spec_path)] if spec_path else [])
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if v != f.default:
            val = ",".join(fmt(x) for x in v) if isinstance(v, tuple) else fmt(v)
            parts.append(f"--{f.name.replace('_', '-')} {shlex.quote(val)}")
    parts.append(f"--out {shlex.quote(out)}" if out else "--serve")
    return " ".join(parts)


def response_labels(K: int) -> list[str]:
    """``y_a, y_b, …`` (the static simplex figure's names), ``y_0, …`` beyond 26 responses."""
    return [f"y_{chr(97 + i)}" for i in range(K)] if K <= 26 else [f"y_{i}" for i in range(K)]


def _problem(spec: dict | None, settings: Settings):
    """(problem, data, population?, penalty, extra objective, spec's β, spec's α, notes)."""
    from bandit_lab import spec as spec_mod
    from bandit_lab.core.data import make_data
    from bandit_lab.core.problems import Problem

    if spec is None:
        problem = Problem.create(KONG_APP_B["pi_ref"], pi_star=KONG_APP_B["preference"]["pi_star"], pairs="uniform")
        return problem, make_data(problem), True, settings.penalty, None, None, None, []
    obj, *_, pop = spec_mod.build(spec)
    problem = obj.problem
    if problem.n_responses < 3:
        raise BanditError(f"explore needs at least 3 responses (a simplex to draw); the spec has K = {problem.n_responses}")
    if problem.n_contexts != 1:
        raise BanditError(f"explore shows one context; the spec has {problem.n_contexts} (give a single-context pi_ref)")
    if obj.param.name != "softmax":
        raise BanditError(f"explore trains softmax logits from π_ref; the spec's parameterization is {obj.param.name!r}")
    if spec.get("init", "reference") != "reference":
        raise BanditError("explore starts every trajectory at π_ref: the spec's init must be 'reference' (or absent)")
    notes = []  # what the explorer does with spec keys that its grid or options replace: said, not dropped silently
    if "optimizer" in spec:
        notes.append("the spec's optimizer block is not used: training follows the explorer's --optimizer/--lr/--steps/--schedule")
    if "weight_decay" in spec:
        notes.append(f"the spec's weight_decay α = {float(spec['weight_decay']):g} is on the α grid and is the initial slider position")
    if "beta" in (spec.get("loss_params") or {}):
        notes.append(f"the spec's β = {float(spec['loss_params']['beta']):g} is on the β grid and is the initial slider position")
    penalty = spec.get("penalty", settings.penalty)
    lp = spec.get("loss_params") or {}
    beta = float(lp["beta"]) if "beta" in lp else None
    extra = (obj.loss.name, dict(obj.static)) if "loss" in spec else None
    alpha = float(spec["weight_decay"]) if "weight_decay" in spec else None
    return problem, obj.data, pop, penalty, extra, beta, alpha, notes


def _objectives(problem, data, penalty: str, entries: list[tuple[str, dict]]) -> tuple[list, list[tuple[int, int | None]]]:
    """Objectives (each entry, then its counterpart), deduplicated by label; pairs of indices."""
    from bandit_lab.core.objective import make_objective

    objs, pairs, index = [], [], {}

    def add(o) -> int:
        if o.label not in index:
            index[o.label] = len(objs)
            objs.append(o)
        return index[o.label]

    for name, params in entries:
        o = make_objective(problem, name, {k: v for k, v in params.items() if k != "beta"}, penalty=penalty, data=data)
        if o.param.constraint != "free":  # pragma: no cover - every registered loss uses the given softmax
            raise BanditError(f"objective {o.label} is not on free logits")
        i = add(o)
        c = o.counterpart()
        pair = (i, None if c is None else add(c))
        if pair not in pairs:
            pairs.append(pair)
    return objs, pairs


def cost(settings: Settings, responses: int, objectives: int) -> budget.Cost:
    """The page's estimated memory and work (:mod:`bandit_lab.infra.budget`): one ``jit(vmap(scan))`` of
    ``objectives × β × α`` Adam runs of ``steps`` steps (π logged at the step budgets), then the
    exact solve of every run's problem; counted from the settings alone (``steps = 1e12`` or
    ``n_alpha = 1e9`` is refused before any array exists)."""
    K = int(responses)
    points = (int(settings.n_alpha) + 2) * len(settings.betas) + 1  # α = 0 and a spec's α/β may join the grid
    runs = int(objectives) * points
    train = budget.training(steps=settings.steps, responses=K, runs=runs, params=K, logged=int(settings.n_budget) + 1)
    exact = budget.newton(params=K, responses=K, points=runs, stacked=int(objectives))
    return budget.problem(1, K) + (train | exact)


def build(settings: Settings, spec: dict | None = None, spec_path: str | None = None, out: str = "explore.html") -> dict:
    """Compute the page's data (JSON-ready). ``spec`` (a loaded spec) replaces Kong App. B."""
    from bandit_lab.experiments.simplex_view import STYLE
    from bandit_lab.solvers.oracles import loss_oracle
    from bandit_lab.runner import jsonable, train_and_solve
    from bandit_lab.core.train import TrainConfig

    settings.validate()
    problem, data, pop, penalty, extra, spec_beta, spec_alpha, notes = _problem(spec, settings)
    entries = [parse_objective(e) for e in settings.losses]
    if extra is not None and extra not in entries:
        entries.append(extra)
    objs, pairs = _objectives(problem, data, penalty, entries)
    budget.check(cost(settings, problem.n_responses, len(objs)), "this explorer page")  # before any grid is allocated
    alphas = settings.alphas(() if spec_alpha is None else (spec_alpha,))
    betas = sorted({float(b) for b in settings.betas} | ({spec_beta} if spec_beta is not None else set()))
    budgets = settings.budgets()
    nA, nB, nL, K = len(alphas), len(betas), len(budgets), problem.n_responses
    w = problem.context_weight

    config = TrainConfig(optimizer=settings.optimizer, steps=settings.steps, schedule=settings.schedule, log_steps=tuple(budgets))
    grid = [(b, a) for b in betas for a in alphas]  # point j = ib·nA + ia
    hps = [[{**o.hp, "beta": b, "weight_decay": a, "lr": settings.lr} for b, a in grid] for o in objs]
    trajs, exact = train_and_solve(objs, config, hps)

    trained = [np.asarray(t.policies) for t in trajs]  # [P, L, X, K]
    ex = [np.stack([np.asarray(r.policy) for r in rows]) for rows in exact]  # [P, X, K]
    resid = [np.array([r.residual for r in rows]) for rows in exact]
    closed, closed_note = [], []
    for o in objs:
        per, note = [], ""
        for b in betas:
            p, note = loss_oracle(problem, o.loss.name, {**o.hp, "beta": b}, o.static, population_data=pop)
            per.append(None if p is None else np.asarray(p))
        closed.append(per)
        closed_note.append(note)

    def grid_of(a, tail):  # [P, ...] → [nB, nA, ...]
        return np.asarray(a).reshape((nB, nA) + tail)

    def single(p):  # drop the single context axis
        return np.asarray(p)[..., 0, :]

    objectives_out = []
    for i, o in enumerate(objs):
        color, name = STYLE.get(o.label, (None, o.label))
        role = "counterpart" if any(c == i for _, c in pairs) and not any(lo == i for lo, _ in pairs) else "loss"
        gap = metrics.tv(trained[i], ex[i][:, None], w)  # [P, L]
        objectives_out.append({
            "label": o.label, "name": name, "role": role, "color": _hex(color, i),
            "loss": o.loss.name, "static": o.static, "citation": o.loss.citation, "summary": o.loss.summary,
            "closed_form": [None if p is None else single(p) for p in closed[i]], "closed_form_note": closed_note[i],
            "exact": grid_of(single(ex[i]), (K,)), "exact_residual": grid_of(resid[i], ()),
            "exact_converged": grid_of(np.array([r.converged for r in exact[i]]), ()),
            "trained": grid_of(single(trained[i]), (nL, K)),
            "tv_trained_exact": grid_of(gap, (nL,)),
        })

    pairs_out = []
    for li, ci in pairs:
        rec = {"loss": li, "counterpart": ci, "title": objs[li].label + ("" if ci is None else " vs " + objs[ci].label)}
        if ci is not None:
            p, q = ex[li], ex[ci]
            rec["tv_exact"] = grid_of(metrics.tv(p, q, w), ())
            rec["kl_exact"] = grid_of(metrics.kl(p, q, w), ())
            rec["tv_trained"] = grid_of(metrics.tv(trained[li], trained[ci], w), (nL,))
            rec["kl_trained"] = grid_of(metrics.kl(trained[li], trained[ci], w), (nL,))
        for key, k in (("loss", li), ("counterpart", ci)):
            if k is None:
                continue
            rec[f"tv_{key}_closed"] = [None if closed[k][ib] is None else
                                       [float(metrics.tv(ex[k][ib * nA + ia], closed[k][ib], w)) for ia in range(nA)] for ib in range(nB)]
        pairs_out.append(rec)

    pts = [np.asarray(problem.pi_ref[0]), *([] if problem.pi_star is None else [np.asarray(problem.pi_star[0])])]
    zoom = []
    for ib in range(nB):
        rows = slice(ib * nA, (ib + 1) * nA)
        cloud = [np.reshape(a[rows], (-1, K)) for a in trained + ex] + [np.reshape(c[ib], (-1, K)) for c in closed if c[ib] is not None]
        zoom.append(_zoom(np.vstack(cloud + [p[None] for p in pts])))

    initial_alpha = int(np.argmin(np.abs(np.asarray(alphas) - (0.1 if spec_alpha is None else spec_alpha))))
    b0 = 1.0 if spec_beta is None else float(spec_beta)
    initial_beta = int(np.argmin(np.abs(np.log(np.asarray(betas)) - np.log(b0))))
    import jax

    out_data = {
        "schema": SCHEMA,
        "title": "Kong et al. App. B bandit" if spec is None else (spec.get("name") or (spec_path or "spec")),
        "spec": KONG_APP_B if spec is None else spec,
        "spec_path": spec_path,
        "notes": notes,
        "problem": {
            "n_responses": K, "labels": response_labels(K), "pi_ref": problem.pi_ref[0],
            "pi_star": None if problem.pi_star is None else problem.pi_star[0],
            "reward": None if problem.reward is None else problem.reward[0],
            "pairs": problem.pair_kind, "data": "population" if pop else "sampled",
        },
        "view": "ternary" if K == 3 else "bars",
        "ternary_axes": {"a": 2, "b": 0, "c": 1},  # plotly's a (top) = π(y_c), b (left) = π(y_a), c (right) = π(y_b)
        "grid": {"alpha": alphas, "beta": betas, "steps": budgets},
        "initial": {"alpha": initial_alpha, "beta": initial_beta, "steps": nL - 1},
        "training": {"optimizer": settings.optimizer, "lr": settings.lr, "steps": settings.steps, "schedule": settings.schedule,
                     "penalty": penalty, "init": "reference (θ = log π_ref)", "dtype": str(jax.numpy.zeros(()).dtype)},
        "objectives": objectives_out,
        "pairs": pairs_out,
        "zoom": zoom,
        "summary": {
            "max_tv_trained_exact_at_T": {o["label"]: float(np.max(np.asarray(o["tv_trained_exact"])[..., -1])) for o in objectives_out},
            "max_exact_residual": float(max(np.max(r) for r in resid)),
            "points": nA * nB, "objectives": len(objs),
        },
        "command": command(settings, spec_path, out),
    }
    return jsonable(out_data)


def _zoom(points: np.ndarray, margin: float = 0.04) -> dict:
    """Ternary axis minima framing ``points`` (a layout choice, not a shown number)."""
    lo = np.clip(points[:, :3].min(0) - margin, 0.0, None) if points.shape[1] == 3 else np.zeros(3)
    if lo.sum() > 0.85:  # keep a visible window
        lo = lo * 0.85 / lo.sum()
    return {"a": float(lo[2]), "b": float(lo[0]), "c": float(lo[1])}


def _hex(color: str | None, i: int) -> str:
    """The static figure's colour (matplotlib's ``"C3"``) as hex; objectives it has no style for
    continue the same cycle after its six."""
    from matplotlib.colors import to_hex

    return to_hex(color if color else f"C{(i + 6) % 10}")
