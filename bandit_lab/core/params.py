"""Policy parameterizations: parameters → ``log π[x, y]``, plus the set they live in.

Every parameterization offers
- ``init(how)``: parameters at ``"reference"`` (π = π_ref where representable), ``"uniform"``,
  or an explicit array;
- ``log_probs(params, c=None)``: ``[X, K]`` log-probabilities, computed stably; ``c`` overrides
  the parameterization's constant arrays (``consts()``), so compiled functions can take them
  as arguments and serve every problem of the same shape (a parameterization that reads *every*
  constant from ``c`` sets ``shareable = True``; others are cached per instance, safely);
- ``project(params)``: Euclidean projection onto the feasible set (identity when free) — the
  last link of the optax chain in projected Adam / projected GD;
- ``constraint``: ``"free"``, ``"box"`` (``[0, 1]``) or ``"simplex"`` (per context), which the
  exact solver uses to pick its method.

A later capability (token trees) adds a parameterization whose parameters are per-state
logits and whose ``log_probs`` sums per-token log-probabilities; a parameterization may also
define ``aux(params, c) -> dict`` (e.g. per-state log-probabilities), handed to every loss as
``LossInputs.aux``; nothing else has to change.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.core import support
from bandit_lab.errors import BanditError
from bandit_lab.core.problems import Problem

# log of a probability that projection set to exactly 0: floor it so losses stay finite.
# (Documented: the exact solver sees the very same floored function.) In float32 (``--float32``)
# 1e-300 underflows to 0 and log 0 = −inf turned every simplex run into NaN at step 2–3; there
# the floor is float32's smallest normal number, 1.2e-38.
LOG_FLOOR_P = 1e-300


def _floored_log(p):
    floor = LOG_FLOOR_P if p.dtype == jnp.float64 else float(jnp.finfo(p.dtype).tiny)
    return jnp.log(jnp.maximum(p, floor))


def _init_array(how: Any, shape: tuple, reference: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    if isinstance(how, str):
        if how == "reference":
            return reference
        if how == "uniform":
            return uniform
        raise BanditError(f"init must be 'reference', 'uniform' or an array; got {how!r}")
    arr = np.asarray(how, dtype=np.float64)
    if arr.size == int(np.prod(shape)):
        return arr.reshape(shape)
    raise BanditError(f"init array has {arr.size} values; parameters need shape {shape}")


@dataclasses.dataclass(frozen=True, eq=False)
class Softmax:
    """``π(·|x) = softmax(θ[x])``, ``θ ∈ R^{X×K}`` — the tabular policy of Kong et al. App. B."""

    problem: Problem
    name: str = "softmax"
    constraint: str = "free"
    shareable = True  # log_probs reads every constant from ``c``: compiled code is shared by shape

    def init(self, how: Any = "reference"):
        # π_ref = 0 (bandit_lab.core.support): the logit LOG_ZERO gives π = 0 exactly, and stays finite
        ref = self.problem.pi_ref
        return jnp.asarray(_init_array(how, ref.shape, support.log_ref(ref), np.zeros_like(ref)))

    def consts(self) -> dict:
        return {}

    def log_probs(self, params, c=None):
        return jax.nn.log_softmax(params, axis=-1)

    def project(self, params):
        return params


@dataclasses.dataclass(frozen=True, eq=False)
class MaskedSoftmax(Softmax):
    """Softmax logits on ``supp(π_ref)`` only: ``π(y|x) = 0`` exactly where ``π_ref(y|x) = 0``.

    The parameterization of every KL-regularised objective on a reference with zeros
    (:mod:`bandit_lab.core.support`): off the support the logit is masked (it carries zero gradient)
    and ``log π`` is :data:`bandit_lab.core.support.LOG_ZERO`, whose exponential is exactly 0."""

    def consts(self) -> dict:
        return {"support": support.support(self.problem.pi_ref).astype(np.float64)}

    def log_probs(self, params, c=None):
        c = self.consts() if c is None else c
        s = jnp.asarray(c["support"]) > 0
        lp = jax.nn.log_softmax(jnp.where(s, params, -jnp.inf), axis=-1)
        return jnp.where(s, lp, support.LOG_ZERO)


@dataclasses.dataclass(frozen=True, eq=False)
class Simplex:
    """Direct probabilities ``π = p``, kept on the simplex by ``optax.projections.projection_simplex``."""

    problem: Problem
    name: str = "simplex"
    constraint: str = "simplex"
    shareable = True

    def init(self, how: Any = "reference"):
        ref = self.problem.pi_ref
        p = _init_array(how, ref.shape, ref, np.full_like(ref, 1.0 / ref.shape[1]))
        return self.project(jnp.asarray(p))

    def consts(self) -> dict:
        return {}

    def log_probs(self, params, c=None):
        return _floored_log(params)

    def project(self, params):
        import optax  # only when traced: a cold start that loads an exported program never needs it

        return jax.vmap(optax.projections.projection_simplex)(params)


@dataclasses.dataclass(frozen=True, eq=False)
class Mixture:
    """``π = θ·π₁ + (1−θ)·π₀`` with one ``θ[x] ∈ [0, 1]`` per context; projection = clip.

    Kong et al. §3.3 (mode seeking): ``π₁ = [1, 0, 0]``, ``π₀`` uniform.
    """

    problem: Problem
    pi0: np.ndarray  # [X, K]
    pi1: np.ndarray  # [X, K]
    name: str = "mixture"
    constraint: str = "box"
    shareable = True

    @classmethod
    def create(cls, problem: Problem, pi0, pi1) -> "Mixture":
        X, K = problem.pi_ref.shape
        out = []
        for name, p in (("pi0", pi0), ("pi1", pi1)):
            a = np.broadcast_to(np.asarray(p, dtype=np.float64), (X, K)).copy()
            if np.any(a < 0) or np.abs(a.sum(-1) - 1).max() > 1e-9:
                raise BanditError(f"mixture {name} must be a distribution over {K} responses")
            out.append(a)
        return cls(problem, out[0], out[1])

    def init(self, how: Any = 0.5):
        X = self.problem.n_contexts
        if isinstance(how, str):
            raise BanditError("mixture init must be a number θ in [0, 1]")
        theta = np.broadcast_to(np.asarray(how, dtype=np.float64), (X,)).copy()
        return self.project(jnp.asarray(theta))

    def consts(self) -> dict:
        return {"pi0": self.pi0, "pi1": self.pi1}

    def log_probs(self, params, c=None):
        c = self.consts() if c is None else c
        t = params[:, None]
        return _floored_log(t * c["pi1"] + (1.0 - t) * c["pi0"])

    def project(self, params):
        return jnp.clip(params, 0.0, 1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class LogLinear:
    """``π(y|x) ∝ exp(φ(x, y)·w)``, ``w ∈ R^D`` shared by all contexts — a capacity constraint."""

    problem: Problem
    features: np.ndarray  # [X, K, D]
    name: str = "loglinear"
    constraint: str = "free"
    shareable = True

    @classmethod
    def create(cls, problem: Problem, features) -> "LogLinear":
        phi = np.asarray(features, dtype=np.float64)
        X, K = problem.pi_ref.shape
        if phi.ndim == 2:
            phi = np.broadcast_to(phi, (X,) + phi.shape).copy()
        if phi.ndim != 3 or phi.shape[:2] != (X, K) or not np.all(np.isfinite(phi)):
            raise BanditError(f"features must be finite with shape [X={X}, K={K}, D] or [K, D]")
        return cls(problem, phi)

    def init(self, how: Any = "zeros"):
        D = self.features.shape[-1]
        if isinstance(how, str):
            if how not in ("zeros", "uniform", "reference"):
                raise BanditError("loglinear init must be 'zeros' or an array of D weights")
            # π_ref is generally not representable; zeros gives the uniform policy.
            return jnp.zeros(D)
        return jnp.asarray(_init_array(how, (D,), None, None))

    def consts(self) -> dict:
        return {"features": self.features}

    def log_probs(self, params, c=None):
        c = self.consts() if c is None else c
        return jax.nn.log_softmax(jnp.einsum("xkd,d->xk", c["features"], params), axis=-1)

    def project(self, params):
        return params


PARAMETERIZATIONS = ("softmax", "simplex", "mixture", "loglinear")


def make(name: str, problem: Problem, **options):
    """Build a parameterization by name (``mixture`` needs pi0, pi1; ``loglinear`` needs features).
    Public as :func:`bandit_lab.make_parameterization`."""
    if name == "softmax":
        return Softmax(problem)
    if name == "simplex":
        return Simplex(problem)
    if name == "mixture":
        if "pi0" not in options or "pi1" not in options:
            raise BanditError("mixture parameterization needs 'pi0' and 'pi1'")
        return Mixture.create(problem, options["pi0"], options["pi1"])
    if name == "loglinear":
        if "features" not in options:
            raise BanditError("loglinear parameterization needs 'features'")
        return LogLinear.create(problem, options["features"])
    raise BanditError(f"unknown parameterization {name!r}; choose one of {', '.join(PARAMETERIZATIONS)}")


def make_parameterization(name: str, problem: Problem, **options):
    """A policy parameterization for :func:`bandit_lab.make_objective` (``param=``), by name:

    - ``"softmax"``: tabular logits θ[x, y] (the default of every objective);
    - ``"simplex"``: direct probabilities, kept on the simplex by projection;
    - ``"mixture"``: ``θ·pi1 + (1 − θ)·pi0``, one θ ∈ [0, 1] per context (``pi0=``, ``pi1=``);
    - ``"loglinear"``: ``π(y|x) ∝ exp(φ(x, y)·w)`` with weights ``w`` shared by all responses and
      contexts (``features=`` of shape [K, D] or [X, K, D]) — a capacity constraint under which
      raising one response's probability moves every response that shares its features.

    The objective trains (:func:`bandit_lab.train_policy`) and solves (:func:`bandit_lab.solve_exact`)
    in these parameters; the trajectory records the policy they give. Likelihood displacement
    (Razin et al. 2025, *Unintentional Unalignment*, arXiv 2410.08847: DPO lowers the probability
    of the chosen response as well as the rejected one when their features are similar) in five
    lines — one labelled pair y1 ≻ y2, one shared weight w with features 1, 2, −1: the gradient
    lowers w, and the mass goes to y3, which no pair mentions:

    >>> import bandit_lab as bl
    >>> with bl.x64():
    ...     pb = bl.Problem.create([1/3, 1/3, 1/3], matrix=[[.5, 1, .5], [0, .5, .5], [.5, .5, .5]], pairs=[[0, 1, 1.0]])
    ...     phi = bl.make_parameterization("loglinear", pb, features=[[1.0], [2.0], [-1.0]])
    ...     tr = bl.train_policy(bl.make_objective(pb, "dpo", {"beta": 1.0}, param=phi), bl.TrainConfig(steps=300), lr=0.01)
    >>> print(tr.chosen[[0, -1]].round(3), tr.rejected[[0, -1]].round(3))   # π(y_w), π(y_l): first and last logged step
    [0.333 0.071] [0.333 0.02 ]
    """
    return make(name, problem, **options)
