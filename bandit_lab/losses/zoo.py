"""The practical loss zoo: the preference losses used in practice, on the exact triple grid.

Names follow TRL's ``DPOConfig.loss_type`` where one exists (``hinge``, ``robust``, ``exo_pair``,
``nca_pair``, ``bco_pair``, ``sppo_hard``, ``apo_zero``, ``apo_down``, ``discopop``), and the
trainer name otherwise (``simpo``, ``cpo``, ``orpo``, ``kto``). Kong et al.'s generalised
η-losses (App. A.2, Eq. 24) are ``eta_sigmoid`` and ``eta_linear``. TRL's ``sigmoid`` is core
``dpo``; its ``sigmoid`` *with* ``label_smoothing`` is ``cdpo`` here; ``ipo`` is core ``ipo``.
The f-divergence family (reverse/forward KL, JS, α) is core ``fdpo`` and the Gaussian-NLL form of
Kong Prop. 4.1 is core ``gaussian_nll``; neither is duplicated here.

Notation (as in :mod:`bandit_lab.losses`): ``h = log π_θ − log π_ref``, ``Δ = h_w − h_l`` on the
``[x, y_w, y_l]`` grid, ``ℓ_DPO(u) = −log σ(u) = softplus(−u)``. Responses are single tokens, so
every length normalisation (SimPO, IPO in TRL, CPO/ORPO NLL averaging) is the identity.

Every loss is written with ``softplus``/``log_sigmoid``/``sigmoid``/``logsumexp`` only, so value
and gradient are finite for margins ``|βΔ|`` up to 1e3 (tested in ``tests/test_zoo.py``).

Two losses carry a *detached* statistic of the current policy (TRL computes it without
gradient): ``bco_pair``'s reward baseline δ and ``kto``'s reference point ``z_ref``. In the exact
population setting we define them as ``stop_gradient`` of the exact population quantity (see
each docstring). Their training signal is then the gradient field of the loss *with the
statistic frozen*, which is not the gradient of any single function; the exact solver minimises
``L(θ; s)`` at a frozen statistic ``s`` (``hp["delta"]``/``hp["z_ref"]``) and
:func:`bandit_lab.fixed_points.self_consistent` solves ``s = s(θ*(s))``: the zero of that field,
where Adam ends too (tested). Both losses register it as their ``exact`` solver, so
``solve_exact`` (and ``bandit-lab solve``) use it; ``hinge`` registers its linear programme.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.losses import LossInputs, LossSpec, expect, log_ratios, pair_grid, register

sp = jax.nn.softplus
sg = jax.lax.stop_gradient


def _margin(inputs: LossInputs, hp: dict) -> jax.Array:
    hw, hl = log_ratios(inputs)
    return hp["beta"] * (hw - hl)


# --------------------------------------------------------------------------- margin losses ℓ(βΔ)

def hinge(inputs: LossInputs, hp: dict) -> jax.Array:
    """SLiC / RSO hinge (TRL ``hinge``): ``E_D[max(0, 1 − βΔ)]``.

    References: Zhao et al. 2023 (SLiC-HF) Eq. 2 (calibration hinge with margin δ = 1/β in
    log-likelihood units); Liu et al. 2024 (RSO) §3, hinge on the normalised likelihood
    ``βΔ``. Piecewise linear: the population minimiser sits at a kink, so it is found by linear
    programming in :mod:`bandit_lab.fixed_points` (the Newton residual cannot vanish there).
    """
    return expect(inputs.data, jax.nn.relu(1.0 - _margin(inputs, hp)))


def cdpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """Conservative DPO (TRL ``sigmoid`` with ``label_smoothing`` = ε):
    ``E_D[(1 − ε)·ℓ_DPO(βΔ) + ε·ℓ_DPO(−βΔ)]``.

    Reference: Mitchell 2023, "A note on DPO with noisy preferences" (cDPO), Eq. 3. Per pair the
    population target is ``σ(βΔ) = ε + (1 − 2ε)·p`` (labels shrunk towards ½): never a runaway,
    and not DPO's fixed point for ε > 0.
    """
    u = _margin(inputs, hp)
    e = hp["label_smoothing"]
    return expect(inputs.data, (1.0 - e) * sp(-u) + e * sp(u))


def robust(inputs: LossInputs, hp: dict) -> jax.Array:
    """Robust DPO (TRL ``robust``): the unbiased loss under label flips with rate ε,
    ``E_D[((1 − ε)·ℓ_DPO(βΔ) − ε·ℓ_DPO(−βΔ)) / (1 − 2ε)]``.

    Reference: Chowdhury, Kini, Natarajan 2024, "Provably Robust DPO", Eq. 9 (rDPO). This is
    *not* cDPO: the flipped term enters with a minus sign, so a single triple's loss is unbounded
    below. Per pair the population target is ``σ(βΔ) = (p − ε)/(1 − 2ε)`` (the de-noised
    preference), finite only while ``ε < min(p, 1 − p)`` for every shown pair; otherwise the loss
    has no finite minimiser (the margin runs away).
    """
    u = _margin(inputs, hp)
    e = hp["label_smoothing"]
    return expect(inputs.data, ((1.0 - e) * sp(-u) - e * sp(u)) / (1.0 - 2.0 * e))


def exo_pair(inputs: LossInputs, hp: dict) -> jax.Array:
    """EXO, pairwise (TRL ``exo_pair``): ``E_D[KL(q_θ ‖ (1 − ε, ε))]`` with
    ``q_θ = (σ(βΔ), σ(−βΔ))``, i.e. ``σ(u)(log σ(u) − log(1 − ε)) + σ(−u)(log σ(−u) − log ε)``.

    Reference: Ji et al. 2024, "Towards Efficient Exact Optimization of Language Model
    Alignment", Eq. 16 (K = 2 responses per prompt, label distribution smoothed by ε; TRL uses
    ε = 1e-3 when ``label_smoothing`` is 0). Per pair the population target is
    ``βΔ = (2p − 1)·log((1 − ε)/ε)`` (stationarity in q of an entropy plus a linear term).
    """
    u = _margin(inputs, hp)
    e = hp["label_smoothing"]
    per = jax.nn.sigmoid(u) * (jax.nn.log_sigmoid(u) - jnp.log1p(-e)) + jax.nn.sigmoid(-u) * (jax.nn.log_sigmoid(-u) - jnp.log(e))
    return expect(inputs.data, per)


def discopop(inputs: LossInputs, hp: dict) -> jax.Array:
    """DiscoPOP / LRML (TRL ``discopop``): with ``u = βΔ`` and ``m = σ(u/τ)``,
    ``E_D[(1 − m)·ℓ_DPO(u) + m·e^{−u}]``.

    Reference: Chris Lu et al. 2024, "Discovering Preference Optimization Algorithms with and for
    Large Language Models", Eq. 5 (τ = 0.05, TRL's ``discopop_tau``). ``m·e^{−u}`` is evaluated as
    ``exp(log σ(u/τ) − u)``, finite for any u (the naive product is 0·∞ at u = −1e3).
    """
    u = _margin(inputs, hp)
    tau = hp["tau"]
    per = jax.nn.sigmoid(-u / tau) * sp(-u) + jnp.exp(jax.nn.log_sigmoid(u / tau) - u)
    return expect(inputs.data, per)


def simpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """SimPO: ``E_D[ℓ_DPO(β(log π_w/|y_w| − log π_l/|y_l|) − γ)]``, no reference model.

    Reference: Meng, Xia, Chen 2024, "SimPO", Eq. 6. Single-token responses: ``|y| = 1``. With
    γ = 0 and BT preferences the population optimum is ``softmax(r/β)`` whatever π_ref (equal to
    DPO's ``π_ref·e^{r/β}/Z`` only for uniform π_ref).
    """
    lw, ll = pair_grid(inputs.logp)
    return expect(inputs.data, sp(-(hp["beta"] * (lw - ll) - hp["gamma"])))


def cpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """CPO: ``E_D[ℓ_DPO(β(log π_w − log π_l))] + α·E_D[−log π_w]`` (reference-free, NLL on y_w).

    Reference: Xu et al. 2024, "Contrastive Preference Optimization", Eq. 6 (L_prefer, their
    Eq. 5 with the uniform-reference approximation) plus L_NLL; α = TRL's ``cpo_alpha``.
    """
    lw, ll = pair_grid(inputs.logp)
    return expect(inputs.data, sp(-hp["beta"] * (lw - ll)) - hp["cpo_alpha"] * lw)


def _log1m_prob(logp: jax.Array) -> jax.Array:
    """``log(1 − π_y) = log Σ_{k≠y} π_k`` exactly, as a masked ``logsumexp`` (no cancellation
    when π_y → 1)."""
    K = logp.shape[-1]
    off = ~jnp.eye(K, dtype=bool)
    grid = jnp.where(off, logp[..., None, :], -jnp.inf)  # [X, y, k]
    return jax.nn.logsumexp(grid, axis=-1)


def orpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """ORPO: ``E_D[−log π_w + λ·ℓ_DPO(log odds_θ(y_w) − log odds_θ(y_l))]``,
    ``odds(y) = π(y)/(1 − π(y))``; no reference model.

    Reference: Hong, Lee, Thorne 2024, "ORPO", Eq. 6–7 (λ = TRL ``ORPOConfig.beta``, default
    0.1, named ``lam`` here to keep β for KL strengths). ``log(1 − π)`` is a masked logsumexp.
    No closed form is known for its population optimum.
    """
    lo = inputs.logp - _log1m_prob(inputs.logp)
    ow, ol = pair_grid(lo)
    lw, _ = pair_grid(inputs.logp)
    return expect(inputs.data, -lw + hp["lam"] * sp(-(ow - ol)))


# --------------------------------------------------------------------------- per-response losses

def nca_pair(inputs: LossInputs, hp: dict) -> jax.Array:
    """NCA, pairwise (TRL ``nca_pair``):
    ``E_D[−log σ(βh_w) − ½ log σ(−βh_w) − ½ log σ(−βh_l)]``.

    Reference: Chen et al. 2024, "Noise Contrastive Alignment of Language Models with Explicit
    Rewards", Eq. 9 (NCA with K = 2 and binary rewards). Acts on each log-ratio separately
    (not on Δ), so the population loss is a sum over responses coupled only by normalisation.
    """
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    return expect(inputs.data, sp(-b * hw) + 0.5 * sp(b * hw) + 0.5 * sp(b * hl))


def bco_delta(inputs: LossInputs, hp: dict) -> jax.Array:
    """BCO's reward baseline δ in the exact population setting: the mean implicit reward over
    the data, ``E_D[β(h_w + h_l)/2]`` — the population limit of TRL's running mean of
    ``cat(β h_w, β h_l)``. Not detached here (callers detach it)."""
    hw, hl = log_ratios(inputs)
    return expect(inputs.data, 0.5 * hp["beta"] * (hw + hl))


def bco_pair(inputs: LossInputs, hp: dict) -> jax.Array:
    """BCO, pairwise (TRL ``bco_pair``): ``E_D[−log σ(βh_w − δ) − log σ(−(βh_l − δ))]``.

    Reference: Jung et al. 2024, "Binary Classifier Optimization for Large Language Model
    Alignment", Eq. 8 (reward shift δ). δ is ``stop_gradient`` of :func:`bco_delta` (the
    population mean implicit reward), unless ``hp["delta"]`` is given (a frozen baseline, used by
    the self-consistent exact solve of :func:`self_consistent`).
    """
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    d = hp["delta"] if "delta" in hp else sg(bco_delta(inputs, hp))
    return expect(inputs.data, sp(-(b * hw - d)) + sp(b * hl - d))


def sppo_hard(inputs: LossInputs, hp: dict) -> jax.Array:
    """SPPO with hard labels (TRL ``sppo_hard``): ``E_D[(h_w − 1/(2β))² + (h_l + 1/(2β))²]``.

    Reference: Wu et al. 2024, "Self-Play Preference Optimization", Eq. 4.6 with η = 1/β and
    the win probabilities replaced by the labels (1 for y_w, 0 for y_l), the log-partition
    approximated by the constant η/2 as in their §4. One iteration against π_ref.
    """
    hw, hl = log_ratios(inputs)
    c = 0.5 / hp["beta"]
    return expect(inputs.data, (hw - c) ** 2 + (hl + c) ** 2)


def apo_zero(inputs: LossInputs, hp: dict) -> jax.Array:
    """APO-zero (TRL ``apo_zero``): ``E_D[(1 − σ(βh_w)) + σ(βh_l)]``.

    Reference: D'Oosterlinck et al. 2024, "Anchored Preference Optimization and Contrastive
    Revisions", Eq. 7. Bounded and saturating: on the population it has no finite minimiser
    whenever some response loses more often than it wins (its probability is pushed to 0).
    """
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    return expect(inputs.data, jax.nn.sigmoid(-b * hw) + jax.nn.sigmoid(b * hl))


def apo_down(inputs: LossInputs, hp: dict) -> jax.Array:
    """APO-down (TRL ``apo_down``): ``E_D[σ(βh_w) + (1 − σ(β(h_w − h_l)))]``.

    Reference: D'Oosterlinck et al. 2024, Eq. 8 (for data whose chosen answers are worse than
    the model's own).
    """
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    return expect(inputs.data, jax.nn.sigmoid(b * hw) + jax.nn.sigmoid(-b * (hw - hl)))


def kto_reference_point(inputs: LossInputs) -> jax.Array:
    """KTO's reference point in the exact tabular case: ``max(0, Σ_x ρ(x) KL(π_θ(·|x) ‖ π_ref(·|x)))``.

    KTO (Ethayarajh et al. 2024, Eq. 8) uses ``z_0 = KL(π_θ(y′|x) ‖ π_ref(y′|x))`` with y′ drawn
    from the policy, estimated in practice from mismatched prompt/answer pairs and clamped at 0
    (TRL). Exactly: ``E_x E_{y∼π_θ}[h(x, y)] = Σ_x ρ(x) Σ_y π_θ(y|x) h(x, y)`` (≥ 0, so the clamp
    is inert). Not detached here (callers detach it)."""
    h = inputs.logp - inputs.logp_ref
    w = inputs.context_weight if inputs.context_weight is not None else jnp.full(h.shape[0], 1.0 / h.shape[0])
    return jnp.maximum(0.0, jnp.sum(w * jnp.sum(jnp.exp(inputs.logp) * h, -1)))


def kto(inputs: LossInputs, hp: dict) -> jax.Array:
    """KTO on paired data split into one desirable (y_w) and one undesirable (y_l) example:
    ``E_D[λ_D(1 − σ(β(h_w − z_ref))) + λ_U(1 − σ(β(z_ref − h_l)))]``.

    Reference: Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic
    Optimization", Eq. 8 (value function with λ_D = ``desirable_weight``, λ_U =
    ``undesirable_weight``, TRL names). ``z_ref = stop_gradient(`` :func:`kto_reference_point` ``)``
    unless ``hp["z_ref"]`` is given (a frozen reference point, see :func:`self_consistent`).
    No closed form is known for its population optimum.
    """
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    z = hp["z_ref"] if "z_ref" in hp else sg(kto_reference_point(inputs))
    return expect(inputs.data, hp["desirable_weight"] * jax.nn.sigmoid(-b * (hw - z)) + hp["undesirable_weight"] * jax.nn.sigmoid(-b * (z - hl)))


# --------------------------------------------------------------------------- Kong's η-losses

def eta_sigmoid(inputs: LossInputs, hp: dict) -> jax.Array:
    """Kong et al.'s generalised loss (App. A.2, Eq. 24) with ``η(π_w, π_l) = −log σ(β(π_w − π_l))``:
    a BT-type model on probability *differences* rather than log-ratios.

    Eq. 24 asks η to be monotone in each argument (we minimise, so η decreases in π_w and
    increases in π_l). Reference-free; β scales the difference. The targets
    ``π_i − π_j = logit(p_ij)/β`` need not be reachable on the simplex, in which case a
    probability is driven to 0 (no finite minimiser in logits).
    """
    pw, pl = pair_grid(jnp.exp(inputs.logp))
    return expect(inputs.data, sp(-hp["beta"] * (pw - pl)))


def eta_linear(inputs: LossInputs, hp: dict) -> jax.Array:
    """Kong et al. Eq. 24 with the simplest monotone ``η(π_w, π_l) = π_l − π_w``.

    Linear in π, so the population minimum is a vertex of the simplex: all mass on the response
    with the largest net win weight ``Σ_j (w_ij − w_ji)`` (no finite minimiser in logits). It
    illustrates Prop. A.1: decreasing any η-loss need not approach the BT/DPO fixed point.
    """
    pw, pl = pair_grid(jnp.exp(inputs.logp))
    return expect(inputs.data, pl - pw)


# --------------------------------------------------------------------------- exact solvers

def _exact_hinge(obj, hp, init=None):
    """``solve_exact`` for hinge: the LP of :func:`bandit_lab.fixed_points.hinge_lp` (softmax or
    simplex policy without weight decay only; else None = the generic solver). The residual is reported
    as NaN: at a kink no gradient vanishes; optimality is the LP's (HiGHS) certificate."""
    if obj.param.name not in ("softmax", "simplex") or hp.get("weight_decay", 0.0) != 0.0:
        return None
    from bandit_lab.fixed_points import hinge_lp
    from bandit_lab.solver import ExactResult

    pi, ok = hinge_lp(obj.problem, np.asarray(obj.data.weight), hp["beta"])
    theta = jnp.asarray(np.log(pi) if obj.param.name == "softmax" else pi)
    return ExactResult(theta, pi, float(obj.value(theta, hp)), float("nan"), bool(ok), 0)


