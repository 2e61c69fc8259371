"""An *objective*: a loss bound to a problem, its data, a parameterization and a constraint.

``Objective.value(params, hp)`` is the exact function that both the optax trainer and the
exact solver minimise, so "how far is Adam from where it should be" compares like with like.

Constraints (Kong et al. §3.2–3.3):
- weight decay ``α‖θ‖²`` on the parameters (``penalty="params"``, the default, as in the
  authors' sibling code and their App. B), or ``α‖π‖²`` on the policy (``penalty="policy"``,
  the wording of their §3.3); ``α = hp["weight_decay"]``;
- early stopping: a step budget of the trainer;
- projections and capacity: chosen by the parameterization.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab import losses
from bandit_lab.data import PreferenceData, population
from bandit_lab.errors import BanditError
from bandit_lab.params import Softmax
from bandit_lab.problems import Problem

PENALTIES = ("params", "policy")


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    problem: Problem
    loss: losses.LossSpec
    static: dict
    hp: dict  # default float hyperparameters (incl. weight_decay)
    param: Any  # a parameterization from bandit_lab.params
    data: PreferenceData
    penalty: str = "params"

    @property
    def label(self) -> str:
        div = self.static.get("divergence")
        rew = self.static.get("reward")
        extra = [s for s in (div if self.loss.name in ("fdpo", "rlhf") else None, rew if rew == "ipo" else None) if s]
        return self.loss.name + (f"[{','.join(extra)}]" if extra else "")

    def reward(self) -> np.ndarray | None:
        src = self.static.get("reward")
        if src is None:
            return None
        if src == "ipo":
            return self.problem.r_ipo
        if self.problem.reward is None:
            raise BanditError("this preference matrix is not Bradley–Terry: RLHF needs a reward (use reward 'ipo')")
        return self.problem.reward

    def inputs(self, params, data: PreferenceData | None = None) -> losses.LossInputs:
        r = self.reward()
        return losses.LossInputs(
            logp=self.param.log_probs(params),
            logp_ref=jnp.log(jnp.asarray(self.problem.pi_ref)),
            data=self.data if data is None else data,
            reward=None if r is None else jnp.asarray(r),
            context_weight=jnp.asarray(self.problem.context_weight),
        )

    def penalty_value(self, params) -> jax.Array:
        if self.penalty == "params":
            return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(params))
        p = jnp.exp(self.param.log_probs(params))
        return jnp.sum(p**2)

    def value(self, params, hp: dict, data: PreferenceData | None = None) -> jax.Array:
        """Loss + weight decay — the one function every solver minimises."""
        fn = losses.bind(self.loss, self.static)
        base = fn(self.inputs(params, data), hp)
        return base + hp.get("weight_decay", 0.0) * self.penalty_value(params)

    def policy(self, params) -> jax.Array:
        return jnp.exp(self.param.log_probs(params))

    def with_loss(self, name: str, static: dict) -> "Objective":
        """The same problem, data, parameterization and constraint under another loss."""
        spec = losses.get(name)
        hp = {**spec.defaults, **{k: v for k, v in self.hp.items() if k in spec.defaults or k == "weight_decay"}}
        return dataclasses.replace(self, loss=spec, static={**spec.static, **static}, hp=hp)

    def counterpart(self) -> "Objective | None":
        c = losses.counterpart(self.loss.name, self.static)
        return None if c is None else self.with_loss(*c)


def make_objective(
    problem: Problem,
    loss: str = "dpo",
    loss_params: dict | None = None,
    *,
    weight_decay: float = 0.0,
    penalty: str = "params",
    param=None,
    data: PreferenceData | None = None,
) -> Objective:
    """Validate and bind. ``param`` defaults to softmax logits, ``data`` to the population."""
    spec = losses.get(loss)
    hp, static = losses.split_params(spec, loss_params)
    try:
        wd = float(weight_decay)
    except (TypeError, ValueError):
        raise BanditError(f"weight_decay must be a number; got {weight_decay!r}") from None
    if not np.isfinite(wd) or wd < 0:
        raise BanditError(f"weight decay α must be ≥ 0; got {weight_decay}")
    if penalty not in PENALTIES:
        raise BanditError(f"penalty must be one of {', '.join(PENALTIES)}; got {penalty!r}")
    hp["weight_decay"] = wd
    obj = Objective(problem, spec, static, hp, param or Softmax(problem), data if data is not None else population(problem), penalty)
    obj.reward()  # fail early if the reward it needs does not exist
    return obj
