"""The probability simplex of a 3-response bandit: where DPO and RLHF part ways (teaching picture).

One panel per weight decay α (default α = 0 and α = 0.1; Kong et al. §3.3, Fig. 2's bandit of
App. B, Eq. 26–28): the trajectories of DPO, f-DPO (forward KL), IPO and their RLHF counterparts
from π_ref, the unconstrained optima (closed forms, :func:`bandit_lab.solvers.oracles.loss_oracle`) and
the exact constrained optima (:func:`bandit_lab.runner.solve_batch`). At α = 0 each loss lands on
its counterpart's closed form; under α‖θ‖² they land apart (Props. 3.1, 3.2). A last panel draws
the mode-seeking family of §3.3, ``π_θ = θ·[1,0,0] + (1−θ)·uniform``, as a segment with the DPO
and RLHF optima on it (see the ``mode-seeking`` experiment).

Barycentric coordinates: ``y_a`` bottom left, ``y_b`` bottom right, ``y_c`` top; a policy is the
point ``π_a·A + π_b·B + π_c·C``. All objectives × all α are trained in one compiled program.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.errors import BanditError
from bandit_lab.experiments import Experiment, check_distributions, command_line, meta, save_figure
from bandit_lab.experiments import mode_seeking as ms
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import loss_oracle
from bandit_lab.core.problems import Problem
from bandit_lab.runner import solve_batch, to_list, train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.core.train import TrainConfig

VERTICES = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3.0) / 2.0]])
# one colour per loss family; the RLHF counterpart shares a darker/complementary tone
STYLE = {
    "dpo": ("C0", "DPO"),
    "rlhf[reverse_kl]": ("C3", "RLHF (reverse KL, r = log π*)"),
    "fdpo[forward_kl]": ("C1", "f-DPO (forward KL)"),
    "rlhf[forward_kl]": ("C5", "f-RLHF (forward KL)"),
    "ipo": ("C2", "IPO"),
    "rlhf[reverse_kl,ipo]": ("C4", "RLHF with r_IPO"),
    # on-policy algorithms (--algorithms): dotted, see bandit_lab/losses/onpolicy.py
    "reinforce": ("C6", "REINFORCE (k1 in reward)"),
    "rloo": ("C7", "RLOO"),
    "ppo": ("C8", "PPO"),
    "grpo": ("C9", "GRPO (k3 in loss)"),
    "dr_grpo": ("#8c564b", "Dr. GRPO"),
    "dapo": ("#17becf", "DAPO"),
    "online_dpo": ("#bcbd22", "online DPO"),
    "nash_md": ("#7f7f7f", "Nash-MD"),
}



@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: tuple[float, ...] = dataclasses.field(default=(0.0, 0.1), metadata=meta("weight decays α (comma list or repeated): one panel each", bounds.WEIGHT_DECAY))
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β", bounds.BETA))
    steps: int = dataclasses.field(default=3000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate (cosine schedule)", bounds.LR))
    mode_seeking: bool = dataclasses.field(default=True, metadata=meta("add the §3.3 mode-seeking segment panel"))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("target policy π* (3 responses)", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy (3 responses)", bounds.PROBABILITY))
    algorithms: str = dataclasses.field(default="", metadata=meta(
        "on-policy algorithms to add (comma list, e.g. grpo,nash_md): exact-mode trajectories and stationary points at β"))

    def algorithm_list(self) -> list[str]:
        return [a.strip() for a in self.algorithms.split(",") if a.strip()]

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        if len(self.pi_ref) != 3:
            raise BanditError(f"--pi-ref, --pi-star: the simplex view needs a 3-response bandit; got {len(self.pi_ref)} responses")
        from bandit_lab.losses.onpolicy import ALGORITHMS

        bad = [a for a in self.algorithm_list() if a not in ALGORITHMS]
        if bad:
            raise BanditError(f"--algorithms: unknown on-policy algorithm(s) {', '.join(map(str, bad))}; choose from {', '.join(ALGORITHMS)}")

    def cost(self) -> budget.Cost:
        P = len(self.alpha) + len(self.algorithm_list())
        train = budget.training(steps=self.steps, responses=3, runs=6 * P, logged=200)
        return budget.problem(1, 3) + (train | budget.newton(params=3, responses=3, points=6 * P))


ONPOLICY_STYLE = ("reinforce", "rloo", "ppo", "grpo", "dr_grpo", "dapo", "online_dpo", "nash_md")


def to_xy(p) -> np.ndarray:
    """Barycentric → Cartesian: ``[..., 3] → [..., 2]``."""
    return np.asarray(p, dtype=float) @ VERTICES


def run(s: Settings) -> dict:
    problem = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")
    objs = []
    for name, lp in (("dpo", {}), ("fdpo", {"divergence": "forward_kl"}), ("ipo", {})):
        o = make_objective(problem, name, {"beta": s.beta, **lp})
        objs += [o, o.counterpart()]
    alphas = [float(a) for a in s.alpha]
    hps = [[{**o.hp, "weight_decay": a, "lr": s.lr} for a in alphas] for o in objs]
    config = TrainConfig(optimizer="adam", steps=s.steps, schedule="cosine")  # log-spaced π
    trajs = train_batch(objs, config, hps)
    exact = solve_batch(objs, hps)
    records = []
    for i, o in enumerate(objs):
        closed, note = loss_oracle(problem, o.loss.name, o.hp, o.static)
        records.append({"kind": "unconstrained", "objective": o.label, "policy": None if closed is None else to_list(closed), "note": note})
        for j, a in enumerate(alphas):
            records.append({"kind": "trajectory", "objective": o.label, "alpha": a,
                            "steps": np.asarray(trajs[i].steps[j]).tolist(), "policies": to_list(trajs[i].policies[j])})
            records.append({"kind": "constrained", "objective": o.label, "alpha": a, "policy": to_list(exact[i][j].policy),
                            "residual": float(exact[i][j].residual)})
    for name in s.algorithm_list():  # on-policy algorithms: the trainer in exact mode, the root of the expected update
        from bandit_lab.onpolicy.stationary import solve_batch as stationary_batch

        o = make_objective(problem, name, {"beta": s.beta})
        (tr,) = train_batch([o], config, [[{**o.hp, "weight_decay": a, "lr": s.lr} for a in alphas]])
        st = stationary_batch(o, [{"weight_decay": a} for a in alphas])
        closed, note = loss_oracle(problem, name, o.hp, o.static)
        records.append({"kind": "unconstrained", "objective": name, "policy": None if closed is None else to_list(closed), "note": note})
        for j, a in enumerate(alphas):
            records.append({"kind": "trajectory", "objective": name, "alpha": a, "steps": np.asarray(tr.steps[j]).tolist(),
                            "policies": to_list(tr.policies[j])})
            records.append({"kind": "constrained", "objective": name, "alpha": a, "policy": to_list(st[j].result.policy),
                            "residual": float(st[j].result.residual), "status": st[j].status})
    out = {"command": command_line("simplex", s) + " --out DIR", "alphas": alphas, "beta": s.beta, "pi_star": list(s.pi_star), "pi_ref": list(s.pi_ref)}
    if s.mode_seeking:
        dpo, rlhf = ms.objectives(s.beta)
        init = jnp.asarray([0.5])
        mtr = train_batch([dpo, rlhf], TrainConfig(steps=2000, schedule="cosine"), [[{**dpo.hp, "lr": 0.01}], [{**rlhf.hp, "lr": 0.01}]],
                          inits=[init, init])
        mex = [float(np.asarray(solve_exact(o, init=init).params)[0]) for o in (dpo, rlhf)]
        out["mode_seeking"] = {"theta_dpo_exact": mex[0], "theta_rlhf_exact": mex[1], "paper": ms.PAPER,
                               "pi_star": list(ms.PI_STAR), "trajectory_dpo": to_list(mtr[0].policies[0]),
                               "trajectory_rlhf": to_list(mtr[1].policies[0])}
    # how far apart each loss lands from its counterpart, per α (TV of the exact optima)
    sep = {}
    for k in range(0, len(objs), 2):
        sep[objs[k].label] = [float(0.5 * np.abs(exact[k][j].policy - exact[k + 1][j].policy).sum()) for j in range(len(alphas))]
    out["exact_tv_to_counterpart"] = sep
    out["records"] = records
    return out


def report(res: dict) -> str:
    lines = [f"simplex view: π* = {res['pi_star']}, π_ref = {res['pi_ref']}, β = {res['beta']:g}", ""]
    lines.append(f"{'objective':<24}" + "".join(f"{'exact optimum, α=' + format(a, 'g'):>30}" for a in res["alphas"]) + f"{'unconstrained (closed form)':>30}")
    recs = res["records"]
    labels = list(dict.fromkeys(r["objective"] for r in recs if r["kind"] == "constrained"))
    for lab in labels:
        row = f"{lab:<24}"
        for a in res["alphas"]:
            p = next(r["policy"] for r in recs if r["kind"] == "constrained" and r["objective"] == lab and r["alpha"] == a)
            row += f"{'[' + ', '.join(f'{v:.4f}' for v in p) + ']':>30}"
        u = next(r["policy"] for r in recs if r["kind"] == "unconstrained" and r["objective"] == lab)
        row += f"{('[' + ', '.join(f'{v:.4f}' for v in u) + ']') if u else '—':>30}"
        lines.append(row)
    lines.append("")
    lines.append("TV(exact loss optimum, exact counterpart optimum): " + "; ".join(
        f"{lab}: " + ", ".join(f"α={a:g} {v:.2e}" for a, v in zip(res["alphas"], vals)) for lab, vals in res["exact_tv_to_counterpart"].items()))
    if "mode_seeking" in res:
        m = res["mode_seeking"]
        lines.append(f"mode-seeking segment: θ_DPO = {m['theta_dpo_exact']:.4f} (paper {m['paper']['theta_dpo']}), θ_RLHF = {m['theta_rlhf_exact']:.6f} (paper {m['paper']['theta_rlhf']})")
    return "\n".join(lines)


def _triangle(ax, title: str, fracs=(0.25, 0.5, 0.75), labels: bool = True) -> None:
    tri = np.vstack([VERTICES, VERTICES[:1]])
    ax.plot(tri[:, 0], tri[:, 1], color="k", lw=1.2)
    for frac in fracs:  # light iso-probability lines
        for v in range(3):
            a, b = (v + 1) % 3, (v + 2) % 3
            p, q = np.zeros(3), np.zeros(3)
            p[v], p[a], q[v], q[b] = frac, 1 - frac, frac, 1 - frac
            seg = to_xy(np.stack([p, q]))
            ax.plot(seg[:, 0], seg[:, 1], color="0.88", lw=0.6, zorder=0)
    for name, (x, y), off in zip(("y_a", "y_b", "y_c") if labels else (), VERTICES, ((-0.05, -0.06), (0.05, -0.06), (0.0, 0.04))):
        ax.text(x + off[0], y + off[1], name, ha="center", va="center", fontsize=11, fontweight="bold")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal")
    ax.set_xlim(-0.12, 1.12)
    ax.set_ylim(-0.12, 0.98)
    ax.axis("off")


def plot(res: dict, out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches  # noqa: F401
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    recs = res["records"]
    alphas = res["alphas"]
    n = len(alphas) + (1 if "mode_seeking" in res else 0)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.6))
    axes = np.atleast_1d(axes)
    labels = list(dict.fromkeys(r["objective"] for r in recs if r["kind"] == "trajectory"))
    for ax, a in zip(axes, alphas):
        _triangle(ax, "no constraint (α = 0): each pair meets" if a == 0 else f"weight decay α = {a:g}: pairs land apart", labels=False)
        ref, star = to_xy(res["pi_ref"]), to_xy(res["pi_star"])
        ax.plot(*ref, "s", color="k", ms=7, mfc="white", zorder=5)
        ax.annotate("π_ref", ref, xytext=(6, -12), textcoords="offset points", fontsize=8)
        ax.plot(*star, "*", color="gold", mec="k", ms=13, zorder=5)
        ax.annotate("π*", star, xytext=(6, 4), textcoords="offset points", fontsize=8)
        for lab in labels:
            col, _ = STYLE.get(lab, ("k", lab))
            rlhf = lab.startswith("rlhf")
            onp = lab in ONPOLICY_STYLE
            tr = next(r for r in recs if r["kind"] == "trajectory" and r["objective"] == lab and r["alpha"] == a)
            xy = to_xy(tr["policies"])
            ax.plot(xy[:, 0], xy[:, 1], ":" if onp else ("--" if rlhf else "-"), color=col, lw=1.6, alpha=0.9)
            c = next(r for r in recs if r["kind"] == "constrained" and r["objective"] == lab and r["alpha"] == a)
            ax.plot(*to_xy(c["policy"]), "o" if not rlhf else "D", color=col, mec="k", ms=10 if lab == "rlhf[reverse_kl]" else 7,
                    zorder=5 if lab == "rlhf[reverse_kl]" else 6)
            u = next(r for r in recs if r["kind"] == "unconstrained" and r["objective"] == lab)
            if u["policy"] is not None:
                ax.plot(*to_xy(u["policy"]), "x", color=col, ms=9, mew=2, zorder=7)
        # zoom on the action; an inset shows where the window sits in the whole simplex
        pts = np.vstack([to_xy(r["policies"]) for r in recs if r["kind"] == "trajectory" and r["alpha"] == a]
                        + [to_xy(r["policy"])[None] for r in recs if r["kind"] in ("constrained", "unconstrained") and r.get("alpha", a) == a and r["policy"]]
                        + [star[None], ref[None]])
        lo, hi = pts.min(0), pts.max(0)
        half = 0.5 * max(hi - lo) + 0.04
        mid = 0.5 * (lo + hi)
        ax.set_xlim(mid[0] - half, mid[0] + half)
        ax.set_ylim(mid[1] - half, mid[1] + half)
        for frac in np.arange(0.05, 1.0, 0.05):  # finer iso-probability lines inside the zoom
            for v in range(3):
                b1, b2 = (v + 1) % 3, (v + 2) % 3
                p, q = np.zeros(3), np.zeros(3)
                p[v], p[b1], q[v], q[b2] = frac, 1 - frac, frac, 1 - frac
                seg = to_xy(np.stack([p, q]))
                ax.plot(seg[:, 0], seg[:, 1], color="0.9", lw=0.5, zorder=0)
        ins = ax.inset_axes([0.0, 0.72, 0.28, 0.28])
        _triangle(ins, "")
        for t in ins.texts:
            t.set_fontsize(6)
        ins.add_patch(matplotlib.patches.Rectangle((mid[0] - half, mid[1] - half), 2 * half, 2 * half, fill=False, ec="C3", lw=1))
        ax.text(0.99, 0.01, "zoomed; grid: probability steps of 0.05", transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")
    if "mode_seeking" in res:
        m = res["mode_seeking"]
        ax = axes[-1]
        _triangle(ax, "mode seeking (§3.3): π_θ = θ·[1,0,0] + (1−θ)·uniform")
        seg = to_xy(np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]]))
        ax.plot(seg[:, 0], seg[:, 1], color="0.4", lw=4, alpha=0.35, solid_capstyle="round")
        ax.annotate("θ = 0 (uniform)", seg[0], xytext=(4, 8), textcoords="offset points", fontsize=8)
        st = to_xy(m["pi_star"])
        ax.plot(*st, "*", color="gold", mec="k", ms=13, zorder=5)
        ax.annotate("π* = [½, 0, ½]\n(two modes)", st, xytext=(-70, -8), textcoords="offset points", fontsize=8)

        def at(theta):
            return to_xy(np.array([theta + (1 - theta) / 3, (1 - theta) / 3, (1 - theta) / 3]))

        for key, lab, col in (("trajectory_dpo", "dpo", STYLE["dpo"][0]), ("trajectory_rlhf", "rlhf[reverse_kl]", STYLE["rlhf[reverse_kl]"][0])):
            xy = to_xy(m[key])
            ax.plot(xy[:, 0], xy[:, 1] + (0.012 if lab == "dpo" else -0.012), "-" if lab == "dpo" else "--", color=col, lw=1.6)
        ax.plot(*at(m["theta_dpo_exact"]), "o", color=STYLE["dpo"][0], mec="k", ms=9, zorder=6)
        ax.annotate(f"θ_DPO = {m['theta_dpo_exact']:.3f}\n(paper {m['paper']['theta_dpo']:.2f})", at(m["theta_dpo_exact"]),
                    xytext=(-10, 18), textcoords="offset points", fontsize=8, color=STYLE["dpo"][0])
        ax.plot(*at(m["theta_rlhf_exact"]), "D", color=STYLE["rlhf[reverse_kl]"][0], mec="k", ms=8, zorder=6)
        ax.annotate(f"θ_RLHF = {m['theta_rlhf_exact']:.4f}\n(paper {m['paper']['theta_rlhf']:.2f})", at(m["theta_rlhf_exact"]),
                    xytext=(-20, 22), textcoords="offset points", fontsize=8, color=STYLE["rlhf[reverse_kl]"][0])
        ax.plot(*at(0.5), "s", color="k", mfc="white", ms=6, zorder=5)
        ax.annotate("start θ = 0.5", at(0.5), xytext=(-5, -16), textcoords="offset points", fontsize=7)
    handles = [Line2D([], [], color=STYLE.get(lab, ("k", lab))[0], ls=":" if lab in ONPOLICY_STYLE else ("--" if lab.startswith("rlhf") else "-"),
                      lw=1.8, label=STYLE.get(lab, ("k", lab))[1])
               for lab in labels]
    handles += [
        Line2D([], [], ls="", marker="o", color="0.5", mec="k", label="exact optimum of a preference loss (under the panel's α)"),
        Line2D([], [], ls="", marker="D", color="0.5", mec="k", label="exact optimum of an RLHF objective (under the panel's α)"),
        Line2D([], [], ls="", marker="x", color="0.3", mew=2, label="unconstrained optimum (closed form)"),
        Line2D([], [], ls="", marker="*", color="gold", mec="k", ms=11, label="π* (target)"),
        Line2D([], [], ls="", marker="s", color="k", mfc="white", label="π_ref (start) / θ = 0.5 start"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("DPO and RLHF part ways under constraints (Kong et al. §3): trajectories from π_ref on the probability simplex", fontsize=11)
    return [save_figure(fig, out_dir, "simplex.png", "regenerate: " + res.get("command", "bandit-lab run simplex --out DIR"), y=0.005, rect=(0, 0.12, 1, 0.95))]


EXPERIMENT = Experiment(
    name="simplex",
    summary="teaching picture: trajectories and optima of DPO, f-DPO, IPO and RLHF on the 3-response simplex",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 1000},
    reference="Kong et al. §3 (Fig. 1 made concrete), §3.3",
)
