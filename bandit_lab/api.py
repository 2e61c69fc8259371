"""The functions of the public API (re-exported by :mod:`bandit_lab`; see ``bandit_lab.__all__``).

Each command-line verb has a function here returning a dataclass with the same fields as the
command's ``--json`` output (``dataclasses.asdict(result)`` is that JSON, arrays as lists):

=====================================  ==========================================
``bandit-lab solve SPEC --json``        :func:`solve` → :class:`SolveResult`
``bandit-lab fixed-points SPEC --json`` :func:`find_fixed_points` → :class:`FixedPoints`
``bandit-lab verify --json``            :func:`verify` → list of :class:`~bandit_lab.checks.CheckResult`
``bandit-lab check-loss NAME --json``   :func:`bandit_lab.check_loss`
``bandit-lab cite NAME…``               :func:`bandit_lab.cite`
=====================================  ==========================================

and two functions on objects you build yourself (:func:`bandit_lab.make_objective`):
:func:`train_policy` (Adam/SGD through the one compiled trainer) and :func:`solve_exact` (the
exact constrained optimum, float64 Newton).

Precision (:mod:`bandit_lab.infra.precision`): every function here answers in float64 without a
switch. ``solve``, ``find_fixed_points``, ``verify`` build their own problems and run inside
``x64()``; ``train_policy`` and ``solve_exact`` run inside ``x64()`` unless float32 was *chosen*
(``use_float32()``, ``with x64(False):``), when ``train_policy`` trains in float32 and
``solve_exact`` refuses with one line; an objective built in float32 is refused, never used
silently. :func:`closed_form` is NumPy float64.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from bandit_lab.errors import BanditError
from bandit_lab.fixed_points import Row as FixedPointRow  # noqa: F401  (public: one record of FixedPoints)
from bandit_lab.infra.precision import require_x64, x64
from bandit_lab.verdict import Verdict


def _np(res):
    """An ExactResult with NumPy arrays (scalars stay Python scalars)."""
    import jax

    return res._replace(params=jax.tree_util.tree_map(np.asarray, res.params), policy=np.asarray(res.policy),
                        value=float(res.value), residual=float(res.residual), converged=bool(res.converged),
                        grad=None if res.grad is None else jax.tree_util.tree_map(np.asarray, res.grad))


# --------------------------------------------------------------------------- training and solving

def _check_objective(objective) -> None:
    from bandit_lab.core.objective import Objective, Stack

    if not isinstance(objective, (Objective, Stack)):
        raise BanditError(f"objective: an Objective (bl.make_objective(problem, loss, hp)); got {type(objective).__name__}")


def _check_hp(objective, hp) -> None:
    """``hp`` overrides of an objective's hyperparameters: a dict of its own names, finite numbers in
    the spec's ranges (β > 0, weight_decay ≥ 0, the loss's own ``check``) — a BanditError naming the key."""
    from bandit_lab.infra import bounds

    if hp is None:
        return
    if not isinstance(hp, dict):
        raise BanditError(f"hp: a dict of hyperparameters; got {type(hp).__name__}")
    known = dict(getattr(objective, "hp", {}) or {})
    for k, v in hp.items():
        if k not in known:
            raise BanditError(f"hp: {getattr(objective, 'label', 'the objective')!r} has no hyperparameter {k!r}; "
                              f"it takes {', '.join(sorted(map(str, known))) or 'none'}")
        rng = {"weight_decay": bounds.WEIGHT_DECAY}.get(k, bounds.SCALAR)
        e = rng.error(v.item() if isinstance(v, (np.floating, np.integer)) else v)
        if e:
            raise BanditError(f"hp.{k}: {e}")
    loss = getattr(objective, "loss", None)
    if loss is not None and "beta" in hp:
        zero_ok = loss.kind == "onpolicy" or loss.beta_zero
        b = float(hp["beta"])
        if not (b > 0 or (zero_ok and b == 0)):
            raise BanditError(f"hp.beta: must be {'≥' if zero_ok else '>'} 0; got {b:g}")
    if loss is not None and loss.check is not None:
        loss.check({**known, **{k: float(v) for k, v in hp.items()}}, dict(objective.static))


def _check_init(objective, init, field: str = "init") -> None:
    """A starting point with the structure and shapes of ``objective``'s parameters, finite."""
    import jax

    if init is None:
        return
    ref = objective.param.init() if hasattr(objective, "param") else objective.init()
    try:
        leaves, tree = jax.tree_util.tree_flatten(init)
        arrays = [np.asarray(a, dtype=np.float64) for a in leaves]
    except (TypeError, ValueError):
        raise BanditError(f"{field}: parameters of the objective's shape (numbers); got {type(init).__name__}") from None
    ref_leaves, ref_tree = jax.tree_util.tree_flatten(ref)
    want = [tuple(np.shape(a)) for a in ref_leaves]
    have = [a.shape for a in arrays]
    if tree != ref_tree or want != have:
        show = lambda s: s[0] if len(s) == 1 else s  # noqa: E731
        raise BanditError(f"{field}: parameters of shape {show(want)} (the objective's, e.g. objective.param.init()); got {show(have)}")
    if not all(np.isfinite(a).all() for a in arrays):
        raise BanditError(f"{field}: every parameter must be finite")


