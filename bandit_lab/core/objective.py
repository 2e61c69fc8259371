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

import contextlib
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab import losses
from bandit_lab.core import support
from bandit_lab.core.data import PreferenceData, no_pairs, population
from bandit_lab.errors import BanditError
from bandit_lab.core.params import Softmax
from bandit_lab.core.problems import Problem

PENALTIES = ("params", "policy")


@dataclasses.dataclass(frozen=True, eq=False)
class Objective:
    problem: Problem
    loss: losses.LossSpec
    static: dict
    hp: dict  # default float hyperparameters (incl. weight_decay)
    param: Any  # a parameterization from bandit_lab.core.params
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

    # ---- constants as data: every array the objective reads, so compiled functions can take
    # them as *arguments* and be reused by every problem of the same shape (see solver).
    def consts(self) -> dict:
        r = self.reward()
        return {
            "logp_ref": support.log_ref(self.problem.pi_ref),  # LOG_ZERO where π_ref = 0 (bandit_lab.core.support)
            "reward": np.zeros_like(self.problem.pi_ref) if r is None else np.asarray(r, dtype=np.float64),
            "context_weight": self.problem.context_weight,
            "data": self.data,
            "param": self.param.consts(),
        }

    def signature(self) -> tuple:
        """Everything that changes the traced function, apart from array values."""
        c = self.consts()
        shapes = tuple((tuple(np.shape(a)), str(np.asarray(a).dtype)) for a in jax.tree_util.tree_leaves(c))
        # A parameterization that reads every array from ``c`` declares ``shareable = True``;
        # any other is keyed by identity, so a cached compile can never see another's constants.
        who = type(self.param).__name__ if getattr(self.param, "shareable", False) else ("instance", Identity(self.param))
        # the LossSpec's identity too: a user loss re-registered under the same name (a plugin
        # reloaded in one process) must not reuse the old function's compiled program
        # — and of every loss a static option names (a mixture's terms)
        named = tuple(Identity(losses.REGISTRY[v]) for v in _names_in(self.static.values()) if v in losses.REGISTRY)
        return ("objective", self.loss.name, Identity(self.loss), named, tuple(sorted(self.static.items())), who, self.penalty, shapes)

    def stable_signature(self) -> tuple | None:
        """:meth:`signature` in names only, the same in every process — a key for caches that
        outlive the process (:mod:`bandit_lab.infra.export_cache`, which also hashes bandit-lab's source).
        ``None`` (not cacheable) unless the loss's functions and the parameterization are
        bandit-lab's own code, the parameterization is shareable and the static options are plain
        values: a user's plugin can change between runs without bandit-lab's source changing."""
        # a static option may name other registered losses that are traced in (a mixture's terms)
        named = [losses.REGISTRY[v] for v in _strings(tuple(self.static.values())) if v in losses.REGISTRY]
        fns = tuple(_own_code(getattr(spec, f)) for spec in [self.loss, *named] for f in _TRACED_SPEC_FIELDS)
        param = type(self.param)
        if (any(f is False for f in fns) or not getattr(self.param, "shareable", False) or not _own_module(param.__module__)
                or not all(_plain(v) for v in self.static.values())):
            return None
        shapes = self.signature()[-1]
        return ("objective", self.loss.name, self.loss.kind, fns, tuple(sorted(self.static.items())),
                f"{param.__module__}.{param.__qualname__}", self.penalty, shapes)

    # ---- per-step loss state (on-policy samples, a moving reference; see LossSpec.state_init)
    @property
    def stateful(self) -> bool:
        return self.loss.state_init is not None

    def init_state(self, params, hp: dict, key=None, consts: dict | None = None) -> dict:
        if not self.stateful:
            return {}
        st = self.loss.state_init(self, params, {**self.hp, **hp}, key, consts)
        return jax.tree_util.tree_map(jax.lax.stop_gradient, st)

    def update_state(self, params, hp: dict, key, state: dict, t, consts: dict | None = None) -> dict:
        if not self.stateful:
            return state
        if self.loss.state_update is None:
            return self.init_state(params, hp, key, consts)
        st = self.loss.state_update(self, params, {**self.hp, **hp}, key, state, t, consts)
        return jax.tree_util.tree_map(jax.lax.stop_gradient, st)

    def data_of(self, consts: dict | None = None) -> PreferenceData:
        return self.data if consts is None else consts["data"]

    def inputs(self, params, data: PreferenceData | None = None, consts: dict | None = None, state: dict | None = None,
               hp: dict | None = None) -> losses.LossInputs:
        c = self.consts() if consts is None else consts
        aux_fn = getattr(self.param, "aux", None)
        if state is None and self.stateful:
            state = self.init_state(params, hp or {}, None, consts)
        return losses.LossInputs(
            state=state,
            aux=None if aux_fn is None else aux_fn(params, c["param"]),
            logp=self.param.log_probs(params, c["param"]),
            logp_ref=jnp.asarray(c["logp_ref"]),
            data=(c["data"] if data is None else data),
            reward=None if self.static.get("reward") is None else jnp.asarray(c["reward"]),
            context_weight=jnp.asarray(c["context_weight"]),
        )

    def penalty_value(self, params, consts: dict | None = None) -> jax.Array:
        if self.penalty == "params":
            return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(params))
        pc = None if consts is None else consts["param"]
        p = jnp.exp(self.param.log_probs(params, pc))
        return jnp.sum(p**2)

    def value(self, params, hp: dict, data: PreferenceData | None = None, consts: dict | None = None,
              state: dict | None = None) -> jax.Array:
        """Loss + weight decay — the one function every solver minimises.

        For a loss with a per-step state (on-policy algorithms) the state defaults to the one
        built from ``params`` itself, detached: then ``∇ value`` is the algorithm's expected update
        at ``params`` (a field that is in general not the gradient of any function)."""
        fn = losses.bind(self.loss, self.static)
        base = fn(self.inputs(params, data, consts, state, hp), hp)
        return base + hp.get("weight_decay", 0.0) * self.penalty_value(params, consts)

    def policy(self, params, consts: dict | None = None) -> jax.Array:
        return jnp.exp(self.param.log_probs(params, None if consts is None else consts["param"]))

    def with_loss(self, name: str, params: dict | None = None) -> "Objective":
        """The same problem, data, parameterization and constraint under another loss.

        Shared float hyperparameters (β, f_alpha, weight decay) carry over; ``params`` (float
        hyperparameters and static options alike) override them."""
        spec = losses.get(name)
        carried = {k: v for k, v in self.hp.items() if k in spec.defaults}
        hp, static = losses.split_params(spec, {**carried, **(params or {})})
        hp["weight_decay"] = self.hp.get("weight_decay", 0.0)
        param = self.param
        if not support.full(self.problem.pi_ref):  # a KL-regularised counterpart lives on supp(π_ref)
            # softmax (masked or not) is re-chosen for the new loss; any other parameterization is kept (or refused)
            param = support.resolve(self.problem, spec, static, None if isinstance(param, Softmax) else param, self.data)
            param = Softmax(self.problem) if param is None else param
        return dataclasses.replace(self, loss=spec, static=static, hp=hp, param=param)

    def counterpart(self) -> "Objective | None":
        c = None if self.loss.counterpart is None else self.loss.counterpart(self.static)
        return None if c is None else self.with_loss(*c)


