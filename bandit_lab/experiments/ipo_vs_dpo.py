"""Deterministic preferences and finite data: DPO runs away, IPO stops (Azar et al. 2024 §4.2;
Nguyen's notes Eq. 12; Kong et al. Eq. 9).

A total order with ``p(i ≻ j) = 1`` for ``i < j`` (response 0 best), a finite dataset of
``n_pairs`` labelled pairs drawn from the uniform pair law. Every labelled triple has the better
response as winner, so DPO's loss ``−log σ(β(h_w − h_l))`` only reaches its infimum 0 as every
shown margin ``h_w − h_l → ∞``: π(y_l) → 0, at every β (β only rescales the margin). IPO's loss
``(h_w − h_l − 1/(2β))²`` has a finite minimiser: with two responses the margin is exactly
``1/(2β)``; with K ≥ 3 the per-pair targets cannot all hold (margins add along the order), and
the minimiser is the weighted least-squares solution (e.g. 2/3 and 4/3 of 1/(2β) for K = 3
with equal counts), found here by the exact solver on the same data.

DPO and IPO over the β grid are trained as one :class:`~bandit_lab.core.objective.Stack` in one
compiled ``jit(vmap(scan))`` (Adam, constant learning rate, log-spaced logged steps).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core.data import make_data
from bandit_lab.experiments import Experiment, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.runner import exact_batch, to_list, train_batch
from bandit_lab.core.train import TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    n_responses: int = dataclasses.field(default=3, metadata=meta("K; response 0 beats 1 beats 2 ... with probability 1", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    n_pairs: int = dataclasses.field(default=30, metadata=meta("labelled pairs in the finite dataset", bounds.COUNT))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the dataset", bounds.SEED))
    betas: tuple[float, ...] = dataclasses.field(default=(0.1, 0.3, 1.0, 3.0), metadata=meta("β values", bounds.BETA))
    steps: int = dataclasses.field(default=20000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("constant learning rate", bounds.LR))

    def saves(self) -> bool:
        return True

    def cost(self) -> budget.Cost:
        K, P = self.n_responses, len(self.betas)
        c = budget.problem(1, K) + budget.sampling(self.n_pairs, K)
        return c + (budget.training(steps=self.steps, responses=K, runs=2 * P) | budget.newton(params=K, responses=K, points=P))


def _margins(logp, logp_ref, shown):
    h = logp - logp_ref
    return [float(h[i] - h[j]) for i, j in shown]


def run(s: Settings) -> dict:
    K = s.n_responses
    M = np.triu(np.ones((K, K)), 1)
    np.fill_diagonal(M, 0.5)
    ref = np.full(K, 1.0 / K)
    pb = Problem.create(ref, matrix=M, pairs="uniform")
    data = make_data(pb, "sampled", s.n_pairs, s.seed)
    W = np.asarray(data.weight)[0]
    shown = [(i, j) for i in range(K) for j in range(K) if W[i, j] > 0]
    objs = [make_objective(pb, "dpo", data=data), make_objective(pb, "ipo", data=data)]
    hps = [[{"beta": b} for b in s.betas]] * 2
    config = TrainConfig(steps=s.steps, schedule="constant")
    trajs = train_batch(objs, config, [[{**h, "lr": s.lr} for h in hs] for hs in hps], seed=s.seed)
    ipo_exact = exact_batch(objs[1], hps[1])
    lref = np.log(ref)
    records = []
    for name, tr in zip(("dpo", "ipo"), trajs):
        for j, b in enumerate(s.betas):
            pols = tr.policies[j, :, 0, :]  # [L, K]
            margins = [_margins(np.log(np.maximum(p, 1e-300)), lref, shown) for p in pols]
            exact = None if name == "dpo" else _margins(np.log(ipo_exact[j].policy[0]), lref, shown)
            records.append({
                "loss": name, "beta": b, "steps": np.asarray(tr.steps)[j].tolist(), "pairs": [list(p) for p in shown],
                "counts": [int(round(W[i, k] * s.n_pairs)) for i, k in shown],
                "margins": margins, "pi_worst": [float(p[K - 1]) for p in pols], "policies": to_list(pols),
                "final_margins": margins[-1], "exact_ipo_margins": exact, "half_over_beta": 0.5 / b,
                "final_pi_worst": float(pols[-1][K - 1]),
            })
    dpo_final = {r["beta"]: r["final_pi_worst"] for r in records if r["loss"] == "dpo"}
    ipo_gap = max(max(abs(a - e) for a, e in zip(r["final_margins"], r["exact_ipo_margins"])) for r in records if r["loss"] == "ipo")
    return {"shown_pairs": [list(p) for p in shown], "dpo_final_pi_worst": dpo_final, "ipo_max_margin_gap_to_exact": ipo_gap,
            "records": records}


def report(res: dict) -> str:
    recs = res["records"]
    lines = [f"pairs shown (winner, loser): {res['shown_pairs']}", ""]
    lines.append(f"{'loss':<6}{'β':>6}{'π(worst) final':>16}{'final margins h_w − h_l':>34}{'exact IPO margins':>30}{'1/(2β)':>9}")
    for r in recs:
        fm = "[" + ", ".join(f"{m:.3g}" for m in r["final_margins"]) + "]"
        em = "—" if r["exact_ipo_margins"] is None else "[" + ", ".join(f"{m:.4g}" for m in r["exact_ipo_margins"]) + "]"
        lines.append(f"{r['loss']:<6}{r['beta']:>6g}{r['final_pi_worst']:>16.3e}{fm:>34}{em:>30}{r['half_over_beta']:>9.3g}")
    lines.append(f"IPO: largest |trained − exact| margin = {res['ipo_max_margin_gap_to_exact']:.1e}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    betas = sorted({r["beta"] for r in recs})
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for k, b in enumerate(betas):
        for r in recs:
            if r["beta"] != b:
                continue
            st = np.maximum(np.asarray(r["steps"]), 1)
            ls = "-" if r["loss"] == "dpo" else "--"
            m = np.asarray(r["margins"])[:, 0]
            axes[0].plot(st, m, ls, color=f"C{k}", label=f"{r['loss']} β={b:g}")
            if r["loss"] == "ipo":
                axes[0].axhline(r["exact_ipo_margins"][0], color=f"C{k}", lw=0.6, ls=":")
            axes[1].plot(st, np.maximum(r["pi_worst"], 1e-300), ls, color=f"C{k}", label=f"{r['loss']} β={b:g}")
    for lo in ("dpo", "ipo"):
        rs = [r for r in recs if r["loss"] == lo]
        axes[2].plot([r["beta"] for r in rs], [r["final_margins"][0] for r in rs], "o-" if lo == "dpo" else "s--", label=f"{lo} (trained, final)")
    ipo = [r for r in recs if r["loss"] == "ipo"]
    axes[2].plot([r["beta"] for r in ipo], [r["exact_ipo_margins"][0] for r in ipo], "k:", label="IPO exact optimum")
    axes[2].plot([r["beta"] for r in ipo], [r["half_over_beta"] for r in ipo], color="gray", lw=0.8, label="1/(2β)")
    p0 = res["shown_pairs"][0]
    axes[0].set_xscale("log")
    axes[0].set_xlabel("training step")
    axes[0].set_ylabel(f"margin h({p0[0]}) − h({p0[1]})")
    axes[0].set_title("DPO margin grows without bound; IPO stops (dotted: exact)", fontsize=8)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[1].set_ylabel("π(worst response)")
    axes[1].set_title("DPO drives π(y_l) → 0 at every β", fontsize=8)
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("β")
    axes[2].set_ylabel(f"final margin h({p0[0]}) − h({p0[1]})")
    axes[2].set_title("margin after the last step vs β", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return [save_figure(fig, out_dir, "ipo_vs_dpo.png", "regenerate: bandit-lab run ipo-vs-dpo --out DIR")]


EXPERIMENT = Experiment(
    name="ipo-vs-dpo",
    summary="deterministic labels, finite data: DPO drives π(y_l) → 0 at every β, IPO stops at a finite margin",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 3000},
    reference="Azar et al. 2024 §4.2; Nguyen notes Eq. 12",
)
