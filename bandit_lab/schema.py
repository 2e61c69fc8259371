"""The typed schema of a ``bandit-lab solve`` spec (pydantic v2), and its JSON Schema.

One model, :class:`Spec`, is the single definition of the format: :func:`parse` validates a
decoded JSON/TOML object into it (or raises :class:`~bandit_lab.errors.BanditError` with one line
naming the field, ``optimizer.lr: must be a finite number in (0, 1e+06], got inf``), and
:func:`json_schema` prints it for editors (``bandit-lab schema``).

Rules (ranges come from :mod:`bandit_lab.infra.bounds`, shared with the experiments' options):

- strict types: no string → number, no bool → number, integers for counts and indices;
  every number finite and within its declared range;
- unknown keys are refused in every object (the spec, ``preference``, ``parameterization``,
  ``optimizer``, ``data``), with the nearest valid name suggested;
- shapes are checked against each other: ``pi_ref`` fixes ``X`` contexts and ``K`` responses,
  and ``pi_star``/``reward``/``matrix``, ``context_weight``, ``pairs``, ``pi0``/``pi1``,
  ``features`` and ``init`` must agree with them;
- ``loss_params`` are checked against the chosen loss's :class:`~bandit_lab.losses.LossSpec`
  (its float hyperparameters must be numbers, its static options strings; then
  :func:`~bandit_lab.losses.split_params` and ``LossSpec.check``) — the registry stays the one
  source of every loss's options.

Arrays are validated by hand-written, depth-bounded walkers (a spec cannot nest deeper than
three levels anywhere), so a deeply nested input is refused cleanly, never a RecursionError.
"""
from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PlainValidator, Tag, ValidationError, WithJsonSchema, model_validator

from bandit_lab.infra import bounds
from bandit_lab.infra.bounds import got, show
from bandit_lab.errors import BanditError
from bandit_lab.core.objective import PENALTIES
from bandit_lab.core.params import PARAMETERIZATIONS
from bandit_lab.core.train import OPTIMIZERS, SCHEDULES

WEIGHT = bounds.Real(gt=0.0, le=1e12)  # an explicit pair weight (normalised afterwards)
MAX_TEXT = 10_000


class Invalid(ValueError):
    """A validation failure with our own wording; ``at`` extends the field path of the value
    being validated (pydantic reports it as a ``value_error`` carrying this exception)."""

    def __init__(self, msg: str, at: tuple = ()):
        super().__init__(msg)
        self.msg, self.at = msg, tuple(at)


def fail(msg: str, *at) -> None:
    raise Invalid(msg, at)


def suggest(word: str, choices) -> str:
    m = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean {m[0]!r}?" if m else ""


def _no_default(schema: dict) -> None:
    schema.pop("default", None)


# ----------------------------------------------------------------------------- scalar types

def _ranged(base: type, r, description: str):
    def check(v):
        e = r.error(v)
        if e:
            fail(e)
        return base(v)

    return Annotated[base, PlainValidator(check), WithJsonSchema({**r.json_schema(), **({"description": description} if description else {})})]


def real(r: bounds.Real, description: str = ""):
    return _ranged(float, r, description)


def integer(r: bounds.Int, description: str = ""):
    return _ranged(int, r, description)


def choice(values, description: str = ""):
    values = tuple(values)

    def check(v):
        if not isinstance(v, str):
            fail(f"must be one of {', '.join(values)}, got {got(v)}")
        if v not in values:
            fail(f"must be one of {', '.join(values)}, got {show(v)}{suggest(v, values)}")
        return v

    js = {"enum": list(values)} if len(values) > 1 else {"const": values[0]}
    return Annotated[str, PlainValidator(check), WithJsonSchema({**js, **({"description": description} if description else {})})]


def _text(v):
    if not isinstance(v, str):
        fail(f"must be a string, got {got(v)}")
    if len(v) > MAX_TEXT:
        fail(f"must be at most {MAX_TEXT} characters, got {len(v)}")
    return v


Text = Annotated[str, PlainValidator(_text), WithJsonSchema({"type": "string", "maxLength": MAX_TEXT})]


# ----------------------------------------------------------------------------- arrays

