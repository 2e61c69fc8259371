"""Early stopping as one gradient step (Kong et al. §5.2 "Early Stopping", Fig. 5, App. B.2).

From ``(1−θ₀)/θ₀ = c`` take one projected gradient step of size ``lr`` on the Eq. 20 loss
``ℓ(θ) = log(√c + √((1−θ)/θ))`` *without* the θ² term (App. B.2 defines both decreases on
ℓ_DPO of Eq. 20) and report

    absolute decrease = ℓ(θ₀) − ℓ(θ₁),     relative decrease = (ℓ(θ₀) − ℓ(θ₁)) / ℓ(θ₀).

The relative decrease depends on which constant ℓ carries: Eq. 20 as printed equals
``log(2√c)`` at θ₀ — negative for c < ¼ and zero at c = ¼, where the ratio is singular — while
the same loss in DPO form (Eq. 6, β = ½; differs by ``log √c``) equals ``log 2`` at θ₀ for
every c. Both are reported. At θ₀, ``ℓ'(θ₀) = −(1+c)²/(4c)``, invariant under ``c ↦ 1/c``,
so to first order (``lr·ℓ'²``) the decrease is symmetric in log c about c = 1.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.solvers import thresholding_loss
from bandit_lab.errors import BanditError
from bandit_lab.experiments import Experiment, meta, pyplot, save_figure



@dataclasses.dataclass(frozen=True)
class Settings:
    lr: float = dataclasses.field(default=1e-3, metadata=meta("step size of the single gradient step (not stated in the paper)", bounds.LR))
    ratio_min: float = dataclasses.field(default=0.01, metadata=meta("smallest π_ref ratio c of the log grid", bounds.POSITIVE))
    ratio_max: float = dataclasses.field(default=10.0, metadata=meta("largest π_ref ratio c of the log grid", bounds.POSITIVE))
    n_ratios: int = dataclasses.field(default=61, metadata=meta("points of the log grid", bounds.Int(ge=2, le=bounds.INT64_MAX)))

    def saves(self) -> bool:
        """Print only; records and figures are written with ``--out DIR``."""
        return False

    def validate(self) -> None:
        if not self.ratio_min < self.ratio_max:
            raise BanditError(f"--ratio-min must be < --ratio-max; got {self.ratio_min:g} ≥ {self.ratio_max:g}")

    def cost(self) -> budget.Cost:
        return budget.array(40 * self.n_ratios, "the ratio grid and its records")


def run(s: Settings) -> dict:
    c = np.geomspace(s.ratio_min, s.ratio_max, s.n_ratios)
    t0, t1, l0, l1, d0, d1 = thresholding_loss.one_step(c, s.lr)
    g0 = thresholding_loss.dloss(t0, c, 0.0, np)
    ab = l0 - l1
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_printed = np.where(l0 != 0, ab / l0, np.nan)
    rel_dpo = ab / d0
    # the same step from the mirrored ratio 1/c, for the symmetry statement
    _, _, m0, m1, _, _ = thresholding_loss.one_step(1.0 / c, s.lr)
    records = [
        {
            "ratio": float(c[i]),
            "theta0": float(t0[i]),
            "theta1": float(t1[i]),
            "grad0": float(g0[i]),
            "clipped": bool(t1[i] >= 1.0),
            "loss0": float(l0[i]),
            "loss1": float(l1[i]),
            "abs_decrease": float(ab[i]),
            "rel_decrease": None if not np.isfinite(rel_printed[i]) else float(rel_printed[i]),
            "rel_decrease_dpo": float(rel_dpo[i]),
            "first_order": float(s.lr * g0[i] ** 2),
            "abs_decrease_at_inverse_ratio": float(m0[i] - m1[i]),
        }
        for i in range(len(c))
    ]
    k = int(np.argmin(ab))
    return {
        "lr": s.lr,
        "abs_decrease_monotone": bool(np.all(np.diff(ab) <= 0)),
        "abs_decrease_small_end": float(ab[0]),
        "abs_decrease_large_end": float(ab[-1]),
        "small_end_larger": bool(ab[0] > ab[-1]),
        "argmin_ratio": float(c[k]),
        "min_abs_decrease": float(ab[k]),
        "n_clipped": int(np.sum(t1 >= 1.0)),
        "records": records,
    }


def report(res: dict) -> str:
    recs = res["records"]
    lines = [
        f"Kong et al. Fig. 5: one projected gradient step (lr = {res['lr']:g}) on Eq. 20 (no θ²) from (1−θ₀)/θ₀ = c",
        "",
        f"{'ratio c':>9}{'θ₀':>9}{'ℓ′(θ₀)':>11}{'θ₁':>9}{'abs decr':>11}{'rel (Eq.20)':>13}{'rel (DPO form)':>16}{'abs at 1/c':>12}",
    ]
    show = sorted(set([0, len(recs) - 1] + list(range(0, len(recs), max(len(recs) // 12, 1)))))
    for i in show:
        r = recs[i]
        rp = "singular" if r["rel_decrease"] is None else f"{r['rel_decrease']:.4g}"
        lines.append(
            f"{r['ratio']:>9.4g}{r['theta0']:>9.4f}{r['grad0']:>11.4g}{r['theta1']:>9.4f}{r['abs_decrease']:>11.4g}"
            f"{rp:>13}{r['rel_decrease_dpo']:>16.4g}{r['abs_decrease_at_inverse_ratio']:>12.4g}"
        )
    lines += [
        "",
        f"absolute decrease monotone in c: {res['abs_decrease_monotone']}; smallest {res['min_abs_decrease']:.4g} at c = {res['argmin_ratio']:.4g}; "
        f"ends: {res['abs_decrease_small_end']:.4g} (c = {recs[0]['ratio']:g}) vs {res['abs_decrease_large_end']:.4g} (c = {recs[-1]['ratio']:g})",
        f"{res['n_clipped']} ratio(s) reach θ₁ = 1 (projection; the DPO-form loss is then 0, decrease = log 2)",
        "relative decrease of Eq. 20 as printed is negative for c < 1/4 (ℓ(θ₀) = log 2√c < 0) and singular at c = 1/4",
    ]
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    c = np.array([r["ratio"] for r in recs])
    ab = np.array([r["abs_decrease"] for r in recs])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    axes[0].plot(c, ab, "o-", ms=3, label="absolute decrease")
    axes[0].plot(c, [r["abs_decrease_at_inverse_ratio"] for r in recs], "--", lw=1, label="same step at ratio 1/c")
    axes[0].plot(c, [r["first_order"] for r in recs], ":", lw=1, label="first order lr·ℓ′(θ₀)²")
    axes[0].set_yscale("log")
    axes[0].set_ylim(ab.min() / 3, 1.5)
    axes[0].set_title("absolute decrease ℓ(θ₀) − ℓ(θ₁)", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(c, [r["rel_decrease_dpo"] for r in recs], "o-", ms=3, color="C2")
    axes[1].set_yscale("log")
    axes[1].set_title("relative decrease, DPO form (Eq. 6, β=½): ÷ log 2", fontsize=9)
    rel = np.array([np.nan if r["rel_decrease"] is None else r["rel_decrease"] for r in recs])
    axes[2].plot(c, rel, "o-", ms=3, color="C3")
    axes[2].axvline(0.25, color="k", ls=":", lw=0.8)
    axes[2].set_yscale("symlog", linthresh=1e-3)
    axes[2].set_title("relative decrease ÷ Eq. 20 as printed (singular at c = ¼)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("π_ref ratio c = π_ref(y_b)/π_ref(y_a)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Kong et al. Fig. 5: one projected GD step on Eq. 20 from (1−θ₀)/θ₀ = c, lr = {res['lr']:g}", fontsize=10)
    r0, r1 = recs[0]["ratio"], recs[-1]["ratio"]
    return [save_figure(fig, out_dir, "single_step.png", f"regenerate: bandit-lab run single-step --lr {res['lr']:g} --ratio-min {r0:g} --ratio-max {r1:g} --n-ratios {len(recs)} --out DIR", dpi=130, rect=(0, 0.03, 1, 0.95))]


EXPERIMENT = Experiment(
    name="single-step",
    summary="absolute and relative decrease of the Eq. 20 loss after one gradient step (Fig. 5)",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"n_ratios": 13},
    reference="Kong et al. Fig. 5",
)