def _exact_self_consistent(obj, hp, init=None):
    """``solve_exact`` for losses with a detached statistic: the zero of the training field
    (:func:`bandit_lab.fixed_points.self_consistent`); its residual is the largest of the Newton
    residual at frozen s, the self-consistency gap |s(θ) − s| and the detached field's norm."""
    if obj.param.constraint != "free":
        return None
    from bandit_lab.fixed_points import self_consistent
    from bandit_lab.solver import ExactResult

    r, s, gap = self_consistent(obj, hp, init=init)
    key = DETACHED[obj.loss.name][0]
    field = jax.grad(lambda p: obj.value(p, {k: v for k, v in hp.items() if k != key}))(jnp.asarray(r.params))
    res = max(r.residual, gap, float(jnp.linalg.norm(field)))
    return ExactResult(r.params, r.policy, r.value, res, bool(res <= 1e-10), r.iterations, np.asarray(field))


# --------------------------------------------------------------------------- registry

def _range(key: str, lo: float, hi: float, *, lo_open=True, hi_open=True):
    """A ``check`` for one float hyperparameter in an interval."""
    def check(hp, static):
        v = hp[key]
        ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        if not ok:
            raise BanditError(f"{key} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}; got {v}")
    return check


def _all(*checks):
    def check(hp, static):
        for c in checks:
            c(hp, static)
    return check