def _walk(v, ndim: int, elem: bounds.Real, at: tuple) -> tuple:
    """Check that ``v`` is an ``ndim``-deep rectangular nested list of valid numbers; return its shape."""
    if ndim == 0:
        e = elem.error(v)
        if e:
            fail(e.replace("must be", "every entry must be", 1), *at)
        return ()
    if not isinstance(v, list):
        fail(f"must be a list, got {got(v)}", *at)
    if not v:
        fail("must not be empty", *at)
    shape = None
    for i, row in enumerate(v):
        s = _walk(row, ndim - 1, elem, at + (i,))
        if shape is None:
            shape = s
        elif s != shape:
            fail(f"rows have different shapes: entry [{i}] has shape {list(s)}, entry [0] has {list(shape)}", *at)
    return (len(v),) + shape


def _depth(v, limit: int) -> int:
    d = 0
    while isinstance(v, list) and d <= limit:
        d += 1
        v = v[0] if v else None
    return d


def array(ndims: tuple, elem: bounds.Real, what: str, description: str = ""):
    """A nested list of numbers with one of the allowed depths ``ndims``, as a float64 array."""

    def check(v):
        if isinstance(v, np.ndarray):  # already validated (a Spec re-validated)
            v = v.tolist()
        d = _depth(v, max(ndims))
        if d not in ndims:
            fail(f"must be {what}, got {show(v) if isinstance(v, list) else got(v)}")
        _walk(v, d, elem, ())
        return np.asarray(v, dtype=np.float64)

    def nest(n):
        return {**elem.json_schema()} if n == 0 else {"type": "array", "minItems": 1, "items": nest(n - 1)}

    js = {"anyOf": [nest(n) for n in ndims]} if len(ndims) > 1 else nest(ndims[0])
    return Annotated[Any, PlainValidator(check), WithJsonSchema({**js, "description": description or what})]


def _distribution(a: np.ndarray, name: str, strict: bool) -> None:
    if strict and np.any(a <= 0):
        fail(f"must be strictly positive (smallest entry {a.min():g})")
    err = np.abs(a.sum(-1) - 1.0).max()
    if err > bounds.SUM_TOL:
        fail(f"must sum to 1 within {bounds.SUM_TOL:g} in every context (off by {err:.3g})")


# ----------------------------------------------------------------------------- objects

