"""Training: an optax chain (projection last) inside one jitted ``lax.scan``; sweeps by ``vmap``.

Shape after purejaxrl: :func:`make_train` takes the static configuration and returns
``train(hp) -> Trajectory``, a pure function of the swept hyperparameters (``beta``,
``weight_decay``, ``lr``, ``seed``, … as scalars; ``seed`` keys the finite dataset drawn when
``resample_pairs > 0`` and the mini-batches drawn when ``batch_size > 0``). A sweep is
``jax.jit(jax.vmap(train))`` — one compilation for the grid; a sweep over seeds is one ``vmap``.
:func:`run_many` fuses several objectives into a single compiled program.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from bandit_lab.infra import export_cache
from bandit_lab.core.data import minibatch, sample
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import Objective

if TYPE_CHECKING:
    import optax

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Static training settings (changing them recompiles; hyperparameters in ``hp`` do not)."""

    optimizer: str = "adam"
    steps: int = 3000
    schedule: str = "cosine"  # lr·½(1+cos(πt/T)) decays to 0 so Adam settles on the optimum
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-12
    log_steps: tuple[int, ...] | None = None  # steps (0 = init) at which π is recorded; default log-spaced
    # 0: train on the objective's own data. n > 0: draw a finite dataset of n pairs from the
    # objective's data *inside* the compiled function, from the key — a sweep over seeds is
    # then one vmap (each key its own dataset).
    resample_pairs: int = 0
    # 0: every step sees all of the data (full batch). B > 0: stochastic training as the papers
    # do it (Azar et al. 2024 §5: Adam, mini-batches of 9 pairs drawn with replacement): every
    # step draws a *fresh* mini-batch of B labelled pairs from the data (the population law, or
    # the finite dataset of ``resample_pairs`` / ``data: sampled``) and takes the loss on it —
    # the batch is ``PreferenceData`` with weight = count/B, the input every pairwise loss
    # already reads (:func:`bandit_lab.core.data.minibatch`). Keys: :func:`batch_key` (seed, step).
    batch_size: int = 0
    # True: the B pairs are i.i.d. draws from the data's law. False: B distinct items of a finite
    # dataset of ``batch_pool`` pairs (default ``resample_pairs``) — a simple random sample.
    batch_replacement: bool = True
    batch_pool: int = 0
    # True: ``Trajectory.loss`` holds the objective before every update (``[steps + 1]``; the
    # divergence guard then names the first non-finite step). False: only at the logged steps
    # (``[L]``, aligned with ``Trajectory.steps``), and every step takes ``grad`` alone, not
    # ``value_and_grad`` — what a large sweep wants: a 65,536-point sweep of 3,000 steps kept
    # 1.5 GB of per-step values it never read. Same iterates either way.
    loss_every_step: bool = True
    # True: ``Trajectory.grad_norm`` is the final stationarity ‖x − Π(x − ∇f)‖ (one more gradient
    # after the loop). False: NaN, and the program has no final gradient — what a sweep whose
    # exact solve certifies every point wants (XLA compile of the 6-objective block program: 2.0 → 1.7 CPU s).
    stationarity: bool = True

    @property
    def pool(self) -> int:
        """The size n of the finite dataset a without-replacement mini-batch is drawn from."""
        return int(self.batch_pool) or int(self.resample_pairs)

    def validate(self) -> "TrainConfig":
        if self.optimizer not in OPTIMIZERS:
            raise BanditError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise BanditError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        for f in ("b1", "b2"):  # Adam's decay rates: in [0, 1) (Kingma & Ba 2015, Alg. 1)
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) < 1.0:
                raise BanditError(f"{f} must be a number in [0, 1); got {v!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0.0 <= float(self.eps) < float("inf"):
            raise BanditError(f"eps must be a finite number ≥ 0; got {self.eps!r}")
        def count(v) -> bool:  # an integer ≥ 0 (never a bool, a float or a string)
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0

        if not count(self.steps):
            raise BanditError(f"steps must be an integer ≥ 0; got {self.steps!r}")
        if not count(self.resample_pairs):
            raise BanditError(f"resample_pairs must be an integer ≥ 0; got {self.resample_pairs!r}")
        if not count(self.batch_size):
            raise BanditError(f"batch_size must be an integer ≥ 0 (0 = full batch); got {self.batch_size!r}")
        if not count(self.batch_pool):
            raise BanditError(f"batch_pool must be an integer ≥ 0; got {self.batch_pool!r}")
        if not isinstance(self.batch_replacement, bool):
            raise BanditError(f"batch_replacement must be true or false; got {self.batch_replacement!r}")
        if self.batch_size and not self.batch_replacement and self.pool < int(self.batch_size):
            raise BanditError(f"batch_replacement=False draws {self.batch_size} distinct pairs of a finite dataset: it needs a dataset "
                              f"of n ≥ {self.batch_size} pairs (resample_pairs or batch_pool; a spec's \"data\": {{\"sampled\": n}}); "
                              f"got n = {self.pool}")
        return self

    def logged(self) -> np.ndarray:
        if self.log_steps is not None:
            s = np.unique(np.clip(np.asarray(self.log_steps, dtype=int), 0, self.steps))
        else:
            s = np.unique(np.concatenate([[0], np.geomspace(1, max(self.steps, 1), 60).astype(int), [self.steps]]))
        return s


class Trajectory(NamedTuple):
    params: object  # final parameters
    policy: jax.Array  # [X, K] final π
    steps: jax.Array  # [L] logged step indices
    policies: jax.Array  # [L, X, K] π after each logged step
    loss: jax.Array  # [steps + 1] objective value before each update and at the end ([L], at ``steps``, when
    # ``TrainConfig.loss_every_step`` is False)
    grad_norm: jax.Array  # final ‖projected gradient step‖ / lr (stationarity measure)
    # [L] data-weighted mean π(y_w) and π(y_l) at each logged step (bandit_lab.core.data.chosen_rejected);
    # filled by bandit_lab.train_policy for pairwise data, None elsewhere
    chosen: jax.Array | None = None
    rejected: jax.Array | None = None


# so an exported trainer's output structure can be written to disk (bandit_lab.infra.export_cache)
def _register_trajectory() -> None:
    from bandit_lab.infra import export_cache

    if not export_cache.supported():  # jax < 0.4.31: no export cache (export_cache.supported)
        return
    try:
        jax.export.register_namedtuple_serialization(Trajectory, serialized_name="bandit_lab.core.train.Trajectory")
    except ValueError:  # this module re-imported in one process: its programs are traced, not saved
        pass


_register_trajectory()


# the mini-batch key stream: fold_in(key(seed), BATCH_STREAM), then the step (a stream of its own,
# apart from the resampled dataset's key(seed), the loss state's fold_in(·, 1) and the refresh
# hook's fold_in(·, t))
BATCH_STREAM = 0x62617463


def batch_key(seed, step):
    """The key of the mini-batch drawn at ``step`` (0-based: the batch of the first update) of
    a run with ``seed`` — public so that a test (or a user) can redraw any step's batch with
    :func:`bandit_lab.core.data.minibatch`."""
    key0 = jax.random.key(jnp.asarray(seed).astype(jnp.uint32))
    return jax.random.fold_in(jax.random.fold_in(key0, BATCH_STREAM), step)


def project_params(projection: Callable) -> optax.GradientTransformation:
    """Last link of a chain: make ``params + update`` land on ``projection(params + update)``.

    The same idea as ``optax.keep_params_nonnegative``, for any Euclidean projection; this is
    projected Adam / projected GD.
    """
    import optax

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params):
        new = projection(optax.apply_updates(params, updates))
        return jax.tree_util.tree_map(lambda n, p: n - p, new, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(config: TrainConfig, lr, projection: Callable) -> optax.GradientTransformation:
    # optax is imported where a program is traced, not with this module: a cold start whose
    # programs come from bandit_lab.infra.export_cache never traces, and importing optax takes ~0.1 s
    import optax

    steps = max(int(config.steps), 1)
    if config.schedule == "constant":
        sched = lambda t: lr  # noqa: E731
    elif config.schedule == "cosine":
        sched = lambda t: lr * 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(t, steps) / steps))  # noqa: E731
    else:  # exponential: lr → lr·1e-3 over the run
        sched = lambda t: lr * 10.0 ** (-3.0 * jnp.minimum(t, steps) / steps)  # noqa: E731
    base = optax.scale_by_adam(b1=config.b1, b2=config.b2, eps=config.eps) if config.optimizer == "adam" else optax.identity()
    return optax.chain(base, optax.scale_by_schedule(lambda t: -sched(t)), project_params(projection))


