"""DPO's thresholding under weight decay (Kong et al. §5.2, Eq. 20 plus θ², Table 1).

``L(θ) = log(√c + √((1−θ)/θ)) + α θ²`` (α = 1) with ``c = π_ref(y_b)/π_ref(y_a)``, minimised by
projected gradient descent (500 steps, App. B.2) from ``(1−θ₀)/θ₀ = c``. Per ratio: Table 1's θ,
the θ the procedure gives here, every stationary point on (0, 1) with its type, the global
minimiser on [0, 1]; and the critical ratio ``c*`` below which no interior minimum exists.

A labelled *diagnostic* explains the printed values that a converged run does not give: from
the paper's init, ``L' < 0`` on (0, 1) for ``c < c*``, so θ only grows from θ₀ = 1/(1+c) to 1 —
no step size, step budget or stopping rule can end at Table 1's 0.77 < θ₀ for c = 0.1. The
*mirrored* init ``θ₀/(1−θ₀) = c`` with a small step (``--diag-lr``, 500 steps, unconverged)
reproduces the whole printed row; it is shown as an explanation, never as the result.
All numerics in :mod:`bandit_lab.solvers.thresholding_loss`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.solvers import thresholding_loss
from bandit_lab.experiments import Experiment, meta, pyplot, save_figure



@dataclasses.dataclass(frozen=True)
class Settings:
    ratio: tuple[float, ...] = dataclasses.field(default=thresholding_loss.PAPER_RATIOS, metadata=meta("π_ref ratios c = π_ref(y_b)/π_ref(y_a) (comma list or repeated; Table 1's by default)", bounds.POSITIVE))
    lr: float = dataclasses.field(default=0.01, metadata=meta("step size of projected gradient descent (not stated in the paper)", bounds.LR))
    steps: int = dataclasses.field(default=500, metadata=meta("iterations (App. B.2: 500)", bounds.STEPS))
    init: str = dataclasses.field(default="ratio", metadata=meta("θ₀: ratio ((1−θ₀)/θ₀ = c, the paper's text) | mirrored (θ₀/(1−θ₀) = c) | a number in (0, 1]"))
    weight_decay: float = dataclasses.field(default=1.0, metadata=meta("α of the α θ² penalty (Table 1: 1)", bounds.POSITIVE))
    diag_lr: float = dataclasses.field(default=0.0027, metadata=meta("step size of the labelled diagnostic run (mirrored init, same steps)", bounds.LR))
    tol: float = dataclasses.field(default=1e-6, metadata=meta("a run counts as converged if |θ − nearest local minimiser| ≤ tol", bounds.POSITIVE))

    def saves(self) -> bool:
        """Print only; records and figures are written with ``--out DIR``."""
        return False

    def validate(self) -> None:
        thresholding_loss.init_theta(np.ones(1), self.init)

    def cost(self) -> budget.Cost:
        R = len(self.ratio)
        c = budget.array(2 * 2 * R * (self.steps + 1.0), "the θ trajectories (one value per step and ratio)")
        c.work = 2 * self.steps * (budget.STEP_NS + R * budget.RUN_NS)
        return c


def _paper(c: float):
    for r, t in zip(thresholding_loss.PAPER_RATIOS, thresholding_loss.PAPER_THETA):
        if np.isclose(c, r):
            return t
    return None


def _local_min_of(theta: float, pts: list[dict]) -> float:
    """The local minimiser on [0, 1] nearest to θ (interior minima and the boundary θ = 1)."""
    cands = [1.0] + [p["theta"] for p in pts if p["type"] == "min"]
    return min(cands, key=lambda x: abs(x - theta))


def run(s: Settings) -> dict:
    ratios = np.asarray([float(r) for r in s.ratio])
    a = float(s.weight_decay)
    t0 = thresholding_loss.init_theta(ratios, s.init)
    theta, traj = thresholding_loss.pgd(ratios, t0, s.lr, s.steps, a)
    t0d = thresholding_loss.init_theta(ratios, "mirrored")
    theta_d, traj_d = thresholding_loss.pgd(ratios, t0d, s.diag_lr, s.steps, a)
    c_star, t_star = thresholding_loss.critical_ratio(a)
    c_g = thresholding_loss.global_switch_ratio(a)
    records = []
    for i, c in enumerate(ratios):
        pts = thresholding_loss.stationary_points(float(c), a)
        g = thresholding_loss.global_min(float(c), a, pts)
        lm = _local_min_of(float(theta[i]), pts)
        paper = _paper(float(c))
        grid = np.linspace(1e-4, 1 - 1e-4, 20001)
        dl = thresholding_loss.dloss(grid, c, a, np)
        records.append(
            {
                "ratio": float(c),
                "paper": paper,
                "theta0": float(t0[i]),
                "theta": float(theta[i]),
                "converged": bool(abs(theta[i] - lm) <= s.tol),
                "local_min": lm,
                "stationary_points": pts,
                "global_min": g["theta"],
                "global_min_value": g["value"],
                "global_min_where": g["where"],
                "value": float(thresholding_loss.loss(theta[i], c, a, np)),
                "dloss_max": float(np.max(dl)),
                "dloss_argmax": float(grid[np.argmax(dl)]),
                "agrees_with_paper": None if paper is None else bool(abs(theta[i] - paper) <= 0.01),
                "gap_to_paper": None if paper is None else float(theta[i] - paper),
                "diag_theta0": float(t0d[i]),
                "diag_theta": float(theta_d[i]),
                "trajectory": traj[i].tolist(),
                "diag_trajectory": traj_d[i].tolist(),
            }
        )
    for r in records:
        r["note"] = _note(r, s)
    with_paper = [r for r in records if r["paper"] is not None]
    return {
        "critical_ratio": c_star,
        "critical_theta": t_star,
        "global_switch_ratio": c_g,
        "weight_decay": a,
        "lr": s.lr,
        "steps": s.steps,
        "init": s.init,
        "diag_lr": s.diag_lr,
        "n_agree": sum(bool(r["agrees_with_paper"]) for r in with_paper),
        "n_paper": len(with_paper),
        "diag_max_gap": max((abs(round(r["diag_theta"], 2) - r["paper"]) for r in with_paper), default=None),
        "records": records,
    }


def _note(r: dict, s: Settings) -> str:
    """One line for RESULTS.md: why the printed θ agrees or not with the converged one."""
    pts = r["stationary_points"]
    where = "not converged" if not r["converged"] else "the global minimum" if abs(r["theta"] - r["global_min"]) < 1e-6 else f"a local minimum; global minimiser θ = {r['global_min']:.4f}"
    if not pts:
        land = f"L' < 0 on all of (0,1) (max L' = {r['dloss_max']:.4f} at θ = {r['dloss_argmax']:.3f}): the only minimiser is θ = 1"
    else:
        land = "stationary points " + ", ".join(f"{p['theta']:.4f} ({p['type']})" for p in pts)
    head = f"PGD θ = {r['theta']:.4f} ({where}); {land}"
    if r["paper"] is None or r["agrees_with_paper"]:
        return head
    stat = any(abs(p["theta"] - r["paper"]) < 0.01 for p in pts)
    out = f"{head}; printed {r['paper']:.2f} is {'near' if stat else 'not'} a stationary point"
    if not r["converged"]:
        out += "; this run has not converged (raise --steps or --lr)"
    elif not pts and r["paper"] < r["theta0"]:
        out += f"; with L' < 0, projected GD from θ₀ = {r['theta0']:.3f} only increases θ and cannot end below θ₀"
    return (f"{out}; an unconverged run from the mirrored init θ₀ = {r['diag_theta0']:.3f} "
            f"(lr {s.diag_lr:g}, {s.steps} steps) ends at {r['diag_theta']:.3f}")


def _pts(pts) -> str:
    return ", ".join(f"{p['theta']:.4f} {p['type']}" for p in pts) or "none (L' < 0 on (0,1))"


def report(res: dict) -> str:
    a = res["weight_decay"]
    lines = [
        f"Kong et al. Table 1: L(θ) = log(√c + √((1−θ)/θ)) + {a:g}·θ², projected GD, lr = {res['lr']:g}, "
        f"{res['steps']} steps, init = {res['init']}",
        "",
        f"{'ratio c':>8}{'paper θ':>9}{'θ₀':>8}{'θ (PGD)':>10}{'conv':>6}{'global min':>12}   stationary points on (0,1)",
    ]
    for r in res["records"]:
        p = "—" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(
            f"{r['ratio']:>8g}{p:>9}{r['theta0']:>8.4f}{r['theta']:>10.6f}{('yes' if r['converged'] else 'NO'):>6}"
            f"{r['global_min']:>12.6f}   {_pts(r['stationary_points'])}"
        )
    lines += [
        "",
        "boundaries (every c): L' → −∞ as θ → 0⁺ and as θ → 1⁻, so θ = 1 is always a local minimiser on [0, 1]; "
        "θ = 0 never is (L(0⁺) = +∞)",
        (f"critical ratio c* = {res['critical_ratio']:.10f} (interior min and max merge at θ* = {res['critical_theta']:.8f}; "
         f"for c < c*, L' < 0 on all of (0,1) and every descent ends at θ = 1)") if res["critical_ratio"] > 0 else
        f"critical ratio c* = 0: with α = {a:g} > 27/16 an interior minimum exists for every c > 0",
        f"global-switch ratio c_g = {res['global_switch_ratio']:.10f} (for c < c_g the global minimiser on [0,1] is θ = 1; "
        "between c* and c_g descent from θ₀ stops at a local minimum)",
        f"paper vs converged PGD: {res['n_agree']}/{res['n_paper']} ratios agree (|θ − paper| ≤ 0.01)",
        "",
        f"DIAGNOSTIC (explanation, not a result): mirrored init θ₀/(1−θ₀) = c, lr = {res['diag_lr']:g}, {res['steps']} steps (unconverged):",
        f"{'ratio c':>8}{'paper θ':>9}{'θ₀':>8}{'θ (diag)':>10}",
    ]
    for r in res["records"]:
        p = "—" if r["paper"] is None else f"{r['paper']:.2f}"
        lines.append(f"{r['ratio']:>8g}{p:>9}{r['diag_theta0']:>8.4f}{r['diag_theta']:>10.4f}")
    if res["diag_max_gap"] is not None:
        lines.append(f"largest |round(θ_diag, 2) − paper| = {res['diag_max_gap']:.2f}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    a = res["weight_decay"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    th = np.linspace(1e-3, 1.0, 2000)
    cmap = plt.get_cmap("viridis")
    for k, r in enumerate(recs):
        col = cmap(k / max(len(recs) - 1, 1))
        c = r["ratio"]
        L = thresholding_loss.loss(th, c, a, np) - thresholding_loss.loss(1.0, c, a, np)
        axes[0].plot(th, L, color=col, lw=1.2, label=f"c = {c:g}")
        tr = np.asarray(r["trajectory"])
        axes[0].plot(tr[::10], thresholding_loss.loss(tr[::10], c, a, np) - thresholding_loss.loss(1.0, c, a, np), "o", ms=2.5, color=col)
        axes[0].plot([r["theta"]], [thresholding_loss.loss(r["theta"], c, a, np) - thresholding_loss.loss(1.0, c, a, np)], "*", ms=10, color=col, mec="k")
        if r["paper"] is not None:
            axes[0].axvline(r["paper"], color=col, ls=":", lw=0.8)
        axes[1].plot(th[:-1], thresholding_loss.dloss(th[:-1], c, a, np), color=col, lw=1.2, label=f"c = {c:g}")
        steps = np.arange(len(tr))
        axes[2].plot(steps, tr, color=col, lw=1.4, label=f"c = {c:g} (paper init)")
        axes[2].plot(steps, r["diag_trajectory"], color=col, lw=1.0, ls="--")
        if r["paper"] is not None:
            axes[2].plot([steps[-1]], [r["paper"]], "x", color=col, ms=7)
    axes[0].set_ylim(-0.6, 1.2)
    axes[0].set_xlabel("θ = π_θ(y_a)")
    axes[0].set_ylabel("L(θ) − L(1)")
    axes[0].set_title("landscapes; dots: PGD every 10 steps, ★ end; dotted: Table 1 θ", fontsize=8)
    axes[0].legend(fontsize=7)
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set_ylim(-4, 2)
    axes[1].set_xlabel("θ")
    axes[1].set_ylabel("L'(θ)")
    axes[1].set_title(f"L' < 0 everywhere for c < c* = {res['critical_ratio']:.6f}", fontsize=8)
    axes[2].set_xscale("symlog", linthresh=1)
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("θ_t")
    axes[2].set_title(f"solid: paper init, lr={res['lr']:g}; dashed: DIAGNOSTIC mirrored init, lr={res['diag_lr']:g}; × Table 1", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Kong et al. §5.2 / Table 1: Eq. 20 + θ² under projected gradient descent", fontsize=10)
    ratios = " ".join(f"--ratio {r['ratio']:g}" for r in recs) if tuple(r["ratio"] for r in recs) != tuple(thresholding_loss.PAPER_RATIOS) else ""
    cmd = f"bandit-lab run thresholding --lr {res['lr']:g} --steps {res['steps']} --init {res['init']} --diag-lr {res['diag_lr']:g} "
    if res["weight_decay"] != 1.0:
        cmd += f"--weight-decay {res['weight_decay']:g} "
    cmd += f"{ratios} --out DIR"
    return [save_figure(fig, out_dir, "thresholding.png", "regenerate: " + " ".join(cmd.split()), dpi=130, rect=(0, 0.03, 1, 0.95))]


EXPERIMENT = Experiment(
    name="thresholding",
    summary="Eq. 20 + θ² under projected GD: converged θ, stationary points, critical ratio (Table 1)",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={},
    reference="Kong et al. §5.2, Table 1",
)
