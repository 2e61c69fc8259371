"""KL estimators k1, k2, k3 in the reward vs in the loss: which divergence each differentiates,
how biased its expected gradient is, and where REINFORCE with it lands (exact).

Tang & Munos 2025 ("On a few pitfalls in KL divergence gradient estimation for RL"): the value of
an unbiased KL *estimate* says nothing about its *gradient*. For each (estimator, placement) the
expected update of the KL term alone is compared, at random policies, with the gradient of the
divergence it actually differentiates (table), and with the gradient of KL(π‖π_ref) (bias:
‖E ĝ − ∇KL‖/‖∇KL‖). The stationary point of REINFORCE (no baseline) with that KL term on Kong's
App. B bandit is solved exactly and compared with the Gibbs policy π_ref·e^{r/β}/Z.
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
from bandit_lab.core.random_problems import random_problem


@dataclasses.dataclass(frozen=True)
class Settings:
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β", bounds.BETA))
    points: int = dataclasses.field(default=20, metadata=meta("random (bandit, policy) pairs for the bias table", bounds.COUNT))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the random pairs", bounds.SEED))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("target policy π* (reward log π*)", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy", bounds.PROBABILITY))

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)

    def cost(self) -> budget.Cost:
        c = budget.array(100 * self.points, "the bias table")
        c.work = self.points * 1e7 + 8 * 1e8  # one table row per random pair; eight stationary solves
        return c


def run(s: Settings) -> dict:
    from bandit_lab.checks.onpolicy import DIVERGENCE_OF, kl_gradient_table
    from bandit_lab.onpolicy.stationary import solve

    rng = np.random.default_rng(s.seed)
    stats = {k: {"error": 0.0, "bias": []} for k in DIVERGENCE_OF}
    for _ in range(s.points):
        pb = random_problem(rng, k=3, contexts=2)
        tab = kl_gradient_table(pb, rng.normal(0, 1.0, pb.pi_ref.shape))
        for k, v in tab.items():
            stats[k]["error"] = max(stats[k]["error"], v["error"])
            stats[k]["bias"].append(v["bias"])
    pb = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star))
    gibbs = rlhf_optimum(pb.pi_ref, pb.reward, s.beta)
    fwd = rlhf_optimum(pb.pi_ref, pb.reward, s.beta, "forward_kl")
    records = []
    for (est, place), (name, _) in DIVERGENCE_OF.items():
        st = solve(make_objective(pb, "reinforce", {"beta": s.beta, "kl_estimator": est, "kl_placement": place}))
        b = np.asarray(stats[(est, place)]["bias"])
        records.append({"estimator": est, "placement": place, "divergence": name, "max_error": stats[(est, place)]["error"],
                        "bias_median": float(np.median(b)), "bias_max": float(b.max()), "stationary": st.result.policy[0].tolist(),
                        "status": st.status, "residual": float(st.result.residual),
                        "tv_gibbs": float(metrics.tv(st.result.policy, gibbs)), "tv_forward_kl": float(metrics.tv(st.result.policy, fwd))})
    return {"command": command_line("kl-estimators", s) + " --out DIR", "beta": s.beta, "gibbs": gibbs[0].tolist(),
            "forward_kl_optimum": fwd[0].tolist(), "records": records}


def report(res: dict) -> str:
    lines = [f"KL estimators (REINFORCE, reward log π*, β = {res['beta']:g}); Gibbs {np.round(res['gibbs'], 4).tolist()}, "
             f"forward-KL optimum {np.round(res['forward_kl_optimum'], 4).tolist()}", "",
             f"{'est':<4}{'placement':<10}{'E[∇ KL term] = ∇ of':<54}{'max err':>9}{'bias med':>10}{'bias max':>10}"
             f"  {'REINFORCE stationary point':<28}{'status':<15}{'TV→Gibbs':>9}"]
    for r in res["records"]:
        lines.append(f"{r['estimator']:<4}{r['placement']:<10}{r['divergence']:<54}{r['max_error']:>9.1e}{r['bias_median']:>10.3f}"
                     f"{r['bias_max']:>10.3f}  {str(np.round(r['stationary'], 4).tolist()):<28}{r['status']:<15}{r['tv_gibbs']:>9.2e}")
    lines.append("bias = ‖E ĝ − ∇KL(π‖π_ref)‖/‖∇KL(π‖π_ref)‖ at random policies (0: unbiased for the reverse KL)")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    labs = [f"{r['estimator']}-{r['placement']}" for r in res["records"]]
    x = np.arange(len(labs))
    axes[0].bar(x, [r["bias_median"] for r in res["records"]], color="C0")
    axes[0].set_xticks(x, labs, fontsize=8)
    axes[0].set_ylabel("median relative gradient bias vs ∇KL(π‖π_ref)")
    axes[0].grid(alpha=0.3, axis="y")
    axes[1].bar(x, [max(r["tv_gibbs"], 1e-17) for r in res["records"]], color="C3")
    axes[1].set_yscale("log")
    axes[1].set_xticks(x, labs, fontsize=8)
    axes[1].set_ylabel("TV(REINFORCE stationary point, Gibbs)")
    axes[1].grid(alpha=0.3, axis="y")
    fig.suptitle("KL estimators in the reward vs in the loss (exact expectations)", fontsize=10)
    return [save_figure(fig, out_dir, "kl_estimators.png", "regenerate: " + res["command"])]


EXPERIMENT = Experiment(
    name="kl-estimators", summary="k1/k2/k3 in the reward vs in the loss: divergence differentiated, gradient bias, fixed point",
    settings=Settings, run=run, report=report, plot=plot, quick={"points": 3}, reference="Tang & Munos 2025",
)
