"""Preference bandits: contexts, responses, a reference policy, a preference model, a pair law.

A :class:`Problem` is plain float64 numpy data, validated once on construction, so every
later stage (data, losses, oracles, the exact solver) can trust its shapes and sums.

Conventions (shared by the whole package):
- ``X`` contexts, ``K`` responses; arrays are indexed ``[x, y]`` or ``[x, i, j]``.
- ``pref[x, i, j] = p(i ≻ j | x)``, with ``pref + prefᵀ = 1`` (diagonal ½). Need not be transitive.
- ``pairs[x, i, j]`` is the law of the *ordered* pair ``(y1, y2)`` shown to the labeller, a
  symmetric matrix summing to 1 per context. ``uniform`` puts equal mass on distinct pairs;
  ``reference`` is ``π_ref ⊗ π_ref`` (ties included — a tie carries no label and is dropped
  from the data, see :mod:`bandit_lab.core.data`). Its marginal ``μ = pairs.sum(-1)`` is the μ of
  IPO (Azar et al. 2024; Nguyen's notes Eq. 9–12).
- ``reward`` is a Bradley–Terry reward (``p(i≻j) = σ(r_i − r_j)``) when one is known: given,
  ``log π*`` for a target policy (Kong et al. Eq. 27; zeros of π* are floored at
  ``reward_floor``, a documented finite stand-in for ``−∞``), or recovered from a matrix whose
  log-odds are additive. ``None`` for non-BT matrices.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

from bandit_lab.errors import BanditError

SUM_TOL = 1e-9
DEFAULT_REWARD_FLOOR = 1e-12


def _as_contexts(a: Any, name: str, ndim: int) -> np.ndarray:
    """Array of ``ndim`` per context; a single context may omit the leading axis."""
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise BanditError(f"{name} must be a (nested) list of numbers") from None
    if arr.ndim == ndim:
        arr = arr[None]
    if arr.ndim != ndim + 1:
        raise BanditError(f"{name} has shape {arr.shape}; expected {ndim}-D per context")
    if not np.all(np.isfinite(arr)):
        raise BanditError(f"{name} contains a non-finite value")
    return arr


def _check_distribution(p: np.ndarray, name: str, strict: bool) -> None:
    if strict and np.any(p <= 0):
        raise BanditError(f"{name} must be strictly positive (got min {p.min():.3g})")
    if np.any(p < 0):
        raise BanditError(f"{name} must be non-negative (got min {p.min():.3g})")
    err = np.abs(p.sum(-1) - 1.0).max()
    if err > SUM_TOL:
        raise BanditError(f"{name} must sum to 1 in every context (off by {err:.3g})")


def bt_matrix(reward: np.ndarray) -> np.ndarray:
    """Bradley–Terry preferences ``σ(r_i − r_j)`` (Kong et al. Eq. 3)."""
    d = reward[..., :, None] - reward[..., None, :]
    return 0.5 * (1.0 + np.tanh(0.5 * d))  # = σ(d), exact at ±∞


def target_matrix(pi_star: np.ndarray) -> np.ndarray:
    """``p(i≻j) = π*_i / (π*_i + π*_j)`` (Kong et al. Eq. 27); ½ where both are zero."""
    num = pi_star[..., :, None]
    den = num + pi_star[..., None, :]
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.5)


def bt_reward_of_matrix(pref: np.ndarray, tol: float = 1e-9) -> np.ndarray | None:
    """The BT reward (centred per context) whose σ-differences give ``pref``, or ``None``."""
    if np.any(pref <= 0) or np.any(pref >= 1):
        return None
    logits = np.log(pref) - np.log1p(-pref)
    r = logits.mean(-1)
    r = r - r.mean(-1, keepdims=True)
    return r if np.abs(bt_matrix(r) - pref).max() <= tol else None


def _pair_law(pairs: Any, pi_ref: np.ndarray) -> tuple[np.ndarray, str]:
    X, K = pi_ref.shape
    if isinstance(pairs, str):
        if pairs == "uniform":
            m = (1.0 - np.eye(K)) / (K * (K - 1))
            return np.broadcast_to(m, (X, K, K)).copy(), "uniform"
        if pairs == "reference":
            return pi_ref[:, :, None] * pi_ref[:, None, :], "reference"
        raise BanditError(f"pairs must be 'uniform', 'reference' or a list of [i, j, weight]; got {pairs!r}")
    rows = pairs
    if not isinstance(rows, (list, tuple)) or not rows:
        raise BanditError("explicit pairs must be a non-empty list of [i, j, weight]")
    # One list for every context, or a list of lists (one per context).
    per_context = all(isinstance(r, (list, tuple)) and r and isinstance(r[0], (list, tuple)) for r in rows)
    lists = rows if per_context else [rows] * X
    if len(lists) != X:
        raise BanditError(f"explicit pairs given for {len(lists)} contexts, problem has {X}")
    m = np.zeros((X, K, K))
    for x, lst in enumerate(lists):
        for row in lst:
            if not isinstance(row, (list, tuple)) or len(row) != 3:
                raise BanditError(f"each explicit pair must be [i, j, weight]; got {row!r}")
            i, j, w = row
            if not (isinstance(i, (int, np.integer)) and isinstance(j, (int, np.integer))):
                raise BanditError(f"pair indices must be integers; got {row!r}")
            if not (0 <= i < K and 0 <= j < K) or i == j:
                raise BanditError(f"pair {row!r} must name two distinct responses in 0..{K - 1}")
            if not np.isfinite(w) or w <= 0:
                raise BanditError(f"pair weight must be positive; got {row!r}")
            m[x, i, j] += w / 2.0
            m[x, j, i] += w / 2.0
    return m / m.sum((-1, -2), keepdims=True), "explicit"


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A validated preference bandit (see the module docstring for every convention).

    The ``[X, K, K]`` arrays ``pref`` and ``pairs`` are built on first use when they follow from
    the ``[X, K]`` data (a reward or π* and a named pair law): an objective that never reads them
    (the RLHF objective on a token tree of 16,384 sequences, say) never allocates K² numbers."""

    pi_ref: np.ndarray  # [X, K], non-negative, rows sum to 1 (zeros: see bandit_lab.core.support)
    given_pref: np.ndarray | None  # [X, K, K] when given as a matrix, else derived lazily
    given_pairs: np.ndarray | None  # [X, K, K] for explicit pairs, else derived lazily
    context_weight: np.ndarray  # [X], sums to 1
    reward: np.ndarray | None  # [X, K] Bradley–Terry reward, when one exists
    pi_star: np.ndarray | None = None  # [X, K] target policy, when given
    pair_kind: str = "uniform"
    preference_kind: str = "pi_star"

    @functools.cached_property
    def pref(self) -> np.ndarray:
        """``[X, K, K]``, ``p(i ≻ j)``."""
        if self.given_pref is not None:
            return self.given_pref
        return target_matrix(self.pi_star) if self.preference_kind == "pi_star" else bt_matrix(self.reward)

    @functools.cached_property
    def pairs(self) -> np.ndarray:
        """``[X, K, K]``, the law of the ordered pair shown."""
        return self.given_pairs if self.given_pairs is not None else _pair_law(self.pair_kind, self.pi_ref)[0]

    @property
    def n_contexts(self) -> int:
        return self.pi_ref.shape[0]

    @property
    def n_responses(self) -> int:
        return self.pi_ref.shape[1]

    @property
    def mu(self) -> np.ndarray:
        """Marginal of the pair law, the μ of IPO: ``μ(y) = Σ_y' pairs[y, y']``."""
        return self.pairs.sum(-1)

    @property
    def r_ipo(self) -> np.ndarray:
        """IPO's reward ``r_IPO(y) = Σ_y' μ(y') p(y ≻ y')`` (Kong et al. Eq. 9; Azar et al. 2024)."""
        return np.einsum("xij,xj->xi", self.pref, self.mu)

    @property
    def ipo_closed_form(self) -> bool:
        """Whether IPO's population optimum is ``π_ref·exp(r_IPO/β)/Z``.

        True when the off-diagonal pair law factorises as ``a_i a_j`` with ``μ ∝ a`` — the
        uniform and the reference pair law. Then the weighted least-squares normal equations of
        the IPO loss are solved by ``h = r_IPO/β + c`` (derivation in ``oracles.ipo_optimum``).
        """
        return self.pair_kind in ("uniform", "reference")

    @classmethod
    def create(
        cls,
        pi_ref: Sequence,
        *,
        pi_star: Sequence | None = None,
        reward: Sequence | None = None,
        matrix: Sequence | None = None,
        pairs: Any = "uniform",
        context_weight: Sequence | None = None,
        reward_floor: float = DEFAULT_REWARD_FLOOR,
    ) -> "Problem":
        """Build and validate a problem. Exactly one of ``pi_star``, ``reward``, ``matrix``."""
        ref = _as_contexts(pi_ref, "pi_ref", 1)
        X, K = ref.shape
        if K < 2:
            raise BanditError("a bandit needs at least 2 responses")
        _check_distribution(ref, "pi_ref", strict=False)  # zeros: bandit_lab.core.support defines them
        given = [n for n, v in (("pi_star", pi_star), ("reward", reward), ("matrix", matrix)) if v is not None]
        if len(given) != 1:
            raise BanditError("give exactly one preference model: pi_star, reward or matrix")
        star = None
        pref = None
        if pi_star is not None:
            star = _as_contexts(pi_star, "pi_star", 1)
            if star.shape != ref.shape:
                raise BanditError(f"pi_star has shape {star.shape[-1]} responses, pi_ref has {K}")
            _check_distribution(star, "pi_star", strict=False)
            if not (0 < reward_floor < 1):
                raise BanditError("reward_floor must lie in (0, 1)")
            r = np.log(np.maximum(star, reward_floor))
        elif reward is not None:
            r = _as_contexts(reward, "reward", 1)
            if r.shape != ref.shape:
                raise BanditError(f"reward has {r.shape[-1]} responses, pi_ref has {K}")
        else:
            pref = _as_contexts(matrix, "matrix", 2)
            if pref.shape != (X, K, K):
                raise BanditError(f"matrix must be {K}x{K} per context; got shape {pref.shape[1:]}")
            if np.any(pref < 0) or np.any(pref > 1):
                raise BanditError("matrix entries must be probabilities in [0, 1]")
            err = np.abs(pref + np.swapaxes(pref, -1, -2) - 1.0).max()
            if err > SUM_TOL:
                raise BanditError(f"matrix must satisfy P + Pᵀ = 1 (off by {err:.3g})")
            r = bt_reward_of_matrix(pref)
        if isinstance(pairs, str):
            if pairs not in ("uniform", "reference"):
                raise BanditError(f"pairs must be 'uniform', 'reference' or a list of [i, j, weight]; got {pairs!r}")
            law, kind = None, pairs  # built on first use; both put mass on distinct pairs (K ≥ 2, π_ref > 0)
            if pairs == "reference" and np.any((ref > 0).sum(-1) < 2):
                raise BanditError("pi_ref: pairs 'reference' (π_ref ⊗ π_ref) needs at least 2 responses with π_ref > 0 "
                                  "in every context, or it shows no distinct pair")
        else:
            law, kind = _pair_law(pairs, ref)
            if np.any(law.sum(-1).sum(-1) - np.einsum("xii->x", law) <= 0):
                raise BanditError("the pair law puts no mass on distinct pairs")
        if context_weight is None:
            cw = np.full(X, 1.0 / X)
        else:
            cw = np.asarray(context_weight, dtype=np.float64).reshape(-1)
            if cw.shape != (X,) or np.any(cw <= 0) or abs(cw.sum() - 1) > SUM_TOL:
                raise BanditError(f"context_weight must be {X} positive numbers summing to 1")
        return cls(ref, pref, law, cw, r, star, kind, given[0])
