"""Experiments as data plus functions (after bsuite).

Each module in this package defines ``EXPERIMENT = Experiment(...)``:

- ``settings``: a frozen dataclass; its fields *are* the experiment's command-line options
  (``bandit-lab run NAME --field value``), with ``metadata={"help": ...}``;
- ``run(settings) -> dict``: JSON-ready results, at least ``{"records": [...]}``; keys other
  than ``records`` are summary values printed at the top level of ``--json``;
- ``report(result) -> str``: the human table;
- ``plot(result, out_dir) -> list[path]``: figures, drawn from the results alone (so they can
  be redrawn without retraining);
- ``quick``: settings small enough for CI (bsuite's TESTING subset).

Modules are discovered, not listed: adding an experiment means adding one file.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

from bandit_lab.errors import BanditError


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    summary: str
    settings: type
    run: Callable[[Any], dict]
    report: Callable[[dict], str]
    plot: Callable[[dict, str], list] | None = None
    quick: dict = dataclasses.field(default_factory=dict)  # overrides for a fast CI run
    reference: str = ""  # paper figure/table it regenerates


def meta(text: str) -> dict:
    """Field metadata for a settings option: ``dataclasses.field(default=..., metadata=meta("help"))``."""
    return {"help": text}


def command_line(name: str, settings) -> str:
    """The ``bandit-lab run`` command that regenerates a result: the options that differ from
    the defaults, in the CLI's syntax (tuples as comma lists, booleans as --flag/--no-flag)."""
    fmt = lambda x: format(x, "g") if isinstance(x, float) else str(x)  # noqa: E731
    parts = [f"bandit-lab run {name}"]
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if v == f.default:
            continue
        opt = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            parts.append(opt if v else "--no-" + f.name.replace("_", "-"))
        elif isinstance(v, tuple):
            parts.append(f"{opt} {','.join(fmt(x) for x in v)}")
        else:
            parts.append(f"{opt} {fmt(v)}")
    return " ".join(parts)


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (imported lazily: plotting is
    optional and matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_dir: str, filename: str, footer: str, *, y: float = 0.01, dpi: int = 150, rect=None) -> str:
    """Write a figure the project's way: a small grey footer naming the command that regenerates
    it (every figure in ``figures/`` states its command), tight layout, save, close."""
    import os

    plt = pyplot()
    fig.text(0.01, y, footer, fontsize=6, color="gray")
    if rect is None:
        fig.tight_layout()
    else:
        fig.tight_layout(rect=rect)
    path = os.path.join(out_dir, filename)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


_REGISTRY: dict[str, Experiment] = {}


def registry() -> dict[str, Experiment]:
    if not _REGISTRY:
        for mod in pkgutil.iter_modules(__path__):
            m = importlib.import_module(f"{__name__}.{mod.name}")
            exp = getattr(m, "EXPERIMENT", None)
            if exp is not None:
                _REGISTRY[exp.name] = exp
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Experiment:
    # fast path: the module named after the experiment (weight-decay → weight_decay.py), so a
    # cold `bandit-lab run NAME` imports one experiment, not all of them
    if name in _REGISTRY:
        return _REGISTRY[name]
    try:
        m = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
        exp = getattr(m, "EXPERIMENT", None)
        if exp is not None and exp.name == name:
            return exp
    except ImportError:
        pass
    reg = registry()
    if name not in reg:
        raise BanditError(f"unknown experiment {name!r}; choose one of {', '.join(reg)}")
    return reg[name]


def make_settings(exp: Experiment, overrides: dict) -> Any:
    """Settings from overrides, with types coerced and unknown names rejected."""
    fields = {f.name: f for f in dataclasses.fields(exp.settings)}
    kw = {}
    for k, v in overrides.items():
        if k not in fields:
            raise BanditError(f"experiment {exp.name!r} has no option --{k.replace('_', '-')}")
        kw[k] = v
    try:
        s = exp.settings(**kw)
    except (TypeError, ValueError) as e:
        raise BanditError(f"bad settings for {exp.name}: {e}") from None
    check = getattr(s, "validate", None)
    if check is not None:
        check()
    return s
