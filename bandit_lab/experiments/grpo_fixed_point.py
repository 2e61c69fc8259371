"""GRPO's stationary policy against the Gibbs policy as the group size G and β vary.

Two rewards on three responses: *binary* (r = [1, 0, 0], a verifiable reward) and *graded*
(r = log π*, Kong App. B). For every (G, β) the stationary policy of GRPO's expected update (group
std, TRL's ε = 1e-4 and ddof 1, KL as k3 in the loss) is computed from the Vojnovic–Yun
characterisation ``π = π_ref/(1 − ā(π)/β)`` (:func:`bandit_lab.onpolicy.closed_forms.grpo_fixed_point`,
NumPy), and at the ``solver_g`` group sizes also by the exact root solver of the JAX loss — the
table reports the largest disagreement. Mroueh 2025's success-amplification recurrence
``p_n = h(p_{n−1})`` is iterated for the binary reward and compared with the stationary point of
the population-normalised GRPO with the exact KL (the model his recurrence describes).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.experiments import Experiment, check_distributions, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.core.problems import Problem


@dataclasses.dataclass(frozen=True)
class Settings:
    groups: tuple[int, ...] = dataclasses.field(default=tuple(range(2, 17)), metadata=meta("group sizes G (comma list)", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    betas: tuple[float, ...] = dataclasses.field(default=(0.5, 1.0, 2.0, 4.0), metadata=meta("KL strengths β (comma list)", bounds.BETA))
    solver_g: tuple[int, ...] = dataclasses.field(default=(2, 4, 8), metadata=meta("group sizes also solved by the exact root solver", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy (3 responses)", bounds.PROBABILITY))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("graded reward r = log π*", bounds.PROBABILITY))
    std_eps: float = dataclasses.field(default=1e-4, metadata=meta("ε in (r − mean)/(std + ε) (TRL 1e-4); > 0", bounds.POSITIVE))

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        from bandit_lab.losses.onpolicy import check_enumeration

        for G in set(self.groups) | set(self.solver_g):
            check_enumeration(G, len(self.pi_ref))

    def cost(self) -> budget.Cost:
        from bandit_lab.losses.onpolicy import n_compositions

        K = len(self.pi_ref)
        entries = sum(n_compositions(G - 1, K) * K for G in self.groups)
        c = budget.array(entries * len(self.betas) * 4, "the group compositions of every G")
        c.work = entries * len(self.betas) * 2 * 1e4 + len(self.solver_g) * len(self.betas) * 1e8  # closed forms + root solves
        return c


def rewards(s: Settings) -> dict:
    return {"binary": np.array([1.0, 0.0, 0.0]), "graded": np.log(np.asarray(s.pi_star, float))}


def run(s: Settings) -> dict:
    from bandit_lab.onpolicy.closed_forms import grpo_fixed_point, mroueh_fixed_point
    from bandit_lab.onpolicy.stationary import solve_batch

    ref = np.asarray(s.pi_ref, float)
    records, solver_gap = [], 0.0
    for kind, r in rewards(s).items():
        pb = Problem.create(ref, reward=r)
        for G in s.groups:
            pols = []
            for b in s.betas:
                pi, res, method = grpo_fixed_point(ref, r, b, int(G), eps=s.std_eps)
                gibbs = rlhf_optimum(ref, r, b)[0]
                pols.append(pi)
                records.append({"reward": kind, "G": int(G), "beta": float(b), "policy": pi.tolist(), "method": method,
                                "oracle_residual": res, "tv_gibbs": float(metrics.tv(pi, gibbs)),
                                "success": float(pi[0]) if kind == "binary" else None, "gibbs": gibbs.tolist()})
            if G in s.solver_g:
                o = make_objective(pb, "grpo", {"group_size": int(G), "beta": 1.0, "std_eps": s.std_eps})
                for st, pi in zip(solve_batch(o, [{"beta": float(b)} for b in s.betas]), pols):
                    solver_gap = max(solver_gap, float(metrics.tv(st.result.policy[0], pi)), float(st.result.residual))
    # Mroueh 2025: binary reward, population mean/variance, exact KL(π‖π_ref)
    mroueh = []
    p_ref = float(ref[0])
    pb = Problem.create(ref, reward=rewards(s)["binary"])
    o = make_objective(pb, "grpo", {"normalize": "population", "kl_estimator": "exact", "std_eps": s.std_eps, "beta": 1.0})
    sts = solve_batch(o, [{"beta": float(b)} for b in s.betas])
    for b, st in zip(s.betas, sts):
        p_star, it = mroueh_fixed_point(p_ref, float(b), s.std_eps)
        mroueh.append({"beta": float(b), "p_ref": p_ref, "p_star": p_star, "iterates": it[:30], "n_iterations": len(it) - 1,
                       "solver_success": float(st.result.policy[0][0]), "gap": abs(float(st.result.policy[0][0]) - p_star),
                       "amplifies": bool(p_star > p_ref)})
    return {"command": command_line("grpo-fixed-point", s) + " --out DIR", "solver_vs_oracle": solver_gap,
            "mroueh_max_gap": max(m["gap"] for m in mroueh), "records": records, "mroueh": mroueh,
            "betas": [float(b) for b in s.betas], "groups": [int(g) for g in s.groups]}


def report(res: dict) -> str:
    lines = ["GRPO's stationary policy (group std, ε = TRL's, k3 KL in the loss) vs Gibbs π_ref·e^{r/β}/Z: TV", ""]
    for kind in ("binary", "graded"):
        lines.append(f"{kind} reward" + ("  (entries: TV to Gibbs / success probability)" if kind == "binary" else ""))
        lines.append(f"  {'G':>4}" + "".join(f"{'β=' + format(b, 'g'):>22}" for b in res["betas"]))
        for G in res["groups"]:
            rs = [r for r in res["records"] if r["reward"] == kind and r["G"] == G]
            cells = [f"{r['tv_gibbs']:.3e}" + (f" / {r['success']:.4f}" if r["success"] is not None else "") for r in rs]
            lines.append(f"  {G:>4}" + "".join(f"{c:>22}" for c in cells))
        lines.append("")
    lines.append(f"exact root solver vs Vojnovic–Yun oracle (G in solver_g): max TV / residual {res['solver_vs_oracle']:.1e}")
    lines.append("Mroueh 2025 recurrence p_n = h(p_{n−1}) (binary, population std, exact KL):")
    for m in res["mroueh"]:
        lines.append(f"  β = {m['beta']:g}: p_ref = {m['p_ref']:.3f} → p* = {m['p_star']:.10f} ({m['n_iterations']} iterations; "
                     f"amplifies: {m['amplifies']}); stationary point of the loss {m['solver_success']:.10f} (gap {m['gap']:.1e})")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    for ax, kind in zip(axes[:2], ("binary", "graded")):
        for b in res["betas"]:
            rs = [r for r in res["records"] if r["reward"] == kind and r["beta"] == b]
            ax.plot([r["G"] for r in rs], [r["tv_gibbs"] for r in rs], "o-", ms=3, label=f"β = {b:g}")
        ax.set_xlabel("group size G")
        ax.set_ylabel("TV(GRPO stationary policy, Gibbs)")
        ax.set_title(f"{kind} reward", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    for m in res["mroueh"]:
        ax.plot(m["iterates"], "o-", ms=3, label=f"β = {m['beta']:g}: p* = {m['p_star']:.4f}")
    ax.set_xlabel("iteration n")
    ax.set_ylabel("success probability p_n")
    ax.set_title("Mroueh 2025: p_n = h(p_{n−1}) amplifies p_ref", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return [save_figure(fig, out_dir, "grpo_fixed_point.png", "regenerate: " + res["command"])]


EXPERIMENT = Experiment(
    name="grpo-fixed-point", summary="GRPO's stationary policy vs group size and β, against Gibbs; Mroueh's recurrence",
    settings=Settings, run=run, report=report, plot=plot, quick={"groups": (2, 3, 4), "solver_g": (2, 3), "betas": (1.0,)},
    reference="Vojnovic & Yun 2025; Mroueh 2025",
)
