"""Noise-adaptive suppression in the sandbox (Kong et al. §5.3, Eq. 21, Fig. 6, Table 2).

X contexts (default 4000), each a 2-response bandit with deterministic labels (y_w = response 0
always preferred) and a reference ratio ``r_x = π_ref(y_l|x)/π_ref(y_w|x)`` drawn log-uniformly
(``log10 r ∈ [--log10-ratio-min, --log10-ratio-max]``). One :class:`Problem` with X contexts
(uniform context weight), population DPO data, trained from π_ref with Adam — every
parameterization in one compiled ``jit(vmap(scan))`` (``runner.train_batch``):

- ``softmax``: tabular logits per context;
- ``loglinear``: shared weights ``w ∈ R^{1+D}`` on features ``φ(x, y) = [log π_ref(y|x), z(x, y)]``
  with ``z ~ N(0, feature_scale²)`` from ``--seed`` and ``w₀ = (1, 0, …, 0)`` — π_θ = π_ref at
  init (Eq. 21 = 1, as in the paper) and a capacity constraint (1 + D numbers for X contexts);
- ``simplex``: direct probabilities (the θ-space of §5.2 / Eq. 20), projected onto the simplex.

Per context Eq. 21, ``(π_θ(y_l)/π_θ(y_w)) / (π_ref(y_l)/π_ref(y_w))``, is computed in log space
and rounded to 9 decimals before ranking, so values equal up to float rounding tie (this matters
for ``softmax``, where they are equal exactly — see below). Under ``--float32`` it is rounded to
5 decimals (:data:`TIE_DECIMALS`): float32's rounding of π_ref alone moves Eq. 21 by ≈ 1e-6, in a
direction that depends on the ratio, and at 9 decimals that noise ranked the tabular-softmax
contexts "significantly" (p = 0 at 10⁵ contexts instead of float64's exact ties, p = 1). Groups: ratios below the ``low``
percentile and above the ``high`` percentile (paper: 0.5 / 99.5; default 5 / 95, i.e. 200 vs 200
contexts at X = 4000 instead of 20 vs 20, so the test has power and the tails are not a handful
of draws). Reported: average ranks (Wilcoxon 1945, ties averaged; App. B.3) and a one-sided
Mann–Whitney U (``scipy.stats.mannwhitneyu``, alternative: low group smaller).

Findings built into the defaults (see docs/kong-b.md):
- tabular softmax: DPO depends on θ only through ``h_w − h_l = Δθ − Δθ_ref``, so every context
  follows the same trajectory in ``h_w − h_l`` and Eq. 21 is identical for all contexts — no
  noise-adaptive effect at all (p = 1);
- direct probabilities (simplex): the effect appears without any shared parameter. At π_ref
  Adam's first step moves π(y_w) up and π(y_l) down by ≈ lr in *every* context; in log-ratio
  terms that is a change of ≈ lr/π_ref(y_l) + lr/π_ref(y_w), largest where π_ref(y_l) is small,
  so Eq. 21 after one step is increasing in the ratio and the groups separate completely (U = 0)
  at step 1, before any context reaches π(y_l) = 0 (the ``timeline`` records show both);
- shared features: at init ``∂L/∂w₀ = (β/2)·mean_x log r_x``, so the weight on the reference
  log-probability grows iff π_ref prefers y_w on average, and Eq. 21 ≈ ``r^{Δw₀}`` is then
  smallest for the smallest ratios. The default range (log10 r ∈ [−3, 1], median ratio 0.01:
  an SFT reference trained on y_w mostly prefers it) gives the paper's direction; a range
  symmetric about 0 makes the sign of the effect depend on the seed (``--log10-ratio-max 3``).
So the effect is a property of the coordinates the optimiser steps in, not of the DPO loss
alone: it needs contexts that do not share one trajectory, which shared parameters give and
direct probabilities give too; only tabular logits remove it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from scipy import stats

from bandit_lab.infra import bounds, budget
from bandit_lab.errors import BanditError
from bandit_lab.experiments import Experiment, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.core.params import LogLinear, Simplex, Softmax
from bandit_lab.core.problems import Problem
from bandit_lab.runner import train_batch
from bandit_lab.core.train import TrainConfig

PARAMS = ("softmax", "loglinear", "simplex")



@dataclasses.dataclass(frozen=True)
class Settings:
    n_contexts: int = dataclasses.field(default=4000, metadata=meta("number of contexts X", bounds.Int(ge=4, le=bounds.INT64_MAX)))
    log10_ratio_min: float = dataclasses.field(default=-3.0, metadata=meta("log10 of the smallest π_ref(y_l)/π_ref(y_w)", bounds.Real(ge=-12, le=12)))
    log10_ratio_max: float = dataclasses.field(default=1.0, metadata=meta("log10 of the largest π_ref(y_l)/π_ref(y_w)", bounds.Real(ge=-12, le=12)))
    param: tuple[str, ...] = dataclasses.field(default=PARAMS, metadata=meta("parameterizations (comma list or repeated)", choices=PARAMS))
    beta: float = dataclasses.field(default=0.1, metadata=meta("DPO β (Kong et al.'s λ)", bounds.BETA))
    optimizer: str = dataclasses.field(default="adam", metadata=meta("adam (paper, App. B.3) | sgd", choices=("adam", "sgd")))
    lr: float = dataclasses.field(default=1e-3, metadata=meta("learning rate (constant schedule)", bounds.LR))
    steps: int = dataclasses.field(default=150, metadata=meta("full-batch steps on the population data (a few epochs' worth)", bounds.STEPS))
    features: int = dataclasses.field(default=8, metadata=meta("random features D of the log-linear policy (plus the log π_ref feature)", bounds.Int(ge=0, le=bounds.INT64_MAX)))
    feature_scale: float = dataclasses.field(default=1.0, metadata=meta("standard deviation of the random features", bounds.POSITIVE))
    low: float = dataclasses.field(default=5.0, metadata=meta("percentile below which a context is in the low-ratio group (paper: 0.5)", bounds.Real(gt=0, lt=100)))
    high: float = dataclasses.field(default=95.0, metadata=meta("percentile above which a context is in the high-ratio group (paper: 99.5)", bounds.Real(gt=0, lt=100)))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the ratios and features", bounds.SEED))

    def saves(self) -> bool:
        """Print only; records and figures are written with ``--out DIR``."""
        return False

    def validate(self) -> None:
        if not self.log10_ratio_min < self.log10_ratio_max:
            raise BanditError(f"--log10-ratio-min must be < --log10-ratio-max; got {self.log10_ratio_min:g} ≥ {self.log10_ratio_max:g}")
        if not self.low < self.high:
            raise BanditError(f"--low must be < --high (percentiles); got {self.low:g} ≥ {self.high:g}")

    def cost(self) -> budget.Cost:
        X, D = self.n_contexts, self.features + 1
        params = sum(D if p == "loglinear" else 2 * X for p in self.param)
        c = budget.problem(X, 2) + budget.array(X * 2 * D, "the features")
        return c + budget.training(steps=self.steps, responses=2, contexts=X, runs=len(self.param), params=params)


def make_problem(s: Settings):
    """``(problem, log r [X], features [X, 2, 1+D])``, all from ``s.seed``."""
    rng = np.random.default_rng(s.seed)
    log_r = rng.uniform(s.log10_ratio_min, s.log10_ratio_max, s.n_contexts) * np.log(10.0)
    # π_ref = [1, r]/(1 + r), computed stably in log space
    logp_ref = -np.logaddexp(0.0, np.stack([log_r, -log_r], 1))  # [log 1/(1+r), log r/(1+r)]
    pi_ref = np.exp(logp_ref)
    pi_ref = pi_ref / pi_ref.sum(1, keepdims=True)
    M = np.broadcast_to(np.array([[0.5, 1.0], [0.0, 0.5]]), (s.n_contexts, 2, 2))
    problem = Problem.create(pi_ref, matrix=M)
    z = rng.normal(scale=s.feature_scale, size=(s.n_contexts, 2, s.features))
    feats = np.concatenate([np.log(problem.pi_ref)[..., None], z], -1)
    return problem, np.log(problem.pi_ref[:, 1]) - np.log(problem.pi_ref[:, 0]), feats


def eq21_log(policy: np.ndarray, problem: Problem) -> np.ndarray:
    """log of Kong et al. Eq. 21 per context: ``log(π_l/π_w) − log(π_ref,l/π_ref,w)`` (y_w = 0)."""
    lp = np.log(np.maximum(policy, 1e-300))
    return (lp[:, 1] - lp[:, 0]) - (np.log(problem.pi_ref[:, 1]) - np.log(problem.pi_ref[:, 0]))


TIE_DECIMALS = {True: 9, False: 5}  # x64 on / off: decimals Eq. 21 is compared at (module docstring)


def _tie_decimals() -> int:
    from bandit_lab.infra import precision

    return TIE_DECIMALS[precision.x64_enabled()]


def group_stats(values: np.ndarray, log_r: np.ndarray, low: float, high: float) -> dict:
    """Average ranks (ties averaged) and the one-sided Mann–Whitney U (low < high)."""
    v = np.round(values, _tie_decimals())
    lo_mask = log_r <= np.percentile(log_r, low)
    hi_mask = log_r >= np.percentile(log_r, high)
    lo, hi = v[lo_mask], v[hi_mask]
    ranks = stats.rankdata(np.concatenate([lo, hi]))
    mw = stats.mannwhitneyu(lo, hi, alternative="less")
    return {
        "n_low": int(lo.size),
        "n_high": int(hi.size),
        "avg_rank_low": float(ranks[: lo.size].mean()),
        "avg_rank_high": float(ranks[lo.size:].mean()),
        "U": float(mw.statistic),
        "p_value": float(mw.pvalue),
        "median_eq21_low": float(np.exp(np.median(lo))),
        "median_eq21_high": float(np.exp(np.median(hi))),
        "ranks_low": ranks[: lo.size].tolist(),
        "ranks_high": ranks[lo.size:].tolist(),
    }


def log_steps(steps: int) -> tuple[int, ...]:
    """Steps at which the policy is recorded for the timeline: every step up to 5, then ~20
    log-spaced ones, and the last."""
    return tuple(int(t) for t in np.unique(np.r_[np.arange(min(steps, 5) + 1), np.geomspace(1, steps, 20).astype(int), steps]))


def timeline(policies: np.ndarray, steps: np.ndarray, problem: Problem, log_r: np.ndarray, low: float, high: float) -> list[dict]:
    """Per logged step: the group statistics of Eq. 21 and how many contexts sit on the boundary
    (a probability ≤ 1e-250, i.e. set to 0 by the projection), in all and in the low group."""
    lo_mask = log_r <= np.percentile(log_r, low)
    out = []
    for t, pol in zip(steps, policies):
        g = group_stats(eq21_log(pol, problem), log_r, low, high)
        at = pol.min(1) <= 1e-250
        out.append({"step": int(t), "U": g["U"], "p_value": g["p_value"], "at_floor": int(at.sum()), "at_floor_low": int(at[lo_mask].sum()),
                    "min_pi_yl": float(pol[:, 1].min())})
    return out


def _first(tl: list[dict], pred) -> int | None:
    return next((r["step"] for r in tl if pred(r)), None)


def run(s: Settings) -> dict:
    problem, log_r, feats = make_problem(s)
    objs, inits = [], []
    for name in s.param:
        if name == "softmax":
            par, init = Softmax(problem), None
        elif name == "simplex":
            par, init = Simplex(problem), None
        else:
            par = LogLinear.create(problem, feats)
            init = np.r_[1.0, np.zeros(s.features)]
        objs.append(make_objective(problem, "dpo", {"beta": s.beta}, param=par))
        inits.append(None if init is None else np.asarray(init))
    import jax.numpy as jnp

    inits = [None if i is None else jnp.asarray(i) for i in inits]
    config = TrainConfig(optimizer=s.optimizer, schedule="constant", steps=s.steps, log_steps=log_steps(s.steps))
    t0 = time.perf_counter()
    trajs = train_batch(objs, config, [[{**o.hp, "lr": s.lr}] for o in objs], seed=s.seed, inits=inits)
    seconds = time.perf_counter() - t0
    records = []
    for name, tr in zip(s.param, trajs):
        pol0 = np.asarray(tr.policies[0, 0])
        pol = np.asarray(tr.policy[0])
        e21 = eq21_log(pol, problem)
        e21_tied = np.round(e21, _tie_decimals())
        g = group_stats(e21, log_r, s.low, s.high)
        tl = timeline(np.asarray(tr.policies[0]), np.atleast_2d(np.asarray(tr.steps))[0], problem, log_r, s.low, s.high)
        records.append(
            {
                "param": name,
                "init_max_abs_log_eq21": float(np.max(np.abs(eq21_log(pol0, problem)))),
                "spearman_eq21_vs_ratio": float(stats.spearmanr(e21_tied, log_r).statistic) if np.ptp(e21_tied) > 0 else None,
                "loss_start": float(tr.loss[0, 0]),
                "loss_end": float(tr.loss[0, -1]),
                "at_floor": int(np.sum(pol.min(1) <= 1e-250)),
                "timeline": tl,
                # first logged step with a significant effect (one-sided p < 1e-6), and with a context on the boundary
                "first_step_effect": _first(tl, lambda r: r["p_value"] < 1e-6),
                "first_step_at_floor": _first(tl, lambda r: r["at_floor"] > 0),
                **g,
            }
        )
    out = {
        "n_contexts": s.n_contexts,
        "command": command_line("noise-adaptive", s),
        "train_seconds": seconds,
        "records": records,
    }
    for r in records:
        out[f"p_value_{r['param']}"] = r["p_value"]
    return out


def report(res: dict) -> str:
    lines = [
        f"Kong et al. §5.3 in the sandbox: {res['n_contexts']} contexts, DPO from π_ref; Eq. 21 = (π_θ(y_l)/π_θ(y_w))/(π_ref(y_l)/π_ref(y_w))",
        f"(train: {res['train_seconds']:.2f} s incl. compile, all parameterizations in one jit)",
        "",
        f"{'param':<11}{'n low/high':>12}{'avg rank low':>14}{'avg rank high':>15}{'U':>14}{'p (one-sided)':>15}{'med Eq.21 low':>15}{'med Eq.21 high':>16}",
    ]
    for r in res["records"]:
        lines.append(
            f"{r['param']:<11}{str(r['n_low']) + '/' + str(r['n_high']):>12}{r['avg_rank_low']:>14.1f}{r['avg_rank_high']:>15.1f}"
            f"{r['U']:>14.0f}{r['p_value']:>15.3g}{r['median_eq21_low']:>15.4g}{r['median_eq21_high']:>16.4g}"
        )
    lines.append("")
    lines.append("paper (Pythia 2.8B, Anthropic HH, Table 2): U = 225937, p = 1.22e-24; low-ratio group ranked lower (Fig. 6)")
    for r in res["records"]:
        if r["param"] == "softmax" and r["spearman_eq21_vs_ratio"] is None:
            lines.append("softmax: Eq. 21 is identical in every context (DPO sees only h_w − h_l; all contexts share one trajectory)")
        if r["param"] == "simplex" and r["first_step_effect"] is not None:
            fb = r["first_step_at_floor"]
            e = next(x for x in r["timeline"] if x["step"] == r["first_step_effect"])
            lines.append(f"simplex: effect from step {r['first_step_effect']} (U = {e['U']:.0f}, p = {e['p_value']:.2g}, {e['at_floor']} contexts on the boundary then); "
                         + ("no context reaches π(y_l) = 0" if fb is None else f"first context on the boundary at step {fb}"))
        if r["at_floor"]:
            lines.append(f"{r['param']}: {r['at_floor']} contexts end at π(y_l) = 0 (projection); their Eq. 21 is the floor, ranked lowest")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    fig, axes = plt.subplots(1, len(recs), figsize=(4.3 * len(recs), 4.0), squeeze=False)
    for ax, r in zip(axes[0], recs):
        parts = ax.violinplot([r["ranks_low"], r["ranks_high"]], showmeans=False, showextrema=False)
        for b, col in zip(parts["bodies"], ("C0", "C3")):
            b.set_facecolor(col)
            b.set_alpha(0.35)
        rng = np.random.default_rng(0)
        for k, (vals, col) in enumerate(((r["ranks_low"], "C0"), (r["ranks_high"], "C3"))):
            ax.plot(k + 1 + rng.uniform(-0.12, 0.12, len(vals)), vals, ".", ms=2, color=col, alpha=0.6)
        ax.bar([1, 2], [r["avg_rank_low"], r["avg_rank_high"]], width=0.5, fill=False, edgecolor=["C0", "C3"], lw=1.5)
        ax.set_xticks([1, 2], [f"low ratio (n={r['n_low']})\navg rank {r['avg_rank_low']:.1f}", f"high ratio (n={r['n_high']})\navg rank {r['avg_rank_high']:.1f}"])
        ax.set_ylabel("rank of Eq. 21 (1 = most suppressed)")
        ax.set_title(f"{r['param']}: U = {r['U']:.0f}, one-sided p = {r['p_value']:.2g}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("Kong et al. Fig. 6 in the sandbox: average rank of Eq. 21, low- vs high-ratio contexts", fontsize=10)
    return [save_figure(fig, out_dir, "noise_adaptive.png", "regenerate: " + res["command"] + " --out DIR", dpi=130, rect=(0, 0.04, 1, 0.94))]


EXPERIMENT = Experiment(
    name="noise-adaptive",
    summary="DPO suppresses Eq. 21 more where π_ref(y_l)/π_ref(y_w) is small? (Fig. 6, Mann–Whitney U)",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"n_contexts": 1000},
    reference="Kong et al. §5.3, Fig. 6, Table 2",
)
