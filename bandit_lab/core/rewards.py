"""Stochastic 0/1 rewards for the on-policy algorithms (``loss_params.reward_noise``; issue 20 item 5).

A leaf module (NumPy/JAX agnostic arithmetic, no imports from the rest of the package), read by the
on-policy losses (:mod:`bandit_lab.losses.onpolicy`: the draws and the exact expectations, through
``with_outcomes``), their closed forms (:mod:`bandit_lab.onpolicy.closed_forms`) and
:func:`bandit_lab.core.objective.make_objective` (the check). docs/stochastic.md has the definitions.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.errors import BanditError

REWARD_NOISE = ("none", "bernoulli", "margin")


def success_probability(reward, noise: str, margin: float = 1.0):
    """Success probability ``q(y)`` of a stochastic 0/1 reward (static option ``reward_noise``):

    - ``bernoulli``: the spec's reward *is* the success probability, ``q = r ∈ [0, 1]``; the reward
      of a draw is 1 with probability q(y), else 0 (a verifier that passes a response at random);
    - ``margin`` (``reward_margin`` = γ ∈ [0, 1]): a correct response (r = 1) succeeds with
      probability (1 + γ)/2, a wrong one (r = 0) with (1 − γ)/2 — ``q = (1 + γ(2r − 1))/2``; a
      symmetric label flip with probability (1 − γ)/2, the confidence margin γ of Vojnovic & Yun
      2025's binary questions as this project reads it (their text is not in /work/shared/papers:
      docs/stochastic.md). γ = 1 is the deterministic reward.

    The expected reward is q: algorithms whose advantage is affine in the rewards (REINFORCE, RLOO,
    Dr. GRPO, PPO without whitening) have the expected update of the reward q; the others (group
    std, population std, whitening, dynamic sampling) are exact through :func:`bandit_lab.losses.onpolicy.with_outcomes`."""
    if noise == "bernoulli":
        return reward
    if noise == "margin":
        return 0.5 * (1.0 + margin * (2.0 * reward - 1.0))
    raise BanditError(f"reward_noise must be one of {', '.join(REWARD_NOISE)}; got {noise!r}")


def check_reward_noise(objective) -> None:
    """A stochastic reward needs success probabilities: the reward in [0, 1] (one line naming it)."""
    st = objective.static
    if st.get("reward_noise", "none") == "none":
        return
    r = objective.reward()
    if r is None or np.any(r < 0) or np.any(r > 1):
        what = "success probabilities" if st["reward_noise"] == "bernoulli" else "correct (1) / wrong (0) labels in [0, 1]"
        raise BanditError(f"preference.reward: reward_noise {st['reward_noise']!r} needs {what}; got reward "
                          f"{np.round(np.asarray(r), 4).tolist() if r is not None else None} (give \"preference\": {{\"reward\": [...]}})")
    if getattr(objective.param, "tree_problem", None) is not None:
        raise BanditError("loss_params.reward_noise: stochastic rewards on token trees are not implemented")
