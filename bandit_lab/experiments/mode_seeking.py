"""Mode seeking (RLHF) vs mode covering (DPO) on a one-parameter policy family (Kong et al. §3.3).

Bandit: three responses ``a, b, c``, uniform π_ref, uniform pairs, ``p(a≻b) = p(c≻b) = 1``,
``p(a≻c) = ½`` — the BT preferences (Kong Eq. 27) of ``π* = [½, 0, ½]``. Policy family
``π_θ = θ·[1, 0, 0] + (1 − θ)·[⅓, ⅓, ⅓]``, ``θ ∈ [0, 1]`` (:class:`bandit_lab.core.params.Mixture`),
trained by projected Adam from ``θ = 0.5`` and solved exactly (box path of ``solve_exact``).

Closed forms (derived in ``docs/kong-a.md``; the tests check them against the solver):

- DPO. Only the ratio ``R = π_a/π_c = π_a/π_b = (1 + 2θ)/(1 − θ)`` matters; the pair ``(c, b)``
  is constant. With ``A = w(a≻b) + w(a≻c)`` and ``C = w(c≻a)`` the loss is
  ``A·log(1 + R^{−β}) + C·log(1 + R^{β})`` whose minimiser is ``R = (A/C)^{1/β}``, so
  ``θ_DPO = (R − 1)/(R + 2)``. Population data: ``A/C = 3`` and at β = 1 ``θ_DPO = 2/5``
  exactly (``L(θ) = 2log(2+θ) − 1.5log(1+2θ) − 0.5log(1−θ) + C`` up to a factor, ``L'(0.4) = 0``).
- RLHF, reward ``log π*`` with π*(b) = 0 floored at ε (``Problem.create(reward_floor=ε)``):
  stationarity of ``−E_π[r] + β·KL(π‖π_ref)`` on the family gives
  ``(1 + 2θ)/(1 − θ) = (½/ε)^{1/(2β)}``, so ``θ_RLHF(ε) = (s − 1)/(s + 2)``,
  ``s = (½/ε)^{1/(2β)}``: strictly inside (0, 1) for every ε > 0 (the entropy term has slope
  +∞ at θ = 1) and → 1 as ε → 0. At ε = 0 the objective is +∞ for every θ < 1 (π_θ(b) > 0
  meets reward −∞) and finite at θ = 1, which is then the unique minimiser: the reverse KL
  ``KL(π_θ‖π*)`` is finite only on π*'s support. The default ε = 1e-12 gives
  ``θ_RLHF = 1 − 4.2e-6``.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.infra import bounds, budget
from bandit_lab.experiments import Experiment, command_line, meta, pyplot, save_figure
from bandit_lab.core.objective import make_objective
from bandit_lab.core.params import Mixture
from bandit_lab.core.problems import Problem
from bandit_lab.runner import train_batch
from bandit_lab.solvers.solver import solve_exact
from bandit_lab.core.train import SCHEDULES, TrainConfig

PAPER = {"theta_rlhf": 1.00, "theta_dpo": 0.44}
PI_STAR = (0.5, 0.0, 0.5)
PI0 = (1 / 3, 1 / 3, 1 / 3)
PI1 = (1.0, 0.0, 0.0)



@dataclasses.dataclass(frozen=True)
class Settings:
    beta: float = dataclasses.field(default=1.0, metadata=meta("KL strength β (Kong et al.'s λ)", bounds.BETA))
    lr: float = dataclasses.field(default=0.01, metadata=meta("peak learning rate of projected Adam", bounds.LR))
    steps: int = dataclasses.field(default=2000, metadata=meta("projected Adam steps", bounds.STEPS))
    init: float = dataclasses.field(default=0.5, metadata=meta("initial θ (paper: 0.5)", bounds.PROBABILITY))
    schedule: str = dataclasses.field(default="cosine", metadata=meta("learning-rate schedule", choices=SCHEDULES))
    reward_floor: float = dataclasses.field(default=1e-12, metadata=meta("ε: RLHF reward log max(π*, ε) (π*(b) = 0)", bounds.OPEN_UNIT))
    floors: tuple[float, ...] = dataclasses.field(default=(1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12, 1e-14, 1e-16),
                                                  metadata=meta("floors ε of the RLHF limit study", bounds.OPEN_UNIT))
    grid_lrs: tuple[float, ...] = dataclasses.field(default=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                                                    metadata=meta("constant learning rates of the (lr, steps) study", bounds.LR))
    grid_steps: int = dataclasses.field(default=10000, metadata=meta("longest run of the (lr, steps) study", bounds.STEPS))
    sample_sizes: tuple[int, ...] = dataclasses.field(default=(30, 100, 1000), metadata=meta("dataset sizes of the finite-sample study", bounds.COUNT))

    def cost(self) -> budget.Cost:
        train = budget.training(steps=self.steps, responses=3, runs=2, params=1)
        grid = budget.training(steps=self.grid_steps, responses=3, runs=2 * len(self.grid_lrs), params=1, logged=8)
        solves = budget.constrained(params=1, responses=3, points=2 + len(self.floors))
        # the exact finite-sample law enumerates (A, C) on an (n+1)² grid, ≈ 10 arrays of it
        law = max((budget.array(10 * (n + 1) ** 2, f"the finite-sample law of n = {n} pairs ((n+1)² grid)") for n in self.sample_sizes),
                  key=lambda c: c.memory)
        law.work = sum(50.0 * (n + 1) ** 2 for n in self.sample_sizes)
        return budget.problem(1, 3) + (train | grid | solves | law)


# ----------------------------------------------------------------------------- closed forms

def theta_of_ratio(R):
    """θ whose policy has ``π_a/π_c = R``: inverse of ``R = (1 + 2θ)/(1 − θ)``."""
    return (R - 1.0) / (R + 2.0)


def theta_dpo_closed(beta: float, a_over_c: float = 3.0) -> float:
    """DPO minimiser on the family: ``R = (A/C)^{1/β}`` (module docstring); clipped to [0, 1]."""
    return float(np.clip(theta_of_ratio(a_over_c ** (1.0 / beta)), 0.0, 1.0))


def theta_rlhf_closed(beta: float, floor: float) -> float:
    """RLHF(r = log max(π*, ε)) minimiser on the family: ``R = (½/ε)^{1/(2β)}``."""
    return float(np.clip(theta_of_ratio((0.5 / floor) ** (0.5 / beta)), 0.0, 1.0))


def dpo_landscape_beta1(theta):
    """Kong §3.3 population DPO loss at β = 1 up to a factor 3 and a constant:
    ``2log(2+θ) − 1.5log(1+2θ) − 0.5log(1−θ)``; its derivative vanishes at θ = 0.4 exactly
    (``L'(θ)·(2+θ)(1+2θ)(1−θ) = 7.5θ − 3``)."""
    theta = np.asarray(theta, dtype=float)
    return 2 * np.log(2 + theta) - 1.5 * np.log1p(2 * theta) - 0.5 * np.log1p(-theta)


def finite_sample_law(n: int, beta: float) -> dict:
    """Exact law of θ_DPO (β) on ``n`` i.i.d. triples from the §3.3 population: mean, sd and
    P(θ rounds to the printed 0.44), by enumerating ``(A, C) ~ Multinomial(n; ½, ⅙, ⅓)``
    (log-pmf via gammaln). ``C = 0`` gives θ = 1, ``A = 0`` gives θ = 0."""
    from scipy.special import gammaln

    A, C = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = A + C <= n
    Ao, Co = A[ok], C[ok]
    R = n - Ao - Co
    logp = gammaln(n + 1) - gammaln(Ao + 1) - gammaln(Co + 1) - gammaln(R + 1) + Ao * np.log(0.5) + Co * np.log(1 / 6) + R * np.log(1 / 3)
    p = np.exp(logp)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(Co > 0, Ao / np.maximum(Co, 1), np.inf)
        Rr = np.where(np.isfinite(ratio), ratio ** (1.0 / beta), np.inf)
        th = np.where(np.isfinite(Rr), np.clip(theta_of_ratio(Rr), 0.0, 1.0), 1.0)
    mean = float(np.sum(p * th))
    return {"n_pairs": n, "mean": mean, "sd": float(np.sqrt(np.sum(p * (th - mean) ** 2))),
            "p_round_to_0.44": float(np.sum(p[np.round(th, 2) == PAPER["theta_dpo"]])),
            "p_theta_ge_0.435": float(np.sum(p[th >= 0.435])), "total_probability": float(p.sum())}


def a_over_c(weight: np.ndarray) -> float:
    """``A/C`` of a dataset ``weight[y_w, y_l]`` (indices a=0, b=1, c=2)."""
    w = np.asarray(weight).reshape(3, 3)
    c = w[2, 0]
    return np.inf if c == 0 else float((w[0, 1] + w[0, 2]) / c)


# ----------------------------------------------------------------------------- objects

def problem(floor: float = 1e-12) -> Problem:
    return Problem.create(list(PI0), pi_star=list(PI_STAR), pairs="uniform", reward_floor=floor)


def objectives(beta: float, floor: float = 1e-12, data=None):
    """(DPO, RLHF counterpart) on the mixture family."""
    pb = problem(floor)
    fam = Mixture.create(pb, list(PI0), list(PI1))
    dpo = make_objective(pb, "dpo", {"beta": beta}, param=fam, data=data)
    return dpo, dpo.counterpart()


def _theta(policies: np.ndarray) -> np.ndarray:
    """θ from π_a = θ + (1 − θ)/3."""
    return (3.0 * np.asarray(policies)[..., 0] - 1.0) / 2.0


def _landscapes(objs, thetas: np.ndarray) -> list[np.ndarray]:
    """Values of several objectives over a θ grid, in one compiled call."""
    f = jax.jit(jax.vmap(lambda t: [o.value(jnp.reshape(t, (1,)), o.hp) for o in objs]))
    return [np.asarray(v) for v in f(jnp.asarray(thetas))]


def dpo_slope(theta: float, beta: float, a_over_c_: float = 3.0, c_weight: float = 1 / 6) -> float:
    """dL/dθ of the population DPO loss on the family (module docstring):
    ``dL/dR = β(C·R^β − A)/(R(1 + R^β))``, ``dR/dθ = 3/(1 − θ)²``, with A = 3C, C = ⅙."""
    R = (1 + 2 * theta) / (1 - theta)
    A = a_over_c_ * c_weight
    return float(beta * (c_weight * R**beta - A) / (R * (1 + R**beta)) * 3.0 / (1 - theta) ** 2)


def run(s: Settings) -> dict:
    dpo, rlhf = objectives(s.beta, s.reward_floor)
    init = jnp.asarray([s.init])
    hp = [{**dpo.hp, "lr": s.lr}], [{**rlhf.hp, "lr": s.lr}]
    # one compiled program: both objectives, projected Adam from θ0
    config = TrainConfig(optimizer="adam", steps=s.steps, schedule=s.schedule)
    # θ0 = 0.5 is the Mixture's own initial point: then both objectives train as one Stack
    tr = train_batch([dpo, rlhf], config, hp, inits=None if s.init == 0.5 else [init, init])
    ex = [solve_exact(o, init=init) for o in (dpo, rlhf)]
    theta_adam = [float(_theta(t.policy[0])[0]) for t in tr]
    theta_exact = [float(np.asarray(e.params)[0]) for e in ex]
    records = []
    for lab, t in zip(("dpo", "rlhf"), tr):
        for step, pol in zip(np.asarray(t.steps[0]), _theta(t.policies[0])[:, 0]):
            records.append({"kind": "trajectory", "loss": lab, "step": int(step), "theta": float(pol)})

    # landscapes over θ ∈ [0, 1] (shifted so the minimum over the grid is 0)
    grid = np.linspace(0.0, 1.0, 401)
    land = dict(zip(("dpo", "rlhf"), _landscapes([dpo, rlhf], grid)))
    for j, th in enumerate(grid):
        records.append({"kind": "landscape", "theta": float(th), "dpo": float(land["dpo"][j]), "rlhf": float(land["rlhf"][j])})

    # RLHF reward-floor limit study: exact solve per ε (one compile, consts as arguments)
    floors = []
    for eps in s.floors:
        _, r_eps = objectives(s.beta, eps)
        e = solve_exact(r_eps, init=init)
        th = float(np.asarray(e.params)[0])
        v1 = float(r_eps.value(jnp.asarray([1.0]), r_eps.hp))
        rec = {"kind": "floor", "floor": eps, "theta_rlhf_exact": th, "theta_rlhf_closed_form": theta_rlhf_closed(s.beta, eps),
               "one_minus_theta": 1.0 - th, "residual": e.residual,
               "value_gap_theta1_minus_opt": v1 - float(e.value)}
        floors.append(rec)
        records.append(rec)

    # (lr, steps) study with constant-lr Adam (the paper's plain projected Adam): all lrs, both
    # objectives, in one compiled run logging θ at a few step counts
    log_steps = tuple(int(v) for v in np.unique(np.round(np.geomspace(10, s.grid_steps, 7)).astype(int)))
    gcfg = TrainConfig(optimizer="adam", steps=s.grid_steps, schedule="constant", log_steps=(0,) + log_steps)
    ghp = [[{**o.hp, "lr": lr} for lr in s.grid_lrs] for o in (dpo, rlhf)]
    gtr = train_batch([dpo, rlhf], gcfg, ghp)
    g_theta = [_theta(t.policies[:, :, 0, :]) for t in gtr]  # [n_lr, L]
    g_steps = np.asarray(gtr[0].steps[0])
    consistent = []
    for i, lr in enumerate(s.grid_lrs):
        for k, st in enumerate(g_steps):
            if st == 0:
                continue
            td, trl = float(g_theta[0][i, k]), float(g_theta[1][i, k])
            rec = {"kind": "lr_grid", "lr": lr, "step": int(st), "theta_dpo": td, "theta_rlhf": trl}
            records.append(rec)
            if round(td, 2) == PAPER["theta_dpo"] and round(trl, 2) == PAPER["theta_rlhf"]:
                consistent.append((lr, int(st)))

    # finite data: n triples drawn i.i.d. from the population. θ_DPO of the exact minimiser
    # depends only on (A, C) = (#(a≻b) + #(a≻c), #(c≻a)) ~ Multinomial(n; ½, ⅙, ⅓ rest), so
    # its law is computed exactly by enumerating (A, C) — no sampling noise
    sampled = {int(n): finite_sample_law(int(n), s.beta) for n in s.sample_sizes}

    # β that would put the population DPO optimum at the printed 0.44 (R^β = 3)
    R44 = (1 + 2 * PAPER["theta_dpo"]) / (1 - PAPER["theta_dpo"])
    gap = {
        "beta_for_0.44": float(np.log(3.0) / np.log(R44)),
        "pair_weight_ratio_for_0.44": float(_pair_ratio_for(PAPER["theta_dpo"])),
        "dpo_slope_at_0.44": dpo_slope(PAPER["theta_dpo"], s.beta),
        "lr_steps_giving_both_paper_values": consistent,
        "sampled": {str(n): d for n, d in sampled.items()},
    }
    return {
        "command": command_line("mode-seeking", s) + " --out DIR",
        "beta": s.beta,
        "reward_floor": s.reward_floor,
        "theta_rlhf": theta_adam[1],
        "theta_dpo": theta_adam[0],
        "theta_rlhf_exact": theta_exact[1],
        "theta_dpo_exact": theta_exact[0],
        "theta_dpo_closed_form": theta_dpo_closed(s.beta),
        "theta_rlhf_closed_form": theta_rlhf_closed(s.beta, s.reward_floor),
        "paper": PAPER,
        "exact_residual": max(e.residual for e in ex),
        "adam_stationarity": [float(np.ravel(t.grad_norm)[0]) for t in tr],
        "gap_analysis": gap,
        "floors": floors,
        "records": records,
    }


def _pair_ratio_for(theta: float) -> float:
    """Weight of the (a, c) pair relative to each other pair that puts the β = 1 population
    optimum at ``theta``: ``A/C = R``, ``A = w + v/2``, ``C = v/2`` ⇒ ``v/w = 2/(R − 1)``."""
    R = (1 + 2 * theta) / (1 - theta)
    return 2.0 / (R - 1.0)


def report(res: dict) -> str:
    g = res["gap_analysis"]
    lines = [
        f"mode seeking vs covering (Kong §3.3): π_θ = θ·[1,0,0] + (1−θ)·[⅓,⅓,⅓], β = {res['beta']:g}, RLHF reward floor ε = {res['reward_floor']:g}",
        "",
        f"{'':<8}{'paper':>8}{'Adam':>12}{'exact (box)':>14}{'closed form':>14}",
        f"{'θ_RLHF':<8}{res['paper']['theta_rlhf']:>8.2f}{res['theta_rlhf']:>12.6f}{res['theta_rlhf_exact']:>14.6f}{res['theta_rlhf_closed_form']:>14.6f}",
        f"{'θ_DPO':<8}{res['paper']['theta_dpo']:>8.2f}{res['theta_dpo']:>12.6f}{res['theta_dpo_exact']:>14.6f}{res['theta_dpo_closed_form']:>14.6f}",
        f"(exact first-order residual {res['exact_residual']:.1e}; Adam projected-gradient norm DPO {res['adam_stationarity'][0]:.1e}, RLHF {res['adam_stationarity'][1]:.1e})",
        "",
        "projected Adam trajectory from θ0 (θ after N steps):",
    ]
    traj = {lab: {r["step"]: r["theta"] for r in res["records"] if r["kind"] == "trajectory" and r["loss"] == lab} for lab in ("dpo", "rlhf")}
    steps = sorted(traj["dpo"])
    show = sorted({steps[0], *(min([st for st in steps if st > 0], key=lambda st: abs(np.log(st) - np.log(d))) for d in (1, 10, 100, 1000)), steps[-1]})
    lines.append(f"{'step':>8}" + "".join(f"{st:>10}" for st in show))
    for lab in ("dpo", "rlhf"):
        lines.append(f"{'θ_' + lab.upper():>8}" + "".join(f"{traj[lab][st]:>10.6f}" for st in show))
    lines += [
        "",
        "RLHF reward floor ε (reward log max(π*, ε); ε → 0 is the support-restricted reverse KL):",
        f"{'ε':>10}{'θ_RLHF exact':>16}{'closed form':>16}{'1 − θ':>12}",
    ]
    for f in res["floors"]:
        lines.append(f"{f['floor']:>10.0e}{f['theta_rlhf_exact']:>16.10f}{f['theta_rlhf_closed_form']:>16.10f}{f['one_minus_theta']:>12.2e}")
    lines += [
        "",
        "why the paper's θ_DPO = 0.44 is not the converged value 0.400:",
        f"  L_DPO'(0.44) = {g['dpo_slope_at_0.44']:.4f} ≠ 0 (0.44 is not stationary); the landscape has one minimum at θ = {res['theta_dpo_exact']:.6f}",
        f"  β giving 0.44 at the population optimum: {g['beta_for_0.44']:.4f};  (a,c)-pair weight ratio giving 0.44 at β = 1: {g['pair_weight_ratio_for_0.44']:.4f} (uniform pairs: 1)",
    ]
    for n, d in g["sampled"].items():
        lines.append(f"  finite data, n = {n:>5} sampled triples: θ_DPO mean {d['mean']:.3f} sd {d['sd']:.3f}; P(rounds to 0.44) = {d['p_round_to_0.44']:.3f} (exact law)")
    c = g["lr_steps_giving_both_paper_values"]
    grid = [r for r in res["records"] if r["kind"] == "lr_grid"]
    lrs = sorted({r["lr"] for r in grid})
    steps = sorted({r["step"] for r in grid})
    lines.append(f"  constant-lr Adam from θ = 0.5, θ_DPO/θ_RLHF after N steps (lr ∈ {{{', '.join(f'{v:g}' for v in lrs)}}}):")
    lines.append("  " + f"{'lr':<8}" + "".join(f"{st:>14}" for st in steps))
    for lr in lrs:
        cells = {r["step"]: r for r in grid if r["lr"] == lr}
        lines.append("  " + f"{lr:<8g}" + "".join(f"{cells[st]['theta_dpo']:>8.3f}/{cells[st]['theta_rlhf']:<5.3f}" for st in steps))
    lines.append("  cells of this grid that print both 0.44 and 1.00: " + (", ".join(f"(lr {a:g}, {b} steps)" for a, b in c) if c else "none"))
    return "\n".join(lines)


def plot(res: dict, out_dir: str) -> list[str]:
    plt = pyplot()

    recs = res["records"]
    land = [r for r in recs if r["kind"] == "landscape"]
    th = np.array([r["theta"] for r in land])
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.2))
    colors = {"dpo": "C0", "rlhf": "C3"}
    opt = {"dpo": res["theta_dpo_exact"], "rlhf": res["theta_rlhf_exact"]}
    paper = {"dpo": res["paper"]["theta_dpo"], "rlhf": res["paper"]["theta_rlhf"]}
    for ax, lab, name in ((axes[0, 0], "dpo", "DPO"), (axes[0, 1], "rlhf", f"RLHF (reward log max(π*, {res['reward_floor']:g}))")):
        y = np.array([r[lab] for r in land])
        base = y.min()
        ax.plot(th, y - base, color=colors[lab], lw=1.5, label=f"{name} loss − min")
        traj = [r for r in recs if r["kind"] == "trajectory" and r["loss"] == lab]
        tt = np.array([r["theta"] for r in traj])
        ax.plot(tt, np.interp(tt, th, y - base), "o", ms=3, color="k", alpha=0.6, label="projected Adam (log-spaced steps)")
        ax.axvline(opt[lab], color=colors[lab], ls="--", lw=1, label=f"exact optimum θ = {opt[lab]:.4f}")
        ax.axvline(paper[lab], color="gray", ls=":", lw=1.2, label=f"paper θ = {paper[lab]:.2f}")
        ax.set_xlabel("θ")
        ax.set_title(f"{name}: landscape over θ ∈ [0, 1]", fontsize=9)
        if lab == "rlhf":
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.set_ylim(0, None)
        else:  # log(1 − θ) → ∞ at θ = 1: show the basin
            ax.set_ylim(-0.002, 1.3 * float(np.max((y - base)[th <= 0.9])))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    ax = axes[1, 0]
    fl = res["floors"]
    ax.loglog([f["floor"] for f in fl], [max(f["one_minus_theta"], 1e-17) for f in fl], "o", color=colors["rlhf"], label="1 − θ_RLHF (exact solver)")
    ax.loglog([f["floor"] for f in fl], [1 - f["theta_rlhf_closed_form"] for f in fl], "-", color="k", lw=0.8,
              label="closed form 1 − (s−1)/(s+2), s = (½/ε)^{1/2β}")
    ax.set_xlabel("reward floor ε for π*(b) = 0")
    ax.set_ylabel("1 − θ_RLHF")
    ax.set_title("RLHF limit study: θ_RLHF(ε) → 1 as ε → 0", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1, 1]
    grid = [r for r in recs if r["kind"] == "lr_grid"]
    lrs = sorted({r["lr"] for r in grid})
    for i, lr in enumerate(lrs):
        rs = [r for r in grid if r["lr"] == lr]
        col = plt.cm.viridis(i / max(len(lrs) - 1, 1))
        ax.semilogx([r["step"] for r in rs], [r["theta_dpo"] for r in rs], "-o", ms=3, color=col, label=f"DPO, lr {lr:g}")
        ax.semilogx([r["step"] for r in rs], [r["theta_rlhf"] for r in rs], "--", lw=1, color=col)
    ax.axhline(0.44, color="gray", ls=":", label="paper 0.44 / 1.00")
    ax.axhline(1.0, color="gray", ls=":")
    ax.axhline(res["theta_dpo_exact"], color=colors["dpo"], lw=0.8)
    ax.set_xlabel("constant-lr Adam steps (solid DPO, dashed RLHF)")
    ax.set_ylabel("θ")
    ax.set_title("unconverged runs: no cell of this grid prints both paper values", fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.suptitle("Kong et al. §3.3 mode seeking: DPO covers both modes (θ = 0.4), RLHF seeks one (θ → 1)", fontsize=10)
    return [save_figure(fig, out_dir, "mode_seeking.png", "regenerate: " + res.get("command", "bandit-lab run mode-seeking --out DIR"), y=0.005, rect=(0, 0.02, 1, 0.97))]


EXPERIMENT = Experiment(
    name="mode-seeking",
    summary="θ of DPO (mode covering) vs RLHF (mode seeking) on π_θ = θ·[1,0,0] + (1−θ)·uniform",
    settings=Settings,
    run=run,
    report=report,
    plot=plot,
    quick={"steps": 1000, "grid_steps": 1000, "grid_lrs": (1e-4, 1e-3, 1e-2), "sample_sizes": (100,), "floors": (1e-2, 1e-6, 1e-12)},
    reference="Kong et al. §3.3 (θ_RLHF = 1.00, θ_DPO = 0.44)",
)