def make_train(objective: Objective, config: TrainConfig = TrainConfig(), init=None, *, refresh: Callable | None = None,
               refresh_every: int = 0) -> Callable:
    """Return ``train(hp, consts=None, params0=None) -> Trajectory`` for one objective (pure;
    jit/vmap it).

    The problem's arrays reach the compiled program as *arguments*: ``consts`` (default
    ``objective.consts()``) and the initial parameters ``params0`` (default ``init`` or the
    parameterization's own init). Nothing data-dependent is closed over except through them and
    the float defaults in ``objective.hp`` (pass every hyperparameter in ``hp`` to share one
    compile across problems: :func:`run_many` with a ``cache_key`` does), so one executable
    serves every problem of the same shape.

    A loss with a per-step state (``LossSpec.state_init``, e.g. an on-policy algorithm's samples
    of the current policy) has it built before the first step and renewed at the start of every
    later step (``Objective.update_state``), carried through the scan and never differentiated.
    ``refresh`` (optional) is ``(params, key) -> dict`` of extra hyperparameter arrays that the
    objective reads, recomputed from the *current* parameters every ``refresh_every`` steps and
    carried in between — e.g. a Monte-Carlo sample of responses that an estimator reuses (SPO
    App. B). Keys derive from ``hp["seed"]`` and the step, so runs stay reproducible.

    With ``config.batch_size = B > 0`` the gradient of step ``t`` is that of the loss on a fresh
    mini-batch ``minibatch(data, B, batch_key(seed, t))`` (an unbiased estimate of the full
    gradient: the loss is linear in the pair weights and E[count/B] = weight); ``loss`` still
    records the objective on all of the data (the quantity the exact solver minimises), and
    ``grad_norm`` is the full-data stationarity at the end. The objectives of a :class:`Stack`
    share each step's batch (drawn from the first one's data, as a resampled dataset is).
    """
    config = config.validate()
    param = objective.param
    default_init = init
    log_steps_np = config.logged()
    n_log = int(log_steps_np.shape[0])
    # only the start and the end logged (a sweep's default): no record branch in the step at all —
    # the end's π and loss are the final ones, computed once after the loop (the step's lax.cond
    # traced the policy and the value a further time: ~40 % of the training program's compile)
    ends_only = bool(np.all((log_steps_np == 0) | (log_steps_np == config.steps)))
    if refresh is not None and int(refresh_every) < 1:
        raise BanditError("refresh_every must be ≥ 1 when a refresh function is given")
    stateful = getattr(objective, "stateful", False)
    # only the start and the end logged and no per-step loss (a sweep's default), no loss state or
    # refresh: the objective at θ₀ and at θ_T is *one* vmapped evaluation of the pair after the
    # loop, so its value code is compiled once, not once at each end (the 4,096-point weight-decay
    # sweep's training compile 1.42 → 1.24 s, median of 5; its records unchanged to the last bit).
    # θ₀'s value is then computed per point like θ_T's — on a stack it differed from the value at
    # the shared θ₀ computed once by up to 2 ulp. π stays evaluated at each end on its own
    paired = ends_only and not config.loss_every_step and not stateful and refresh is None
    if config.batch_size and np.size(objective.data.weight) == 0:
        raise BanditError(f"batch_size: {getattr(objective, 'label', 'this objective')} reads no labelled pairs; mini-batches apply to pairwise losses")
    if config.batch_size and not config.batch_replacement and not config.resample_pairs:
        from bandit_lab.core.data import dataset_size_error

        err = dataset_size_error(objective.data, config.pool)
        if err:
            raise BanditError(f"batch_replacement=False: {err}")

    def train(hp: dict, consts=None, params0=None) -> Trajectory:
        import optax

        hp = {**objective.hp, **hp}
        c = objective.consts() if consts is None else consts
        if params0 is None:
            params0 = param.init() if default_init is None else default_init
        log_steps = jnp.asarray(log_steps_np)
        needs_key = bool(config.resample_pairs) or refresh is not None or stateful or bool(config.batch_size)
        key0 = jax.random.key(jnp.asarray(hp.get("seed", 0)).astype(jnp.uint32)) if needs_key else None
        # each objective reads its own data from ``c``; a resampled dataset overrides it for all
        data = sample(objective.data_of(c), config.resample_pairs, key0) if config.resample_pairs else None
        f = lambda p, extra, st, d=data: objective.value(p, {**hp, **extra}, d, c, st)  # noqa: E731
        opt = make_optimizer(config, hp["lr"], param.project)
        vg = jax.value_and_grad(f)
        if config.batch_size:  # the law (or finite dataset) every step's mini-batch is drawn from
            full = objective.data_of(c) if data is None else data
            bkey = jax.random.fold_in(key0, BATCH_STREAM)
        pol0 = objective.policy(params0, c)
        buf0 = jnp.zeros((n_log,) + pol0.shape, pol0.dtype)
        buf0 = buf0.at[0].set(jnp.where(log_steps[0] == 0, pol0, buf0[0]))
        extra0 = {} if refresh is None else refresh(params0, jax.random.fold_in(key0, 0))
        # loss state keys: a stream of its own (fold_in 1), so the refresh hook's draws are unchanged
        skey = None if not stateful else jax.random.fold_in(key0, 1)
        st0 = objective.init_state(params0, hp, None if skey is None else jax.random.fold_in(skey, 0), c) if stateful else None
        every = bool(config.loss_every_step)
        if not every and not paired:  # the loss at the logged steps only; index 0 is step 0 when it is logged
            v0 = f(params0, extra0, st0)
            lbuf0 = jnp.zeros((n_log,), v0.dtype).at[0].set(jnp.where(log_steps[0] == 0, v0, 0.0))
        else:
            lbuf0 = None

        def step(carry, t):
            params, state, buf, extra, st, lbuf = carry
            if refresh is not None:
                extra = jax.lax.cond((t % refresh_every == 0) & (t > 0),
                                     lambda: refresh(params, jax.random.fold_in(key0, t)), lambda: extra)
            if stateful:
                st = jax.lax.cond(t > 0, lambda: objective.update_state(params, hp, jax.random.fold_in(skey, t), st, t, c),
                                  lambda: st)
            if config.batch_size:
                batch = minibatch(full, config.batch_size, jax.random.fold_in(bkey, t),
                                  replacement=config.batch_replacement, pool=config.pool)
                _, g = vg(params, extra, st, batch)
                val = f(params, extra, st) if every else None
            elif every:
                val, g = vg(params, extra, st)
            else:
                val, g = None, jax.grad(f)(params, extra, st)
            upd, state = opt.update(g, state, params)
            params = optax.apply_updates(params, upd)
            # record π (and, without a per-step loss, the objective) after t+1 updates if t+1 is
            # a logged step. ``hit`` depends on the step counter only, never on a vmapped value,
            # so under vmap this stays a real branch: π is computed at the logged steps only.
            if not ends_only:
                idx = jnp.minimum(jnp.searchsorted(log_steps, t + 1), n_log - 1)
                hit = log_steps[idx] == t + 1

                def write(b, lb):
                    b = b.at[idx].set(objective.policy(params, c))
                    return b, (lb if lb is None else lb.at[idx].set(f(params, extra, st)))

                buf, lbuf = jax.lax.cond(hit, write, lambda b, lb: (b, lb), buf, lbuf)
            return (params, state, buf, extra, st, lbuf), val

        state0 = opt.init(params0)
        (params, _, buf, extra, st, lbuf), vals = jax.lax.scan(step, (params0, state0, buf0, extra0, st0, lbuf0),
                                                               jnp.arange(config.steps))
        if stateful:  # the field at the final parameters: state renewed there, as the next step would
            st = objective.update_state(params, hp, jax.random.fold_in(skey, config.steps), st, config.steps, c)
        if config.stationarity:
            val_end, g_end = vg(params, extra, st)
            # stationarity: the projected-gradient map ‖x − Π(x − g)‖ (= ‖g‖ when unconstrained)
            moved = param.project(jax.tree_util.tree_map(lambda a, b: a - b, params, g_end))
            gnorm = jnp.sqrt(sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(moved))))
        else:
            val_end = f(params, extra, st) if (every or ends_only) and not paired else None
            gnorm = jnp.full((), jnp.nan)
        if paired:
            both = jax.tree_util.tree_map(lambda a, b: jnp.stack([jnp.broadcast_to(a, b.shape), b]), params0, params)
            v0, v_end = jax.vmap(lambda p: f(p, extra, st))(both)
            val_end = v_end if val_end is None else val_end
            lbuf = jnp.zeros((n_log,), v_end.dtype).at[0].set(jnp.where(log_steps[0] == 0, v0, 0.0))
        pol_end = objective.policy(params, c)
        if ends_only and log_steps_np[-1] == config.steps:  # the last logged step is the end: recorded here, once
            buf = buf.at[-1].set(pol_end)
            lbuf = lbuf if every else lbuf.at[-1].set(val_end)
        loss = jnp.append(vals, val_end) if every else lbuf
        return Trajectory(params, pol_end, log_steps, buf, loss, gnorm)

    return train


