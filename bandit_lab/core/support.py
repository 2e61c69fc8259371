"""Reference policies with zeros: what every objective means when ``π_ref(y|x) = 0``.

Definition (issue 20, item 3; docs/verdicts.md, "Zero-support references"). Let
``S(x) = {y : π_ref(y|x) > 0}``.

- **KL-regularised objectives** — RLHF (``kind == "policy"``: ``−E_π r + β D_f(π‖π_ref)``), every
  on-policy algorithm (``kind == "onpolicy"``) and the pairwise losses that carry a KL over all
  responses (:data:`WHOLE_DISTRIBUTION`: SPO's β·KL(π‖π_ref), KTO's reference point
  KL(π‖π_ref)) — are optimised over the policies absolutely continuous with respect to π_ref,
  ``{π : π(y|x) = 0 for y ∉ S(x)}``. For the reverse KL this is forced (``KL = +∞`` as soon as
  ``π(y) > 0 = π_ref(y)``); for the f-divergences with finite ``f'(∞)`` (forward KL, JS, α) it
  is the usual convention ``π ≪ π_ref`` of KL-regularised RL, stated here as the definition. The
  policy is parameterised on ``S``: softmax logits masked off ``S``
  (:class:`bandit_lab.core.params.MaskedSoftmax`), so the optimum is finite and puts exactly 0 there.
- **Pairwise losses** read the policy only through the labelled pairs (and the normalisation of
  π). A response ``y ∉ S(x)`` that appears in **no** pair of positive weight is free: its logit
  is a flat direction of the loss (Xu et al. 2024, *Is DPO Superior to PPO for LLM Alignment?*,
  §4.1 Table 1: DPO may move mass to such a y3). A response ``y ∉ S(x)`` that appears in a pair
  of positive weight makes ``log π(y)/π_ref(y)`` undefined for every loss that reads π_ref: such
  a problem is **refused** (:func:`check_pairs`), naming ``pi_ref``. Reference-free losses
  (:data:`bandit_lab.losses.zoo.REFERENCE_FREE`: SimPO, CPO, ORPO, SFT, …) never read π_ref and
  accept it.
- **π* with zeros** (``preference.pi_star``) gives deterministic Bradley–Terry labels
  ``p(i ≻ j) = π*_i/(π*_i + π*_j) ∈ {0, 1}`` when exactly one of the two is 0
  (:func:`bandit_lab.core.problems.target_matrix`); the BT reward ``log π*`` is floored at
  ``reward_floor`` as before.

Arrays: ``log π_ref`` off ``S`` (and ``log π`` of a masked policy off ``S``) is the number
:data:`LOG_ZERO` = −10⁴, not ``−∞``: ``exp(−10⁴)`` is exactly ``0.0`` in float32 and float64, so
every probability, every product ``π·log(π/π_ref)`` (``0·0``) and every expectation is exact, and no
``0·(−∞)`` or ``∞ − ∞`` can appear in a value or a gradient. The number itself never matters: off
``S`` a pair term has weight 0 and is masked (:func:`bandit_lab.losses.base.expect`'s double
``where``), a masked logit has zero gradient, and ``π·h`` is ``0·0``. ``tests/test_zero_support.py``
checks that values and gradients equal those of the problem with the responses removed.
"""
from __future__ import annotations

import numpy as np

from bandit_lab.errors import BanditError

#: log 0 in arrays (see the module docstring): exp(LOG_ZERO) == 0.0 in float32 and float64
LOG_ZERO = -1.0e4

#: pairwise losses whose value carries a KL(π‖π_ref) over *all* responses (not only the pairs):
#: SPO (Sharifnassab et al. §3, β·KL), KTO's reference point (Ethayarajh et al. 2024 Eq. 8)
WHOLE_DISTRIBUTION = ("spo", "kto")


def support(pi_ref: np.ndarray) -> np.ndarray:
    """``[X, K]`` booleans: ``π_ref(y|x) > 0``."""
    return np.asarray(pi_ref) > 0


def full(pi_ref: np.ndarray) -> bool:
    return bool(np.all(support(pi_ref)))


def log_ref(pi_ref: np.ndarray) -> np.ndarray:
    """``log π_ref`` with :data:`LOG_ZERO` where ``π_ref = 0`` (no log-of-zero warning)."""
    ref = np.asarray(pi_ref, dtype=np.float64)
    s = ref > 0
    return np.where(s, np.log(np.where(s, ref, 1.0)), LOG_ZERO)


def _terms(spec, static) -> list[str]:
    names = [spec.name]
    for v in static.values():
        if isinstance(v, (tuple, list)):
            names += [t for t in v if isinstance(t, str)]
    return names


def kl_regularised(spec, static: dict) -> bool:
    """Whether the loss is optimised over policies absolutely continuous w.r.t. π_ref."""
    return spec.kind in ("policy", "onpolicy") or any(n in WHOLE_DISTRIBUTION for n in _terms(spec, static))


def reference_free(spec, static: dict) -> bool:
    from bandit_lab.losses.zoo import REFERENCE_FREE

    return all(n in REFERENCE_FREE for n in _terms(spec, static))


def check_pairs(problem, spec, static: dict, weight) -> None:
    """Refuse a labelled pair of positive weight on a response outside supp(π_ref) (one line, naming
    ``pi_ref``), unless the loss never reads π_ref."""
    s = support(problem.pi_ref)
    if s.all() or reference_free(spec, static):
        return
    w = np.asarray(weight)
    live = w > 0
    off = ~s
    bad = live & (off[:, :, None] | off[:, None, :])
    if not bad.any():
        return
    x, i, j = (int(v) for v in np.argwhere(bad)[0])
    k = i if off[x, i] else j
    where = f" of context {x}" if problem.n_contexts > 1 else ""
    raise BanditError(
        f"pi_ref: response {k}{where} has π_ref = 0 but appears in a labelled pair ({i}, {j}); {spec.name}'s "
        f"log π/π_ref is undefined there — give it π_ref > 0 or drop the pair (a response outside the support "
        f"may only appear in no pair: it is then free)")


def resolve(problem, spec, static: dict, param, data):
    """The parameterization an objective uses on a zero-support problem (see module docstring):
    KL-regularised losses get softmax logits masked to supp(π_ref); pairwise losses keep theirs,
    after :func:`check_pairs`. Returns ``param`` unchanged on a full-support problem."""
    from bandit_lab.core import params as P

    if full(problem.pi_ref):
        return param
    if data is not None and spec.kind == "pairwise":
        check_pairs(problem, spec, static, data.weight)
    if kl_regularised(spec, static):
        if param is None or type(param) in (P.Softmax, P.MaskedSoftmax):
            return P.MaskedSoftmax(problem)
        name = getattr(param, "name", type(param).__name__)
        raise BanditError(
            f"pi_ref: has zeros, and {spec.name} is KL-regularised (the policy must vanish outside π_ref's "
            f"support); that is implemented for the softmax parameterization, not {name!r}")
    return param
