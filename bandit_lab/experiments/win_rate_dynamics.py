"""True win rate against π_ref over training, finite data, DPO vs SPO (the shape of SPO Fig. 1).

A random bandit (``problem_seed``): π_ref ~ Dirichlet, BT reward r ~ N(0, reward_scale²), pairs
shown from π_ref ⊗ π_ref (as if sampled from the reference model; ties dropped). Each training
seed draws its own finite dataset of ``n_pairs`` labelled pairs *inside* the compiled function
(``TrainConfig(resample_pairs=n)``); the seeds are a vmapped hyperparameter axis, and DPO and SPO
(L_pref^{α,μ} + β·KL over all responses) train on the *same* dataset for each seed, as one
:class:`~bandit_lab.core.objective.Stack` — one compiled ``jit(vmap(scan))`` for everything.

The true win rate of π against π_ref is ``W(π) = Σ_{y,y'} π(y) π_ref(y') p(y ≻ y')``
(ties count ½, so W(π_ref) = ½). Per seed: peak height ``max_t W``, the step of the peak, the
*width* = number of training steps during which W stays above the half-height level
``½ + (peak − ½)/2``, and the long-run level W at the last step. The figure shows the median
and the 10–90 % band over seeds.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.experiments import Experiment, meta, pyplot, save_figure
from bandit_lab.losses.spo import WEIGHTS
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.core.random_problems import dirichlet
from bandit_lab.runner import exact_batch, train_batch
from bandit_lab.core.train import TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    n_responses: int = dataclasses.field(default=12, metadata=meta("K responses", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    problem_seed: int = dataclasses.field(default=0, metadata=meta("seed of the bandit (π_ref, reward)", bounds.SEED))
    reward_scale: float = dataclasses.field(default=1.0, metadata=meta("std of the BT reward", bounds.POSITIVE))
    n_pairs: int = dataclasses.field(default=20, metadata=meta("labelled pairs per dataset (one dataset per seed)", bounds.COUNT))
    seeds: int = dataclasses.field(default=32, metadata=meta("number of training seeds (datasets)", bounds.Int(ge=1, le=bounds.SEED_MAX + 1)))
    dpo_beta: float = dataclasses.field(default=0.1, metadata=meta("β of DPO", bounds.BETA))
    spo_alpha: float = dataclasses.field(default=0.5, metadata=meta("α of SPO", bounds.NONNEGATIVE))
    spo_beta: float = dataclasses.field(default=0.1, metadata=meta("β of SPO's KL(π‖π_ref) over all responses", bounds.BETA))
    spo_weight: str = dataclasses.field(default="uniform", metadata=meta("SPO weighting μ", choices=WEIGHTS))
    spo_gamma: float = dataclasses.field(default=0.5, metadata=meta("γ of the power / SoftImportance weighting", bounds.SCALAR))
    steps: int = dataclasses.field(default=3000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.01, metadata=meta("constant learning rate", bounds.LR))
    n_log: int = dataclasses.field(default=151, metadata=meta("evenly spaced logged steps", bounds.Int(ge=2, le=bounds.INT64_MAX)))

    def saves(self) -> bool:
        return True

    def cost(self) -> budget.Cost:
        K, runs = self.n_responses, 2 * self.seeds
        logged = min(self.n_log, self.steps + 1)
        c = budget.problem(1, K) + budget.array(self.n_log, "the logged steps")
        train = budget.training(steps=self.steps, responses=K, runs=runs, logged=logged, sampled_pairs=self.n_pairs)
        return c + (train | budget.newton(params=K, responses=K, points=2))


def win_rate(pi: np.ndarray, pb: Problem) -> np.ndarray:
    """``Σ_x ρ(x) Σ π(y) π_ref(y') p(y ≻ y')`` for policies ``[..., X, K]``."""
    return np.einsum("...xi,xj,xij,x->...", pi, pb.pi_ref, pb.pref, pb.context_weight)


def shape_stats(steps: np.ndarray, w: np.ndarray) -> dict:
    """Peak height, peak step, width above half height (in steps), long-run level of one curve."""
    k = int(np.argmax(w))
    peak = float(w[k])
    level = 0.5 + 0.5 * (peak - 0.5)
    above = w >= level
    # contiguous run containing the peak
    lo, hi = k, k
    while lo > 0 and above[lo - 1]:
        lo -= 1
    while hi < len(w) - 1 and above[hi + 1]:
        hi += 1
    return {"peak": peak, "peak_step": int(steps[k]), "width": int(steps[hi] - steps[lo]), "final": float(w[-1])}


def make_problem(s: Settings) -> Problem:
    rng = np.random.default_rng(s.problem_seed)
    ref = dirichlet(rng, (s.n_responses,), floor=0.01)
    r = rng.normal(0.0, s.reward_scale, s.n_responses)
    return Problem.create(ref, reward=r, pairs="reference")


def run(s: Settings) -> dict:
    pb = make_problem(s)
    objs = [make_objective(pb, "dpo", {"beta": s.dpo_beta}),
            make_objective(pb, "spo", {"alpha": s.spo_alpha, "beta": s.spo_beta, "gamma": s.spo_gamma, "weight": s.spo_weight})]
    names = ["dpo", "spo"]
    log_steps = tuple(int(t) for t in np.unique(np.linspace(0, s.steps, s.n_log).round()))
    config = TrainConfig(steps=s.steps, schedule="constant", log_steps=log_steps, resample_pairs=s.n_pairs)
    hps = [[{**o.hp, "seed": k, "lr": s.lr} for k in range(s.seeds)] for o in objs]
    trajs = train_batch(objs, config, hps)
    records, summary = [], {}
    for name, tr in zip(names, trajs):
        steps = np.asarray(tr.steps)[0]
        W = win_rate(np.asarray(tr.policies), pb)  # [seeds, L]
        stats = [shape_stats(steps, w) for w in W]
        for k, (w, st) in enumerate(zip(W, stats)):
            records.append({"loss": name, "seed": k, "steps": steps.tolist(), "win_rate": w.tolist(), **st})
        agg = {}
        for key in ("peak", "peak_step", "width", "final"):
            v = np.array([st[key] for st in stats], dtype=float)
            agg[key] = {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)),
                        "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}
        summary[name] = agg
    # the population (infinite-data) optimum of each loss, by the exact solver: the level a
    # loss would settle at without the finite-data error
    # loss would settle at without the finite-data error. Only where the solver certifies a
    # stationary point: with a π-dependent SPO weighting there is no potential (μ is detached)
    # and the value-based Newton solve is not meaningful — reported as None.
    pop = {}
    for name, o in zip(names, objs):
        ex = exact_batch(o, [o.hp])[0]
        pop[name] = float(win_rate(ex.policy, pb)) if ex.residual <= 1e-9 else None
    return {"win_rate_of_optimum_argmax": float(win_rate(np.eye(pb.n_responses)[np.argmax(pb.reward)][None], pb)),
            "population_optimum_win_rate": pop, "summary": summary, "records": records}


def report(res: dict) -> str:
    lines = [f"true win rate vs π_ref (best possible, argmax r: {res['win_rate_of_optimum_argmax']:.3f}); mean ± std over seeds", ""]
    lines.append("population optimum (exact solver, infinite data): "
                 + ", ".join(f"{k} {'—' if v is None else format(v, '.3f')}" for k, v in res["population_optimum_win_rate"].items()))
    lines.append(f"{'loss':<6}{'peak':>18}{'peak step':>18}{'width (steps)':>20}{'final':>18}")
    for name, a in res["summary"].items():
        f = lambda k, fmt: f"{a[k]['mean']:{fmt}} ± {a[k]['std']:{fmt}}"  # noqa: E731
        lines.append(f"{name:<6}{f('peak', '.3f'):>18}{f('peak_step', '.0f'):>18}{f('width', '.0f'):>20}{f('final', '.3f'):>18}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for k, name in enumerate(res["summary"]):
        rs = [r for r in res["records"] if r["loss"] == name]
        st = np.asarray(rs[0]["steps"])
        W = np.asarray([r["win_rate"] for r in rs])
        ax.plot(st, np.median(W, 0), color=f"C{k}", label=f"{name} (median over {len(rs)} datasets)")
        ax.fill_between(st, np.percentile(W, 10, 0), np.percentile(W, 90, 0), color=f"C{k}", alpha=0.2, label=f"{name} 10–90 %")
    ax.axhline(0.5, color="gray", lw=0.6)
    ax.set_xlabel("training step")
    ax.set_ylabel("true win rate vs π_ref")
    ax.set_title("finite data: win rate of DPO and SPO against π_ref (cf. SPO Fig. 1)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return [save_figure(fig, out_dir, "win_rate_dynamics.png", "regenerate: bandit-lab run win-rate-dynamics --out DIR")]


EXPERIMENT = Experiment(
    name="win-rate-dynamics",
    summary="true win rate vs π_ref over training on finite data: DPO vs SPO across seeds",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"seeds": 8, "steps": 1000, "n_log": 51},
    reference="Sharifnassab et al. Fig. 1 (shape)",
)