def make_endpoint(objective: Objective, config: TrainConfig = TrainConfig()) -> Callable:
    """Return ``endpoint(hp, consts, params0) -> params``: the final parameters of
    :func:`make_train`'s run and nothing else — the same optimizer chain, the same gradients, the
    same per-step loss state (built before the first step from the same key, renewed at the start
    of every later step with the same keys) — without the π records, losses, stationarity norm or
    divergence guard. Full-batch training on the objective's own data only (no ``batch_size``,
    ``resample_pairs`` or refresh hook). What the on-policy stationary solver starts from
    (:func:`bandit_lab.onpolicy.stationary.warm_start`).

    Why a second loop: compiling is most of a cold on-policy solve (issue 22). make_train traces
    the value and the state three times each (before the loop, in the step, in the logged-step and
    final records) and renews the state under ``lax.cond``, whose two branches compile apart; this
    traces the gradient once and renews the state by a select (the renewal at step 0 is computed
    and discarded) — half the compile time, measured 0.83 vs 1.65 CPU s on Dr. GRPO, G = 4.
    ``tests/test_verify_scale.py`` checks it returns make_train's final parameters."""
    config = config.validate()
    if config.batch_size or config.resample_pairs:
        raise BanditError("make_endpoint: full-batch training on the objective's own data only (no batch_size, resample_pairs)")
    param = objective.param
    stateful = getattr(objective, "stateful", False)

    def endpoint(hp: dict, consts=None, params0=None):
        import optax

        hp = {**objective.hp, **hp}
        c = objective.consts() if consts is None else consts
        if params0 is None:
            params0 = param.init()
        opt = make_optimizer(config, hp["lr"], param.project)
        skey = jax.random.fold_in(jax.random.key(jnp.asarray(hp.get("seed", 0)).astype(jnp.uint32)), 1) if stateful else None
        st0 = objective.init_state(params0, hp, jax.random.fold_in(skey, 0), c) if stateful else None

        def step(t, carry):
            params, state, st = carry
            if stateful:
                new = objective.update_state(params, hp, jax.random.fold_in(skey, t), st, t, c)
                st = jax.tree_util.tree_map(lambda a, b: jnp.where(t > 0, a, b), new, st)
            g = jax.grad(lambda p: objective.value(p, hp, None, c, st))(params)
            upd, state = opt.update(g, state, params)
            return optax.apply_updates(params, upd), state, st

        params, _, _ = jax.lax.fori_loop(0, config.steps, step, (params0, opt.init(params0), st0))
        return params

    return endpoint