class Strict(BaseModel):
    """Base: frozen, no extra keys (with a did-you-mean), must be an object."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _object(cls, data):
        if isinstance(data, BaseModel):
            return data
        if not isinstance(data, dict):
            fail(f"must be an object, got {got(data)}")
        known = [f.alias or n for n, f in cls.model_fields.items()]
        for k in data:
            if k not in known:
                what = "unknown spec key" if cls.__name__ == "Spec" else "unknown key"
                hint = misplaced(cls.__name__, k, data) + suggest(k, known) if isinstance(k, str) and k.isprintable() else ""
                fail(f"{what}{hint.split('?', 1)[0] + '?' if '?' in hint else hint} (valid keys: {', '.join(known)})", k)
        return data


#: where the keys of the nested objects live (a key given at the wrong level is pointed there)
NESTED_KEYS = {
    "preference": ("pi_star", "reward", "matrix"),
    "optimizer": ("name", "lr", "steps", "schedule"),
    "batch": ("size", "replacement"),
    "sampling": ("samples",),
    "data": ("sampled",),
}


def misplaced(model: str, key: str, data: dict) -> str:
    """A did-you-mean for a key given at the wrong level of the spec, or "" (then the nearest
    name at this level is suggested). At the top level: a parameter of the chosen loss (or of any
    loss) → ``loss_params.KEY``; a key of a nested object → ``optimizer.steps``,
    ``preference.pi_star``, …, exactly or by a close spelling. In a nested object: a top-level
    key (``weight_decay`` inside ``optimizer``) → the top level."""
    top = list(Spec.model_fields)
    if model != "Spec":
        return f"; did you mean the top-level {key!r}?" if key in top else ""
    nested = {f"{obj}.{k}": k for obj, keys in NESTED_KEYS.items() for k in keys if k != "name"}
    for path, k in nested.items():
        if key == k:
            return f"; did you mean {path!r}?"
    try:
        from bandit_lab import losses

        reg = losses.registry()
        chosen = reg.get(data.get("loss", "dpo")) if isinstance(data.get("loss", "dpo"), str) else None
        params = set(chosen.defaults) | set(chosen.static) if chosen is not None else set()
        anywhere = set().union(*[set(s.defaults) | set(s.static) for s in reg.values()])
    except Exception:  # the registry is only a source of hints here
        params, anywhere = set(), set()
    if key in params or (key in anywhere and key not in top):
        return f"; did you mean 'loss_params.{key}'? (the loss's parameters go in loss_params)"
    if difflib.get_close_matches(key, top, n=1, cutoff=0.75):
        return ""  # a plain misspelling of a top-level key: the nearest name at this level
    m = difflib.get_close_matches(key, list(nested), n=1, cutoff=0.6) or difflib.get_close_matches(key, list(nested.values()), n=1, cutoff=0.75)
    if m:
        path = m[0] if "." in m[0] else next(p for p, k in nested.items() if k == m[0])
        return f"; did you mean {path!r}?"
    return ""


# field types (named, so each declaration reads as data)
PopulationName = choice(("population",))
ExactName = choice(("exact",))
PiStar = array((1, 2), bounds.PROBABILITY, "a target policy: K probabilities (or X lists of K)")
Reward = array((1, 2), bounds.SCALAR, "a Bradley–Terry reward: K numbers (or X lists of K)")
Matrix = array((2, 3), bounds.PROBABILITY, "p(i ≻ j): a K×K matrix (or X of them) with P + Pᵀ = 1")
OptimizerName = choice(OPTIMIZERS, "adam (projected Adam) or sgd (projected gradient descent)")
Lr = real(bounds.LR, "peak learning rate")
Steps = integer(bounds.STEPS, "optimizer steps")
Schedule = choice(SCHEDULES, "learning-rate schedule")
SampledPairs = integer(bounds.COUNT, "a number of draws (pairs of a dataset; samples per context and step)")
SoftmaxName = choice(("softmax",))
SimplexName = choice(("simplex",))
MixtureName = choice(("mixture",))
Pi0 = array((1, 2), bounds.PROBABILITY, "π₀: K probabilities (or X lists of K)")
Pi1 = array((1, 2), bounds.PROBABILITY, "π₁: K probabilities (or X lists of K)")
LogLinearName = choice(("loglinear",))
Features = array((2, 3), bounds.SCALAR, "features φ: [K, D] (shared by contexts) or [X, K, D]")
PiRef = array((1, 2), bounds.PROBABILITY, "the reference policy: K probabilities (or X lists of K, one per context)")
ContextWeight = array((1,), bounds.PROBABILITY, "ρ(x): X positive numbers summing to 1")
WeightDecay = real(bounds.WEIGHT_DECAY, "α of the penalty α‖θ‖² (or α‖π‖²)")
Penalty = choice(PENALTIES, "params: α‖θ‖² (default) | policy: α‖π‖²")
Seed = integer(bounds.SEED, "seed of the sampled data")
RewardFloor = real(bounds.OPEN_UNIT, "ε: reward log max(π*, ε) where π* = 0")


class Preference(Strict):
    """Exactly one preference model."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    pi_star: PiStar = Field(None, json_schema_extra=_no_default)
    reward: Reward = Field(None, json_schema_extra=_no_default)
    matrix: Matrix = Field(None, json_schema_extra=_no_default)

    @model_validator(mode="after")
    def _one(self):
        given = [n for n in ("pi_star", "reward", "matrix") if getattr(self, n) is not None]
        if len(given) != 1:
            fail("give exactly one of pi_star, reward, matrix" + (f" (got {', '.join(given)})" if given else ""))
        if self.pi_star is not None:
            try:
                _distribution(self.pi_star, "pi_star", strict=False)
            except Invalid as e:
                fail(e.msg, "pi_star")
        if self.matrix is not None:
            m = self.matrix
            if m.shape[-1] != m.shape[-2]:
                fail(f"must be square (K×K), got shape {list(m.shape)}", "matrix")
            err = np.abs(m + np.swapaxes(m, -1, -2) - 1.0).max()
            if err > bounds.SUM_TOL:
                fail(f"must satisfy P + Pᵀ = 1 within {bounds.SUM_TOL:g} (off by {err:.3g})", "matrix")
        return self

    @property
    def kind(self) -> str:
        return next(n for n in ("pi_star", "reward", "matrix") if getattr(self, n) is not None)


class Optimizer(Strict):
    name: OptimizerName = "adam"
    lr: Lr = 0.05
    steps: Steps = 3000
    schedule: Schedule = "cosine"


class Sampled(Strict):
    sampled: SampledPairs


def _flag(v):
    if not isinstance(v, bool):
        fail(f"must be true or false, got {got(v)}")
    return v


Flag = Annotated[bool, PlainValidator(_flag), WithJsonSchema({"type": "boolean"})]
BatchSize = integer(bounds.COUNT, "B: labelled pairs per mini-batch, drawn afresh at every step")