def _check_train_args(objective, config, lr, seed, hp) -> None:
    """train_policy's arguments, each refused with a BanditError naming it (not an error from inside JAX)."""
    from bandit_lab.infra import bounds
    from bandit_lab.core.train import TrainConfig

    _check_objective(objective)
    if config is not None and not isinstance(config, TrainConfig):
        raise BanditError(f"config: a TrainConfig; got {type(config).__name__}")
    if isinstance(lr, (bool, str)) or not isinstance(lr, (int, float, np.floating, np.integer)):
        raise BanditError(f"lr: a number; got {lr!r}")
    e = bounds.LR.error(float(lr))
    if e:
        raise BanditError(f"lr: {e}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or bounds.SEED.error(int(seed)):
        raise BanditError(f"seed: an integer in [0, 2^32 − 1]; got {seed!r}")
    _check_hp(objective, hp)


def _check_steps(steps) -> None:
    from bandit_lab.infra import bounds

    if steps is None:
        return
    e = bounds.STEPS.error(steps.item() if isinstance(steps, np.integer) else steps)
    if e:
        raise BanditError(f"steps: {e}")


def _check_memory(objective, config) -> None:
    """The API's budget: memory only (the trajectories of ``steps`` would not fit; the work limit is the CLI's)."""
    from bandit_lab.infra import budget

    if not hasattr(objective, "problem"):
        return
    X, K = np.shape(objective.problem.pi_ref)
    c = budget.training(steps=int(config.steps), responses=K, contexts=X, loss_every_step=config.loss_every_step)
    budget.check(budget.Cost(c.memory, 0.0, c.memory_what, ""), f"train_policy ({int(config.steps)} steps)")


def _arrays(objective) -> list:
    """The arrays an objective computes with (its data and constants), for the precision rule."""
    import jax

    out = jax.tree_util.tree_leaves(objective.consts())
    data = getattr(objective, "data", None)
    if data is not None:
        out.append(data.weight)
    return out


def train_policy(objective, config=None, *, lr: float = 0.05, steps: int | None = None, optimizer: str | None = None,
                 schedule: str | None = None, seed: int = 0, hp: dict | None = None, init=None):
    """Train one objective with the trainer every experiment uses (one compiled ``lax.scan``).

    The optimiser's settings have the names of a spec's ``optimizer`` block and of
    :class:`~bandit_lab.TrainConfig`: ``lr``, ``steps``, ``optimizer`` ("adam" | "sgd"),
    ``schedule`` ("cosine" | "constant"); give them as keywords, or a whole ``config`` (a
    ``TrainConfig``, for the rest: ``batch_size=B`` draws a fresh mini-batch of B pairs at every
    step, ``seed`` keys the draws; a keyword overrides the config's field). ``hp`` overrides the
    objective's hyperparameters (``beta``, ``weight_decay``, …) for this run. The objective's
    parameterization (``make_objective(..., param=bl.make_parameterization(...))``) is what trains.

    Precision: float64 without any switch (the run is wrapped in ``x64()`` when JAX is in its
    default float32); float32 only when chosen (``bl.use_float32()``, ``with bl.x64(False):``).
    Returns a :class:`~bandit_lab.Trajectory` of NumPy arrays: ``policy`` is ``[X, K]``,
    ``policies`` the policy at each logged step ``steps``, and for pairwise data
    ``chosen``/``rejected`` the data-weighted mean π(y_w), π(y_l) at those steps
    (:func:`bandit_lab.chosen_rejected`; see :func:`bandit_lab.make_parameterization`).

    >>> import bandit_lab as bl
    >>> pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    >>> traj = bl.train_policy(bl.make_objective(pb, "ipo", {"beta": 1.0}), steps=2000, lr=0.05)
    >>> traj.policy.shape, traj.policy.dtype, float(traj.policy.sum())
    ((1, 3), dtype('float64'), 1.0)
    """
    import dataclasses as dc

    from bandit_lab import runner
    from bandit_lab.infra.precision import promised_float64
    from bandit_lab.core.train import TrainConfig

    _check_train_args(objective, config, lr, seed, hp)
    _check_steps(steps)
    _check_init(objective, init)
    config = config or TrainConfig()
    overrides = {k: v for k, v in {"steps": steps, "optimizer": optimizer, "schedule": schedule}.items() if v is not None}
    config = dc.replace(config, **overrides).validate()
    _check_memory(objective, config)
    point = {**objective.hp, **(hp or {}), "lr": float(lr)}
    with promised_float64("train_policy", _arrays(objective)):
        (traj,) = runner.train_batch([objective], config, [[point]], seed=seed, inits=None if init is None else [init])
        import jax

        traj = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), traj)  # the batch of one point → that point
        data = getattr(objective, "data", None)
        if data is not None and data.weight.shape[-1] == traj.policies.shape[-1]:
            from bandit_lab.core.data import chosen_rejected

            traj = traj._replace(**dict(zip(("chosen", "rejected"), chosen_rejected(data, traj.policies))))
    return traj