def stack_hp(hps: Sequence[dict]) -> dict:
    """A list of hyperparameter dicts → one dict of arrays (the vmapped axis)."""
    keys = hps[0].keys()
    return {k: np.asarray([float(h[k]) for h in hps]) for k in keys}


_COMPILED: dict = {}
_COMPILED_MAX = 64


def sweep_devices() -> list:
    """The devices a sweep is spread over: every local device, or only the first with
    ``BANDIT_LAB_DEVICES=1`` (or an integer n: the first n)."""
    import os

    devs = jax.local_devices()
    want = os.environ.get("BANDIT_LAB_DEVICES")
    if want:
        try:
            devs = devs[: max(1, int(want))]
        except ValueError:
            raise BanditError(f"BANDIT_LAB_DEVICES must be a positive integer; got {want!r}") from None
    return devs


SHARDING_MODES = ("dispatch", "spmd")


def sharding_mode() -> str:
    """``dispatch`` (default): the one-device program runs on every device on its share of the
    blocks — bit-identical to a one-device sweep. ``spmd``: ``jax.shard_map`` over a global 1-D
    mesh (``NamedSharding`` semantics, spans hosts after ``jax.distributed.initialize()``); XLA
    compiles the partitioned program separately and its results were measured to differ from the
    one-device run in the last bit (1 ulp after 500 DPO steps). ``BANDIT_LAB_SHARDING=spmd`` selects it."""
    import os

    mode = os.environ.get("BANDIT_LAB_SHARDING", "dispatch")
    if mode not in SHARDING_MODES:
        raise BanditError(f"BANDIT_LAB_SHARDING must be one of {', '.join(SHARDING_MODES)}; got {mode!r}")
    return mode