class Batch(Strict):
    """Stochastic training (``TrainConfig.batch_size``): every step's gradient is the loss on a
    fresh mini-batch of ``size`` pairs drawn from the data (the population, or the dataset of
    ``data: {"sampled": n}``), with replacement (default, as Azar et al. §5) or without (then
    the data must be a dataset of n ≥ size pairs)."""

    size: BatchSize
    replacement: Flag = Field(True, description="draw with replacement (default) or B distinct pairs of a sampled dataset")


class Samples(Strict):
    samples: SampledPairs
    seed: Seed = Field(None, json_schema_extra=_no_default)


def _sampling_input(v):
    if isinstance(v, str) and v != "exact":
        fail(f"must be \"exact\" or {{\"samples\": N}}, got {show(v)}" + suggest(v, ["exact"]))
    if not isinstance(v, (str, dict, BaseModel)):
        fail(f"must be \"exact\" or {{\"samples\": N}}, got {got(v)}")
    return v


class Softmax(Strict):
    name: SoftmaxName


class Simplex(Strict):
    name: SimplexName


class Mixture(Strict):
    name: MixtureName
    pi0: Pi0
    pi1: Pi1

    @model_validator(mode="after")
    def _dists(self):
        for n in ("pi0", "pi1"):
            try:
                _distribution(getattr(self, n), n, strict=False)
            except Invalid as e:
                fail(e.msg, n)
        return self


class LogLinear(Strict):
    name: LogLinearName
    features: Features


def _par_input(v):
    if isinstance(v, str):
        v = {"name": v}
    if isinstance(v, BaseModel):
        return v
    if not isinstance(v, dict):
        fail(f"must be a name ({', '.join(PARAMETERIZATIONS)}) or an object with 'name', got {got(v)}")
    if "name" not in v:
        fail("is required (one of " + ", ".join(PARAMETERIZATIONS) + ")", "name")
    n = v["name"]
    if not isinstance(n, str) or n not in PARAMETERIZATIONS:
        fail(f"must be one of {', '.join(PARAMETERIZATIONS)}, got " + (show(n) + suggest(n, PARAMETERIZATIONS) if isinstance(n, str) else got(n)),
             "name")
    return v


def _par_tag(v):
    n = v.name if isinstance(v, BaseModel) else v.get("name")
    return f"<{n}>"


Parameterization = Annotated[
    Union[Annotated[Softmax, Tag("<softmax>")], Annotated[Simplex, Tag("<simplex>")], Annotated[Mixture, Tag("<mixture>")],
          Annotated[LogLinear, Tag("<loglinear>")]],
    Discriminator(_par_tag),
    # a bare name is short for {"name": ...}; the JSON Schema says so too
    BeforeValidator(_par_input, json_schema_input_type=Union[Literal["softmax", "simplex"], Softmax, Simplex, Mixture, LogLinear]),
]


def _data_input(v):
    if isinstance(v, (str, BaseModel)) or (isinstance(v, dict)):
        if isinstance(v, str) and v != "population":
            fail(f"must be \"population\" or {{\"sampled\": n}}, got {show(v)}" + suggest(v, ["population"]))
        return v
    fail(f"must be \"population\" or {{\"sampled\": n}}, got {got(v)}")


Data = Annotated[
    Union[Annotated[PopulationName, Tag("<population>")], Annotated[Sampled, Tag("<sampled>")]],
    Discriminator(lambda v: "<population>" if isinstance(v, str) else "<sampled>"),
    BeforeValidator(_data_input),
]


Sampling = Annotated[
    Union[Annotated[ExactName, Tag("<exact>")], Annotated[Samples, Tag("<samples>")]],
    Discriminator(lambda v: "<exact>" if isinstance(v, str) else "<samples>"),
    BeforeValidator(_sampling_input),
]


