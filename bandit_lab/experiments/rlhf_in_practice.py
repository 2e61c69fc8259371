"""RLHF as practised on Kong et al.'s App. B bandit: where each on-policy algorithm lands.

π* = [0.6, 0.3, 0.1] (Kong Eq. 26) gives the BT reward r = log π*, π_ref = [0.4, 0.4, 0.2]
(Eq. 28), softmax logits from log π_ref. For each weight decay α (default 0 and 0.1, the Fig. 2
story) every algorithm of :mod:`bandit_lab.losses.onpolicy` at the same β is (a) trained in exact
mode (Adam on its expected update; one compiled ``jit(vmap(scan))`` per algorithm over the α
grid) and (b) solved exactly for the stationary point of its expected update
(:mod:`bandit_lab.onpolicy.stationary`). Both are compared with the exact optimum of the analytic
RLHF objective −E_π r + β KL(π‖π_ref) and with DPO's exact population optimum, *under the same
constraint*. Without weight decay DPO and RLHF share π_ref·e^{r/β}/Z (Kong Eq. 10); the
algorithms that differentiate KL(π‖π_ref) land there too, GRPO (std-normalised) and Nash-MD do
not; with α‖θ‖² every point moves and the on-policy algorithms part from DPO as RLHF does.
``--library`` adds TRL 1.16 configurations written with TRL's own field names (:data:`LIBRARY`,
read by :mod:`bandit_lab.onpolicy.trl`): its GRPO loss types with TRL's defaults (bias-corrected
k3, group-std scaling, cispo's default ε_high capping the weight at 0.2), RLOO and A*-PO.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.experiments import Experiment, check_distributions, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.runner import exact_batch, to_list, train_batch
from bandit_lab.core.train import TrainConfig

ALGOS = (("reinforce", {}), ("rloo", {}), ("ppo", {}), ("grpo", {}), ("grpo", {"kl_estimator": "k1", "kl_placement": "reward"}),
         ("dr_grpo", {}), ("dapo", {}), ("online_dpo", {}), ("nash_md", {}))


# TRL 1.16 configurations as users write them (bandit_lab.onpolicy.trl reads the field names; every
# field left out takes TRL's default), run with ``--library`` at the experiment's β and G
LIBRARY = (("trl-grpo", "grpo", {"loss_type": "grpo"}),
           ("trl-dapo(default)", "grpo", {"loss_type": "dapo"}),
           ("trl-dapo-no-bc", "grpo", {"loss_type": "dapo", "use_bias_correction_kl": False}),
           ("trl-dr_grpo-none", "grpo", {"loss_type": "dr_grpo", "scale_rewards": "none"}),
           ("trl-gspo", "grpo", {"loss_type": "grpo", "importance_sampling_level": "sequence"}),
           ("trl-cispo", "grpo", {"loss_type": "cispo"}),
           ("trl-cispo-eps5", "grpo", {"loss_type": "cispo", "epsilon_high": 5.0}),
           ("trl-sapo", "grpo", {"loss_type": "sapo"}),
           ("trl-vespo", "grpo", {"loss_type": "vespo"}),
           ("trl-rloo", "rloo", {"num_generations": 2, "normalize_advantages": False}),
           ("trl-a2po", "a2po", {}))


def label(name: str, lp: dict) -> str:
    return name + ("[k1-reward]" if lp.get("kl_placement") == "reward" and name in ("grpo", "dr_grpo", "dapo") else "")


@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: tuple[float, ...] = dataclasses.field(default=(0.0, 0.1), metadata=meta("weight decays α (comma list)", bounds.WEIGHT_DECAY))
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β of every algorithm", bounds.BETA))
    group_size: int = dataclasses.field(default=8, metadata=meta("group size G of the group methods (DAPO keeps 16)", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    steps: int = dataclasses.field(default=3000, metadata=meta("Adam steps of the exact-mode training runs", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate (cosine)", bounds.LR))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("target policy π* (Kong Eq. 26)", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy (Kong Eq. 28)", bounds.PROBABILITY))
    library: bool = dataclasses.field(default=False, metadata=meta("add TRL 1.16 presets (GRPOConfig loss types, RLOO, A*-PO) by their own field names"))

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        from bandit_lab.losses.onpolicy import check_enumeration

        check_enumeration(self.group_size, len(self.pi_ref))

    def cost(self) -> budget.Cost:
        from bandit_lab.losses.onpolicy import n_compositions

        K, P = len(self.pi_ref), len(self.alpha)
        per_step = n_compositions(max(self.group_size, 16) - 1, K) * K  # the largest group's expected update
        train = budget.training(steps=self.steps, responses=K, runs=P, logged=60)
        n = len(ALGOS) + (len(LIBRARY) if self.library else 0)
        train = train.times(n, "algorithms")
        train.work += n * per_step * self.steps * P * budget.GRID_NS
        return budget.problem(1, K) + (train | budget.newton(params=K, responses=K, points=2 * P))


def objectives(s: Settings, problem) -> list:
    out = []
    for name, lp in ALGOS:
        extra = {"group_size": s.group_size} if name in ("rloo", "grpo", "dr_grpo") else {}
        out.append((label(name, lp), make_objective(problem, name, {"beta": s.beta, **extra, **lp})))
    if s.library:
        for lab, name, cfg in LIBRARY:
            size = {"num_generations": s.group_size} if name == "grpo" else {}
            out.append((lab, make_objective(problem, name, {**size, **cfg, "beta": s.beta})))
    return out


def run(s: Settings) -> dict:
    from bandit_lab.onpolicy.stationary import solve_batch

    problem = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")
    alphas = [float(a) for a in s.alpha]
    ref_objs = {"rlhf": make_objective(problem, "rlhf", {"beta": s.beta}), "dpo": make_objective(problem, "dpo", {"beta": s.beta})}
    refs = {k: [r.policy for r in exact_batch(o, [{"weight_decay": a} for a in alphas])] for k, o in ref_objs.items()}
    cfg = TrainConfig(optimizer="adam", steps=s.steps, schedule="cosine")
    records = []
    for lab, o in objectives(s, problem):
        hps = [{**o.hp, "weight_decay": a, "lr": s.lr} for a in alphas]
        (tr,) = train_batch([o], cfg, [hps])
        st = solve_batch(o, [{"weight_decay": a} for a in alphas])
        for j, a in enumerate(alphas):
            ex = st[j].result.policy
            records.append({"algorithm": lab, "alpha": a, "beta": s.beta, "trained": to_list(tr.policy[j]), "stationary": to_list(ex),
                            "status": st[j].status, "residual": float(st[j].result.residual),
                            "trajectory": to_list(tr.policies[j]), "steps": np.asarray(tr.steps[j]).tolist(),
                            "tv_trained_stationary": float(metrics.tv(tr.policy[j], ex)),
                            "tv_rlhf": float(metrics.tv(ex, refs["rlhf"][j])), "tv_dpo": float(metrics.tv(ex, refs["dpo"][j]))})
    return {"command": command_line("rlhf-in-practice", s) + " --out DIR", "alphas": alphas, "beta": s.beta,
            "rlhf_optimum": {str(a): to_list(p) for a, p in zip(alphas, refs["rlhf"])},
            "dpo_optimum": {str(a): to_list(p) for a, p in zip(alphas, refs["dpo"])},
            "pi_ref": list(s.pi_ref), "pi_star": list(s.pi_star), "records": records}


def _fmt(p) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in np.ravel(p)) + "]"


def report(res: dict) -> str:
    lines = [f"RLHF as practised on Kong App. B (π* = {res['pi_star']}, π_ref = {res['pi_ref']}, β = {res['beta']:g}); "
             "stationary point of each expected update vs the exact RLHF and DPO optima under the same α", ""]
    for a in res["alphas"]:
        lines.append(f"α = {a:g}:  RLHF optimum {_fmt(res['rlhf_optimum'][str(a)])}   DPO optimum {_fmt(res['dpo_optimum'][str(a)])}")
        lines.append(f"  {'algorithm':<20}{'stationary point':<28}{'status':<16}{'‖F‖':>9}{'TV→RLHF':>10}{'TV→DPO':>10}{'|Adam−exact|':>14}")
        for r in (r for r in res["records"] if r["alpha"] == a):
            lines.append(f"  {r['algorithm']:<20}{_fmt(r['stationary']):<28}{r['status']:<16}{r['residual']:>9.1e}{r['tv_rlhf']:>10.2e}"
                         f"{r['tv_dpo']:>10.2e}{r['tv_trained_stationary']:>14.1e}")
        lines.append("")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()
    alphas = res["alphas"]
    fig, axes = plt.subplots(1, len(alphas), figsize=(5.5 * len(alphas), 4.0), squeeze=False)
    for ax, a in zip(axes[0], alphas):
        rs = [r for r in res["records"] if r["alpha"] == a]
        x = np.arange(len(rs))
        ax.bar(x - 0.2, [max(r["tv_rlhf"], 1e-17) for r in rs], 0.4, label="TV to the exact RLHF optimum")
        ax.bar(x + 0.2, [max(r["tv_dpo"], 1e-17) for r in rs], 0.4, label="TV to DPO's exact optimum")
        ax.set_yscale("log")
        ax.set_xticks(x, [r["algorithm"] for r in rs], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"weight decay α = {a:g}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Where on-policy RLHF algorithms land (exact stationary points, Kong App. B bandit)", fontsize=10)
    return [save_figure(fig, out_dir, "rlhf_in_practice.png", "regenerate: " + res["command"])]


EXPERIMENT = Experiment(
    name="rlhf-in-practice",
    summary="exact stationary points of REINFORCE, RLOO, PPO, GRPO, Dr. GRPO, DAPO, online DPO, Nash-MD vs DPO and RLHF",
    settings=Settings, run=run, report=report, plot=plot, quick={"steps": 500, "alpha": (0.0,)},
    reference="Kong et al. Fig. 2 extended to on-policy algorithms",
)
