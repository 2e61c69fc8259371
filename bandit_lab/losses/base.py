"""The loss registry and the helpers every loss uses.

Every loss has the signature ``loss(inputs: LossInputs, hp: dict) -> scalar`` where ``hp`` holds
the (possibly traced, hence sweepable) float hyperparameters, e.g. ``hp["beta"]``. Options that
change the *function* (a divergence, a reward source) are bound statically by the registry.

Pairwise losses read ``inputs.data`` (the weight of every labelled triple ``[x, y_w, y_l]``,
population or sampled alike), evaluate on the broadcast grid and reduce with :func:`expect`;
whole-distribution objectives (RLHF) read ``inputs.logp`` and ``inputs.reward``. Everything is
computed from log-probabilities: ``log_sigmoid``, ``logsumexp``, never ``log(sigmoid(·))``.

Families live one per module of :mod:`bandit_lab.losses` (``core``, ``zoo``, ``spo``, ``token``,
…) and call :func:`register` at import time; :func:`registry` imports every module of the
package on first use, so adding a family means adding one file.

Notation: ``h(x, y) = log π_θ(y|x) − log π_ref(y|x)``; ``β`` (Kong et al.'s λ) the KL strength.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import divergences
from bandit_lab.core.data import PreferenceData
from bandit_lab.errors import BanditError


class LossInputs(NamedTuple):
    logp: jax.Array  # [X, K] log π_θ
    logp_ref: jax.Array  # [X, K] log π_ref
    data: PreferenceData
    reward: jax.Array | None = None  # [X, K], for whole-distribution objectives
    context_weight: jax.Array | None = None  # [X], sums to 1
    # Extra, parameterization-specific views of the policy (e.g. per-state log-probabilities of
    # a token tree), from ``param.aux(params, c)`` when the parameterization defines it.
    aux: dict | None = None
    # The loss's own per-step state (``LossSpec.state_init``/``state_update``), detached: e.g. the
    # behaviour policy and samples of an on-policy algorithm, or a moving reference.
    state: dict | None = None


def expect(data: PreferenceData, per_triple: jax.Array) -> jax.Array:
    """``E_D[ℓ] = Σ weight·ℓ`` over ``[x, y_w, y_l]``. Zero-weight triples (the diagonal, pairs
    never shown) are masked with a ``where`` rather than multiplied — the "double where" —
    so an infinite loss on a triple that never occurs cannot poison the value or gradient."""
    live = data.weight > 0
    return jnp.sum(jnp.where(live, data.weight * jnp.where(live, per_triple, 0.0), 0.0))


def pair_grid(a: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(a[x, y_w], a[x, y_l])`` broadcast to the triple grid ``[X, K, K]``."""
    return a[..., :, None], a[..., None, :]


def log_ratios(inputs: LossInputs) -> tuple[jax.Array, jax.Array]:
    """``(h_w, h_l)`` on the triple grid, ``h = log π_θ − log π_ref``."""
    return pair_grid(inputs.logp - inputs.logp_ref)


