"""Resource bounds, checked before any work starts.

Every entry point (``solve``, each experiment through its settings' ``cost()``, ``verify``, token
trees) estimates the memory its arrays will need and the compute it will take, from the sizes
alone, and refuses — one line with the estimate, the limit and how to lift it — instead of
meeting an allocator failure or running silently for an hour. Estimating is arithmetic on the
sizes (never ``V**T`` or an allocation), so ``steps = 1e12`` is refused in microseconds.

The models (float64 = 8 bytes; ``cells = X·K²``, the triple grid every pairwise loss evaluates):

- problem and population data: ``pref``, ``pairs``, ``weight`` and their temporaries, ≈ 6 grids;
- training, per vmapped run (objective × sweep point): ≈ 8 grids of forward/backward
  temporaries, the logged policies ``L·X·K``, the loss trajectory (one value per step, kept
  twice: the scan's output and the appended copy) and the optimizer state (4 copies of the
  parameters); work ``steps × (STEP + runs·(RUN + GRID·cells + PARAM·n))``;
- a sampled dataset of ``n`` pairs: ``jax.random.categorical`` draws one Gumbel variate per pair
  *and per cell*, so ``n·cells`` values (the dominant cost of large ``n_pairs``);
- the batched Newton solver (free parameterizations, up to ``solver.DENSE_MAX`` parameters):
  ``R = 2n+1`` rows per point (shared by the members of a stack), each a grid evaluation with its
  gradient, once for the Hessian and once for the line search per iteration, plus the ``n×n``
  Hessian and its eigendecomposition, for a typical ``NEWTON_ITERS`` iterations; above, the
  matrix-free trust-region Newton–CG (no Hessian; ≈ 50 Hessian-vector products and Fisher probes per iteration); whole-
  distribution objectives (RLHF) touch ``X·K`` cells, not the triple grid; the constrained solver (box, simplex): ``jax.hessian``
  (``n`` gradients of the grid) and an ``n³`` QP step per iteration;
- token trees: ``V^T`` sequences, counted in log space and capped by
  :data:`bandit_lab.tokens.tree.MAX_RESPONSES`.

Work is counted in nanoseconds of a 2-core CPU, one compile (``COMPILE_NS``) per compiled trainer
or batched solver included (the per-unit constants below were measured on the
project's machine under load: 6 stacked objectives of K = 3 take ≈ 5–8 µs per Adam step; a
K = 1024 token tree ≈ 1 ns per cell and step). It is a rough, order-of-magnitude estimate — its
purpose is to catch a typo'd ``1e12``, not to predict a runtime.

Limits: memory defaults to a quarter of physical RAM (the machine is shared), work to ten
minutes; lift either with the root options ``bandit-lab --max-memory 16G --max-work 2h …``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re

from bandit_lab.errors import BanditError

F64 = 8  # bytes

# work constants, in nanoseconds (see the module docstring)
STEP_NS = 2000.0  # fixed cost of one scan iteration
RUN_NS = 500.0  # per vmapped run and step
# per vmapped run and step when the loss is kept at the logged steps only (``loss_every_step=False``:
# ``grad`` instead of ``value_and_grad``, no per-step π), as in big weight-decay sweeps: measured
# 127–167 ns per run and step at 4,096 and 65,536 points (2-core machine, under load, 2026-12-05)
RUN_LEAN_NS = 150.0
COMPILE_NS = 1.5e9  # one XLA compile of a trainer or of the exact solver's batched evaluation (1–7 s measured)
GRID_NS = 1.0  # per cell of the triple grid, per run and step (value + gradient)
PARAM_NS = 2.0  # per parameter, per run and step (optimizer update, projection)
FLOP_NS = 0.5  # dense linear algebra (eigh, QP steps): per flop
CHECK_NS = 2e8  # one random instance of a theorem check (≈ 0.2 s; 35 checks × 20 instances ≈ 2 min)
NEWTON_ITERS = 30  # typical iterations of the exact solvers (the cap is 200)
GRID_TEMPS = 8  # grid-sized temporaries per run (loss, log-ratios, their gradients)

DEFAULT_WORK_S = 600.0
DEFAULT_MEMORY_FRACTION = 0.25

_limits: dict = {"memory": None, "work": None}


class BudgetError(BanditError):
    """A job over the memory or work limit (exit 2, like any bad input)."""


# ----------------------------------------------------------------------------- limits

def physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 8 GB
        return 8 * 2**30


def memory_limit() -> float:
    m = _limits["memory"]
    return DEFAULT_MEMORY_FRACTION * physical_memory() if m is None else m


def work_limit() -> float:
    """In nanoseconds."""
    w = _limits["work"]
    return DEFAULT_WORK_S * 1e9 if w is None else w


def set_limits(memory: float | None = None, work_seconds: float | None = None) -> None:
    """Process-wide limits (``None`` keeps the default). Used by the CLI's root options."""
    _limits["memory"] = memory
    _limits["work"] = None if work_seconds is None else work_seconds * 1e9