def solve_exact(objective, hp: dict | None = None, init=None):
    """The exact constrained optimum of ``objective`` (float64 modified Newton, matrix-free above
    256 parameters; LP/QP for kinked losses; self-consistency for detached statistics).

    Returns an :class:`~bandit_lab.ExactResult` (``policy``, ``value``, ``residual``,
    ``converged``, …). Always float64: without a switch it runs inside ``x64()``; when float32
    was chosen (``bl.use_float32()``, ``with bl.x64(False):``) it refuses with one line saying how
    to switch, and an objective built in float32 is refused the same way.

    >>> import bandit_lab as bl
    >>> pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    >>> r = bl.solve_exact(bl.make_objective(pb, "dpo", {"beta": 1.0}, weight_decay=0.1))
    >>> r.converged, r.residual < 1e-10, r.policy.dtype
    (True, True, dtype('float64'))
    """
    from bandit_lab.solvers import solver
    from bandit_lab.infra.precision import promised_float64

    _check_objective(objective)
    _check_hp(objective, hp)
    _check_init(objective, init)
    with promised_float64("solve_exact", _arrays(objective), refuse_float32=True):
        require_x64("solve_exact")
        if objective.stateful:
            from bandit_lab.onpolicy.stationary import solve as stationary

            return _np(stationary(objective, init=init).result)
        return _np(solver.solve_exact(objective, hp, init))


def certify(objective, result, hp: dict | None = None):
    """The :class:`~bandit_lab.Verdict` on an exact result (``solve_exact``'s) for ``objective``:
    unique minimiser, set of minimisers, no finite minimiser (the limit), stationary point of a
    non-gradient field, or not certified — with the certificate's numbers
    (:mod:`bandit_lab.certificates`: Newton step in the logits, tangent Hessian, flat directions,
    recession ray; all scale-free).

    >>> import bandit_lab as bl
    >>> pb = bl.Problem.create([0.5, 0.5], matrix=[[0.5, 1.0], [0.0, 0.5]], pairs="uniform")
    >>> dpo = bl.make_objective(pb, "dpo", {"beta": 10.0})
    >>> v = bl.certify(dpo, bl.solve_exact(dpo))
    >>> v.kind.value, v.limit, v.vanishing
    ('no finite minimiser', [[1.0, 0.0]], ['y2'])
    """
    from bandit_lab import certificates as cert
    from bandit_lab.infra.precision import promised_float64
    from bandit_lab.solvers.solver import ExactResult

    _check_objective(objective)
    _check_hp(objective, hp)
    if not isinstance(result, ExactResult):
        raise BanditError(f"result: an ExactResult (bl.solve_exact(objective)); got {type(result).__name__}")
    want = tuple(np.shape(objective.problem.pi_ref)) if hasattr(objective, "problem") else tuple(np.shape(result.policy))
    if tuple(np.shape(result.policy)) != want:
        raise BanditError(f"result: the exact result of another problem (policy of shape {tuple(np.shape(result.policy))}; "
                          f"this objective's is {want})")
    _check_init(objective, result.params, "result.params")

    with promised_float64("certify", _arrays(objective), refuse_float32=True):
        require_x64("certify")
        if objective.stateful:
            from bandit_lab.onpolicy.stationary import solve as stationary

            st = stationary(objective, init=None)
            return cert.onpolicy_verdict(st.status, st.note, st.result.residual, st.result.converged, st.certificate)
        return cert.verdict_of(objective, result, hp)


