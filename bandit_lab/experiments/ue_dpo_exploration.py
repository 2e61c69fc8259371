"""UE-DPO exploration on a "forgotten correct token" (UE-DPO supplement App. C, Eq. 31–35).

An exact token tree whose root has one token ``a_f`` with small reference probability
(``--forgotten-ref``) but a large token reward ``R(root, a_f)`` (``--forgotten-reward``), hence a
large ``Q*(root, a_f)`` under the soft DP of Eq. 16–18.

(a) Eq. 34/35: with a per-action exponent ``λ`` on ``a_f`` (1 on the other tokens) the per-state
problem Eq. 31 is solved exactly (Newton on logits) over a λ grid; we record ``π*(a_f|root)``, the
Eq. 35 expression ``−log π_ref/λ² − (Q* + η)/(βλ²)`` and the finite-difference slope.
(b) Training: UE-DPO (Algorithm 1) at several intensity scales α (α = 0 is DPO) on population
data, by Adam in one compiled vmap over α, and each α solved exactly; we follow
``π_θ(a_f|root)``. Δ and u (the image-sensitivity and uncertainty of Algorithm 1 lines 5–6) are
either *given* per-token arrays that mark ``a_f`` as visually insensitive and uncertain
(``--ue-source given``) or come from a perturbed second reference policy standing in for the
blurred image (``--ue-source perturbed``; :func:`bandit_lab.tokens.ue_arrays_from_perturbed`).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.core import metrics
from bandit_lab.errors import BanditError
from bandit_lab.experiments import Experiment, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.solvers.oracles import rlhf_optimum
from bandit_lab.runner import exact_batch, train_batch
from bandit_lab.tokens import TokenTree, make_param, make_tree_problem, soft_dp, ue_arrays_from_perturbed
from bandit_lab.tokens.dp import eq31_optimum
from bandit_lab.core.train import TrainConfig



@dataclasses.dataclass(frozen=True)
class Settings:
    vocab: int = dataclasses.field(default=3, metadata=meta("vocabulary size V (token 0 is the forgotten token)", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    horizon: int = dataclasses.field(default=2, metadata=meta("horizon T", bounds.Int(ge=1, le=bounds.INT64_MAX)))
    beta: float = dataclasses.field(default=0.5, metadata=meta("KL strength β", bounds.BETA))
    forgotten_ref: float = dataclasses.field(default=0.03, metadata=meta("π_ref(a_f | root)", bounds.OPEN_UNIT))
    forgotten_reward: float = dataclasses.field(default=1.5, metadata=meta("token reward R(root, a_f)", bounds.SCALAR))
    reward_scale: float = dataclasses.field(default=0.5, metadata=meta("std of the other token rewards", bounds.NONNEGATIVE))
    alphas: tuple[float, ...] = dataclasses.field(default=(0.0, 0.25, 0.5, 1.0), metadata=meta("UE-DPO intensity scales α (0 = DPO; λ_l = 1 − α·I·σ(·) must stay > 0)", bounds.PROBABILITY))
    tau: float = dataclasses.field(default=0.3, metadata=meta("quantile τ of the Δ masks (Algorithm 1 lines 9, 12)", bounds.PROBABILITY))
    ue_source: str = dataclasses.field(default="given", metadata=meta("where Δ and u come from", choices=("given", "perturbed")))
    noise: float = dataclasses.field(default=1.0, metadata=meta("std of the logit perturbation (ue-source perturbed)", bounds.NONNEGATIVE))
    lam_min: float = dataclasses.field(default=0.4, metadata=meta("smallest λ of the Eq. 34 curve", bounds.POSITIVE))
    lam_max: float = dataclasses.field(default=3.0, metadata=meta("largest λ of the Eq. 34 curve", bounds.POSITIVE))
    n_lambdas: int = dataclasses.field(default=27, metadata=meta("points of the Eq. 34 curve", bounds.Int(ge=2, le=bounds.INT64_MAX)))
    steps: int = dataclasses.field(default=2000, metadata=meta("Adam steps", bounds.STEPS))
    lr: float = dataclasses.field(default=0.05, metadata=meta("peak learning rate (cosine schedule)", bounds.LR))
    seed: int = dataclasses.field(default=0, metadata=meta("seed of the tree and the arrays", bounds.SEED))

    def validate(self) -> None:
        if not self.lam_min < self.lam_max:
            raise BanditError(f"--lam-min must be < --lam-max; got {self.lam_min:g} ≥ {self.lam_max:g}")
        budget.tree_responses(self.vocab, self.horizon)  # size first, in log space (never V**T)
        TokenTree.create(self.vocab, self.horizon)

    def saves(self) -> bool:
        return True

    def cost(self) -> budget.Cost:
        K = budget.tree_responses(self.vocab, self.horizon)
        n = self.vocab * max(1, round((K - 1) / max(self.vocab - 1, 1)))
        P = len(self.alphas)
        curve = budget.array(self.n_lambdas * 3 * n, "the Eq. 34 curve")
        curve.work = self.n_lambdas * 3 * n * 1000.0
        c = budget.problem(1, K) + budget.array(K * n, "the tree's path matrix") + curve
        return c + (budget.training(steps=self.steps, responses=K, runs=P, params=n, logged=42) | budget.newton(params=n, responses=K, points=P))


def build(s: Settings):
    rng = np.random.default_rng(s.seed)
    tree = TokenTree.create(s.vocab, s.horizon)
    S, V = tree.n_states, tree.vocab
    logits = rng.normal(0, 0.5, (S, V))
    others = logits[0, 1:]
    lse = np.log(np.exp(others).sum())
    logits[0, 0] = np.log(s.forgotten_ref / (1 - s.forgotten_ref)) + lse  # π_ref(a_f|root) = forgotten_ref
    R = rng.normal(0, s.reward_scale, (S, V))
    R[0, 0] = s.forgotten_reward
    tp = make_tree_problem(V, s.horizon, tree=tree, ref_logits=logits, token_reward=R, pairs="uniform")
    if s.ue_source == "given":
        delta = rng.normal(0, 1, (S, V))
        u = rng.normal(0, 1, (S, V))
        delta[0, 0] = delta.min() - 1.0  # visually insensitive → in I_w
        u[0, 0] = u.max() + 2.0  # most uncertain
    else:
        delta, u = ue_arrays_from_perturbed(logits, logits + rng.normal(0, s.noise, (S, V)))
    return tp, delta, u


def run(s: Settings) -> dict:
    tp, delta, u = build(s)
    b = s.beta
    dp = soft_dp(tp.tree, tp.ref_logp, tp.token_reward, b)
    Q, lref = dp.Q[0, 0], tp.ref_logp[0, 0]
    curve = []
    h = 1e-4
    for lam in np.linspace(s.lam_min, s.lam_max, s.n_lambdas):
        lv = np.ones_like(Q)
        lv[0] = lam
        lp = eq31_optimum(Q, lref, lv, b)
        eta = float(np.dot(np.exp(lp), b * lv * (1 + lp) - b * lref - Q))
        up, dn = lv.copy(), lv.copy()
        up[0] += h
        dn[0] -= h
        fd = (eq31_optimum(Q, lref, up, b)[0] - eq31_optimum(Q, lref, dn, b)[0]) / (2 * h)
        eq35 = -lref[0] / lam**2 - (Q[0] + eta) / (b * lam**2)
        curve.append({"lambda": float(lam), "p_forgotten": float(np.exp(lp[0])), "eta": eta, "eq35": float(eq35),
                      "fd_dlogp_dlambda": float(fd)})
    param = make_param(tp, delta=delta, u=u, tau=s.tau)
    o = make_objective(tp.problem, "uedpo", {"beta": b}, param=param)
    alphas = [float(a) for a in s.alphas]
    hps = [[{**o.hp, "alpha": a, "lr": s.lr} for a in alphas]]
    log_steps = tuple(np.unique(np.concatenate([[0], np.geomspace(1, s.steps, 40).astype(int)])).tolist()) if s.steps else (0,)
    (traj,) = train_batch([o], TrainConfig(steps=s.steps, log_steps=log_steps), hps, seed=s.seed)
    exact = exact_batch(o, hps[0])
    star = rlhf_optimum(tp.problem.pi_ref, tp.problem.reward, b)
    p_star = float(tp.tree.conditionals(star)[0, 0, 0])
    ue = param.ue
    records, finals = [], []
    steps = np.asarray(traj.steps).reshape(-1)[: np.asarray(traj.policies).shape[1]]
    for j, a in enumerate(alphas):
        for k, st in enumerate(steps):
            pol = np.asarray(traj.policies[j, k])
            records.append({"alpha": a, "step": int(st), "p_forgotten": float(tp.tree.conditionals(pol)[0, 0, 0]),
                            "tv_to_rlhf_optimum": float(metrics.tv(pol, star))})
        pol = np.asarray(traj.policy[j])
        finals.append({
            "alpha": a,
            "lambda_w_forgotten": float(1 + a * ue["ue_iw"][0, 0, 0] * ue["ue_su"][0, 0, 0]),
            "lambda_l_forgotten": float(1 - a * ue["ue_il"][0, 0, 0] * ue["ue_su"][0, 0, 0]),
            "p_forgotten": float(tp.tree.conditionals(pol)[0, 0, 0]),
            "p_forgotten_exact": float(tp.tree.conditionals(exact[j].policy)[0, 0, 0]),
            "tv_to_rlhf_optimum": float(metrics.tv(exact[j].policy, star)),
            "adam_gap": float(metrics.tv(pol, exact[j].policy)),
            "exact_residual": exact[j].residual,
        })
    return {"beta": b, "ue_source": s.ue_source, "p_ref_forgotten": float(np.exp(lref[0])), "q_star_forgotten": float(Q[0]),
            "v_star_root": float(dp.V[0, 0]), "p_rlhf_optimum_forgotten": p_star,
            "eq35_sign_matches": bool(all(np.sign(c["eq35"]) == np.sign(c["fd_dlogp_dlambda"]) for c in curve if abs(c["fd_dlogp_dlambda"]) > 1e-8)),
            "curve": curve, "finals": finals, "records": records, "command": command_line("ue-dpo-exploration", s)}


def report(res: dict) -> str:
    lines = [f"forgotten token a_f at the root: π_ref = {res['p_ref_forgotten']:.4f}, Q*(root, a_f) = {res['q_star_forgotten']:.4f}, "
             f"V*(root) = {res['v_star_root']:.4f}, β = {res['beta']:g}",
             f"RLHF / DPO optimum π*(a_f|root) (Eq. 28) = {res['p_rlhf_optimum_forgotten']:.4f}", "",
             "(a) Eq. 31 solved exactly at the root with λ on a_f (1 elsewhere):",
             f"{'λ':>8}{'π*(a_f)':>12}{'η(root)':>12}{'Eq. 35':>12}{'fd ∂logπ/∂λ':>14}"]
    for c in res["curve"][:: max(1, len(res["curve"]) // 9)]:
        lines.append(f"{c['lambda']:>8.3f}{c['p_forgotten']:>12.4f}{c['eta']:>12.4f}{c['eq35']:>12.4f}{c['fd_dlogp_dlambda']:>14.4f}")
    lines.append(f"sign of Eq. 35 matches the finite differences everywhere: {res['eq35_sign_matches']}")
    lines += ["", f"(b) UE-DPO training (Δ, u {res['ue_source']}; α = 0 is DPO):",
              f"{'α':>6}{'λ_w(a_f)':>10}{'λ_l(a_f)':>10}{'π_θ(a_f) Adam':>15}{'exact':>10}{'TV(exact, π*)':>15}{'|Adam−exact|':>14}"]
    for f in res["finals"]:
        lines.append(f"{f['alpha']:>6.2f}{f['lambda_w_forgotten']:>10.3f}{f['lambda_l_forgotten']:>10.3f}{f['p_forgotten']:>15.4f}"
                     f"{f['p_forgotten_exact']:>10.4f}{f['tv_to_rlhf_optimum']:>15.4f}{f['adam_gap']:>14.1e}")
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.0))
    lam = [c["lambda"] for c in res["curve"]]
    a1.plot(lam, [c["p_forgotten"] for c in res["curve"]], "-o", ms=3, label="π*(a_f|root), exact solve of Eq. 31")
    a1.axhline(res["p_ref_forgotten"], color="gray", ls=":", label="π_ref(a_f|root)")
    a1.axvline(1.0, color="k", lw=0.6)
    a1.set_xlabel("λ(root, a_f)   (λ = 1: Eq. 28 optimum)")
    a1.set_ylabel("probability of the forgotten token")
    a1.set_title("UE-DPO Eq. 34–35: λ moves the per-state optimum", fontsize=9)
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    for f in res["finals"]:
        rs = [r for r in res["records"] if r["alpha"] == f["alpha"]]
        lab = "DPO (α = 0)" if f["alpha"] == 0 else f"UE-DPO α = {f['alpha']:g}"
        a2.plot(np.maximum([r["step"] for r in rs], 0.8), [r["p_forgotten"] for r in rs], label=lab)
    a2.axhline(res["p_rlhf_optimum_forgotten"], color="k", ls="--", lw=0.8, label="RLHF/DPO optimum (Eq. 28)")
    a2.set_xscale("log")
    a2.set_xlabel("Adam step (0 drawn at 0.8)")
    a2.set_ylabel("π_θ(a_f | root)")
    a2.set_title(f"training on population data (Δ, u {res['ue_source']})", fontsize=9)
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    return [save_figure(fig, out_dir, "ue_dpo_exploration.png", f"regenerate: {res['command']} --out DIR", rect=(0, 0.03, 1, 1))]


EXPERIMENT = Experiment(
    name="ue-dpo-exploration",
    summary="a forgotten correct token: how λ moves its optimal probability (Eq. 34–35) and what UE-DPO training does",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 300, "n_lambdas": 7},
    reference="UE-DPO supplement App. C (Eq. 31–35), Algorithm 1",
)