_SIZE = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30, "t": 2**40, "tb": 2**40}
_TIME = {"": 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def _quantity(text: str, units: dict, flag: str, examples: str) -> float:
    m = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in units:
        raise BanditError(f"{flag}: expected {examples}, got {text!r}")
    v = float(m.group(1)) * units[unit]
    if not (math.isfinite(v) and v > 0):
        raise BanditError(f"{flag}: must be positive and finite, got {text!r}")
    return v


def parse_size(text: str) -> float:
    """``"512M"``, ``"16G"``, ``"2e9"`` (bytes) → bytes."""
    return _quantity(text, _SIZE, "--max-memory", "a size such as 512M, 16G or 2e9 (bytes)")


def parse_duration(text: str) -> float:
    """``"90s"``, ``"30m"``, ``"2h"``, ``"600"`` (seconds) → seconds."""
    return _quantity(text, _TIME, "--max-work", "a duration such as 90s, 30m or 2h")


def fmt_bytes(b: float) -> str:
    for unit, size in (("EB", 2**60), ("PB", 2**50), ("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if b >= size:
            v = b / size
            return f"{v:.3g} {unit}" if v < 1e4 else f"{v:.2e} {unit}"
    return f"{b:.0f} B"


def fmt_time(ns: float) -> str:
    s = ns / 1e9
    if s < 120:
        return f"{s:.2g} s"
    if s < 7200:
        return f"{s / 60:.2g} min"
    if s < 2 * 86400:
        return f"{s / 3600:.2g} h"
    d = s / 86400
    return f"{d:.2g} days" if d < 1e5 else f"{d:.1e} days"


# ----------------------------------------------------------------------------- costs

@dataclasses.dataclass
class Cost:
    """Estimated peak memory (bytes) and work (ns), each with its largest contributor named.

    Costs of sequential stages combine with ``|`` (peak memory = the larger stage, work adds);
    costs of things alive at the same time combine with ``+`` (both add)."""

    memory: float = 0.0
    work: float = 0.0
    memory_what: str = ""
    work_what: str = ""

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.memory + other.memory, self.work + other.work,
                    self.memory_what if self.memory >= other.memory else other.memory_what,
                    self.work_what if self.work >= other.work else other.work_what)

    def __or__(self, other: "Cost") -> "Cost":
        big = self if self.memory >= other.memory else other
        return Cost(big.memory, self.work + other.work, big.memory_what,
                    self.work_what if self.work >= other.work else other.work_what)

    def times(self, n: float, what: str = "") -> "Cost":
        """``n`` of these one after another (work × n, memory unchanged)."""
        return Cost(self.memory, self.work * n, self.memory_what, f"{what} × {self.work_what}" if what else self.work_what)


def _n(x) -> str:
    x = float(x)
    return f"{x:.0f}" if x < 1e6 and x == int(x) else f"{x:.3g}"


def _cells(contexts, responses, pairwise: bool) -> float:
    """Entries a loss evaluation touches: the triple grid ``X·K²`` for pairwise losses, ``X·K``
    for whole-distribution objectives (RLHF builds no pair grid)."""
    return float(contexts) * float(responses) ** (2 if pairwise else 1)


def problem(contexts: int, responses: int, pairwise: bool = True) -> Cost:
    cells = _cells(contexts, responses, pairwise)
    what = f"the triple grid X·K² = {_n(cells)}" if pairwise else f"the policy grid X·K = {_n(cells)}"
    return Cost(6 * cells * F64, 20 * cells, what, "building " + what[4:])


def training(*, steps: int, responses: int, contexts: int = 1, runs: int = 1, params: int | None = None,
             logged: int = 2, sampled_pairs: int = 0, pairwise: bool = True, loss_every_step: bool = True) -> Cost:
    """One compiled ``jit(vmap(scan))`` over ``runs`` = objectives × sweep points (see module doc);
    ``loss_every_step=False``: the loss is kept at the ``logged`` steps only
    (``TrainConfig.loss_every_step``)."""
    X, K, R, T = float(contexts), float(responses), float(runs), float(steps)
    n = X * K if params is None else float(params)
    cells = _cells(contexts, responses, pairwise)
    mem_traj = R * ((T + 1) if loss_every_step else float(logged)) * F64 * 2
    mem = {"loss trajectories (one value per step)" if loss_every_step else "logged losses": mem_traj,
           "grid temporaries": R * GRID_TEMPS * cells * F64,
           "logged policies": R * float(logged) * X * K * F64,
           "optimizer state": R * 4 * n * F64}
    if sampled_pairs:
        mem["resampled pairs (Gumbel draws per cell)"] = R * float(sampled_pairs) * cells * F64
    what = max(mem, key=mem.get)
    total = sum(mem.values())
    work = COMPILE_NS + T * (STEP_NS + R * ((RUN_NS if loss_every_step else RUN_LEAN_NS) + GRID_NS * cells + PARAM_NS * n))
    return Cost(total, work, f"{what}: {_n(runs)} runs × " + (f"{_n(T + 1)} steps" if "trajector" in what else f"{_n(cells)} cells"),
                f"{_n(steps)} steps × {_n(runs)} runs × {_n(cells)} cells")


def sampling(n_pairs: int, responses: int, contexts: int = 1, datasets: int = 1) -> Cost:
    cells = float(contexts) * float(responses) ** 2
    vals = float(n_pairs) * cells * float(datasets)
    return Cost(2 * vals * F64, 5 * vals, f"sampling {_n(n_pairs)} pairs × {_n(datasets)} datasets (one Gumbel draw per pair and cell, {_n(cells)} cells)",
                f"sampling {_n(n_pairs)} pairs")


def newton(*, params: int, responses: int, contexts: int = 1, points: int = 1, pairwise: bool = True, stacked: int = 1) -> Cost:
    """The batched modified Newton method of :func:`bandit_lab.solvers.solver.newton_free` (dense up to
    ``solver.DENSE_MAX`` parameters; above, matrix-free trust-region Newton–CG one point
    at a time: no Hessian, a few dozen Hessian-vector products per iteration). ``stacked``
    objectives solved as one stack share a block of ``solver.NEWTON_BLOCK`` points."""
    from bandit_lab.solvers.solver import DENSE_MAX

    n, B = float(params), float(points)
    cells = _cells(contexts, responses, pairwise)
    if n > DENSE_MAX:
        mem = (3 * GRID_TEMPS * cells + 20 * n) * F64
        work = B * NEWTON_ITERS * 50 * 3 * (RUN_NS + GRID_NS * cells + PARAM_NS * n)
        return Cost(mem, work, f"the matrix-free exact solver's Hessian-vector products on {_n(cells)} cells",
                    f"exact solve ({_n(points)} points, {_n(params)} parameters, matrix-free)")
    from bandit_lab.solvers.solver import NEWTON_BLOCK

    # ``newton_free``: 2n + 1 rows per point for the central-difference Hessian (coloured: the
    # members of a stack share their rows, so ``stacked`` member points are one row set), and the
    # line search evaluates its candidates in batches of the same rows (one batch, usually):
    # ≈ 2·(2n + 1) row evaluations per stacked point and iteration, each touching every member's cells
    S = float(max(int(stacked), 1))
    rows = 2 * n + 1
    sets = B / S  # row sets (stacked points)
    work_B, B = B, min(B, float(NEWTON_BLOCK) * S)  # memory: one block of points at a time
    mem = (B / S) * rows * (4 * n * S + GRID_TEMPS * cells * S) * F64 + 3 * B * n * n * F64
    work = COMPILE_NS + NEWTON_ITERS * (2 * sets * rows * (RUN_NS + GRID_NS * cells * S) + work_B * 10 * n**3 * FLOP_NS)
    return Cost(mem, work, f"the exact solver's {_n(rows)} rows × {_n(cells)} cells per point ({_n(points)} points)",
                f"exact solve ({_n(points)} points, {_n(params)} parameters)")


def constrained(*, params: int, responses: int, contexts: int = 1, points: int = 1, pairwise: bool = True) -> Cost:
    """SciPy L-BFGS-B/SLSQP plus the active-set Newton polish of :func:`bandit_lab.solvers.solver.solve_exact`."""
    n, B = float(params), float(points)
    cells = _cells(contexts, responses, pairwise)
    mem = (n * GRID_TEMPS * cells + 4 * n * n) * F64
    work = B * NEWTON_ITERS * 4 * (n * GRID_NS * cells + 10 * n**3 * FLOP_NS)
    return Cost(mem, work, f"the exact solver's Hessian: {_n(params)} gradients × {_n(cells)} cells", f"constrained exact solve ({_n(points)} points)")


def exact(constraint: str, **kw) -> Cost:
    return newton(**kw) if constraint == "free" else constrained(**kw)


def array(n: float, what: str) -> Cost:
    """A plain array of ``n`` float64 values (a grid of sweep points, logged steps)."""
    return Cost(float(n) * F64, float(n) * 10, what, what)


def instances(n: int, checks: int) -> Cost:
    return Cost(0.0, float(n) * float(checks) * CHECK_NS, "", f"{_n(n)} instances × {_n(checks)} checks (≈ 0.2 s each)")


def tree_responses(vocab: int, horizon: int, eos: bool = False, limit: int | None = None) -> int:
    """Number of complete sequences of a token tree, without enumerating (log space first, so
    ``horizon = 1e12`` is refused at once). Refuses beyond ``limit`` (default: the tree module's
    ``MAX_RESPONSES``)."""
    if limit is None:
        from bandit_lab.tokens.tree import MAX_RESPONSES as limit  # noqa: N811
    V, T = int(vocab), int(horizon)
    if V < 2 or T < 1 or (eos and V < 3):
        return 0  # the tree's own validation names the problem
    # without eos: V^T; with eos: Σ_{t<T} (V−1)^{t−1} + V(V−1)^{T−1}, dominated by its last term
    log10 = T * math.log10(V) if not eos else (T - 1) * math.log10(V - 1) + math.log10(V)
    if log10 > math.log10(limit) + 1e-12:
        raise BudgetError(f"a token tree with V={V}, T={T}{' and an end token' if eos else ''} has ≈ 10^{log10:.3g} sequences; "
                          f"exact enumeration is limited to {limit} sequences")
    if eos:  # T ≤ log(limit) here, so the sum is short
        return sum((V - 1) ** (t - 1) for t in range(1, T)) + V * (V - 1) ** (T - 1)
    return V**T


def check(cost: Cost, what: str) -> Cost:
    """Refuse ``cost`` if it exceeds a limit (one line: estimate, limit, how to lift it)."""
    mlim, wlim = memory_limit(), work_limit()
    if not cost.memory <= mlim:
        default = " (a quarter of physical RAM)" if _limits["memory"] is None else ""
        raise BudgetError(f"{what} needs ≈ {fmt_bytes(cost.memory)} of memory ({cost.memory_what}), over the limit of "
                          f"{fmt_bytes(mlim)}{default}; make it smaller or lift the limit with `bandit-lab --max-memory SIZE …`")
    if not cost.work <= wlim:
        default = " (the default)" if _limits["work"] is None else ""
        raise BudgetError(f"{what} would take ≈ {fmt_time(cost.work)} of compute ({cost.work_what}; a rough estimate), over the "
                          f"limit of {fmt_time(wlim)}{default}; make it smaller or lift the limit with `bandit-lab --max-work 2h …`")
    return cost