@dataclasses.dataclass(frozen=True)
class ClosedForm:
    """A loss's closed-form unconstrained optimum (:func:`closed_form`): ``policy`` ``[X, K]``, or
    None when no closed form holds, and ``note``, the formula used or the reason there is none."""

    policy: np.ndarray | None
    note: str


def closed_form(problem, loss: str = "dpo", loss_params: dict | None = None) -> ClosedForm:
    """The closed-form optimum of a registered loss on a bandit, without weight decay — the third
    column of ``bandit-lab solve`` (the RLHF optimum π_ref·e^{r/β}/Z for DPO and reverse-KL RLHF,
    Rafailov et al. 2023 Eq. 4; f-RLHF for f-DPO, Wang et al. 2024 Thm 1; π_ref·e^{r_IPO/β}/Z for
    IPO, Azar et al. 2024 Eq. 9; a stationary-point formula for the on-policy algorithms; a
    plugin's declared ``oracle``). Computed in NumPy float64, independently of the solvers.
    ``loss_params`` are the loss's own parameters (as in a spec and :func:`bandit_lab.make_objective`).

    >>> import bandit_lab as bl
    >>> pb = bl.Problem.create([0.4, 0.4, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    >>> cf = bl.closed_form(pb, "dpo", {"beta": 1.0})
    >>> cf.policy.round(6), cf.note
    (array([[0.631579, 0.315789, 0.052632]]), 'RLHF optimum with the BT reward (reverse_kl)')
    >>> bl.closed_form(pb, "hinge").policy is None
    True
    """
    from bandit_lab import losses
    from bandit_lab.core.problems import Problem
    from bandit_lab.solvers import oracles

    if not isinstance(problem, Problem):
        raise BanditError(f"problem: a Problem (bl.Problem.create(...)); got {type(problem).__name__}")
    if not isinstance(loss, str):
        raise BanditError(f"loss: a loss name (bandit-lab list losses); got {type(loss).__name__}")
    if loss_params is not None and not isinstance(loss_params, dict):
        raise BanditError(f"loss_params: a dict of the loss's parameters; got {type(loss_params).__name__}")
    spec = losses.get(loss)
    hp, static = losses.split_params(spec, loss_params)
    policy, note = oracles.loss_oracle(problem, spec.name, hp, static)
    return ClosedForm(None if policy is None else np.asarray(policy, dtype=np.float64), str(note))


# --------------------------------------------------------------------------- results of the commands

@dataclasses.dataclass(frozen=True)
class SolveResult:
    """``bandit-lab solve SPEC --json``: the trained policy beside the exact optimum and the
    closed form. On-policy algorithms add the ``stationary_*`` and reference fields."""

    loss: str
    hp: dict
    parameterization: str
    policy: list
    exact: list
    oracle: list | None
    oracle_note: str
    oracle_applies: bool
    adam_vs_exact_tv: float
    exact_vs_oracle_tv: float | None
    adam_vs_oracle_tv: float | None
    final_objective: float
    exact_objective: float
    grad_norm: float
    exact_residual: float | None
    converged: bool
    optimizer: str
    exact_converged: bool
    verdict: "Verdict | None" = None  # what the exact answer is, with its certificate (bandit_lab.verdict)
    runaway_point: list | None = None  # no finite minimiser: where the solver stopped on the runaway
    stationary_status: str | None = None
    stationary_note: str | None = None
    reference_policies: dict | None = None
    exact_vs_reference_tv: dict | None = None


def solve(spec) -> SolveResult:
    """Train and exactly solve the bandit a spec describes (a dict, or the path of a JSON/TOML
    file; the schema is ``bandit-lab schema``). Same numbers as ``bandit-lab solve SPEC --json``.

    >>> import bandit_lab as bl
    >>> r = bl.solve({"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]},
    ...               "loss": "dpo", "loss_params": {"beta": 1.0}})
    >>> r.converged, r.exact_vs_oracle_tv < 1e-9
    (True, True)
    """
    from bandit_lab import spec as spec_mod
    from bandit_lab.runner import jsonable

    spec = _spec_arg(spec)
    with x64():
        res = spec_mod.solve(spec)
    out = jsonable(res)
    out["verdict"] = Verdict.from_json(out["verdict"])
    return SolveResult(**out)


