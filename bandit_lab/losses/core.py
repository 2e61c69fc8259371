"""The core losses: DPO, IPO, f-DPO, the exact RLHF objective and Kong's Gaussian NLL.

Notation as in :mod:`bandit_lab.losses.base`: ``h = log π_θ − log π_ref``, ``β`` the KL strength.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from bandit_lab.core import divergences
from bandit_lab.losses.base import LossInputs, LossSpec, expect, log_ratios, pair_grid, register


def dpo(inputs: LossInputs, hp: dict) -> jax.Array:
    """DPO: ``E_D[−log σ(β h_w − β h_l)]``.

    References: Rafailov et al. 2023, Eq. 7; Kong et al., "Common Learning Constraints Alter
    Interpretations of DPO", Eq. 6 (their λ is our β).
    """
    hw, hl = log_ratios(inputs)
    return expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))


def ipo(inputs: LossInputs, hp: dict) -> jax.Array:
    """IPO: ``E_D[(h_w − h_l − 1/(2β))²]``.

    References: Azar et al. 2024, Eq. 17; Kong et al. Eq. 9 (second line); Nguyen's notes
    (dpo-vs-ipo-notes) Eq. 12. Its population optimum is ``π_ref·exp(r_IPO/β)/Z``
    (see :func:`bandit_lab.solvers.oracles.ipo_optimum`).
    """
    hw, hl = log_ratios(inputs)
    return expect(inputs.data, (hw - hl - 0.5 / hp["beta"]) ** 2)


def fdpo(inputs: LossInputs, hp: dict, *, divergence: str = "forward_kl") -> jax.Array:
    """f-DPO: ``E_D[−log σ(β f'(π_w/π_ref,w) − β f'(π_l/π_ref,l))]``.

    References: Wang et al. 2024 ("Beyond Reverse KL: Generalizing DPO with Diverse Divergence
    Constraints"), Eq. 11 and Table 1; used by Kong et al. §3.3 with the forward KL.
    ``f'`` per :mod:`bandit_lab.core.divergences` (α convention stated there; α = ``hp["f_alpha"]``).
    Reverse KL gives back DPO exactly (the ``+1`` of ``f'`` cancels in the difference).
    """
    hw, hl = log_ratios(inputs)
    a = hp.get("f_alpha", 0.5)
    margin = hp["beta"] * (divergences.fprime(divergence, hw, a) - divergences.fprime(divergence, hl, a))
    return expect(inputs.data, -jax.nn.log_sigmoid(margin))


def rlhf(inputs: LossInputs, hp: dict, *, divergence: str = "reverse_kl") -> jax.Array:
    """KL-regularised RLHF objective, exact expectation over responses:

    ``E_x[ −E_{π_θ}[r] + β·D_f(π_θ ‖ π_ref) ]``.

    References: Kong et al. Eq. 4 (reverse KL, ``r = r*``; with the BT reward ``r = log π*`` this
    is the RLHF counterpart of their App. B); Wang et al. 2024 Eq. 6 for general ``f``. The
    reward is bound by the registry: the BT reward, or ``r_IPO`` for IPO's counterpart
    (Kong et al. Eq. 9, first line).
    """
    p = jnp.exp(inputs.logp)
    a = hp.get("f_alpha", 0.5)
    per_x = -jnp.sum(p * inputs.reward, -1) + hp["beta"] * jnp.sum(
        divergences.weighted_f(divergence, inputs.logp, inputs.logp_ref, a), -1
    )
    return jnp.sum(inputs.context_weight * per_x)


def gaussian_nll(inputs: LossInputs, hp: dict) -> jax.Array:
    """Kong et al. Prop. 4.1: the Gaussian NLL of Eq. 16 with ``μ(u) = u^{β/2}``, profiled over γ.

    Per triple ``v = [μ(π_l/π_w), μ(π_ref,l/π_ref,w)]`` (the argument order of their Eq. 56),
    ``min_γ −log N(v | 0, γI) = log(π vᵀv) + 1`` at ``γ = vᵀv/2`` (their Eq. 54–55). Computed
    as a ``logsumexp`` of the two log-squares. Equals DPO up to a θ-independent constant
    (their Eq. 57); ``bandit-lab verify`` checks that with an independent numerical γ-minimisation.
    """
    b = hp["beta"]
    pw, pl = pair_grid(inputs.logp)
    rw, rl = pair_grid(inputs.logp_ref)
    return expect(inputs.data, jnp.logaddexp(b * (pl - pw), b * (rl - rw)) + jnp.log(jnp.pi) + 1.0)


_BT = {"divergence": "reverse_kl", "reward": "bt"}

for _spec in (
    LossSpec("dpo", dpo, {"beta": 1.0}, summary="Direct Preference Optimization", citation="Kong et al. Eq. 6",
             facts={"convex": True, "bounded_below": True,
                    "closed_form_domain": "every shown pair stochastic (0 < p < 1) on a connected pair graph; "
                                          "a deterministic pair has no finite minimiser (Azar et al. 2023 §4.2)"},
             counterpart=lambda static: ("rlhf", _BT)),
    LossSpec("ipo", ipo, {"beta": 1.0}, summary="Identity Preference Optimization", citation="Kong et al. Eq. 9",
             facts={"convex": True, "bounded_below": True,
                    "closed_form_domain": "a connected pair graph; a response in no pair is a flat direction "
                                          "(a set of minimisers, Azar et al. 2023 App. A.2)"},
             counterpart=lambda static: ("rlhf", {"divergence": "reverse_kl", "reward": "ipo"})),
    LossSpec("fdpo", fdpo, {"beta": 1.0, "f_alpha": 0.5}, {"divergence": "forward_kl"},
             summary="f-DPO (reverse/forward KL, JS, α)", citation="Wang et al. 2024 Eq. 11",
             counterpart=lambda static: ("rlhf", {"divergence": static["divergence"], "reward": "bt"})),
    LossSpec("rlhf", rlhf, {"beta": 1.0, "f_alpha": 0.5}, {"divergence": "reverse_kl", "reward": "bt"}, kind="policy",
             facts={"convex": False, "bounded_below": True},
             summary="exact RLHF objective −E[r] + β·D_f", citation="Kong et al. Eq. 4; Wang et al. Eq. 6"),
    LossSpec("gaussian_nll", gaussian_nll, {"beta": 1.0}, summary="Gaussian NLL, γ profiled", citation="Kong et al. Prop. 4.1, Eq. 16",
             counterpart=lambda static: ("rlhf", _BT)),
):
    register(_spec)
