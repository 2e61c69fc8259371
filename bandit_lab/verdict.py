"""One verdict type for every exact answer (issue 20), in the spirit of optimistix's ``RESULTS``.

An exact solve returns a point; the *verdict* says what that point is, and carries the numbers
that certify it, so that a test (and a sceptical user) can re-check the claim independently:

=======================  ============================================================================
``UNIQUE``               a unique (local, or global for a convex loss) minimiser: a scale-free
                         stationarity measure (the Newton decrement, or the gradient in the metric the
                         solver uses) below its tolerance *and* the Hessian positive definite on the
                         tangent space (its smallest eigenvalue is in the certificate). Where several
                         starts reach distinct such points (``certificate["local_minima"]`` > 1) the
                         line says "local minimiser": isolated, not unique.
``SET``                  a set of minimisers: stationary, the Hessian positive *semi*-definite, and a
                         null space along which the loss is constant (``dimension``, a basis in
                         ``flat_directions``; ``shown`` says which point of the set is printed, e.g.
                         "nearest π_ref").
``NO_MINIMISER``         no finite minimiser, the infimum is only a limit: a recession direction ``d``
                         along which the loss strictly decreases for every t ≥ 0, its limit policy
                         (``limit``), the face it lies on (``vanishing``: the responses whose mass → 0)
                         and the infimum value (``certificate["infimum"]``).
``STATIONARY``           a stationary point of a field that is not a gradient (on-policy algorithms):
                         ``certificate["stability"]`` is "attracting", "not attracting" or "runaway".
``NOT_CERTIFIED``        the solver stalled or no certificate could be built: never "converged".
=======================  ============================================================================

``Verdict.line()`` is the one line every command prints; ``Verdict.as_json()`` the fields
``--json`` carries. Responses are named as the spec names them (1-based ``y1 … yK`` by default).
"""
from __future__ import annotations

import dataclasses
import enum
import math


class Kind(str, enum.Enum):
    """What an exact answer is (the values are what the CLI and ``--json`` print)."""

    UNIQUE = "unique minimiser"
    SET = "set of minimisers"
    NO_MINIMISER = "no finite minimiser"
    STATIONARY = "stationary point"
    NOT_CERTIFIED = "not certified"

    def __str__(self) -> str:  # json.dumps and f-strings print the value
        return self.value


def response_label(k: int, labels=None) -> str:
    """The name of response ``k`` (0-based index): the spec's own label, else ``y{k+1}``."""
    if labels is not None:
        return str(labels[k])
    return f"y{k + 1}"


def _clean(v):
    """JSON-able: NumPy scalars/arrays → Python, non-finite floats → None (never NaN in JSON)."""
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            return _clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    return v


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What an exact answer is, with the numbers that certify it (see the module docstring).

    ``certificate`` holds named numbers (JSON-able) a test re-checks; ``summary`` is the one-line
    human statement of the certificate, e.g. ``"Newton decrement 3e-17, λ_min(H) = 0.21"``.
    """

    kind: Kind
    summary: str
    certificate: dict = dataclasses.field(default_factory=dict)
    limit: list | None = None            # NO_MINIMISER: the limit policy ([X, K] or [K])
    vanishing: list | None = None        # NO_MINIMISER: labels of the responses whose mass → 0
    dimension: int | None = None         # SET: dimension of the set of minimisers
    flat_directions: list | None = None  # SET: a basis of the flat directions (parameter space)
    shown: str | None = None             # SET: which point of the set is printed

    @property
    def certified(self) -> bool:
        """True for every kind except ``NOT_CERTIFIED``."""
        return self.kind is not Kind.NOT_CERTIFIED

    @property
    def has_minimiser(self) -> bool:
        """True when a finite minimiser exists (``UNIQUE`` or ``SET``)."""
        return self.kind in (Kind.UNIQUE, Kind.SET)

    @property
    def finite(self) -> bool:
        """A finite answer is certified: a minimiser (or a set of them), or a reached stationary
        point that is not a runaway (no limit is reported)."""
        return self.has_minimiser or (self.kind is Kind.STATIONARY and self.limit is None
                                      and self.certificate.get("stability") != "runaway")

    def line(self) -> str:
        """The one line every command prints: ``<kind>: <summary>``."""
        head = self.kind.value
        if self.kind is Kind.UNIQUE and self.certificate.get("local_minima", 1) > 1:
            head = "local minimiser"  # isolated, but one of several: never "unique" (fixed_points.solve_one)
        if self.kind is Kind.NO_MINIMISER and self.vanishing:
            head += f" (π({', '.join(map(str, self.vanishing))}) → 0)"
        if self.kind is Kind.SET and self.dimension is not None:
            head += f" (dimension {self.dimension}" + (f"; {self.shown} shown" if self.shown else "") + ")"
        return f"{head}: {self.summary}" if self.summary else head

    def as_json(self) -> dict:
        """The fields ``--json`` carries (``kind`` as its printed value; non-finite → null)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["kind"] = self.kind.value
        d["line"] = self.line()
        return _clean(d)

    @classmethod
    def from_json(cls, d: dict) -> "Verdict":
        """Inverse of :meth:`as_json` (``line`` is recomputed)."""
        d = {k: v for k, v in d.items() if k != "line"}
        return cls(kind=Kind(d.pop("kind")), **d)


VerdictKind = Kind  # the public name (``bandit_lab.VerdictKind``)