def _spec_arg(spec, optional: bool = False):
    """A spec argument: a dict, or the path (str / os.PathLike) of a JSON/TOML file."""
    import os

    from bandit_lab import spec as spec_mod

    if spec is None and optional:
        return None
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if isinstance(spec, str):
        return spec_mod.load(spec)
    if not isinstance(spec, dict):
        raise BanditError(f"spec: a dict or the path of a JSON/TOML spec file; got {type(spec).__name__}")
    return spec


@dataclasses.dataclass(frozen=True)
class FixedPoints:
    """``bandit-lab fixed-points --json``: every registered loss's exact population optimum on
    one bandit (``records`` one :class:`FixedPointRow` per loss configuration)."""

    bandit: dict
    beta: float
    weight_decay: float
    parameterization: str
    rlhf_optimum: list | None
    dpo_optimum: list | None
    share_tolerance: float
    records: list
    shares_dpo: list
    differs_from_dpo: list
    no_finite_minimiser: list
    not_applicable: list
    not_certified: list = dataclasses.field(default_factory=list)  # finite False, verdict "not certified"

    def row(self, label: str):
        """The record of one loss configuration, e.g. ``row("ipo")`` or ``row("fdpo[divergence=js]")``."""
        for r in self.records:
            if r.label == label:
                return r
        raise KeyError(label)


def find_fixed_points(spec=None, only: Sequence[str] | None = None) -> FixedPoints:
    """The exact population optimum of every registered loss (or ``only`` these), plugin losses
    included, on one bandit (default: Kong et al. App. B). Same as ``bandit-lab fixed-points``.

    >>> import bandit_lab as bl
    >>> fp = bl.find_fixed_points(only=["dpo", "ipo"])
    >>> fp.row("dpo").shares_dpo, fp.row("ipo").shares_dpo
    (True, False)
    """
    from bandit_lab import fixed_points as fp_mod
    from bandit_lab import spec as spec_mod
    from bandit_lab.runner import jsonable

    spec = _spec_arg(spec, optional=True)
    if isinstance(only, str):
        raise BanditError(f"only: a list of loss names (e.g. [{only!r}]); got the string {only!r}")
    if only is not None and (not isinstance(only, (list, tuple)) or not all(isinstance(n, str) for n in only)):
        raise BanditError(f"only: a list of loss names; got {only!r}"[:200])
    with x64():
        res = jsonable(fp_mod.fixed_points(spec, None if only is None else list(only)))
    rows = [fp_mod.Row(**r) for r in res.pop("records")]
    return FixedPoints(records=rows, **res)




def verify(only: Sequence[str] | None = None, instances: int | None = None, seed: int = 0) -> list:
    """Run the registered theorem checks (``bandit-lab list checks``) and return their
    :class:`~bandit_lab.CheckResult` (``value``, ``passed``, ``check.claim``, ``check.tolerance``).

    >>> import bandit_lab as bl
    >>> [r.passed for r in bl.verify(only=["dpo-rlhf"], instances=2)]
    [True]
    """
    from bandit_lab import checks

    if instances is not None and (isinstance(instances, bool) or not isinstance(instances, int) or instances < 1):
        raise BanditError(f"instances: an integer ≥ 1 (None = each check's default); got {instances!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2**32 - 1:
        raise BanditError(f"seed: an integer in [0, 2^32 − 1]; got {seed!r}")
    if isinstance(only, str):
        raise BanditError(f"only: a list of check names (e.g. [{only!r}]); got the string {only!r}")
    if only is not None and (not isinstance(only, (list, tuple)) or not all(isinstance(n, str) for n in only)):
        raise BanditError(f"only: a list of check names; got {only!r}"[:200])
    if only is not None and not only:
        raise BanditError("only: an empty list (None = every check)")
    reg = checks.registry()
    names = list(only) if only else list(reg)
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise BanditError(f"unknown check(s) {', '.join(unknown)}; see `bandit-lab list checks`")
    from bandit_lab.infra import budget

    # the work budget of `bandit-lab verify` (the default 10 min; bandit_lab.infra.budget.set_limits lifts it)
    budget.check(budget.instances(sum(instances or reg[n].n_instances for n in names), 1), "instances: bl.verify")
    with x64():
        return [checks.run_check(reg[n], instances, seed) for n in names]


def loss_registry() -> dict:
    """Every registered loss (built-in and user-defined) by name: ``{name: LossSpec}``."""
    from bandit_lab import losses

    return dict(losses.registry())
