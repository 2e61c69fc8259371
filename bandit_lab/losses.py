"""Preference losses as pure functions, and the registry that names them.

Every loss has the signature ``loss(inputs: LossInputs, hp: dict) -> scalar`` where ``hp`` holds
the (possibly traced, hence sweepable) float hyperparameters, e.g. ``hp["beta"]``. Options that
change the *function* (a divergence, a reward source) are bound statically by the registry.

Pairwise losses read ``inputs.data`` (the weight of every labelled triple ``[x, y_w, y_l]``,
population or sampled alike), evaluate on the broadcast grid and reduce with :func:`expect`; whole-distribution objectives (RLHF) read ``inputs.logp`` and
``inputs.reward``. Everything is computed from log-probabilities: ``log_sigmoid``, ``logsumexp``,
never ``log(sigmoid(·))``.

Notation: ``h(x, y) = log π_θ(y|x) − log π_ref(y|x)``; ``β`` (Kong et al.'s λ) the KL strength.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab import divergences
from bandit_lab.data import PreferenceData
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
    (see :func:`bandit_lab.oracles.ipo_optimum`).
    """
    hw, hl = log_ratios(inputs)
    return expect(inputs.data, (hw - hl - 0.5 / hp["beta"]) ** 2)


def fdpo(inputs: LossInputs, hp: dict, *, divergence: str = "forward_kl") -> jax.Array:
    """f-DPO: ``E_D[−log σ(β f'(π_w/π_ref,w) − β f'(π_l/π_ref,l))]``.

    References: Wang et al. 2024 ("Beyond Reverse KL: Generalizing DPO with Diverse Divergence
    Constraints"), Eq. 11 and Table 1; used by Kong et al. §3.3 with the forward KL.
    ``f'`` per :mod:`bandit_lab.divergences` (α convention stated there; α = ``hp["f_alpha"]``).
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


# --------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class LossSpec:
    """A registered loss: the function, its float hyperparameters, its static options.

    ``counterpart`` names the RLHF-type objective the loss is classically equivalent to
    (as ``(loss name, static options)``), ``reward`` says which reward a whole-distribution
    objective reads ("bt" or "ipo"), ``oracle`` names the closed form in :mod:`oracles`.
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
    # :func:`bandit_lab.solver.solve_exact` uses first (None = not applicable, use Newton)
    exact: Callable | None = None


REGISTRY: dict[str, LossSpec] = {
    s.name: s
    for s in (
        LossSpec("dpo", dpo, {"beta": 1.0}, summary="Direct Preference Optimization", citation="Kong et al. Eq. 6"),
        LossSpec("ipo", ipo, {"beta": 1.0}, summary="Identity Preference Optimization", citation="Kong et al. Eq. 9"),
        LossSpec(
            "fdpo", fdpo, {"beta": 1.0, "f_alpha": 0.5}, {"divergence": "forward_kl"},
            summary="f-DPO (reverse/forward KL, JS, α)", citation="Wang et al. 2024 Eq. 11",
        ),
        LossSpec(
            "rlhf", rlhf, {"beta": 1.0, "f_alpha": 0.5}, {"divergence": "reverse_kl", "reward": "bt"}, kind="policy",
            summary="exact RLHF objective −E[r] + β·D_f", citation="Kong et al. Eq. 4; Wang et al. Eq. 6",
        ),
        LossSpec("gaussian_nll", gaussian_nll, {"beta": 1.0}, summary="Gaussian NLL, γ profiled", citation="Kong et al. Prop. 4.1, Eq. 16"),
    )
}


def register(spec: LossSpec) -> None:
    """Add a loss (later modules extend the registry through this one door)."""
    if spec.name in REGISTRY:
        raise ValueError(f"loss {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec


_LOADED = False


def registry() -> dict[str, LossSpec]:
    """Every registered loss, after importing the families in :mod:`bandit_lab.loss_families`."""
    global _LOADED
    if not _LOADED:
        import importlib
        import pkgutil

        from bandit_lab import loss_families

        _LOADED = True
        for mod in sorted(pkgutil.iter_modules(loss_families.__path__), key=lambda m: m.name):
            importlib.import_module(f"{loss_families.__name__}.{mod.name}")
    return REGISTRY


def get(name: str) -> LossSpec:
    # core losses need no family imports (keeps a cold start of the core commands short)
    if name not in REGISTRY and name not in registry():
        raise BanditError(f"unknown loss {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def split_params(spec: LossSpec, params: dict | None) -> tuple[dict, dict]:
    """Separate user ``loss_params`` into float hyperparameters and static options; validate."""
    params = dict(params or {})
    hp = dict(spec.defaults)
    static = dict(spec.static)
    for k, v in params.items():
        if k in static:
            static[k] = v
        elif k in hp:
            try:
                hp[k] = float(v)
            except (TypeError, ValueError):
                raise BanditError(f"loss parameter {k} must be a number; got {v!r}") from None
        else:
            allowed = sorted(set(hp) | set(static))
            raise BanditError(f"loss {spec.name!r} has no parameter {k!r}; it takes {', '.join(allowed)}")
    if "beta" in hp and not (np.isfinite(hp["beta"]) and hp["beta"] > 0):
        raise BanditError(f"beta must be > 0; got {hp['beta']}")
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
    """The RLHF objective a loss is classically equivalent to (Kong et al. §3, Eq. 10–12)."""
    if name == "dpo":
        return "rlhf", {"divergence": "reverse_kl", "reward": "bt"}
    if name == "fdpo":
        return "rlhf", {"divergence": static["divergence"], "reward": "bt"}
    if name == "ipo":
        return "rlhf", {"divergence": "reverse_kl", "reward": "ipo"}
    if name == "gaussian_nll":
        return "rlhf", {"divergence": "reverse_kl", "reward": "bt"}
    return None
