"""Preference losses from the literature that TRL 1.16 does not ship: χPO, DPO-Positive, Cal-DPO.

Notation as in :mod:`bandit_lab.losses`: ``h = log π_θ − log π_ref``, ``Δ = h_w − h_l``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import divergences
from bandit_lab.errors import BanditError
from bandit_lab.losses import LossInputs, LossSpec, expect, log_ratios, register

sp = jax.nn.softplus


def chipo(inputs: LossInputs, hp: dict) -> jax.Array:
    """χPO: ``E_D[−log σ(clip_{2R}(β φ(π_w/π_ref,w) − β φ(π_l/π_ref,l)))]``, ``φ(z) = z + log z``.

    Reference: Huang et al. 2024, "Correcting the Mythos of KL-Regularization: Direct Alignment
    without Overoptimization via χ²-Preference Optimization" (χPO, Algorithm 1): DPO with the link
    ``log z`` replaced by ``φ(z) = z + log z``, the ``f'`` of the mixed regulariser
    ``D_χ² + D_KL``, ``f(u) = ½(u − 1)² + u log u`` (our ``chi_mix`` divergence), and the margin
    clipped to ``[−2R, 2R]`` (``R`` = ``r_max``, the reward range; the clip makes the gradient zero
    beyond it). Derivation of its fixed point: without the clip χPO is f-DPO with ``chi_mix``, so
    (Wang et al. 2024, Thm 1) its population optimum is the χ²-mix RLHF optimum
    ``β(u + log u) = r − λ``, ``u = π/π_ref = W(e^{(r−λ)/β})`` (Lambert W) — and the clip does not move
    it while ``|logit p| < 2R`` on every shown pair (the per-pair loss is constant beyond the clip
    and larger there than at the interior minimiser ``logit p``)."""
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    m = b * (divergences.fprime("chi_mix", hw) - divergences.fprime("chi_mix", hl))
    R = 2.0 * hp["r_max"]
    return expect(inputs.data, sp(-jnp.clip(m, -R, R)))


def dpop(inputs: LossInputs, hp: dict) -> jax.Array:
    """DPO-Positive: ``E_D[−log σ(β(Δ − λ·max(0, log π_ref(y_w)/π_θ(y_w))))]``.

    Reference: Pal et al. 2024, "Smaug: Fixing Failure Modes of Preference Optimisation with
    DPO-Positive" (DPOP), the DPOP loss: a penalty inside the sigmoid whenever the chosen
    response falls below its reference probability (``h_w < 0``); λ = ``lam`` (the paper's
    experiments use λ = 50, our default). Piecewise smooth with a kink at ``h_w = 0``."""
    hw, hl = log_ratios(inputs)
    b = hp["beta"]
    return expect(inputs.data, sp(-b * (hw - hl - hp["lam"] * jax.nn.relu(-hw))))


def caldpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """Cal-DPO: ``E_D[−log σ(h_w − h_l) + (h_w − 1/(2β))² + (h_l + 1/(2β))²]``.

    Reference: Xiao et al. 2024 (NeurIPS), "Cal-DPO: Calibrated Direct Preference Optimization
    for Language Model Alignment", §4: the contrastive term plus a calibration of the implicit
    rewards ``h = r/β`` to the binary reward scale ``r ∈ {½, −½}`` (squares towards ±1/(2β)); the
    contrastive term carries no β, as in the authors' implementation. The calibration squares are
    ``sppo_hard``'s; Cal-DPO is ``sppo_hard`` plus a β-free DPO term."""
    hw, hl = log_ratios(inputs)
    c = 0.5 / hp["beta"]
    return expect(inputs.data, sp(-(hw - hl)) + (hw - c) ** 2 + (hl + c) ** 2)


def _exact_dpop(obj, hp, init=None):
    """``solve_exact`` hook: the slack NLP of :func:`bandit_lab.solvers.exact_solvers.solve_dpop` (lazy import)."""
    from bandit_lab.solvers import exact_solvers

    return exact_solvers.solve_dpop(obj, hp, init)


def _positive(*keys):
    def check(hp, static):
        for k in keys:
            if not (np.isfinite(hp[k]) and hp[k] > 0):
                raise BanditError(f"{k} must be > 0; got {hp[k]}")
    return check


def _nonneg(key):
    def check(hp, static):
        if not (np.isfinite(hp[key]) and hp[key] >= 0):
            raise BanditError(f"{key} must be ≥ 0; got {hp[key]}")
    return check


for _spec in (
    LossSpec("chipo", chipo, {"beta": 1.0, "r_max": 10.0}, summary="χPO: DPO with link φ(z) = z + log z, margin clipped at ±2R",
             citation="Huang et al. 2024 (χPO) Algorithm 1", check=_positive("r_max"),
             counterpart=lambda static: ("rlhf", {"divergence": "chi_mix", "reward": "bt"})),
    LossSpec("dpop", dpop, {"beta": 1.0, "lam": 50.0}, summary="DPO-Positive: −λ·max(0, −h_w) inside the sigmoid",
             citation="Pal et al. 2024 (Smaug, DPOP)", check=_nonneg("lam"), exact=_exact_dpop),
    LossSpec("caldpo", caldpo, {"beta": 1.0}, summary="Cal-DPO: β-free DPO term + calibration (h ∓ 1/(2β))²",
             citation="Xiao et al. 2024 (Cal-DPO) §4"),
):
    register(_spec)
