"""Typed ranges of every user-facing number, declared once.

The spec schema (:mod:`bandit_lab.schema`), every experiment's command-line options
(:mod:`bandit_lab.experiments`, through field metadata) and ``--help`` all read these: the range
a user sees in ``--help`` or in the JSON Schema is the range that is checked.

Types are strict: a number is an ``int`` or ``float`` but never a ``bool`` or a string; an
integer is an ``int`` (``2.5`` and ``2.0`` are not counts). Every real must be finite.

Magnitudes: beyond ``SCALE = 1e6`` (β, α, learning rates, rewards, features) float64 stops
meaning anything on these problems — ``r/β`` overflows ``exp``, ``β = 1e-300`` makes the exact
solver's Hessian non-finite (its eigendecomposition fails), ``1e300·θ²`` overflows — so such
inputs are refused up front with the field's name instead of producing ``nan`` later.
"""
from __future__ import annotations

import dataclasses
import json
import math

SCALE = 1e6  # largest magnitude of a scale-type number (β, α, lr, rewards, features)
INT64_MAX = 2**63 - 1
SEED_MAX = 2**32 - 1  # JAX PRNG keys: the trainer folds a run's seed to uint32, so larger seeds would alias
SUM_TOL = 1e-9  # probabilities must sum to 1 within this


def show(v, width: int = 40) -> str:
    """A short, JSON-like rendering of a user value for an error message (never recursive
    beyond a few levels, so a deeply nested value cannot blow the stack)."""

    def r(x, depth):
        if x is None:
            return "null"
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, int):
            s = str(x) if abs(x) < 10**30 else f"an integer of {len(str(abs(x)))} digits"
            return s
        if isinstance(x, float):
            return repr(x)
        if isinstance(x, str):
            return json.dumps(x if len(x) <= width else x[:width] + "…", ensure_ascii=False)
        if isinstance(x, (list, tuple)):
            if depth >= 2:
                return "[…]" if x else "[]"
            items = [r(y, depth + 1) for y in list(x)[:4]]
            return "[" + ", ".join(items) + (", …" if len(x) > 4 else "") + "]"
        if isinstance(x, dict):
            if depth >= 2:
                return "{…}" if x else "{}"
            items = [f"{json.dumps(str(k))}: {r(y, depth + 1)}" for k, y in list(x.items())[:3]]
            return "{" + ", ".join(items) + (", …" if len(x) > 3 else "") + "}"
        return type(x).__name__

    s = r(v, 0)
    return s if len(s) <= 3 * width else s[: 3 * width] + "…"


def kind(v) -> str:
    """``'a string'``, ``'a boolean'``, … — appended to a type error."""
    if v is None:
        return "null"
    for t, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    ((list, tuple), "a list"), (dict, "an object")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def got(v) -> str:
    """``'"0.1" (a string)'``, ``'null'``, ``'[0.1] (a list)'`` — the tail of a type error."""
    return "null" if v is None else f"{show(v)} ({kind(v)})"


def _g(x: float) -> str:
    return {INT64_MAX: "2^63 − 1", SEED_MAX: "2^32 − 1"}.get(x, format(x, "g")) if isinstance(x, int) else format(x, "g")


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Real:
    """A finite real with optional bounds (``gt``/``ge`` below, ``lt``/``le`` above)."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def describe(self) -> str:
        lo = (f"({_g(self.gt)}" if self.gt is not None else f"[{_g(self.ge)}" if self.ge is not None else None)
        hi = (f"{_g(self.lt)})" if self.lt is not None else f"{_g(self.le)}]" if self.le is not None else None)
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return ("> " if self.gt is not None else "≥ ") + lo[1:]
        if hi:
            return ("< " if self.lt is not None else "≤ ") + hi[:-1]
        return ""

    def error(self, v) -> str | None:
        """``None`` if ``v`` is valid, else the message (``must be …, got …``)."""
        what = "a finite number" + (" " + self.describe() if self.describe() else "")
        if not is_number(v):
            return f"must be {what}, got {got(v)}"
        try:
            x = float(v)
        except OverflowError:  # an int beyond float range
            return f"must be {what}, got {show(v)}"
        if not math.isfinite(x):
            return f"must be {what}, got {show(v)}"
        if ((self.gt is not None and not x > self.gt) or (self.ge is not None and not x >= self.ge)
                or (self.lt is not None and not x < self.lt) or (self.le is not None and not x <= self.le)):
            return f"must be {what}, got {show(v)}"
        return None

    def json_schema(self) -> dict:
        js: dict = {"type": "number"}
        for k, name in (("gt", "exclusiveMinimum"), ("ge", "minimum"), ("lt", "exclusiveMaximum"), ("le", "maximum")):
            if getattr(self, k) is not None:
                js[name] = getattr(self, k)
        return js


@dataclasses.dataclass(frozen=True)
class Int:
    """An integer (never a bool or a float) in ``[ge, le]``."""

    ge: int | None = None
    le: int | None = None

    def describe(self) -> str:
        if self.ge is not None and self.le is not None:
            return f"in [{self.ge}, {self.le if self.le < 10**6 else _g(self.le)}]"
        if self.ge is not None:
            return f"≥ {self.ge}"
        if self.le is not None:
            return f"≤ {self.le}"
        return ""

    def error(self, v) -> str | None:
        what = "an integer" + (" " + self.describe() if self.describe() else "")
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be {what}, got {got(v)}"
        if (self.ge is not None and v < self.ge) or (self.le is not None and v > self.le):
            return f"must be {what}, got {show(v)}"
        return None

    def json_schema(self) -> dict:
        js: dict = {"type": "integer"}
        if self.ge is not None:
            js["minimum"] = self.ge
        if self.le is not None:
            js["maximum"] = self.le
        return js


# ---------------------------------------------------------------------------- the declared ranges

BETA = Real(ge=1e-6, le=SCALE)  # KL strength β (and every loss's β)
WEIGHT_DECAY = Real(ge=0.0, le=SCALE)  # α of α‖θ‖²
LR = Real(gt=0.0, le=SCALE)  # learning rate
POSITIVE = Real(gt=0.0, le=SCALE)  # any other positive scale (α of SPO, a std, a tolerance …)
NONNEGATIVE = Real(ge=0.0, le=SCALE)
SCALAR = Real(ge=-SCALE, le=SCALE)  # a reward, a feature, a loss hyperparameter
PROBABILITY = Real(ge=0.0, le=1.0)
OPEN_UNIT = Real(gt=0.0, lt=1.0)
STEPS = Int(ge=1, le=INT64_MAX)  # optimizer steps (≥ 1 everywhere; the budget bounds the work)
COUNT = Int(ge=1, le=INT64_MAX)  # a number of things (pairs, points, seeds, instances)
SEED = Int(ge=0, le=SEED_MAX)
