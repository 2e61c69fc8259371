"""The token-tree parameterization: per-state logits ``θ ∈ R^{X×S×V}``.

``π_θ(a|s) = softmax(θ[x, s])`` and ``log π_θ(y|x) = Σ_t log π_θ(y_t|s_t)`` — a gather along the
tree's index arrays (:func:`~bandit_lab.tokens.tree.along_tokens`, O(K·T)), so every core loss
(sequence DPO is the core ``dpo`` loss on this parameterization), the trainer and the exact
solver work unchanged. ``aux(params, c)`` hands the per-state views to token-level losses
through ``LossInputs.aux``: ``logp_state`` (π_θ), ``ref_logp`` (π_ref), the index arrays
(``flat_index``, ``states_at``, ``mask``; use ``along_tokens``/``along_states``) and the UE-DPO
token arrays.

Gauge: adding a constant to all logits of one state leaves π unchanged, so the parameters have
``X·S`` flat directions. The exact solver's modified Newton ignores them (eigenvalues clamped,
trust radius) and the trainer never moves along them (the gradient is orthogonal to them);
compare policies, never raw logits.

UE-DPO token arrays (Algorithm 1, lines 4–13; the sandbox has no images): the sensitivity
``Δ(s, a)`` and uncertainty ``u(s, a)`` are fixed per-token arrays, either given or computed by
:func:`ue_arrays_from_perturbed` from a second, perturbed reference policy standing in for the
blurred image. The parameterization stores the masks ``I_w = 1{Δ ≤ q_τ(Δ)}``,
``I_l = 1{Δ ≥ q_{1−τ}(Δ)}`` and ``σ(Normalize(u))`` (quantiles and standardisation over all
``S·V`` token slots of a prompt); the loss forms ``λ_w = 1 + α·I_w·σ(·)``, ``λ_l = 1 − α·I_l·σ(·)``
with ``α = hp["alpha"]``. Without arrays the masks are zero, so ``λ ≡ 1`` and UE-DPO is DPO.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.core.params import _init_array
from bandit_lab.tokens.tree import TreeProblem, along_tokens


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def ue_masks(delta: np.ndarray, u: np.ndarray, tau: float = 0.5) -> dict:
    """Masks and intensities of UE-DPO Algorithm 1 (lines 9–13) from ``Δ``, ``u`` ``[X, S, V]``.

    ``q_τ`` is the τ-quantile of ``Δ`` over a prompt's ``S·V`` token slots (numpy's linear
    interpolation); ``Normalize(u) = (u − mean)/std`` over the same slots (std 0 → 0)."""
    delta = np.asarray(delta, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    if not (0.0 < tau < 1.0):
        raise BanditError(f"UE-DPO quantile τ must lie in (0, 1); got {tau}")
    X = delta.shape[0]
    flat_d = delta.reshape(X, -1)
    lo = np.quantile(flat_d, tau, axis=1)[:, None, None]
    hi = np.quantile(flat_d, 1.0 - tau, axis=1)[:, None, None]
    flat_u = u.reshape(X, -1)
    sd = flat_u.std(1)
    z = (u - flat_u.mean(1)[:, None, None]) / np.where(sd > 0, sd, 1.0)[:, None, None]
    return {"ue_iw": (delta <= lo).astype(float), "ue_il": (delta >= hi).astype(float), "ue_su": _sigmoid(z)}


def ue_arrays_from_perturbed(ref_logits: np.ndarray, perturbed_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``Δ`` and ``u`` of UE-DPO Algorithm 1 (lines 5–6) with the policy frozen at π_ref and the
    blurred-image model replaced by a perturbed reference ``π'``:
    ``Δ(s, a) = logit_ref(a|s) − logit'(a|s)``, ``u(s, a) = logit_ref(â|s) − logit_ref(a|s)``
    with ``â = argmax_a logit'(a|s)``. Logits are taken as per-state log-probabilities."""
    lr = ref_logits - np.log(np.exp(ref_logits - ref_logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - ref_logits.max(-1, keepdims=True)
    lp = perturbed_logits - np.log(np.exp(perturbed_logits - perturbed_logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - perturbed_logits.max(-1, keepdims=True)
    delta = lr - lp
    ahat = np.argmax(lp, axis=-1)[..., None]
    u = np.take_along_axis(lr, ahat, axis=-1) - lr
    return delta, u


@dataclasses.dataclass(frozen=True, eq=False)
class TokenTreeParam:
    """Per-state softmax logits of a token tree (see the module docstring)."""

    tree_problem: TreeProblem
    ue: dict | None = None  # {"ue_iw", "ue_il", "ue_su"} [X, S, V], from ue_masks
    name: str = "token_tree"
    constraint: str = "free"
    shareable = True  # log_probs and aux read every array from ``c``: compiled code is shared by shape

    @property
    def problem(self):
        return self.tree_problem.problem

    @property
    def shape(self) -> tuple:
        t = self.tree_problem.tree
        return (self.problem.n_contexts, t.n_states, t.vocab)

    def init(self, how: Any = "reference"):
        ref = self.tree_problem.ref_logp
        return jnp.asarray(_init_array(how, self.shape, ref, np.zeros(self.shape)))

    def consts(self) -> dict:
        t = self.tree_problem.tree
        z = np.zeros(self.shape)
        ue = self.ue or {}
        return {
            "flat_index": t.flat_index,
            "states_at": t.states_at,
            "mask": t.mask,
            "ref_logp": self.tree_problem.ref_logp,
            "ue_iw": ue.get("ue_iw", z),
            "ue_il": ue.get("ue_il", z),
            "ue_su": ue.get("ue_su", z),
        }

    def state_log_probs(self, params):
        return jax.nn.log_softmax(params, axis=-1)

    def log_probs(self, params, c=None):
        c = self.consts() if c is None else c
        return along_tokens(self.state_log_probs(params), c)

    def aux(self, params, c=None) -> dict:
        c = self.consts() if c is None else c
        return {**c, "logp_state": self.state_log_probs(params)}

    def project(self, params):
        return params


def make_param(tree_problem: TreeProblem, *, delta=None, u=None, tau: float = 0.5) -> TokenTreeParam:
    """The parameterization, with UE-DPO masks when ``delta`` and ``u`` are given."""
    if (delta is None) != (u is None):
        raise BanditError("UE-DPO needs both the sensitivity Δ and the uncertainty u (or neither)")
    if delta is None:
        return TokenTreeParam(tree_problem)
    X = tree_problem.problem.n_contexts
    t = tree_problem.tree
    shp = (t.n_states, t.vocab)
    arrs = []
    for name, a in (("delta", delta), ("u", u)):
        a = np.asarray(a, dtype=np.float64)
        if a.shape == shp:
            a = np.broadcast_to(a, (X,) + shp).copy()
        if a.shape != (X,) + shp or not np.all(np.isfinite(a)):
            raise BanditError(f"UE-DPO {name} must be finite with shape {(X,) + shp} or {shp}")
        arrs.append(a)
    return TokenTreeParam(tree_problem, ue_masks(arrs[0], arrs[1], tau))