def _shard_map(f, mesh, in_specs, out_specs):
    try:  # jax ≥ 0.7
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    except AttributeError:  # older jax
        from jax.experimental.shard_map import shard_map

        return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


CHUNK = 256  # sweep points per vmapped block on the CPU (see run_many)
# On an accelerator a block is one kernel launch per op per step, and the blocks of a sweep run one
# after another (``lax.map``): a wider block there (not measured on a GPU yet: docs/performance.md)
CHUNK_ACCELERATOR = 16384


def chunk_size() -> int:
    """Sweep points per vmapped block on the default backend: ``CHUNK`` on the CPU (256: measured
    on the 4,096-point weight-decay sweep, 2 idle cores, warm, median of 3 — blocks of 64: 8.7 s,
    256: 5.2 s, 1,024: 5.8 s, one block of 4,096: 12.0 s; docs/performance.md), ``CHUNK_ACCELERATOR``
    elsewhere. A point's result depends on the block size in the last bit, never on the rest of
    the sweep (see :func:`run_many`), so bit-identity holds per platform."""
    return CHUNK if jax.default_backend() == "cpu" else CHUNK_ACCELERATOR


def _chunked(hp: dict, n_dev: int) -> tuple[dict, int]:
    """``[B]`` hyperparameter arrays → ``[n_chunks, chunk_size()]`` blocks, padded (repeating the
    last point; padded results are dropped) to whole blocks and to a multiple of the device count."""
    n = int(np.shape(next(iter(hp.values())))[0])
    c = min(chunk_size(), n)
    blocks = -(-n // c)
    blocks += (-blocks) % n_dev
    total = blocks * c
    out = {}
    for k, v in hp.items():
        v = np.asarray(v)
        if total > n:
            v = np.concatenate([v, np.repeat(v[-1:], total - n, 0)])
        out[k] = v.reshape((blocks, c) + v.shape[1:])
    return out, n


def run_many(trains: Sequence[Callable], hps: Sequence[dict], args: Sequence[tuple] | None = None, *, cache_key=None,
             stable_key=None) -> list:
    """Run several ``fn(hp, *args[i])`` functions (``train`` or anything shaped like it), each
    over its batch of hyperparameters, as one compiled program. ``hps[i]`` is a dict of
    equal-length arrays for ``trains[i]``; ``args[i]`` (default none) are further arguments shared
    by the whole batch — the problem's arrays and initial parameters, so they are data, not
    compile-time constants. Returns the batched outputs in order.

    The batch is cut into blocks of :func:`chunk_size` points (256 on the CPU): each block is one
    ``vmap`` of ``fn``, the blocks run in a ``lax.map`` (a sweep of fewer points is one smaller
    block). Every point of a sweep of ≥ :func:`chunk_size` points is therefore computed by the same vmapped program at the same
    position of a block whatever the size of the sweep and the number of devices — XLA's CPU code
    for a vmapped batch depends on the batch size in the last bit (measured: the RLHF gradient
    through ``exp(log_softmax)``), so without blocks a point's result would depend on what else is
    in the sweep, and a sharded sweep could not match a one-device sweep bit for bit.

    With several devices (:func:`sweep_devices`) the blocks are spread over them
    (:func:`sharding_mode`): by default each device runs the one-device program on its share,
    bit-identical to the one-device run (tested with ``--xla_force_host_platform_device_count=4``).
    Blocks are the unit of distribution: a sweep of ``n`` points uses ``ceil(n/chunk_size())`` blocks, so
    devices beyond that compute padding (on the CPU a 256-point sweep gains nothing from 4 devices;
    a 1,024-point one runs a block per device). The one-device program is compiled once per device in this mode
    (JAX executables are bound to their device); ``spmd`` compiles once.

    With ``cache_key`` (everything static the trains depend on: objective signatures, the train
    config, the hyperparameter names), the jitted program is kept and reused by later calls with
    the same key — another problem of the same shapes, or other hyperparameter values, runs the
    existing executable (jit retraces only if array shapes change).

    ``stable_key`` (optional) is the same description in names only (no object identities, see
    :meth:`bandit_lab.core.objective.Objective.stable_signature`): with it, and the compilation cache
    on, the traced one-device program is also kept on disk (:mod:`bandit_lab.infra.export_cache`), so
    a new process skips tracing. Not used in ``spmd`` mode."""
    args = [()] * len(trains) if args is None else list(args)
    mode = sharding_mode()
    devs = sweep_devices() if mode == "dispatch" else jax.devices()
    n_dev = len(devs)
    blocked = [_chunked(h, n_dev) for h in hps]
    hps_b, sizes = [b for b, _ in blocked], [n for _, n in blocked]

    def fused(hps_, args_):
        return [jax.lax.map(lambda hb, tr=tr, a=a: jax.vmap(tr, in_axes=(0,) + (None,) * len(a))(hb, *a), h)
                for tr, h, a in zip(trains, hps_, args_)]

    skey = None if stable_key is None or mode != "dispatch" else ("run_many", stable_key, mode)

    def build():
        if n_dev == 1:
            return export_cache.jit(fused, skey)
        if mode == "spmd":
            mesh = jax.sharding.Mesh(np.asarray(devs), ("sweep",))
            spec = jax.sharding.PartitionSpec("sweep")
            return jax.jit(_shard_map(fused, mesh, (spec, jax.sharding.PartitionSpec()), spec))
        one = export_cache.jit(fused, skey)

        def run(h, a):
            # the one-device program, run on every device on its share of the blocks (dispatch
            # is asynchronous, so the devices work at the same time); gathered in order
            parts = [jax.tree_util.tree_map(lambda x, i=i: x[i * (x.shape[0] // len(devs)):(i + 1) * (x.shape[0] // len(devs))], h)
                     for i in range(len(devs))]
            outs = [one(jax.device_put(p, dv), jax.device_put(a, dv)) for p, dv in zip(parts, devs)]
            return jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *outs)
        return run

    if cache_key is None:
        out = build()(hps_b, args)
    else:
        key = (cache_key, mode, n_dev)
        fn = _COMPILED.get(key)
        if fn is None:
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)))
            fn = _COMPILED[key] = build()
        out = fn(hps_b, args)
    # [blocks, chunk, …] → [points, …], padding dropped (on the host: a jnp reshape per output
    # would compile a small program of its own for every new sweep size)
    return [jax.tree_util.tree_map(lambda a, n=n: np.asarray(a).reshape((-1,) + a.shape[2:])[:n], o) for o, n in zip(out, sizes)]
