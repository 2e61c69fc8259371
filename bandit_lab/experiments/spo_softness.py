"""How soft is the optimum? DPO/RLHF vs SPO (Sharifnassab et al. §5, Thm 1).

Under BT preferences with reward r (here ``r = log π*``), on population data:

- DPO and reverse-KL RLHF share the optimum ``π_ref·e^{r/β}/Z`` (Rafailov et al.; Kong Eq. 10);
  its entropy → 0 as β → 0 (the deterministic argmax policy);
- the SPO preference loss L_pref^α (Eq. 8, no regulariser) has optimum softmax(r/α) (Thm 1),
  whose entropy is set by α alone;
- the full SPO loss L_pref^α + β·KL(π‖π_ref) at fixed α: its optimum is *not* softmax(r/α) for
  β > 0 (the KL pulls towards π_ref); as β → 0 it tends to softmax(r/α), not to a deterministic
  policy — the contrast with DPO that SPO §5 describes.

Every objective over the whole grid is trained by Adam in one compiled ``jit(vmap(scan))`` and
solved exactly by the batched Newton solver (one compile per objective); closed forms where
they exist.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.experiments import Experiment, check_distributions, meta, pyplot, save_figure
from bandit_lab.losses.spo import softmax_r_over_alpha
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.core.problems import Problem
from bandit_lab.runner import solve_batch, to_list, train_batch
from bandit_lab.core.train import TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.5, 0.25, 0.15, 0.07, 0.03), metadata=meta("target policy π*; BT reward r = log π*", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.1, 0.15, 0.2, 0.25, 0.3), metadata=meta("reference policy", bounds.PROBABILITY))
    grid_min: float = dataclasses.field(default=0.03, metadata=meta("smallest β (DPO/RLHF, SPO) and α (SPO pref) of the grid", bounds.BETA))
    grid_max: float = dataclasses.field(default=10.0, metadata=meta("largest grid value", bounds.BETA))
    n_grid: int = dataclasses.field(default=25, metadata=meta("grid points (log-spaced)", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    spo_alphas: tuple[float, ...] = dataclasses.field(default=(0.5, 1.0, 2.0), metadata=meta("α of the full SPO loss swept over β", bounds.POSITIVE))
    steps: int = dataclasses.field(default=4000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.1, metadata=meta("peak learning rate (cosine schedule)", bounds.LR))

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        if not self.grid_min < self.grid_max:
            raise BanditError(f"--grid-min must be < --grid-max; got {self.grid_min:g} ≥ {self.grid_max:g}")

    def saves(self) -> bool:
        return True

    def cost(self) -> budget.Cost:
        K, runs = len(self.pi_ref), (3 + len(self.spo_alphas)) * self.n_grid
        return budget.problem(1, K) + (budget.training(steps=self.steps, responses=K, runs=runs) | budget.newton(params=K, responses=K, points=runs))


def run(s: Settings) -> dict:
    pb = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")
    grid = list(np.geomspace(s.grid_min, s.grid_max, s.n_grid))
    objs, hps, names = [], [], []
    dpo = make_objective(pb, "dpo")
    objs += [dpo, dpo.counterpart(), make_objective(pb, "spo_pref")]
    names += ["dpo", "rlhf", "spo_pref"]
    hps += [[{"beta": g} for g in grid], [{"beta": g} for g in grid], [{"alpha": g} for g in grid]]
    for a in s.spo_alphas:
        objs.append(make_objective(pb, "spo", {"alpha": a}))
        names.append(f"spo[α={a:g}]")
        hps.append([{"alpha": a, "beta": g} for g in grid])
    config = TrainConfig(steps=s.steps, log_steps=(0, s.steps))
    trajs = train_batch(objs, config, [[{**h, "lr": s.lr} for h in hs] for hs in hps])
    exact = solve_batch(objs, hps)
    records = []
    for name, o, tr, ex, hs in zip(names, objs, trajs, exact, hps):
        for j, h in enumerate(hs):
            if name in ("dpo", "rlhf"):
                closed = rlhf_optimum(pb.pi_ref, pb.reward, h["beta"])
            elif name == "spo_pref":
                closed = softmax_r_over_alpha(pb.reward, h["alpha"])
            else:
                closed = None
            e = ex[j].policy
            records.append({
                "objective": name, "axis": "alpha" if name == "spo_pref" else "beta", "value": grid[j],
                "alpha": h.get("alpha"), "beta": h.get("beta"),
                "entropy_exact": float(metrics.entropy(e)), "entropy_adam": float(metrics.entropy(tr.policy[j])),
                "entropy_closed": None if closed is None else float(metrics.entropy(closed)),
                "tv_exact_closed": None if closed is None else float(metrics.tv(e, closed)),
                "tv_adam_exact": float(metrics.tv(tr.policy[j], e)),
                "tv_to_softmax_r_over_alpha": None if h.get("alpha") is None else float(metrics.tv(e, softmax_r_over_alpha(pb.reward, h["alpha"]))),
                "residual": float(ex[j].residual),
                "exact": to_list(e), "adam": to_list(tr.policy[j]),
            })
    spo_b = [r for r in records if r["objective"].startswith("spo[")]
    return {
        "entropy_max": float(np.log(pb.n_responses)),
        "entropy_pi_ref": float(metrics.entropy(pb.pi_ref)),
        "dpo_entropy_at_min_beta": records[0]["entropy_exact"],
        "max_tv_exact_closed": max(r["tv_exact_closed"] for r in records if r["tv_exact_closed"] is not None),
        "max_tv_adam_exact": max(r["tv_adam_exact"] for r in records),
        "spo_tv_to_softmax_at_min_beta": {r["objective"]: r["tv_to_softmax_r_over_alpha"] for r in spo_b if r["value"] == grid[0]},
        "spo_tv_to_softmax_at_max_beta": {r["objective"]: r["tv_to_softmax_r_over_alpha"] for r in spo_b if r["value"] == grid[-1]},
        "records": records,
    }


def report(res: dict) -> str:
    recs = res["records"]
    lines = [f"entropy of the optimum (nats; max ln K = {res['entropy_max']:.3f}, H(π_ref) = {res['entropy_pi_ref']:.3f})", ""]
    objs = list(dict.fromkeys(r["objective"] for r in recs))
    vals = sorted({r["value"] for r in recs})
    show = vals[:: max(1, len(vals) // 8)] + ([vals[-1]] if vals[-1] not in vals[:: max(1, len(vals) // 8)] else [])
    lines.append(f"{'grid':>9}" + "".join(f"{o:>15}" for o in objs))
    for v in show:
        row = {r["objective"]: r for r in recs if r["value"] == v}
        lines.append(f"{v:>9.3g}" + "".join(f"{row[o]['entropy_exact']:>15.4f}" for o in objs))
    lines.append("(dpo, rlhf, spo[α]: grid = β; spo_pref: grid = α, no regulariser)")
    lines.append(f"max TV(exact, closed form) = {res['max_tv_exact_closed']:.1e}; max TV(Adam, exact) = {res['max_tv_adam_exact']:.1e}")
    for k, v in res["spo_tv_to_softmax_at_min_beta"].items():
        lines.append(f"{k}: TV(optimum, softmax(r/α)) = {v:.2e} at the smallest β, {res['spo_tv_to_softmax_at_max_beta'][k]:.3f} at the largest")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    objs = list(dict.fromkeys(r["objective"] for r in recs))
    for k, o in enumerate(objs):
        rs = [r for r in recs if r["objective"] == o]
        ax = axes[1] if o == "spo_pref" else axes[0]
        x = [r["value"] for r in rs]
        ax.plot(x, [r["entropy_exact"] for r in rs], "-", color=f"C{k}", label=f"{o} (exact)")
        ax.plot(x, [r["entropy_adam"] for r in rs], "o", ms=3, color=f"C{k}", alpha=0.6)
        if rs[0]["entropy_closed"] is not None:
            ax.plot(x, [r["entropy_closed"] for r in rs], ":", color="k", lw=0.8)
        if o.startswith("spo["):
            a = rs[0]["alpha"]
            h = [r for r in recs if r["objective"] == "spo_pref"]
            hs = np.interp(np.log(a), np.log([r["value"] for r in h]), [r["entropy_exact"] for r in h])
            ax.axhline(hs, color=f"C{k}", ls="--", lw=0.7)
    for ax, xl in zip(axes, ("β (KL strength)", "α (SPO exponent, no regulariser)")):
        ax.set_xscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel("entropy of the optimum (nats)")
        ax.axhline(res["entropy_max"], color="gray", lw=0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("DPO/RLHF → deterministic as β→0; SPO → softmax(r/α) (dashed)", fontsize=8)
    axes[1].set_title("SPO preference loss: optimum softmax(r/α) (dotted: closed form)", fontsize=8)
    return [save_figure(fig, out_dir, "spo_softness.png", "regenerate: bandit-lab run spo-softness --out DIR   (dots: Adam, lines: exact solver)")]


EXPERIMENT = Experiment(
    name="spo-softness",
    summary="entropy of the optimum: DPO/RLHF vs β, SPO vs α (and full SPO vs β)",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"n_grid": 8, "steps": 1500},
    reference="Sharifnassab et al. Thm 1 and §5",
)