def _pairs(v):
    """"uniform" | "reference" | [[i, j, w], ...] | one such list per context → canonical form."""
    if isinstance(v, str):
        if v not in ("uniform", "reference"):
            fail(f"must be \"uniform\", \"reference\" or a list of [i, j, weight], got {show(v)}" + suggest(v, ["uniform", "reference"]))
        return v
    if isinstance(v, tuple) and v and v[0] == "explicit":
        return v
    if not isinstance(v, list) or not v:
        fail(f"must be \"uniform\", \"reference\" or a non-empty list of [i, j, weight], got {got(v)}")
    per_context = _depth(v, 3) == 3
    lists = v if per_context else [v]
    out = []
    for x, rows in enumerate(lists):
        at = (x,) if per_context else ()
        if not isinstance(rows, list) or not rows:
            fail(f"must be a non-empty list of [i, j, weight], got {show(rows)}", *at)
        parsed = []
        for r, row in enumerate(rows):
            here = at + (r,)
            if not isinstance(row, list) or len(row) != 3:
                fail(f"must be [i, j, weight], got {show(row)}", *here)
            i, j, w = row
            for k, idx in ((0, i), (1, j)):
                if isinstance(idx, bool) or not isinstance(idx, int):
                    fail(f"a response index must be an integer, got {got(idx)}", *here, k)
                if idx < 0:
                    fail(f"a response index must be ≥ 0, got {idx}", *here, k)
            if i == j:
                fail(f"must name two distinct responses, got {show(row)}", *here)
            e = WEIGHT.error(w)
            if e:
                fail(e.replace("must be", "the weight must be", 1), *here, 2)
            parsed.append((i, j, float(w)))
        out.append(tuple(parsed))
    return ("explicit", per_context, tuple(out))


PAIR_ROW = {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 0}, WEIGHT.json_schema()],
            "minItems": 3, "maxItems": 3}
