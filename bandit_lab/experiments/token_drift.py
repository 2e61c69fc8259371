"""Token-level drift (Ra-DPO Figs. 2–3 in miniature) on an exact token tree.

DPO, TDPO1, TDPO2, Ra-DPO1 and Ra-DPO2 (the last two across the CVaR level μ) are trained by
Adam on the same random tree (per-state reference logits and token rewards drawn from
``--seed``; Bradley–Terry preferences over whole sequences from ``r = Σ_t R(s_t, a_t)``). At
every logged step the per-state policy is read back from the sequence policy and we record the
data-weighted sequential KL ``E_D[D_SeqKL(x, y; π_ref‖π_θ)]`` of the chosen (``y_w``) and the
rejected (``y_l``) responses, and the preference ("reward") accuracy
``E_D[1{β log π_θ/π_ref(y_w) > β log π_θ/π_ref(y_l)}]`` (ties ½). All objectives train in one compiled
call; each final point is compared with its exact optimum (exact solver, or the stationary-point
solver for the stop-gradient losses TDPO2 / Ra-DPO2).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.core.data import make_data
from bandit_lab.experiments import Experiment, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.runner import train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.tokens import TokenTree, make_param, make_tree_problem
from bandit_lab.tokens.solve import solve_stationary
from bandit_lab.core.train import TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    vocab: int = dataclasses.field(default=3, metadata=meta("vocabulary size V", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    horizon: int = dataclasses.field(default=3, metadata=meta("horizon T (tokens per response)", bounds.Int(ge=1, le=bounds.INT64_MAX)))
    eos: bool = dataclasses.field(default=False, metadata=meta("last token ends a response early"))
    beta: float = dataclasses.field(default=0.5, metadata=meta("KL strength β", bounds.BETA))
    alpha: float = dataclasses.field(default=0.5, metadata=meta("TDPO2 / Ra-DPO2 coefficient α", bounds.NONNEGATIVE))
    mus: tuple[float, ...] = dataclasses.field(default=(0.99, 0.95, 0.9, 0.7), metadata=meta("CVaR levels μ for Ra-DPO1/2", bounds.Real(gt=0, le=1)))
    tail: str = dataclasses.field(default="upper", metadata=meta("CVaR tail in D_SeqRR: upper (default) | lower", choices=("upper", "lower")))
    steps: int = dataclasses.field(default=2000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate (cosine schedule)", bounds.LR))
    reward_scale: float = dataclasses.field(default=1.0, metadata=meta("std of the token rewards R(s, a)", bounds.NONNEGATIVE))
    ref_scale: float = dataclasses.field(default=1.0, metadata=meta("std of the reference logits", bounds.NONNEGATIVE))
    data: str = dataclasses.field(default="population", metadata=meta("population or a sampled dataset", choices=("population", "sampled")))
    n_pairs: int = dataclasses.field(default=200, metadata=meta("pairs in the sampled dataset", bounds.COUNT))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the tree (and of the sampled data)", bounds.SEED))
    exact: bool = dataclasses.field(default=True, metadata=meta("also solve every final point exactly"))

    def validate(self) -> None:
        budget.tree_responses(self.vocab, self.horizon, self.eos)  # size first, in log space (never V**T)
        TokenTree.create(self.vocab, self.horizon, self.eos)

    def saves(self) -> bool:
        return True

    def cost(self) -> budget.Cost:
        K = budget.tree_responses(self.vocab, self.horizon, self.eos)
        n = self.vocab * max(1, round((K - 1) / max(self.vocab - 1, 1)))  # per-state logits S·V
        runs = 3 + 2 * len(self.mus)
        c = budget.problem(1, K) + budget.array(K * n, "the tree's path matrix")
        if self.data == "sampled":
            c = c + budget.sampling(self.n_pairs, K)
        c = c + budget.training(steps=self.steps, responses=K, runs=runs, params=n, logged=42)
        return c | budget.newton(params=n, responses=K, points=runs) if self.exact else c


def _problem(s: Settings):
    rng = np.random.default_rng(s.seed)
    tree = TokenTree.create(s.vocab, s.horizon, s.eos)
    S, V = tree.n_states, tree.vocab
    return make_tree_problem(V, s.horizon, eos=s.eos, tree=tree, ref_logits=rng.normal(0, s.ref_scale, (S, V)),
                             token_reward=rng.normal(0, s.reward_scale, (S, V)), pairs="uniform")


def drift_stats(tp, weight: np.ndarray, seq_policy: np.ndarray, beta: float) -> dict:
    """E_D SeqKL of chosen and rejected responses, and preference accuracy, of one policy."""
    t = tp.tree
    cond = t.conditionals(seq_policy)
    lr = tp.ref_logp
    kl_state = np.sum(np.exp(lr) * (lr - np.log(cond)), -1)
    seqkl = kl_state @ t.visits.T  # [X, K]
    h = beta * (np.log(seq_policy) - np.log(tp.problem.pi_ref))
    d = h[:, :, None] - h[:, None, :]
    W = weight / weight.sum()
    return {
        "seqkl_chosen": float(np.einsum("xij,xi->", W, seqkl)),
        "seqkl_rejected": float(np.einsum("xij,xj->", W, seqkl)),
        # ties (e.g. every pair at π_θ = π_ref) count ½, with a roundoff tolerance
        "accuracy": float(np.sum(W * np.where(np.abs(d) <= 1e-9, 0.5, d > 0))),
    }


def run(s: Settings) -> dict:
    tp = _problem(s)
    data = make_data(tp.problem, s.data, s.n_pairs, s.seed)
    param = make_param(tp)
    mus = [float(m) for m in s.mus]
    runs = [("dpo", None), ("tdpo1", None), ("tdpo2", None)] + [(n, m) for n in ("radpo1", "radpo2") for m in mus]
    objs, hps = [], []
    for name, mu in runs:
        lp = {"beta": s.beta}
        if name in ("tdpo2", "radpo2"):
            lp["alpha"] = s.alpha
        if mu is not None:
            lp.update(mu=mu, tail=s.tail)
        o = make_objective(tp.problem, name, lp, param=param, data=data)
        objs.append(o)
        hps.append([{**o.hp, "lr": s.lr}])
    log_steps = tuple(np.unique(np.concatenate([[0], np.geomspace(1, s.steps, 40).astype(int)])).tolist()) if s.steps else (0,)
    trajs = train_batch(objs, TrainConfig(steps=s.steps, log_steps=log_steps), hps, seed=s.seed)
    W = np.asarray(data.weight)
    records, finals = [], []
    for (name, mu), o, tr in zip(runs, objs, trajs):
        for k, step in enumerate(np.asarray(tr.steps).reshape(-1)[: np.asarray(tr.policies).shape[1]]):
            st = drift_stats(tp, W, np.asarray(tr.policies[0, k]), s.beta)
            records.append({"loss": name, "mu": mu, "step": int(step), **st})
        final = {"loss": name, "mu": mu, **drift_stats(tp, W, np.asarray(tr.policy[0]), s.beta)}
        if s.exact:
            # sg losses: Newton on the training field, polishing Adam's endpoint (from π_ref it can
            # stall on the CVaR kink where every log π_ref/π_θ ties at 0)
            ex = solve_stationary(o, init=np.asarray(tr.params[0])) if name in ("tdpo2", "radpo2") else solve_exact(o)
            final.update(exact=drift_stats(tp, W, ex.policy, s.beta), exact_residual=ex.residual,
                         adam_gap=float(metrics.tv(np.asarray(tr.policy[0]), ex.policy)))
        finals.append(final)
    return {"vocab": s.vocab, "horizon": s.horizon, "eos": s.eos, "n_responses": tp.tree.n_responses, "beta": s.beta,
            "alpha": s.alpha, "tail": s.tail, "steps": s.steps, "finals": finals, "records": records,
            "command": command_line("token-drift", s)}


def _label(r) -> str:
    return r["loss"] + ("" if r["mu"] is None else f" μ={r['mu']:g}")


def report(res: dict) -> str:
    lines = [f"token tree V={res['vocab']} T={res['horizon']}{' +EOS' if res['eos'] else ''} ({res['n_responses']} responses), "
             f"β={res['beta']:g}, α={res['alpha']:g}, CVaR tail={res['tail']}, {res['steps']} Adam steps", "",
             f"{'loss':<16}{'SeqKL(y_w)':>12}{'SeqKL(y_l)':>12}{'accuracy':>10}{'exact SeqKL_w':>15}{'exact SeqKL_l':>15}{'exact acc':>10}{'|Adam−exact|':>14}{'residual':>10}"]
    for r in res["finals"]:
        e = r.get("exact")
        ex = f"{e['seqkl_chosen']:>15.4f}{e['seqkl_rejected']:>15.4f}{e['accuracy']:>10.3f}{r['adam_gap']:>14.1e}{r['exact_residual']:>10.1e}" if e else ""
        lines.append(f"{_label(r):<16}{r['seqkl_chosen']:>12.4f}{r['seqkl_rejected']:>12.4f}{r['accuracy']:>10.3f}{ex}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    labels = list(dict.fromkeys(_label(r) for r in recs))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.0))
    base = {"dpo": "k", "tdpo1": "C0", "tdpo2": "C1", "radpo1": "C2", "radpo2": "C3"}
    mus = sorted({r["mu"] for r in recs if r["mu"] is not None}, reverse=True)
    for lab in labels:
        rs = [r for r in recs if _label(r) == lab]
        name, mu = rs[0]["loss"], rs[0]["mu"]
        alpha = 1.0 if mu is None else 0.35 + 0.65 * (1 - mus.index(mu) / max(len(mus), 1))
        ls = "-" if mu is None else ("--" if name == "radpo1" else ":")
        steps = np.maximum([r["step"] for r in rs], 0.8)
        for ax, key in zip(axes, ("seqkl_chosen", "seqkl_rejected", "accuracy")):
            ax.plot(steps, [r[key] for r in rs], ls, color=base[name], alpha=alpha, lw=1.4, label=lab)
    for ax, title in zip(axes, ("E_D SeqKL(π_ref‖π_θ) of chosen y_w", "E_D SeqKL(π_ref‖π_θ) of rejected y_l", "preference accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("Adam step (0 drawn at 0.8)")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[2].legend(fontsize=6, ncol=2)
    fig.suptitle(f"Ra-DPO Figs. 2–3 in miniature: exact token tree V={res['vocab']}, T={res['horizon']}, β={res['beta']:g}, α={res['alpha']:g}, tail={res['tail']}", fontsize=9)
    return [save_figure(fig, out_dir, "token_drift.png", f"regenerate: {res['command']} --out DIR", rect=(0, 0.03, 1, 1))]


EXPERIMENT = Experiment(
    name="token-drift",
    summary="sequential KL of chosen/rejected responses and accuracy for DPO, TDPO1/2, Ra-DPO1/2 across μ",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 300, "mus": (0.95, 0.7)},
    reference="Ra-DPO Figs. 2–3",
)
