"""Early stopping as a constraint (Kong et al. §3.3, Fig. 3; bandit of App. B, Eq. 26–28).

α = 0 (no weight decay). DPO, f-DPO (forward KL) and IPO are trained beside their RLHF
counterparts from π_ref (softmax logits at log π_ref), and the distance between each loss's
policy and its counterpart's is recorded at log-spaced step counts ("epochs": the paper's
population-gradient steps). All six objectives run as ONE compiled ``jit(vmap(scan))``
(:func:`bandit_lab.runner.train_batch` stacks them); π is logged via ``TrainConfig.log_steps``.

The exact curve: at α = 0 each pair of exactly-converged optima coincides (Kong Eq. 10; Wang
et al. Thm 1; Azar et al. Prop. 4), so the "exact" distance is 0 at every step; each
trajectory's gap to its own exact optimum is recorded too.

Learning-rate schedule (measured, see ``docs/kong-a.md``): constant-lr Adam — the paper's plain
Adam — reaches distance ~1e-16 after ~1000 steps but does not stay there: once the gradients
vanish Adam's second moment decays and its step tends to ``lr·sign(g)``, so the distance
drifts back up to 1e-5…1e-3 by 10⁴ steps. The default is therefore the exponential schedule
(lr → lr·1e-3 over the run), which converges monotonically to < 1e-12; ``--compare-constant``
(default on) also runs the constant-lr schedule and records it beside.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.core.divergences import DIVERGENCES
from bandit_lab.experiments import Experiment, check_distributions, check_losses, loss_field, command_line, meta, pyplot, save_figure, with_counterpart
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import loss_oracle
from bandit_lab.core.problems import Problem
from bandit_lab.runner import solve_batch, to_list, train_batch
from bandit_lab.core.train import OPTIMIZERS, SCHEDULES, TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β (Kong et al.'s λ)", bounds.BETA))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate", bounds.LR))
    steps: int = dataclasses.field(default=3000, metadata=meta("optimizer steps (the last logged 'epoch')", bounds.STEPS))
    optimizer: str = dataclasses.field(default="adam", metadata=meta("optimizer", choices=OPTIMIZERS))
    schedule: str = dataclasses.field(default="exponential", metadata=meta("exponential (default: converges and stays) | constant | cosine", choices=SCHEDULES))
    distance: str = dataclasses.field(default="tv", metadata=meta("distance between the two policies", choices=tuple(metrics.DISTANCES)))
    n_log: int = dataclasses.field(default=40, metadata=meta("number of log-spaced logged steps", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    compare_constant: bool = dataclasses.field(default=True, metadata=meta("also run constant-lr Adam (the paper's plain Adam) for comparison"))
    fdpo_divergence: str = dataclasses.field(default="forward_kl", metadata=meta("f-DPO divergence", choices=DIVERGENCES))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("target policy π* (Kong Eq. 26)", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy (Kong Eq. 28)", bounds.PROBABILITY))
    loss: tuple[str, ...] = loss_field()

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        check_losses("--loss", self.loss)

    def cost(self) -> budget.Cost:
        K = len(self.pi_ref)
        logged = min(self.n_log, self.steps) + 1
        runs = 1 + (self.compare_constant and self.schedule != "constant")
        n = 2 * len(dict.fromkeys(self.loss))
        train = budget.training(steps=self.steps, responses=K, runs=n, logged=logged).times(runs, "schedules")
        return budget.problem(1, K) + budget.array(self.n_log, "the logged steps") + (train | budget.newton(params=K, responses=K, points=n))

    def log_steps(self) -> tuple:
        s = np.unique(np.round(np.geomspace(1, self.steps, self.n_log)).astype(int))
        return (0,) + tuple(int(v) for v in s)


def objectives(s: Settings, problem: Problem) -> list:
    objs = []
    for name in dict.fromkeys(s.loss):
        lp = {"divergence": s.fdpo_divergence} if name == "fdpo" else {}
        o, c, _ = with_counterpart(make_objective(problem, name, {"beta": s.beta, **lp}))
        objs += [o, c]
    return objs


def _curves(objs, trajs, exact, dist, schedule: str) -> list[dict]:
    recs = []
    for k in range(0, len(objs), 2):
        o, c = objs[k], objs[k + 1]
        tp, tq = trajs[k], trajs[k + 1]
        ep, eq = exact[k][0].policy, exact[k + 1][0].policy
        steps = np.asarray(tp.steps[0])
        for i, st in enumerate(steps):
            p, q = tp.policies[0, i], tq.policies[0, i]
            recs.append({
                "loss": o.label, "counterpart": c.label, "schedule": schedule, "step": int(st),
                "distance": float(dist(p, q)), "tv": float(metrics.tv(p, q)),
                "exact_distance": float(dist(ep, eq)),
                "gap_to_exact": float(metrics.tv(p, ep)), "counterpart_gap_to_exact": float(metrics.tv(q, eq)),
                "policy": to_list(p), "counterpart_policy": to_list(q),
            })
    return recs


def run(s: Settings) -> dict:
    problem = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")
    objs = objectives(s, problem)
    hps = [[{**o.hp, "weight_decay": 0.0, "lr": s.lr}] for o in objs]
    dist = metrics.distance(s.distance)
    exact = solve_batch(objs, hps)
    schedules = [s.schedule] + (["constant"] if s.compare_constant and s.schedule != "constant" else [])
    records = []
    for sched in schedules:
        config = TrainConfig(optimizer=s.optimizer, steps=s.steps, schedule=sched, log_steps=s.log_steps())
        trajs = train_batch(objs, config, hps)  # six objectives, one compile
        records += _curves(objs, trajs, exact, dist, sched)
    oracles = {}
    for k in range(0, len(objs), 2):
        o, c = objs[k], objs[k + 1]
        po, _ = loss_oracle(problem, o.loss.name, o.hp, o.static)
        pc, _ = loss_oracle(problem, c.loss.name, c.hp, c.static)
        oracles[o.label] = {"loss_closed_form": None if po is None else to_list(po),
                            "counterpart_closed_form": None if pc is None else to_list(pc),
                            "exact": to_list(exact[k][0].policy), "counterpart_exact": to_list(exact[k + 1][0].policy),
                            "exact_distance": float(dist(exact[k][0].policy, exact[k + 1][0].policy)),
                            # None where a loss has no closed form (a user loss without an oracle)
                            "exact_vs_closed_form": None if po is None or pc is None else
                            float(max(metrics.tv(exact[k][0].policy, po), metrics.tv(exact[k + 1][0].policy, pc)))}
    main = [r for r in records if r["schedule"] == s.schedule]
    labels = list(dict.fromkeys(r["loss"] for r in main))
    first_positive = [r for r in main if r["step"] > 0]
    initial = {lab: next(r["distance"] for r in first_positive if r["loss"] == lab) for lab in labels}
    final = {lab: [r for r in main if r["loss"] == lab][-1]["distance"] for lab in labels}
    peak = {lab: max(r["distance"] for r in main if r["loss"] == lab) for lab in labels}
    out = {
        "command": command_line("early-stopping", s) + " --out DIR",
        "distance_name": s.distance,
        "schedule": s.schedule,
        "steps": s.steps,
        "initial_distance": initial,  # after the first step (at step 0 every policy is π_ref: 0)
        "peak_distance": peak,
        "final_distance": final,
        "final_gap_to_exact": {lab: max(max(r["gap_to_exact"], r["counterpart_gap_to_exact"]) for r in main if r["loss"] == lab and r["step"] == s.steps) for lab in labels},
        "exact": oracles,
    }
    if len(schedules) > 1:
        const = [r for r in records if r["schedule"] == "constant"]
        out["constant_lr"] = {
            "min_distance": {lab: min(r["distance"] for r in const if r["loss"] == lab and r["step"] > 0) for lab in labels},
            "final_distance": {lab: [r for r in const if r["loss"] == lab][-1]["distance"] for lab in labels},
        }
    out["records"] = records
    return out


def report(res: dict) -> str:
    d = res["distance_name"]
    main = [r for r in res["records"] if r["schedule"] == res["schedule"]]
    labels = list(dict.fromkeys(r["loss"] for r in main))
    steps = sorted({r["step"] for r in main})
    pos = np.array([st for st in steps if st > 0])
    decades = 10.0 ** np.arange(0, np.floor(np.log10(pos[-1])) + 1)
    show = sorted({0, *(int(pos[np.argmin(np.abs(np.log(pos) - np.log(dd)))]) for dd in decades), int(pos[-1])})
    lines = [f"early stopping (Kong Fig. 3): α = 0, {d}(π_loss, π_RLHF) vs Adam steps ({res['schedule']} lr schedule)", ""]
    lines.append(f"{'step':>7}" + "".join(f"{lab + ' vs RLHF':>26}" for lab in labels) + f"{'max |π−π_exact|':>18}")
    for st in show:
        rs = {r["loss"]: r for r in main if r["step"] == st}
        gap = max(max(r["gap_to_exact"], r["counterpart_gap_to_exact"]) for r in rs.values())
        lines.append(f"{st:>7}" + "".join(f"{rs[lab]['distance']:>26.3e}" for lab in labels) + f"{gap:>18.1e}")
    lines.append("")
    lines.append("exact optima (α = 0): " + ", ".join(f"{lab}: {d} = {v['exact_distance']:.1e}" + (f" (vs closed forms {v['exact_vs_closed_form']:.1e})" if v["exact_vs_closed_form"] is not None else " (no closed form)")
                                               for lab, v in res["exact"].items()))
    if "constant_lr" in res:
        c = res["constant_lr"]
        lines.append("constant-lr Adam (paper's plain Adam): min " + ", ".join(f"{lab} {v:.1e}" for lab, v in c["min_distance"].items())
                     + "; at the last step " + ", ".join(f"{lab} {v:.1e}" for lab, v in c["final_distance"].items()))
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    labels = list(dict.fromkeys(r["loss"] for r in recs))
    colors = {lab: f"C{(0, 1, 2, 4)[i] if i < 4 else i + 1}" for i, lab in enumerate(labels)}
    floor = 1e-17
    ax = axes[0]
    for lab in labels:
        rs = [r for r in recs if r["loss"] == lab and r["schedule"] == res["schedule"] and r["step"] > 0]
        ax.loglog([r["step"] for r in rs], [max(r["distance"], floor) for r in rs], "-o", ms=3, color=colors[lab], label=f"{lab} vs {rs[0]['counterpart']}")
        rc = [r for r in recs if r["loss"] == lab and r["schedule"] == "constant" and r["step"] > 0]
        if rc and res["schedule"] != "constant":
            ax.loglog([r["step"] for r in rc], [max(r["distance"], floor) for r in rc], ":", lw=1, color=colors[lab], label=f"{lab}, constant lr")
    ax.axhline(1e-6, color="gray", lw=0.8, ls="--", label="1e-6")
    ax.set_xlabel("Adam steps ('epochs', log axis)")
    ax.set_ylabel(f"{res['distance_name']}(π_loss, π_RLHF)")
    ax.set_title(f"Kong Fig. 3: distance to the RLHF counterpart ({res['schedule']} lr)\nexact optima coincide at α = 0 (exact curve ≡ 0)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for lab in labels:
        rs = [r for r in recs if r["loss"] == lab and r["schedule"] == res["schedule"] and r["step"] > 0]
        ax.loglog([r["step"] for r in rs], [max(r["gap_to_exact"], floor) for r in rs], "-", color=colors[lab], label=f"{lab}: TV to its exact optimum")
        ax.loglog([r["step"] for r in rs], [max(r["counterpart_gap_to_exact"], floor) for r in rs], "--", color=colors[lab], label=f"{rs[0]['counterpart']}: TV to its exact optimum")
    ax.set_xlabel("Adam steps (log axis)")
    ax.set_ylabel("TV(π_t, exact optimum)")
    ax.set_title("each trajectory's gap to its own exact optimum", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    return [save_figure(fig, out_dir, "early_stopping.png", "regenerate: " + res.get("command", "bandit-lab run early-stopping --out DIR"), rect=(0, 0.03, 1, 1))]


EXPERIMENT = Experiment(
    name="early-stopping",
    summary="distance of DPO, f-DPO, IPO to their RLHF counterparts vs training steps (α = 0)",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 1500, "n_log": 20, "compare_constant": False},
    reference="Kong et al. Fig. 3",
)
