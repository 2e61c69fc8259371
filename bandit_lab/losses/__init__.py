"""Preference losses: the registry (:mod:`.base`) and one module per family.

``core`` (DPO, IPO, f-DPO, RLHF, Gaussian NLL) is imported with the package; the other families
(``zoo``, ``spo``, ``token``, …) register themselves when :func:`registry` first imports them,
which keeps the cold start of the core commands short. Everything a caller needs is re-exported
here, so ``from bandit_lab import losses; losses.get("dpo")`` is the one way in.
"""
from bandit_lab.losses.base import (  # noqa: F401
    REGISTRY,
    LossInputs,
    LossSpec,
    bind,
    counterpart,
    expect,
    get,
    log_ratios,
    pair_grid,
    register,
    registry,
    split_params,
)
from bandit_lab.losses.core import dpo, fdpo, gaussian_nll, ipo, rlhf  # noqa: F401
