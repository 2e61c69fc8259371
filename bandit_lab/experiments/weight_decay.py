"""Weight decay breaks the DPO ≡ RLHF link (Kong et al. §3.3, Fig. 2; bandit of App. B).

π* = [0.6, 0.3, 0.1] (Eq. 26) defines BT preferences (Eq. 27) over the three pairs, π_ref =
[0.4, 0.4, 0.2] (Eq. 28), softmax logits initialised at log π_ref. Each of DPO, f-DPO (forward
KL; JS as an option) and IPO is trained beside its RLHF counterpart (reverse-KL RLHF with
``r = log π*``; f-RLHF; RLHF with ``r_IPO``) under ``α‖θ‖²``. At α = 0 each pair meets at the
same closed form; for α > 0 they part (Props. 3.1, 3.2).

One α prints a table; no α sweeps a grid (0 and a log grid) — all objectives × all α in one
compiled ``jit(vmap(scan))``, each point also solved exactly.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget, timing
from bandit_lab.core import metrics
from bandit_lab.core.data import make_data
from bandit_lab.errors import BanditError
from bandit_lab.core.divergences import DIVERGENCES
from bandit_lab.experiments import Experiment, check_distributions, check_losses, loss_field, meta, pyplot, save_figure, with_counterpart
from bandit_lab.core.objective import PENALTIES, make_objective
from bandit_lab.solvers.oracles import loss_oracle
from bandit_lab.core.problems import Problem
from bandit_lab.infra.records import Table, as_table
from bandit_lab.runner import train_and_solve
from bandit_lab.solvers.solver import column
from bandit_lab.solvers.sweep_certificate import named_failures
from bandit_lab.core.train import OPTIMIZERS, SCHEDULES, TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    alpha: float | None = dataclasses.field(default=None, metadata=meta("weight decay α; omit to sweep a grid (Fig. 2)", bounds.WEIGHT_DECAY))
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β (Kong et al.'s λ)", bounds.BETA))
    steps: int = dataclasses.field(default=3000, metadata=meta("optimizer steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate", bounds.LR))
    optimizer: str = dataclasses.field(default="adam", metadata=meta("optimizer", choices=OPTIMIZERS))
    schedule: str = dataclasses.field(default="cosine", metadata=meta("learning-rate schedule", choices=SCHEDULES))
    distance: str = dataclasses.field(default="tv", metadata=meta("distance between the two policies", choices=tuple(metrics.DISTANCES)))
    data: str = dataclasses.field(default="population", metadata=meta("population or a sampled dataset", choices=("population", "sampled")))
    n_pairs: int = dataclasses.field(default=1000, metadata=meta("pairs in the sampled dataset", bounds.COUNT))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the sampled dataset", bounds.SEED))
    penalty: str = dataclasses.field(default="params", metadata=meta("params: α‖θ‖² (default) | policy: α‖π‖²", choices=PENALTIES))
    fdpo_divergence: str = dataclasses.field(default="forward_kl", metadata=meta("f-DPO divergence", choices=DIVERGENCES))
    with_js: bool = dataclasses.field(default=False, metadata=meta("also train f-DPO with Jensen–Shannon"))
    n_alphas: int = dataclasses.field(default=64, metadata=meta("grid size of the sweep (α = 0 plus a log grid)", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    alpha_min: float = dataclasses.field(default=1e-3, metadata=meta("smallest positive α of the sweep", bounds.POSITIVE))
    alpha_max: float = dataclasses.field(default=10.0, metadata=meta("largest α of the sweep", bounds.POSITIVE))
    pi_star: tuple[float, ...] = dataclasses.field(default=(0.6, 0.3, 0.1), metadata=meta("target policy π* (Kong Eq. 26)", bounds.PROBABILITY))
    pi_ref: tuple[float, ...] = dataclasses.field(default=(0.4, 0.4, 0.2), metadata=meta("reference policy (Kong Eq. 28)", bounds.PROBABILITY))
    loss: tuple[str, ...] = loss_field()

    def validate(self) -> None:
        check_distributions(pi_ref=self.pi_ref, pi_star=self.pi_star)
        check_losses("--loss", self.loss)
        if not self.alpha_min < self.alpha_max:
            raise BanditError(f"--alpha-min must be < --alpha-max; got {self.alpha_min:g} ≥ {self.alpha_max:g}")

    def saves(self) -> bool:
        """A sweep writes its figure and records (default ``runs/weight-decay-TIMESTAMP/``)."""
        return self.alpha is None

    def n_points(self) -> int:
        return 1 if self.alpha is not None else self.n_alphas

    def cost(self) -> budget.Cost:
        K, P = len(self.pi_ref), self.n_points()
        runs = 2 * len(losses_of(self))
        c = budget.problem(1, K) + budget.array(P, "the α grid")
        if self.data == "sampled":
            c = c + budget.sampling(self.n_pairs, K)
        return c + (budget.training(steps=self.steps, responses=K, runs=runs * P, loss_every_step=self.alpha is not None)
                    | budget.newton(params=K, responses=K, points=runs * P, stacked=runs))

    def alphas(self) -> list[float]:
        if self.alpha is not None:
            return [float(self.alpha)]
        return [0.0] + list(np.geomspace(self.alpha_min, self.alpha_max, self.n_alphas - 1))


def losses_of(s: Settings) -> list[tuple[str, dict]]:
    out = [(n, {"divergence": s.fdpo_divergence} if n == "fdpo" else {}) for n in dict.fromkeys(s.loss)]
    if s.with_js and s.fdpo_divergence != "js" and "fdpo" in s.loss:
        out.append(("fdpo", {"divergence": "js"}))
    return out


def run(s: Settings) -> dict:
    problem = Problem.create(list(s.pi_ref), pi_star=list(s.pi_star), pairs="uniform")
    data = make_data(problem, s.data, s.n_pairs, s.seed)
    population = s.data == "population"
    objs, declared = [], []
    for name, lp in losses_of(s):
        o, c, d = with_counterpart(make_objective(problem, name, {"beta": s.beta, **lp}, penalty=s.penalty, data=data))
        objs += [o, c]
        declared.append(d)
    alphas = s.alphas()
    config = TrainConfig(optimizer=s.optimizer, steps=s.steps, schedule=s.schedule, log_steps=(0, s.steps),
                         # a sweep keeps the loss at the logged steps only, and no final stationarity norm:
                         # every point's exact optimum is certified beside it, and |Adam − exact| is recorded
                         loss_every_step=s.alpha is not None, stationarity=s.alpha is not None)
    hps = [[{**o.hp, "weight_decay": a, "lr": s.lr} for a in alphas] for o in objs]
    trajs, exact, certs = train_and_solve(objs, config, hps, seed=s.seed, certify=True)
    with timing.phase("records"):
        return _records(s, problem, population, objs, declared, alphas, trajs, exact, certs)


def _records(s, problem, population, objs, declared, alphas, trajs, exact, certs=None) -> dict:
    dist = metrics.distance(s.distance)
    # columnar (bandit_lab.infra.records.Table): every field an array over the grid, nothing per point
    P, a = len(alphas), np.asarray(alphas, dtype=float)
    cols: dict = {k: [] for k in ("loss", "counterpart", "counterpart_declared", "alpha", "beta", "policy", "counterpart_policy", "exact",
                                  "counterpart_exact", "oracle", "counterpart_oracle", "tv", "distance", "exact_distance",
                                  "adam_gap", "counterpart_adam_gap", "exact_residual", "verdict", "counterpart_verdict",
                                  "newton_step", "counterpart_newton_step")}
    nulls: dict = {"oracle": [], "counterpart_oracle": []}

    def flat(x):  # [P, 1, K] → [P, K] (single-context policies are stored flat, as runner.to_list does)
        x = np.asarray(x, dtype=float)
        return x[..., 0, :] if x.ndim >= 3 and x.shape[-2] == 1 else x

    for k in range(0, len(objs), 2):
        o, c = objs[k], objs[k + 1]
        orc_o, _ = loss_oracle(problem, o.loss.name, o.hp, o.static, population_data=population)
        orc_c, _ = loss_oracle(problem, c.loss.name, c.hp, c.static)
        p, q = np.asarray(trajs[k].policy, dtype=float), np.asarray(trajs[k + 1].policy, dtype=float)
        ep, eq = (column(exact[j], "policy").astype(float) for j in (k, k + 1))
        ep, eq = ep.reshape(p.shape), eq.reshape(q.shape)
        for name, lab in (("loss", o.label), ("counterpart", c.label)):
            cols[name].append(np.full(P, lab))
        cols["counterpart_declared"].append(np.full(P, bool(declared[k // 2])))
        cols["alpha"].append(a)
        cols["beta"].append(np.full(P, float(s.beta)))
        for name, x in (("policy", p), ("counterpart_policy", q), ("exact", ep), ("counterpart_exact", eq)):
            cols[name].append(flat(x))
        for name, orc in (("oracle", orc_o), ("counterpart_oracle", orc_c)):
            K = flat(p).shape[1:]
            cols[name].append(np.full((P,) + K, np.nan) if orc is None else np.broadcast_to(flat(np.asarray(orc, dtype=float)[None]), (P,) + K))
            nulls[name].append(np.full(P, orc is None))
        cols["tv"].append(np.asarray(metrics.tv(p, q), dtype=float).reshape(P))
        cols["distance"].append(np.asarray(dist(p, q), dtype=float).reshape(P))
        cols["exact_distance"].append(np.asarray(dist(ep, eq), dtype=float).reshape(P))
        cols["adam_gap"].append(np.asarray(metrics.tv(p, ep), dtype=float).reshape(P))
        cols["counterpart_adam_gap"].append(np.asarray(metrics.tv(q, eq), dtype=float).reshape(P))
        cols["exact_residual"].append(np.maximum(column(exact[k], "residual"), column(exact[k + 1], "residual")).astype(float))
        # the verdict per point (bandit_lab.solvers.sweep_certificate): the scale-free Newton step
        # and the Hessian on the tangent space, batched; "not certified" when no stack certificate
        for name, j in (("verdict", k), ("counterpart_verdict", k + 1)):
            cols[name].append(certs[j].verdict() if certs else np.full(P, "not certified"))
        for name, j in (("newton_step", k), ("counterpart_newton_step", k + 1)):
            cols[name].append(certs[j].newton_step if certs else np.full(P, np.nan))
    # rows ordered loss by loss, α within a loss (as the per-point records always were)
    records = Table({k: np.concatenate(v) for k, v in cols.items()}, {k: np.concatenate(v) for k, v in nulls.items()})
    if certs:
        n_bad, named = named_failures([o.label for o in objs], alphas, certs)
        why = "" if not n_bad else "; first: " + next(certs[j].reason(int(np.nonzero(~certs[j].certified)[0][0]))
                                                     for j in range(len(certs)) if not certs[j].certified.all())
        cert_line = (f"verdicts: {sum(int(c.certified.sum()) for c in certs)} of {len(objs) * P} exact optima certified unique "
                     f"minimisers (scale-free Newton step ≤ 1e-08, Hessian positive definite on the tangent space); "
                     f"{n_bad} not certified" + (f": {named}{why}" if n_bad else ""))
    else:
        n_bad, cert_line = len(objs) * P, "verdicts: not computed (the objectives were not solved as one stack): not certified"
    return {"distance_name": s.distance, "sweep": s.alpha is None, "not_certified": n_bad, "certificate": cert_line,
            "bandit": {"pi_star": list(s.pi_star), "pi_ref": list(s.pi_ref)}, "records": records}


def _fmt(p) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in np.ravel(p)) + "]"


def report(res: dict) -> str:
    recs = res["records"]
    d = res["distance_name"]
    if res["sweep"]:
        t = as_table(recs)
        al, dd, ed = t.column("alpha"), t.column("distance"), t.column("exact_distance")
        gap = np.maximum(t.column("adam_gap"), t.column("counterpart_adam_gap"))
        # α = 0 and, per loss, the one α nearest each power of ten (within 0.07 decades): a dense
        # grid (65,536 points) would otherwise print thousands of rows
        lg = np.log10(np.maximum(al, 1e-300))
        near = np.isclose(lg % 1, 0, atol=0.07) | np.isclose(lg % 1, 1, atol=0.07)
        loss_col = t.column("loss")
        picks = set(np.nonzero(al == 0.0)[0].tolist())
        for lab in dict.fromkeys(loss_col.tolist()):
            for dec in np.unique(np.round(lg[near & (loss_col == lab) & (al > 0)])):
                cand = np.nonzero(near & (loss_col == lab) & (al > 0) & (np.round(lg) == dec))[0]
                picks.add(int(cand[np.argmin(np.abs(lg[cand] - dec))]))
        lines = [f"{'loss':<16}{'α':>10}{d + '(loss, RLHF)':>20}{'exact ' + d:>14}{'|Adam−exact|':>14}"]
        for i in sorted(picks):
            lines.append(f"{str(t.column('loss')[i]):<16}{al[i]:>10.3g}{dd[i]:>20.3e}{ed[i]:>14.3e}{gap[i]:>14.1e}")
        lines.append(f"({len(t)} records; table shows α = 0 and about one α per decade)")
        if "certificate" in res:
            lines.append(res["certificate"])
        return "\n".join(lines)
    a = recs[0]["alpha"]
    s = res.get("bandit", {})
    ps, pr = (", ".join(f"{v:g}" for v in s.get(k, ())) for k in ("pi_star", "pi_ref"))
    app_b = tuple(s.get("pi_star", ())) == (0.6, 0.3, 0.1) and tuple(s.get("pi_ref", ())) == (0.4, 0.4, 0.2)
    lines = [f"weight decay α = {a:g} on the logits, β = {recs[0]['beta']:g}; target π* = [{ps}], reference π_ref = [{pr}]"
             + (" (Kong et al. App. B)" if app_b else ""), ""]
    head = f"{'objective':<22}{'trained (Adam)':<28}{'exact constrained':<28}{'unconstrained oracle':<28}{'|Adam−exact|':>12}"
    lines.append(head)
    for r in recs:
        for lab, p, e, o, g in (
            (r["loss"], r["policy"], r["exact"], r["oracle"], r["adam_gap"]),
            (r["counterpart"], r["counterpart_policy"], r["counterpart_exact"], r["counterpart_oracle"], r["counterpart_adam_gap"]),
        ):
            lines.append(f"{lab:<22}{_fmt(p):<28}{_fmt(e):<28}{(_fmt(o) if o is not None else '—'):<28}{g:>12.1e}")
    lines.append("")
    for r in recs:
        if not r.get("counterpart_declared", True):
            lines.append(f"note: {r['loss']} declares no RLHF counterpart; it is compared with {r['counterpart']} (DPO's)")
    w = max(len(r["loss"] + " vs " + r["counterpart"]) for r in recs) + 2
    lines.append(f"{'loss vs counterpart':<{w}}{d + ' (trained)':>16}{d + ' (exact)':>16}")
    for r in recs:
        lines.append(f"{r['loss'] + ' vs ' + r['counterpart']:<{w}}{r['distance']:>16.3e}{r['exact_distance']:>16.3e}")
    if "certificate" in res:
        lines.append(res["certificate"])
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    if not res["sweep"]:
        return []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    t = as_table(recs)
    loss_col, cp_col = t.column("loss"), t.column("counterpart")
    labels = list(dict.fromkeys(loss_col.tolist()))
    colors = {lab: f"C{i % 10}" for i, lab in enumerate(labels)}
    for lab in labels:
        m = loss_col == lab
        a = t.column("alpha")[m]
        ax.plot(a, t.column("distance")[m], "o", ms=3, color=colors[lab], label=f"{lab} vs {cp_col[m][0]} (Adam)")
        ax.plot(a, t.column("exact_distance")[m], "-", lw=1.2, color=colors[lab], alpha=0.7, label=f"{lab} (exact constrained optima)")
    ax.set_xscale("symlog", linthresh=res_linthresh(recs))
    ax.set_xlabel("weight decay α  (α‖θ‖², symlog axis: 0 at the left)")
    ax.set_ylabel(f"{res['distance_name']}(π_loss, π_RLHF)")
    ax.set_title("Kong et al. Fig. 2: weight decay separates each loss from its RLHF counterpart", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return [save_figure(fig, out_dir, "weight_decay.png", "regenerate: bandit-lab run weight-decay --out DIR")]


def res_linthresh(recs) -> float:
    a = as_table(recs).column("alpha")
    pos = a[a > 0]
    return float(pos.min()) if pos.size else 1e-3


EXPERIMENT = Experiment(
    name="weight-decay",
    summary="distance of DPO, f-DPO, IPO to their RLHF counterparts under weight decay",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"n_alphas": 8, "steps": 1500},
    reference="Kong et al. Fig. 2",
)