NONNEGATIVE = ("cpo_alpha", "lam", "desirable_weight", "undesirable_weight")  # 0 switches a term off


def _reg(name, fn, defaults, summary, citation, check=None, **kw):
    # every other float (τ) must be > 0; weights of optional terms ≥ 0
    positive = [_range(k, 0.0, np.inf, lo_open=k not in NONNEGATIVE) for k in defaults if k != "beta"]
    register(LossSpec(name, fn, defaults, summary=summary, citation=citation, check=check or _all(*positive), **kw))


_reg("hinge", hinge, {"beta": 1.0}, "SLiC/RSO hinge max(0, 1 − βΔ)", "Zhao et al. 2023 Eq. 2; Liu et al. 2024 (RSO)", exact=_exact_hinge)
_reg("cdpo", cdpo, {"beta": 1.0, "label_smoothing": 0.1}, "conservative DPO, label smoothing ε (TRL sigmoid+label_smoothing)", "Mitchell 2023 (cDPO) Eq. 3",
     check=_range("label_smoothing", 0.0, 0.5, lo_open=False, hi_open=False))
_reg("robust", robust, {"beta": 1.0, "label_smoothing": 0.1}, "robust DPO, unbiased under flip rate ε", "Chowdhury et al. 2024 Eq. 9",
     check=_range("label_smoothing", 0.0, 0.5, lo_open=False))