# --------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A registered loss: the function, its float hyperparameters, its static options.

    ``counterpart(static) -> (loss name, static options)`` names the RLHF-type objective the
    loss is classically equivalent to (Kong et al. §3, Eq. 10–12: DPO ↔ reverse-KL RLHF with the
    BT reward, f-DPO ↔ f-RLHF, IPO ↔ RLHF with ``r_IPO``), ``None`` when it has none; a static
    option ``reward`` says which reward a whole-distribution objective reads ("bt" or "ipo").
    """

    name: str
    fn: Callable
    defaults: dict
    static: dict = dataclasses.field(default_factory=dict)
    kind: str = "pairwise"  # or "policy"
    summary: str = ""
    citation: str = ""
    # optional ``check(hp, static)`` raising BanditError on invalid hyperparameters
    check: Callable | None = None
    # optional ``exact(objective, hp, init) -> ExactResult | None``: a loss-specific exact solver that
    # :func:`bandit_lab.solvers.solver.solve_exact` uses first (None = not applicable, use Newton)
    exact: Callable | None = None
    counterpart: Callable | None = None
    # Optional per-step state the loss reads as ``inputs.state`` (never differentiated):
    # ``state_init(objective, params, hp, key, consts) -> dict`` builds it from the current
    # parameters (``key`` is None outside training, e.g. in the exact solver: exact mode);
    # ``state_update(objective, params, hp, key, state, t, consts) -> dict`` renews it at the start
    # of step ``t ≥ 1`` (default: ``state_init`` at every step, i.e. "samples of the current
    # policy"). The trainer carries it through its scan; ``Objective.value`` without a state uses
    # ``stop_gradient(state_init(params))``, so the gradient of the value *is* the algorithm's
    # update direction and the exact solver can seek the zero of that field.
    state_init: Callable | None = None
    state_update: Callable | None = None
    # Optional ``configure(static) -> (static, defaults)``: the float hyperparameters a loss takes
    # *given its static options* (e.g. a mixture's terms bring theirs), with static values
    # normalised (JSON lists → hashable tuples). Default: ``defaults`` for every static choice.
    configure: Callable | None = None
    # β may be 0 (SPO: β weighs an optional KL regulariser); otherwise β must be > 0
    beta_zero: bool = False
    # optional ``oracle(problem, hp, static) -> (policy [X, K] or None, note)``: the loss's
    # closed-form unconstrained population optimum (:func:`bandit_lab.solvers.oracles.loss_oracle`)
    oracle: Callable | None = None
    # optional BibTeX entry (or entries) for ``bandit-lab cite``; built-ins are keyed by
    # ``citation`` in :mod:`bandit_lab.bibliography`
    bibtex: str = ""
    # optional ``translate(loss_params) -> loss_params``: a library's own option names and values
    # (e.g. TRL 1.16 ``GRPOConfig`` fields, :mod:`bandit_lab.onpolicy.trl`) → this loss's native
    # hyperparameters and static options; native names pass through unchanged (idempotent). It
    # raises BanditError naming the field it refuses. Called once, first, by :func:`split_params`
    # (and by the spec validator), so every entry point reads library names the same way.
    translate: Callable | None = None
    # What is known about the loss (issue 20), read by the certificates (:mod:`bandit_lab.certificates`)
    # and printed beside them: ``convex`` — convex in the logits of a softmax / log-linear policy
    # (a composition of a convex function with the linear map θ ↦ log-ratio margins), so a
    # stationary point is a *global* minimiser and "N distinct local minima" cannot happen;
    # ``bounded_below`` — the infimum is finite; ``closed_form_domain`` — where its closed-form
    # optimum (``oracle``) is a finite minimiser. Absent keys mean "not declared".
    facts: dict = dataclasses.field(default_factory=dict)
    # optional ``field_verdict(objective, hp, st) -> Stationary``: the loss's own condition on the
    # on-policy stationary solver's verdict (verl clip_cov: the field jumps at the window's edges),
    # called by :func:`bandit_lab.onpolicy.stationary.solve_batch` (a hook, so that the solver never
    # imports the losses: tests/test_layout.py's no-circle rule)
    field_verdict: Callable | None = None


REGISTRY: dict[str, LossSpec] = {}


def register(spec: LossSpec) -> None:
    """Add a loss (later modules extend the registry through this one door)."""
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec


_LOADED = False


def registry() -> dict[str, LossSpec]:
    """Every registered loss, after importing every family module of :mod:`bandit_lab.losses`."""
    global _LOADED
    if not _LOADED:
        import importlib
        import pkgutil

        import bandit_lab.losses as pkg

        _LOADED = True
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if mod.name not in ("base", "core"):
                importlib.import_module(f"{pkg.__name__}.{mod.name}")
    return REGISTRY


def get(name: str) -> LossSpec:
    # core losses need no family imports (keeps a cold start of the core commands short)
    if name not in REGISTRY and name not in registry():
        raise BanditError(f"unknown loss {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def split_params(spec: LossSpec, params: dict | None) -> tuple[dict, dict]:
    """Separate user ``loss_params`` into float hyperparameters and static options; validate."""
    if params is not None and not isinstance(params, dict):
        raise BanditError(f"loss_params: a dict of {spec.name!r}'s parameters; got {type(params).__name__}")
    params = dict(params or {})
    if spec.translate is not None:
        params = dict(spec.translate(params))
    static = dict(spec.static)
    for k in [k for k in params if k in static]:
        static[k] = params.pop(k)
    if spec.configure is not None:
        static, hp = spec.configure(static)
        hp = dict(hp)
    else:
        hp = dict(spec.defaults)
    for k, v in params.items():
        if k in hp:
            try:
                if isinstance(v, (str, bytes, bool)):  # "1" (a JSON string) or true is not a number
                    raise TypeError
                hp[k] = float(v)
            except (TypeError, ValueError):
                raise BanditError(f"loss parameter {k} must be a number; got {v!r}") from None
            from bandit_lab.infra import bounds

            e = bounds.SCALAR.error(hp[k])
            if e:
                raise BanditError(f"loss parameter {k}: {e}")
        else:
            allowed = sorted(set(hp) | set(static))
            raise BanditError(f"loss {spec.name!r} has no parameter {k!r}; it takes {', '.join(allowed)}")
    # on-policy algorithms may switch their KL penalty off (β = 0, TRL's GRPO default), and so may
    # losses that declare it (SPO's preference loss); a preference loss's β is a temperature, > 0
    zero_ok = spec.kind == "onpolicy" or spec.beta_zero
    if "beta" in hp and not (np.isfinite(hp["beta"]) and (hp["beta"] > 0 or (zero_ok and hp["beta"] == 0))):
        raise BanditError(f"beta must be {'≥' if zero_ok else '>'} 0; got {hp['beta']}")
    if "divergence" in static:
        divergences.check(static["divergence"], hp.get("f_alpha"))
    if "reward" in static and static["reward"] not in ("bt", "ipo"):
        raise BanditError(f"rlhf reward must be 'bt' or 'ipo'; got {static['reward']!r}")
    if spec.check is not None:
        spec.check(hp, static)
    return hp, static


def bind(spec: LossSpec, static: dict) -> Callable:
    """The loss as ``fn(inputs, hp)`` with its static options fixed."""
    fn_static = {k: v for k, v in static.items() if k != "reward"}
    return functools.partial(spec.fn, **fn_static) if fn_static else spec.fn


def counterpart(name: str, static: dict) -> tuple[str, dict] | None:
    """The RLHF objective a loss is classically equivalent to (its ``LossSpec.counterpart``)."""
    c = get(name).counterpart
    return None if c is None else c(static)
