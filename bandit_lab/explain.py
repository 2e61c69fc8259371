"""``bandit-lab explain``: what a library's on-policy config optimises (issue 21).

A *reader* turns a library config (a dict as the library writes it, e.g. TRL 1.16's
``GRPOConfig``/``RLOOConfig`` saved as YAML/JSON) into a registered loss and its ``loss_params``;
:func:`explain` then states the expected update's objective and the divergence that regularises it,
solves its exact stationary point on a spec (default: Kong et al. App. B bandit) with
:func:`bandit_lab.onpolicy.stationary.solve`, and reports the verdict and TV to the Gibbs policy
π_ref·e^{r/β}/Z. Other libraries plug in with :func:`register_reader` and ``PRESETS``.

Divergence statements (single-token responses; Tang & Munos 2025 Eq. 2–4): k1 in the reward →
∇KL(π‖π_ref); k3 in the loss → E_π[∇k3] = Σ(π − π_ref)∇log π = ∇KL(π_ref‖π); k3 × ratio (TRL
``use_bias_correction_kl``) → ∇KL(π‖π_ref). Advantage r − group mean → ((G−1)/G)·∇E_π r; group-std
normalisation → no known objective (Vojnovic & Yun 2025); RLOO's leave-one-out → ∇E_π r.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.onpolicy import trl as _trl
from bandit_lab.onpolicy import verl as _verl

READERS: dict[str, Callable[[dict], tuple[str, dict]]] = {}
PRESETS: dict[str, tuple[str, dict]] = {}
# loss → ``describe(hp, static) -> (objective, divergence, β of the Gibbs reference)`` for losses
# whose options are not the native on-policy ones (verl/OpenRLHF, :mod:`bandit_lab.onpolicy.verl`)
DESCRIBERS: dict[str, Callable[[dict, dict], tuple[str, str, float]]] = {}


def register_reader(name: str, fn: Callable[[dict], tuple[str, dict]]) -> None:
    """Add a config reader ``fn(config) -> (loss name, loss_params)`` under ``name``."""
    READERS[name] = fn


def _trl_reader(loss: str, defaults: dict):
    keep = set(defaults) | set(_trl._NOT_YET) | set(_trl._INERT_WITH) | set(_trl._BATCH)

    def read(cfg: dict) -> tuple[str, dict]:
        # a config as TRL writes it holds every TrainingArguments field: keep those that act on the update
        return loss, {**defaults, **{k: v for k, v in cfg.items() if k in keep}}
    return read


register_reader("grpo", _trl_reader("grpo", _trl.GRPO_DEFAULTS))
register_reader("rloo", _trl_reader("rloo", _trl.RLOO_DEFAULTS))
register_reader("a2po", _trl_reader("a2po", _trl.A2PO_DEFAULTS))
PRESETS.update({
    "trl-grpo-default": ("grpo", {}),
    "trl-grpo-beta0.04": ("grpo", {"beta": 0.04}),
    "trl-grpo-beta0.04-no-bias-correction": ("grpo", {"beta": 0.04, "use_bias_correction_kl": False}),
    "trl-dr_grpo-beta0.04": ("grpo", {"loss_type": "dr_grpo", "scale_rewards": "none", "beta": 0.04}),
    "trl-grpo-gspo": ("grpo", {"importance_sampling_level": "sequence", "beta": 0.04}),
    "trl-rloo-default": ("rloo", {}),
    "trl-cispo-beta0.04": ("grpo", {"loss_type": "cispo", "beta": 0.04}),
    "trl-a2po-default": ("a2po", {}),
})

# verl 0.9.1 / OpenRLHF 0.11.2 (issue 21): configs as the libraries write them; presets at their defaults
register_reader("verl", _verl.read_verl)
register_reader("openrlhf", _verl.read_openrlhf)
DESCRIBERS.update(verl=_verl.describe, openrlhf=_verl.describe)
PRESETS.update({  # the libraries' defaults, then their KL forms at β = 0.1 (at 1e-3/1e-2 Kong's Gibbs point has masses e^−70)
    "verl-default": ("verl", {}),
    "verl-grpo-low_var_kl-beta0.1": ("verl", {"adv_estimator": "grpo", "n": 5, "use_kl_loss": True, "kl_loss_coef": 0.1}),
    "verl-grpo-k3+-beta0.1": ("verl", {"adv_estimator": "grpo", "n": 5, "use_kl_loss": True, "kl_loss_type": "k3+",
                                       "kl_loss_coef": 0.1}),
    "verl-grpo-nostd-k3+-beta0.1": ("verl", {"adv_estimator": "grpo", "norm_adv_by_std_in_grpo": False, "n": 5,
                                             "use_kl_loss": True, "kl_loss_type": "k3+", "kl_loss_coef": 0.1}),
    "verl-rloo-kl-in-reward-beta0.1": ("verl", {"adv_estimator": "rloo", "n": 5, "use_kl_in_reward": True,
                                                "kl_ctrl": {"kl_coef": 0.1}}),
    "verl-reinforce_plus_plus_baseline-kl-in-reward-beta0.1": ("verl", {"adv_estimator": "reinforce_plus_plus_baseline", "n": 4,
                                                                        "use_kl_in_reward": True, "kl_ctrl": {"kl_coef": 0.1}}),
    "openrlhf-default": ("openrlhf", {}),
    "openrlhf-rloo-beta0.1": ("openrlhf", {"algo.advantage.estimator": "rloo", "rollout.n_samples_per_prompt": 4,
                                           "algo.kl.init_coef": 0.1}),
    "openrlhf-reinforce_baseline-beta0.1": ("openrlhf", {"algo.advantage.estimator": "reinforce_baseline",
                                                         "rollout.n_samples_per_prompt": 4, "algo.kl.init_coef": 0.1}),
    "openrlhf-group_norm-k3-loss-beta0.1": ("openrlhf", {"algo.advantage.estimator": "group_norm", "rollout.n_samples_per_prompt": 4,
                                                         "algo.kl.use_loss": True, "algo.kl.estimator": "k3", "algo.kl.init_coef": 0.1}),
})

# TRL 1.16 DistillationConfig / experimental GKDConfig (bandit_lab.losses.distillation): the teacher is a
# table in the config (``teacher`` or ``teacher_logits``); the preset's teacher is Kong's π* (App. B)
def _distill_reader(loss: str, defaults: dict):
    fields = {"beta", "temperature"} | ({"lmbda", "seq_kd"} if loss == "gkd" else set())  # the fields that act on the update
    keep = set(defaults) | fields | {"teacher", "teacher_logits", "top_p", "top_k", "min_p", "repetition_penalty"}

    def read(cfg: dict) -> tuple[str, dict]:
        lp = {**defaults, **{k: v for k, v in cfg.items() if k in keep}}
        if "teacher_logits" in cfg:
            lp.pop("teacher", None)
        return loss, lp
    return read


def _describe_distillation(hp: dict, static: dict) -> tuple[str, str, float]:
    b = hp["beta"]
    div = ("KL(teacher‖student) (forward)" if b == 0 else "KL(student‖teacher) (reverse)" if b == 1
           else f"generalised JSD_β, β = {b:g}: β·KL(t‖m) + (1−β)·KL(s‖m), m = (1−β)·s + β·t")
    return ("gradient of the token-mean divergence to the teacher at the positions the batch visits "
            "(visiting law detached); its zero is the teacher for every β, τ, λ"), div, 0.0


_KONG_TEACHER = {"teacher": [0.6, 0.3, 0.1]}
register_reader("distillation", _distill_reader("distillation", {**_KONG_TEACHER}))
register_reader("gkd", _distill_reader("gkd", {**_KONG_TEACHER}))
DESCRIBERS.update(distillation=_describe_distillation, gkd=_describe_distillation)
# (no PRESETS entries: the live page reads PRESETS and imposes its own β, a KL strength, where
# distillation's β is TRL's JSD interpolation; `bandit-lab explain distillation|gkd [--set …]` reads them)

KONG_APP_B = {"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform"}


def describe(loss: str, hp: dict, static: dict) -> tuple[str, str]:
    """``(objective, divergence)`` of the expected update, in words (module docstring)."""
    beta, G = hp.get("beta", 0.0), static.get("group_size")
    if loss == "a2po":  # bandit_lab.losses.onpolicy: E_π[(βh − r + V*)∇h] = ∇[β·KL(π‖π_ref) − E_π r] (V* drops)
        return ("2β·(gradient of E_π[r] − β·D); V*, β₁ and num_value_samples drop out of the expected update",
                "KL(π‖π_ref) (A*-PO's regression of β·log(π/π_ref) onto r − V*)")
    norm = static.get("normalize")
    if norm == "group_std":
        obj = "not the gradient of a known objective (group-std normalisation; Vojnovic & Yun 2025)"
    elif norm == "group_mean":
        obj = f"gradient of ((G−1)/G)·E_π[r] − β·D with G = {G}"
    elif norm == "loo":
        obj = "gradient of E_π[r] − β·D"
    else:
        obj = "gradient of E_π[r] − β·D"
    if static.get("batch_whiten"):  # TRL RLOO: batch (A − mean)/(std + 1e-4); a positive scalar on the update
        obj += (", divided by the batch std of the advantage + 1e-4 (normalize_advantages: the zeros are unchanged "
                "when the KL is in the reward; tests/test_audit_rows.py)")
    if static.get("surrogate") == "cispo":  # TRL cispo: detached min(ρ, ε_high) = min(1, ε_high) on-policy
        c = min(1.0, float(hp.get("clip_high", 1.0)))
        if c != 1.0:
            obj += f" (cispo: the policy-gradient term × min(1, ε_high) = {c:g}, so the KL acts as β/{c:g})"
    if beta == 0:
        return obj.replace(" − β·D", ""), "none (β = 0)"
    est, place = static.get("kl_estimator"), static.get("kl_placement")
    if est == "k1" and place == "reward":
        div = "KL(π‖π_ref) (k1 in the reward)"
    elif est == "k3" and place == "loss":
        div = ("KL(π‖π_ref) (k3 × ratio, use_bias_correction_kl)" if static.get("kl_bias_correction")
               else "KL(π_ref‖π) (k3 in the loss: E_π[∇k3] = ∇KL(π_ref‖π))")
    elif est == "k3" and place == "reward":  # docs/onpolicy.md; derivation and check in tests/test_audit_rows.py
        div = ("KL(π‖π_ref) − KL(π_ref‖π) (k3 in the reward: not a divergence; the objective is unbounded as any "
               "π(y) → 0, so the flow runs away)")
    else:
        div = f"{est} KL estimator, placement {place}"
    return obj, div


def explain(reader: str, config: dict, spec: dict | None = None) -> dict:
    """Objective, divergence, exact stationary point, verdict and TV to Gibbs of a library config."""
    from bandit_lab.core import metrics
    from bandit_lab.core.objective import make_objective
    from bandit_lab.onpolicy.stationary import solve
    from bandit_lab.solvers.oracles import rlhf_optimum
    from bandit_lab.spec import build

    if reader not in READERS:
        raise BanditError(f"unknown config kind {reader!r}; known: {', '.join(sorted(READERS))}")
    loss, lp = READERS[reader](dict(config))
    base, *_ = build({**(spec or KONG_APP_B), "loss": "dpo", "loss_params": {"beta": 1.0}})
    pb = base.problem
    o = make_objective(pb, loss, lp)
    if loss in DESCRIBERS:
        obj, div, beta = DESCRIBERS[loss](o.hp, o.static)
    else:
        obj, div = describe(loss, o.hp, o.static)
        beta = o.hp["beta"]
    s = solve(o)
    pol = None if s.status == "runaway" else np.asarray(s.result.policy)
    limit = s.certificate.get("limit_policy") if s.status == "runaway" else None  # certified on its face (onpolicy.runaway)
    gibbs = None if beta == 0 or pb.reward is None else rlhf_optimum(pb.pi_ref, pb.reward, beta)
    tv = None if pol is None or gibbs is None else float(metrics.tv(pol, gibbs, pb.context_weight))
    out = {"reader": reader, "loss": loss, "loss_params": lp, "objective": obj, "divergence": div,
           "status": s.status, "note": s.note, "residual": float(s.result.residual),
           "policy": None if pol is None else pol.tolist(), "beta": beta, "tv_gibbs": tv, "limit": limit,
           "tv_gibbs_limit": None if limit is None or gibbs is None else float(metrics.tv(np.asarray(limit), gibbs,
                                                                                          pb.context_weight))}
    if loss in ("distillation", "gkd"):  # no reward: the reference point is the teacher (its closed form)
        t = o.loss.oracle(pb, o.hp, o.static)[0]
        out["tv_teacher"] = None if pol is None else float(metrics.tv(pol, t, pb.context_weight))
    return out


def lines(r: dict) -> list[str]:
    pol = "—" if r["policy"] is None else "[" + ", ".join(f"{p:.6f}" for p in np.ravel(r["policy"])) + "]"
    tv = "undefined (β = 0)" if r["beta"] == 0 else ("—" if r["tv_gibbs"] is None else f"{r['tv_gibbs']:.3e}")
    if r.get("limit") is not None:  # a runaway whose limit is certified on its face
        pol = "→ [" + ", ".join(f"{p:.6f}" for p in np.ravel(r["limit"])) + "] (the runaway's limit)"
        tv = tv if r["beta"] == 0 or r.get("tv_gibbs_limit") is None else f"{r['tv_gibbs_limit']:.3e} (the limit's)"
    return [f"config      {r['reader']} → loss {r['loss']}",
            f"update      {r['objective']}",
            f"divergence  {r['divergence']}",
            f"stationary  {r['status']}  (‖F‖ = {r['residual']:.1e}) {r['note']}".rstrip(),
            f"policy      {pol}",
            f"TV to Gibbs {tv}"] if "tv_teacher" not in r else [
        *lines({k: v for k, v in r.items() if k != "tv_teacher"})[:5],
        f"TV to teacher {'—' if r['tv_teacher'] is None else format(r['tv_teacher'], '.3e')}"]


def preset_table(spec: dict | None = None) -> list[dict]:
    """Every preset → objective, divergence, verdict, TV to Gibbs (``bandit-lab explain presets``)."""
    return [{"preset": name, **explain(rd, cfg, spec)} for name, (rd, cfg) in PRESETS.items()]


def preset_lines(rows: list[dict]) -> list[str]:
    """The table ``bandit-lab explain presets`` prints: per preset its verdict, the point (only where
    a root is certified: attracting or not attracting; for a runaway, "→" its limit where certified on
    its face) and its TV to Gibbs(β), then the update and the divergence. An uncertified row shows no
    point and no TV."""
    out = [f"{'preset':<56} {'stationary':<14} {'point π':<34} TV to Gibbs(β)"]
    for r in rows:
        certified = r["status"] in ("attracting", "not attracting")
        lim = r.get("limit")
        pol = ("[" + ", ".join(f"{p:.4g}" for p in np.ravel(r["policy"])) + "]") if certified and r["policy"] is not None else (
            "→ [" + ", ".join(f"{p:.4g}" for p in np.ravel(lim)) + "]" if lim is not None else "—")
        tv_ = r["tv_gibbs"] if certified else r.get("tv_gibbs_limit")
        tv = "undefined (β = 0)" if r["beta"] == 0 else (f"{tv_:.3e}" if tv_ is not None else "—")
        out.append(f"{r['preset']:<56} {r['status']:<14} {pol:<34} {tv}")
        out.append(f"    update: {r['objective']}")
        out.append(f"    divergence: {r['divergence']}")
        if not certified:
            out.append(f"    {r['note']}")
    return out
