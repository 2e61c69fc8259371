"""Stochastic training as Azar et al. do it: the seed spread of Adam on mini-batches, around the
exact optimum, as the batch grows (Azar et al. 2024, AISTATS; arXiv 2310.12036: *A General
Theoretical Paradigm to Understand Learning from Human Preferences*, §5 illustrative examples,
Figs. 1–2).

Their protocol: three actions y_a, y_b, y_c, π initialised at π_ref (uniform here), Adam with
learning rate 0.01, mini-batches of 9 pairs drawn **with replacement** from a fixed dataset of
labelled pairs at every step, 18,000 steps, several seeds. The datasets, as printed:

- ``D1 = {(y_a, y_b), (y_b, y_c), (y_a, y_c)}`` — a total order;
- ``D3 = {(y_a, y_b), (y_b, y_a)}`` — the pair (a, b) once each way; y_c is in no pair.

(D2, "an action that never wins", is not reproduced: the paper's text was not available to
check its pairs, and we do not guess a dataset.) Each dataset is a bandit-lab population — the
pair law puts equal mass on the dataset's pairs and the labels are deterministic — so a
mini-batch of B pairs drawn with replacement from the population *is* a batch drawn with
replacement from the dataset (:func:`bandit_lab.core.data.minibatch` inside the compiled trainer,
``TrainConfig(batch_size=B)``); seeds are a vmapped axis, and IPO and DPO train as one
:class:`~bandit_lab.core.objective.Stack`, so each seed's batches are the same for both losses.

What the exact solver says, and so what "the optimum" is:

- IPO on D1: a unique minimiser (IPO is strictly convex in the margins; the three pairs fix
  both log-ratio differences) — the exact solver's certified optimum is the reference;
- DPO on D1 (deterministic labels): **no finite minimiser** — the loss decreases without bound
  along θ_a − θ_b → ∞, θ_b − θ_c → ∞ (Azar et al. §4.2), its infimum 0 is approached as
  π → [1, 0, 0]; the distance reported is to that limit, never to an "optimum";
- D3, both losses: the full-batch gradient at π_ref is **zero** (the two labels cancel:
  ``ℓ'(h) − ℓ'(−h)`` vanishes at h = 0 for IPO and DPO alike) and the loss depends on θ_a − θ_b
  only, so the minimisers are the *set* {π(y_a) = π(y_b)} (one free direction: the mass of y_c).
  Full-batch training never leaves π_ref; on mini-batches the draw noise is the only driver: it
  moves π(y_a) − π(y_b) about 0 (mean-reverting), and whether π(y_c) moves at all is measured
  (``c_drift``) — its gradient is zero in exact arithmetic.

Spread per (dataset, loss, B): mean over seeds of TV(final π, reference), and the TV of the seed
mean ("centre") to the reference. With Adam at a constant learning rate the spread is the
stationary jitter of a normalised update: it shrinks with the gradient noise, roughly as
B^(-1/4) (the restoring step grows as √B while the step size stays ≈ lr).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.experiments import Experiment, command_line, meta, pyplot, save_figure
from bandit_lab.core.metrics import tv
from bandit_lab.core.objective import make_objective
from bandit_lab.core.problems import Problem
from bandit_lab.runner import train_batch
from bandit_lab.core.train import TrainConfig

# dataset name → (labelled pairs (winner, loser) over y_a, y_b, y_c = 0, 1, 2, as the paper prints them)
DATASETS = {
    "D1": ((0, 1), (1, 2), (0, 2)),
    "D3": ((0, 1), (1, 0)),
}
LOSSES = ("ipo", "dpo")
# the limit policy of DPO's infimum where it has no finite minimiser (deterministic labels of a
# total order: every labelled margin → +∞, so π → the never-beaten action)
DPO_LIMIT = {"D1": (1.0, 0.0, 0.0)}


@dataclasses.dataclass(frozen=True)
class Settings:
    datasets: tuple = dataclasses.field(default=("D1", "D3"), metadata=meta("Azar et al.'s datasets", choices=tuple(DATASETS)))
    beta: float = dataclasses.field(default=1.0, metadata=meta("τ (bandit-lab's β) of IPO and DPO", bounds.BETA))
    batches: tuple = dataclasses.field(default=(1, 9, 81, 729), metadata=meta("mini-batch sizes B", bounds.COUNT))
    replacement: bool = dataclasses.field(default=True, metadata=meta("draw the batch with replacement (Azar et al.)"))
    seeds: int = dataclasses.field(default=32, metadata=meta("seeds per batch size (vmapped)", bounds.Int(ge=2, le=bounds.SEED_MAX + 1)))
    steps: int = dataclasses.field(default=18000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.01, metadata=meta("constant Adam learning rate", bounds.LR))

    def saves(self) -> bool:
        return True

    def validate(self) -> None:
        from bandit_lab.errors import BanditError

        if not self.replacement:
            raise BanditError("--replacement false: a dataset of Azar et al. has 2–3 pairs; batches of B > 3 distinct pairs "
                              "do not exist — the paper draws with replacement")

    def cost(self) -> budget.Cost:
        runs = 2 * self.seeds * len(self.batches) * len(self.datasets)
        n = float(self.steps) * self.seeds * sum(self.batches) * len(self.datasets)
        draws = budget.Cost(0.0, 20.0 * n, "", f"{n:.3g} pair draws (a uniform and a binary search each)")
        return budget.problem(1, 3) + budget.training(steps=self.steps, responses=3, runs=runs, logged=2) + draws


def problem(name: str) -> Problem:
    """The dataset as a population: equal weight on each printed pair, deterministic labels
    (a pair printed both ways is a pair shown twice, labelled each way once: p = ½)."""
    pairs = DATASETS[name]
    win = np.zeros((3, 3))
    for w, l in pairs:
        win[w, l] += 1.0
    shown = win + win.T
    with np.errstate(invalid="ignore", divide="ignore"):
        pref = np.where(shown > 0, win / np.where(shown > 0, shown, 1.0), 0.5)
    np.fill_diagonal(pref, 0.5)
    seen = [[i, j, float(shown[i, j])] for i in range(3) for j in range(i + 1, 3) if shown[i, j] > 0]
    return Problem.create(np.full(3, 1.0 / 3.0), matrix=pref, pairs=seen)


def reference(name: str, loss: str, objective) -> tuple[np.ndarray, str]:
    """The policy the spread is measured against, and what it is (never called an optimum
    where the loss has no minimiser)."""
    if name == "D3":
        return objective.problem.pi_ref[0], "π_ref: full-batch gradient 0; a point of the minimiser set {π(y_a) = π(y_b)}"
    if loss == "dpo":
        return np.asarray(DPO_LIMIT[name]), "no finite minimiser: the limit policy of the infimum (deterministic labels)"
    from bandit_lab.solvers.solver import solve_exact

    ex = solve_exact(objective, objective.hp)
    if not ex.converged:
        return np.asarray(ex.policy)[0], "NOT certified: the exact solver did not converge"
    return np.asarray(ex.policy)[0], f"exact minimiser (Newton, residual {ex.residual:.1e})"


def flat(P: np.ndarray) -> np.ndarray:
    """D3's free coordinate ½(log π_a + log π_b) − log π_c = ½(θ_a + θ_b) − θ_c: the loss does not
    depend on it, and its gradient is 0 (exactly, in exact arithmetic). π(y_c) itself still moves
    with the jitter of θ_a − θ_b (π_c = 1/(1 + 2·e^{−flat}·cosh((θ_a − θ_b)/2))): a second-order
    effect that returns when θ_a − θ_b does, not a drift along the set of minimisers."""
    P = np.asarray(P, dtype=float)
    return 0.5 * (np.log(P[..., 0]) + np.log(P[..., 1])) - np.log(P[..., 2])


def run(s: Settings) -> dict:
    records, summary = [], []
    for name in s.datasets:
        pb = problem(name)
        objs = [make_objective(pb, loss, {"beta": s.beta}) for loss in LOSSES]
        refs = [reference(name, loss, o) for loss, o in zip(LOSSES, objs)]
        for B in s.batches:
            config = TrainConfig(steps=s.steps, schedule="constant", log_steps=(0, s.steps), batch_size=int(B),
                                 batch_replacement=bool(s.replacement))
            hps = [[{**o.hp, "lr": s.lr, "seed": k} for k in range(s.seeds)] for o in objs]
            trajs = train_batch(objs, config, hps)
            for loss, tr, (ref, what) in zip(LOSSES, trajs, refs):
                P = np.asarray(tr.policy)[:, 0]  # [seeds, 3]
                d = np.array([float(tv(p, ref)) for p in P])
                centre = P.mean(0)
                for k, (p, dk) in enumerate(zip(P, d)):
                    records.append({"dataset": name, "loss": loss, "batch": int(B), "seed": k, "policy": p.tolist(), "tv": dk})
                summary.append({"dataset": name, "loss": loss, "batch": int(B), "reference": ref.tolist(), "reference_is": what,
                                "mean_tv": float(d.mean()), "std_tv": float(d.std()), "centre": centre.tolist(),
                                "centre_tv": float(tv(centre, ref)),
                                # D3: the determined direction (π_a − π_b) and the flat one, separately
                                "ab_spread": float(np.sqrt(np.mean((P[:, 0] - P[:, 1]) ** 2))) if name == "D3" else None,
                                "flat_moved": float(np.max(np.abs(flat(P) - flat(ref[None])))) if name == "D3" else None})
    return {"command": command_line("azar-minibatch", s), "summary": summary, "records": records}


def report(res: dict) -> str:
    lines = ["Adam on fresh mini-batches (Azar et al. §5), spread of the final policy over seeds", "",
             f"{'data':<5}{'loss':<5}{'B':>6}{'mean TV':>11}{'± std':>10}{'centre TV':>11}{'rms π_a−π_b':>13}{'max|Δflat|':>11}  reference"]
    opt = lambda v, f: format(v, f) if v is not None else "—"  # noqa: E731
    for r in res["summary"]:
        lines.append(f"{r['dataset']:<5}{r['loss']:<5}{r['batch']:>6}{r['mean_tv']:>11.2e}{r['std_tv']:>10.1e}{r['centre_tv']:>11.2e}"
                     f"{opt(r['ab_spread'], '.2e'):>13}{opt(r['flat_moved'], '.1e'):>11}  [{', '.join(f'{v:.4f}' for v in r['reference'])}] {r['reference_is']}")
    lines.append("")
    lines.append("D3: flat = ½(log π_a + log π_b) − log π_c, the direction the loss does not see; π_a − π_b the one it does")
    lines.append("")
    lines.append(f"regenerate: {res['command']}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()
    names = sorted({r["dataset"] for r in res["summary"]})
    fig, axes = plt.subplots(len(names), 2, figsize=(9.6, 3.4 * len(names)), squeeze=False)
    for row, name in enumerate(names):
        ax, bx = axes[row]
        for k, loss in enumerate(LOSSES):
            rs = [r for r in res["summary"] if r["dataset"] == name and r["loss"] == loss]
            B = [r["batch"] for r in rs]
            limit = rs[0]["reference_is"].startswith("no finite minimiser")
            bx.loglog(B, [r["mean_tv"] for r in rs], "o-", color=f"C{k}",
                      label=f"{loss}: mean TV to " + ("its limit (no finite minimiser)" if limit else "the reference"))
            bx.loglog(B, [max(r["centre_tv"], 1e-18) for r in rs], "s--", color=f"C{k}", alpha=0.6, label=f"{loss}: TV of the seed mean")
        b0 = [r for r in res["summary"] if r["dataset"] == name and r["loss"] == "ipo"]
        if b0:
            bb = np.array([r["batch"] for r in b0], dtype=float)
            bx.loglog(bb, b0[0]["mean_tv"] * (bb / bb[0]) ** -0.25, ":", color="gray", label="∝ B^(−1/4)")
        bx.set_xlabel("mini-batch size B")
        bx.set_ylabel("TV")
        bx.set_title(f"{name}: spread over seeds vs batch size", fontsize=9)
        bx.grid(alpha=0.3, which="both")
        bx.legend(fontsize=6)
        # per-seed final policies of IPO, one column of points per B
        recs = [r for r in res["records"] if r["dataset"] == name and r["loss"] == "ipo"]
        Bs = sorted({r["batch"] for r in recs})
        coord = (lambda p: p[0] - p[1]) if name == "D3" else (lambda p: p[0])
        for i, b in enumerate(Bs):
            v = [coord(r["policy"]) for r in recs if r["batch"] == b]
            ax.plot(np.full(len(v), i) + np.linspace(-0.2, 0.2, len(v)), v, ".", ms=3, color="C0")
        ref = b0[0]["reference"] if b0 else None
        if ref is not None:
            ax.axhline(coord(ref), color="k", lw=0.8, label="reference: " + b0[0]["reference_is"].split(":")[0])
        ax.set_xticks(range(len(Bs)), [str(b) for b in Bs])
        ax.set_xlabel("mini-batch size B")
        ax.set_ylabel("π(y_a) − π(y_b)" if name == "D3" else "π(y_a)")
        ax.set_title(f"{name}, IPO: final policy of each seed", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return [save_figure(fig, out_dir, "azar_minibatch.png", f"regenerate: {res['command']}", rect=(0, 0.02, 1, 1))]


EXPERIMENT = Experiment(
    name="azar-minibatch",
    summary="Azar et al.'s protocol: Adam on fresh mini-batches (B pairs with replacement), seed spread around the exact optimum vs B",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 2000, "seeds": 10, "batches": (1, 9, 81)},
    reference="Azar et al. 2024 §5, Figs. 1–2 (protocol)",
)