Pairs = Annotated[Any, PlainValidator(_pairs), WithJsonSchema({
    "description": "the law of the pair shown: \"uniform\" over distinct pairs, \"reference\" (π_ref⊗π_ref), or weighted pairs [[i, j, weight], ...] (one list per context, optionally)",
    "anyOf": [{"enum": ["uniform", "reference"]},
              {"type": "array", "minItems": 1, "items": PAIR_ROW},
              {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": PAIR_ROW}}]})]


def _init(v):
    if v is None:
        fail("must be \"reference\", \"uniform\", \"zeros\", a number or a list of numbers, got null")
    if isinstance(v, str):
        if v not in ("reference", "uniform", "zeros"):
            fail(f"must be \"reference\", \"uniform\", \"zeros\", a number or a list, got {show(v)}" + suggest(v, ["reference", "uniform", "zeros"]))
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        e = bounds.SCALAR.error(v)
        if e:
            fail(e)
        return float(v)
    d = _depth(v, 2)
    if isinstance(v, list) and d in (1, 2):
        _walk(v, d, bounds.SCALAR, ())
        return np.asarray(v, dtype=np.float64)
    if isinstance(v, np.ndarray):
        return v
    fail(f"must be \"reference\", \"uniform\", \"zeros\", a number or a list of numbers, got {got(v)}")


Init = Annotated[Any, PlainValidator(_init), WithJsonSchema({
    "description": "initial parameters: \"reference\" (π = π_ref), \"uniform\", \"zeros\" (log-linear), a number θ (mixture) or an array",
    "anyOf": [{"enum": ["reference", "uniform", "zeros"]}, bounds.SCALAR.json_schema(),
              {"type": "array", "items": bounds.SCALAR.json_schema()},
              {"type": "array", "items": {"type": "array", "items": bounds.SCALAR.json_schema()}}]})]


def _loss_params(v):
    if not isinstance(v, dict):
        fail(f"must be an object of loss parameters, got {got(v)}")
    for k, x in v.items():
        names = isinstance(x, list) and x and all(isinstance(t, str) for t in x)  # a mixture's terms
        # a library's config as it writes it (LossSpec.translate: verl/OpenRLHF): null, a nested
        # object, a list of numbers (OpenRLHF reward.clip_range); the loss's own check refuses them
        # where they do not belong
        lib = x is None or isinstance(x, dict) or (isinstance(x, list) and x and all(bounds.is_number(t) for t in x))
        if not (bounds.is_number(x) or isinstance(x, (str, bool)) or names or lib):
            fail(f"must be a number, a string, a boolean, null, an object or a list (of loss names or numbers), got {got(x)}", k)
    return dict(v)


LossParams = Annotated[Any, PlainValidator(_loss_params), WithJsonSchema({
    "type": "object", "additionalProperties": {"anyOf": [{"type": ["number", "string", "boolean", "null", "object"]},
                                                         {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                                         {"type": "array", "items": {"type": "number"}, "minItems": 1}]},
    "description": "the loss's hyperparameters and options (see `bandit-lab list losses`)"})]


def _hp_range(spec, name: str) -> bounds.Real:
    """The declared range of a loss's float hyperparameter: β of a preference loss in
    :data:`bounds.BETA`; β of an on-policy algorithm may be 0 (KL off, TRL's GRPO default);
    everything else :data:`bounds.SCALAR` (then the loss's own ``check``)."""
    if name == "beta":
        return bounds.BETA if spec.kind != "onpolicy" else bounds.NONNEGATIVE
    return bounds.SCALAR


def _static_error(default, v) -> str | None:
    """A static option must have the type of its default (a bool is not an integer)."""
    if isinstance(default, bool):
        return None if isinstance(v, bool) else f"must be true or false, got {got(v)}"
    if isinstance(default, int):
        return None if isinstance(v, int) and not isinstance(v, bool) else f"must be an integer, got {got(v)}"
    if isinstance(default, str):
        return None if isinstance(v, str) else f"must be a string, got {got(v)}"
    return None


def _static_schema(default) -> dict:
    if isinstance(default, bool):
        return {"type": "boolean"}
    if isinstance(default, int):
        return {"type": "integer"}
    if isinstance(default, str):
        return {"type": "string"}
    return {}


class Spec(Strict):
    """A user-defined bandit and how to train and solve it (``bandit-lab solve SPEC``)."""

    model_config = ConfigDict(title="bandit-lab solve spec")

    schema_uri: Text = Field(None, alias="$schema", json_schema_extra=_no_default,
                             description="where editors find this schema (ignored by bandit-lab)")
    name: Text = Field(None, json_schema_extra=_no_default)
    description: Text = Field(None, json_schema_extra=_no_default)
    pi_ref: PiRef
    preference: Preference
    pairs: Pairs = "uniform"
    context_weight: ContextWeight = Field(None, json_schema_extra=_no_default)
    loss: Text = "dpo"
    loss_params: LossParams = Field(default_factory=dict)
    weight_decay: WeightDecay = 0.0
    penalty: Penalty = "params"
    parameterization: Parameterization = Field(default_factory=lambda: Softmax(name="softmax"))
    init: Init = Field(None, json_schema_extra=_no_default)
    data: Data = "population"
    optimizer: Optimizer = Field(default_factory=Optimizer)
    sampling: Sampling = Field(None, json_schema_extra=_no_default,
                               description="on-policy losses: the exact expected update (default) or N samples per context and step")
    batch: Batch = Field(None, json_schema_extra=_no_default,
                         description="stochastic training: a fresh mini-batch of `size` pairs at every step (default: all the data)")
    seed: Seed = 0
    reward_floor: RewardFloor = Field(1e-12)

    # ------------------------------------------------------------------ derived sizes
    @property
    def contexts(self) -> int:
        return 1 if self.pi_ref.ndim == 1 else self.pi_ref.shape[0]

    @property
    def responses(self) -> int:
        return self.pi_ref.shape[-1]

    @property
    def all_loss_params(self) -> dict:
        """``loss_params`` plus the top-level ``sampling`` (an option of the on-policy losses)."""
        if self.sampling is None:
            return dict(self.loss_params)
        samp = self.sampling if isinstance(self.sampling, str) else {"samples": self.sampling.samples}
        return {**self.loss_params, "sampling": samp}

    @property
    def n_params(self) -> int:
        p = self.parameterization
        if isinstance(p, Mixture):
            return self.contexts
        if isinstance(p, LogLinear):
            return p.features.shape[-1]
        return self.contexts * self.responses

    @model_validator(mode="after")
    def _consistent(self):
        X, K = self.contexts, self.responses
        ref2 = self.pi_ref.reshape(X, K)
        if K < 2:
            fail(f"needs at least 2 responses, got {K}", "pi_ref")
        try:
            _distribution(ref2, "pi_ref", strict=False)  # zeros allowed: bandit_lab.core.support
        except Invalid as e:
            fail(e.msg, "pi_ref")
        shape = "[K]" if self.pi_ref.ndim == 1 else "[X, K]"
        pk = self.preference.kind
        a = getattr(self.preference, pk)
        want = (X, K) if pk != "matrix" else (X, K, K)
        got = a.shape if a.ndim == len(want) else (1,) + a.shape
        if tuple(got) != want:
            fail(f"has shape {list(a.shape)}; pi_ref has {X} context(s) of K = {K} responses, so it needs "
                 + ("[K, K] per context" if pk == "matrix" else f"the shape of pi_ref, {shape}"), "preference", pk)
        if self.context_weight is not None:
            cw = self.context_weight
            if cw.shape != (X,):
                fail(f"has {cw.size} entries; pi_ref has X = {X} context(s)", "context_weight")
            if np.any(cw <= 0) or abs(cw.sum() - 1.0) > bounds.SUM_TOL:
                fail(f"must be {X} positive numbers summing to 1 within {bounds.SUM_TOL:g} (sum {cw.sum():.12g})", "context_weight")
        if isinstance(self.pairs, tuple):
            _, per_context, lists = self.pairs
            if per_context and len(lists) != X:
                fail(f"gives {len(lists)} lists of pairs (one per context); pi_ref has X = {X}", "pairs")
            for x, rows in enumerate(lists):
                for r, (i, j, _w) in enumerate(rows):
                    for k, idx in ((0, i), (1, j)):
                        if idx >= K:
                            fail(f"response index {idx} is out of range: K = {K} (indices 0..{K - 1})", "pairs", *((x,) if per_context else ()), r, k)
        p = self.parameterization
        if isinstance(p, Mixture):
            for n in ("pi0", "pi1"):
                v = getattr(p, n)
                if v.shape[-1] != K or (v.ndim == 2 and v.shape[0] != X):
                    fail(f"has shape {list(v.shape)}; needs K = {K} probabilities (or [X = {X}, K])", "parameterization", n)
        if isinstance(p, LogLinear):
            f = p.features
            if f.shape[-2] != K or (f.ndim == 3 and f.shape[0] != X):
                fail(f"has shape {list(f.shape)}; needs [K = {K}, D] or [X = {X}, K = {K}, D]", "parameterization", "features")
        self._check_init(X, K)
        self._check_loss()
        return self

    def _check_init(self, X: int, K: int) -> None:
        v, p = self.init, self.parameterization
        if v is None:
            return
        if isinstance(p, Mixture):
            if isinstance(v, str):
                fail(f"a mixture starts from a number θ in [0, 1] (or X = {X} of them), got {show(v)}", "init")
            a = np.atleast_1d(np.asarray(v, dtype=float))
            if a.ndim != 1 or a.size not in (1, X):
                fail(f"needs θ: one number or X = {X} numbers, got shape {list(a.shape)}", "init")
            if np.any(a < 0) or np.any(a > 1):
                fail(f"θ must lie in [0, 1], got {show(a.tolist())}", "init")
        elif isinstance(p, LogLinear):
            D = p.features.shape[-1]
            if isinstance(v, (float, np.floating)) or (isinstance(v, np.ndarray) and v.shape != (D,)):
                fail(f"log-linear weights: needs D = {D} numbers or \"zeros\", got {show(np.asarray(v).tolist())}", "init")
        else:
            need = [K] if X == 1 else [X, K]
            if isinstance(v, str) and v == "zeros":
                fail(f"must be \"reference\" or \"uniform\" for {p.name} (\"zeros\" is for loglinear)", "init")
            if isinstance(v, (float, np.floating)):
                fail(f"{p.name} parameters are an array of shape {need}, got a number", "init")
            if isinstance(v, np.ndarray) and v.shape not in {tuple(need), (X, K)}:
                fail(f"has shape {list(v.shape)}; {p.name} parameters need shape {need}", "init")

    def _check_loss(self) -> None:
        from bandit_lab import losses  # the registry (imports JAX): only when a spec is validated

        reg = losses.registry()
        if self.loss not in reg:
            fail(f"unknown loss {self.loss!r}{suggest(self.loss, reg)} (see `bandit-lab list losses`; a loss of your own is loaded with --plugin PATH)", "loss")
        spec = reg[self.loss]
        if self.batch is not None:
            if spec.kind in ("policy", "onpolicy"):
                fail(f"applies to losses that read labelled pairs; {self.loss!r} reads none", "batch")
            n = None if isinstance(self.data, str) else self.data.sampled
            if not self.batch.replacement and (n is None or n < self.batch.size):
                fail(f"false draws {self.batch.size} distinct pairs of a finite dataset: it needs \"data\": {{\"sampled\": n}} with "
                     f"n ≥ {self.batch.size}" + ("" if n is None else f" (got n = {n})"), "batch", "replacement")
        if self.sampling is not None and "sampling" not in spec.static:
            fail(f"applies to on-policy losses only; {self.loss!r} is not one", "sampling")
        params = self.loss_params
        if spec.translate is not None:  # a library's option names (TRL, verl, …) → native ones
            try:
                params = spec.translate(dict(params))
            except BanditError as e:
                named = [k for k in self.loss_params if k in str(e)]
                fail(str(e), "loss_params", *named[:1])
        for k, v in params.items():
            if k in spec.defaults:
                e = _hp_range(spec, k).error(v)
                if e:
                    fail(e, "loss_params", k)
            elif k in spec.static:
                e = _static_error(spec.static[k], v) if k != "sampling" else None  # sampling: checked by the loss
                if e:
                    fail(e, "loss_params", k)
            else:
                allowed = sorted(set(spec.defaults) | set(spec.static))
                hint = f"; did you mean the top-level {k!r}?" if k in type(self).model_fields else suggest(k, allowed)
                fail(f"loss {self.loss!r} has no parameter {k!r}{hint} (it takes {', '.join(allowed) or 'none'})",
                     "loss_params", k)
        try:
            losses.split_params(spec, self.all_loss_params)
        except BanditError as e:  # name the parameter when the message does
            named = [k for k in self.loss_params if k in str(e)]
            fail(str(e), "loss_params", *named[:1])


# ----------------------------------------------------------------------------- entry points

def _path(parts) -> str:
    """``optimizer.lr``, ``pairs[0][2]``; a key that is not a plain name is quoted (``x["a b"]``)."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif str(p).isidentifier():
            out += f".{p}" if out else str(p)
        else:
            out += f"[{show(str(p))}]"
    return out


def format_error(err: dict, raw) -> str:
    """One line ``field.path: message`` for a pydantic error on input ``raw``."""
    loc = [p for p in err.get("loc", ()) if not (isinstance(p, str) and p.startswith("<"))]
    ctx = err.get("ctx") or {}
    mine = ctx.get("error") if isinstance(ctx.get("error"), Invalid) else None
    parts, node = [], raw
    for i, p in enumerate(loc):
        if isinstance(node, dict) and p in node:
            parts.append(p)
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            parts.append(p)
            node = node[p]
        elif isinstance(node, str) and p == "name":  # a parameterization given by name
            parts.append(p)
        elif i == len(loc) - 1 and err.get("type") == "missing":
            parts.append(p)
    if mine is not None:
        parts += list(mine.at)
        msg = mine.msg
    elif err.get("type") == "missing":
        msg = "is required"
    else:  # a pydantic message we did not phrase ourselves (should not happen)
        msg = err.get("msg", "is invalid")
        msg = msg[:1].lower() + msg[1:] + f", got {show(err.get('input'))}"
    path = _path(parts)
    return f"{path}: {msg}" if path else msg


def parse(raw, source: str = "") -> Spec:
    """Validate a decoded spec (a dict, or a :class:`Spec`) or raise one-line ``BanditError``."""
    if isinstance(raw, Spec):
        return raw
    try:
        return Spec.model_validate(raw)
    except ValidationError as e:
        msg = format_error(e.errors(include_url=False)[0], raw)
        raise BanditError(f"{source}: {msg}" if source else msg) from None
    except RecursionError:
        raise BanditError(f"{source + ': ' if source else ''}the spec is nested too deeply") from None


def json_schema() -> dict:
    """The JSON Schema of a spec (draft 2020-12), with the loss names and each loss's parameters
    from the registry (so an editor checks ``loss_params`` too)."""
    from bandit_lab import losses

    js = Spec.model_json_schema()
    reg = losses.registry()
    js = {"$schema": "https://json-schema.org/draft/2020-12/schema", **js}
    props = js["properties"]
    props["loss"] = {**props["loss"], "enum": sorted(reg), "default": "dpo"}
    props["loss"].pop("maxLength", None)
    rules = []
    for name, spec in sorted(reg.items()):
        lp = {k: _hp_range(spec, k).json_schema() for k in spec.defaults}
        lp.update({k: _static_schema(v) for k, v in spec.static.items()})
        if "sampling" in lp:
            lp["sampling"] = {}
        cond = {"properties": {"loss": {"const": name}}} if name != "dpo" else {"anyOf": [{"properties": {"loss": {"const": name}}}, {"not": {"required": ["loss"]}}]}
        if name != "dpo":
            cond["required"] = ["loss"]
        # a loss that reads a library's own option names (LossSpec.translate) takes those too
        rules.append({"if": cond, "then": {"properties": {"loss_params": {"type": "object", "properties": lp,
                                                                           "additionalProperties": spec.translate is not None}}}})
    js["allOf"] = rules
    return js