# the LossSpec fields that are traced into a compiled program
_TRACED_SPEC_FIELDS = ("fn", "state_init", "state_update")


def _own_module(name) -> bool:
    return isinstance(name, str) and (name == "bandit_lab" or name.startswith("bandit_lab."))


def _own_code(fn):
    """``(module, qualname, first line)`` of a bandit-lab function, ``None`` for no function,
    ``False`` for anything else (a user's function, a callable object without a stable name)."""
    if fn is None:
        return None
    code = getattr(fn, "__code__", None)
    if code is None or not _own_module(getattr(fn, "__module__", None)):
        return False
    return fn.__module__, fn.__qualname__, code.co_firstlineno


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, (tuple, list)):
        for x in v:
            yield from _strings(x)


def _plain(v) -> bool:
    if isinstance(v, (tuple, list)):
        return all(_plain(x) for x in v)
    return v is None or isinstance(v, (str, int, float, bool))


class Identity:
    """A cache-key part equal only to itself's object (``is``), holding a reference to it: an
    ``id()`` alone can be reused by a new object once the old one is garbage-collected (a loss
    unregistered and registered again would then hit the old compiled program)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other) -> bool:
        return isinstance(other, Identity) and other.obj is self.obj

    def __repr__(self) -> str:
        return f"Identity({type(self.obj).__name__}@{id(self.obj):#x})"


def _names_in(values) -> list:
    """Every string in static option values (tuples of names included)."""
    out = []
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            out += _names_in(v)
    return out


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
    if not isinstance(problem, Problem):
        raise BanditError(f"problem: a Problem (bl.Problem.create(...)); got {type(problem).__name__}")
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
    if data is None:
        # whole-distribution objectives (RLHF) never read pair data: don't build the X·K² grid
        # built in float64 unless float32 was chosen, so that train_policy/solve_exact can give
        # float64 answers without a switch (bandit_lab.infra.precision.promised_float64)
        from bandit_lab.infra.precision import float32_chosen, x64, x64_enabled

        with contextlib.nullcontext() if x64_enabled() or float32_chosen() else x64(True):
            data = no_pairs(problem) if spec.kind == "policy" else population(problem)
    # π_ref with zeros: masked logits for KL-regularised losses, pairs checked (bandit_lab.core.support)
    param = support.resolve(problem, spec, static, param, data)
    obj = Objective(problem, spec, static, hp, param or Softmax(problem), data, penalty)
    obj.reward()  # fail early if the reward it needs does not exist
    if static.get("reward_noise", "none") != "none":  # stochastic on-policy rewards: success probabilities
        from bandit_lab.core.rewards import check_reward_noise

        check_reward_noise(obj)
    return obj



@dataclasses.dataclass(frozen=True, eq=False)
class StackParam:
    """Parameterizations side by side: parameters are a tuple, ``log_probs`` stacks to
    ``[n, X, K]``, projection acts block by block."""

    parts: tuple
    name: str = "stack"

    @property
    def constraint(self) -> str:
        kinds = {p.constraint for p in self.parts}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def init(self, how=None):
        return tuple(p.init() for p in self.parts)

    def consts(self) -> tuple:
        return tuple(p.consts() for p in self.parts)

    def log_probs(self, params, c=None):
        c = (None,) * len(self.parts) if c is None else c
        return jnp.stack([p.log_probs(q, cq) for p, q, cq in zip(self.parts, params, c)])

    def project(self, params):
        return tuple(p.project(q) for p, q in zip(self.parts, params))


@dataclasses.dataclass(frozen=True, eq=False)
class Stack:
    """Independent objectives as one: ``value = Σ_i objective_i(params_i)`` over a tuple of
    parameters, all reading one shared ``hp`` dict.

    The sum is separable, so Adam (elementwise) follows exactly each objective's own
    trajectory and the minimiser is the tuple of minimisers — but the trainer and the Newton
    solver are traced and compiled *once* for all of them. On CPU the compile of the loop
    machinery (scan, Adam, while loops, eigh), not the loss arithmetic, dominates a cold start:
    measured 0.05 s to compile a loss value vs 0.4 s for its training scan.
    """

    objectives: tuple

    @property
    def param(self) -> StackParam:
        return StackParam(tuple(o.param for o in self.objectives))

    @property
    def data(self) -> PreferenceData:
        return self.objectives[0].data

    @property
    def hp(self) -> dict:
        out: dict = {}
        for o in self.objectives:
            for k, v in o.hp.items():
                out.setdefault(k, v)
        return out

    def consts(self) -> tuple:
        return tuple(o.consts() for o in self.objectives)

    def signature(self) -> tuple:
        return ("stack",) + tuple(o.signature() for o in self.objectives)

    def stable_signature(self) -> tuple | None:
        parts = tuple(o.stable_signature() for o in self.objectives)
        return None if any(p is None for p in parts) else ("stack",) + parts

    @property
    def stateful(self) -> bool:
        return any(o.stateful for o in self.objectives)

    def init_state(self, params, hp: dict, key=None, consts: tuple | None = None) -> tuple:
        c = (None,) * len(self.objectives) if consts is None else consts
        keys = [None if key is None else jax.random.fold_in(key, i) for i in range(len(self.objectives))]
        return tuple(o.init_state(p, hp, k, co) for o, p, k, co in zip(self.objectives, params, keys, c))

    def update_state(self, params, hp: dict, key, state: tuple, t, consts: tuple | None = None) -> tuple:
        c = (None,) * len(self.objectives) if consts is None else consts
        keys = [None if key is None else jax.random.fold_in(key, i) for i in range(len(self.objectives))]
        return tuple(o.update_state(p, hp, k, s, t, co) for o, p, k, s, co in zip(self.objectives, params, keys, state, c))

    def data_of(self, consts: tuple | None = None) -> PreferenceData:
        return self.data if consts is None else consts[0]["data"]

    def value(self, params, hp: dict, data: PreferenceData | None = None, consts: tuple | None = None,
              state: tuple | None = None) -> jax.Array:
        c = (None,) * len(self.objectives) if consts is None else consts
        st = (None,) * len(self.objectives) if state is None else state
        return sum(o.value(p, {**o.hp, **hp}, data, co, so) for o, p, co, so in zip(self.objectives, params, c, st))

    def policy(self, params, consts: tuple | None = None) -> jax.Array:
        c = (None,) * len(self.objectives) if consts is None else consts
        return jnp.stack([o.policy(p, co) for o, p, co in zip(self.objectives, params, c)])