_reg("exo_pair", exo_pair, {"beta": 1.0, "label_smoothing": 1e-3}, "EXO: KL(q_θ ‖ smoothed label)", "Ji et al. 2024 Eq. 16",
     check=_range("label_smoothing", 0.0, 0.5))
_reg("nca_pair", nca_pair, {"beta": 1.0}, "noise-contrastive alignment (pairwise)", "Chen et al. 2024 Eq. 9")
_reg("bco_pair", bco_pair, {"beta": 1.0}, "binary classifier opt., detached mean-reward baseline δ", "Jung et al. 2024 Eq. 8",
     exact=_exact_self_consistent)
_reg("sppo_hard", sppo_hard, {"beta": 1.0}, "SPPO with hard labels, η = 1/β", "Wu et al. 2024 Eq. 4.6")
_reg("apo_zero", apo_zero, {"beta": 1.0}, "anchored PO, chosen up / rejected down", "D'Oosterlinck et al. 2024 Eq. 7")
_reg("apo_down", apo_down, {"beta": 1.0}, "anchored PO, both down", "D'Oosterlinck et al. 2024 Eq. 8")
_reg("discopop", discopop, {"beta": 1.0, "tau": 0.05}, "DiscoPOP / log-ratio modulated loss", "Lu et al. 2024 Eq. 5")
_reg("simpo", simpo, {"beta": 1.0, "gamma": 0.5}, "SimPO, reference-free, margin γ", "Meng et al. 2024 Eq. 6",
     check=_range("gamma", -np.inf, np.inf))
_reg("cpo", cpo, {"beta": 1.0, "cpo_alpha": 1.0}, "CPO: reference-free DPO + α·NLL(y_w)", "Xu et al. 2024 Eq. 6")
_reg("orpo", orpo, {"lam": 0.1}, "ORPO: NLL(y_w) + λ·odds-ratio loss", "Hong et al. 2024 Eq. 6–7")
_reg("kto", kto, {"beta": 1.0, "desirable_weight": 1.0, "undesirable_weight": 1.0}, "KTO, detached z_ref = exact KL", "Ethayarajh et al. 2024 Eq. 8",
     exact=_exact_self_consistent)
_reg("eta_sigmoid", eta_sigmoid, {"beta": 1.0}, "Kong η-loss, η = −log σ(β(π_w − π_l))", "Kong et al. App. A.2 Eq. 24")
_reg("eta_linear", eta_linear, {}, "Kong η-loss, η = π_l − π_w", "Kong et al. App. A.2 Eq. 24")

# The detached statistic of each loss that has one: (hp key that freezes it, function of inputs).
DETACHED = {
    "bco_pair": ("delta", bco_delta),
    "kto": ("z_ref", lambda inputs, hp: kto_reference_point(inputs)),
}
