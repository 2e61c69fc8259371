"""``bandit-lab check-loss NAME``: the loss battery (thin: numerics in :mod:`bandit_lab.loss_check`)."""
from __future__ import annotations

import json
import sys
from typing import Optional

import typer


def parse_params(items: list[str] | None) -> dict:
    """``["beta=0.5", "divergence=js", "terms=[\\"hinge\\",\\"sft\\"]"]`` → a ``loss_params`` dict:
    each value is read as JSON (numbers, booleans, lists), else as a comma list of names, else as text."""
    from bandit_lab.errors import BanditError

    out: dict = {}
    for item in items or []:
        key, eq, text = str(item).partition("=")
        key, text = key.strip(), text.strip()
        if not eq or not key or not text:
            raise BanditError(f"--param: expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = [t.strip() for t in text.split(",")] if "," in text else text
    return out


def check_loss(
    name: str = typer.Argument(..., help="a registered loss (`bandit-lab list losses`, or one from --plugin)"),
    param: Optional[list[str]] = typer.Option(None, "--param", metavar="KEY=VALUE",
                                              help="a loss parameter or static option, e.g. beta=0.5 or divergence=js (repeatable)"),
    seed: int = typer.Option(0, "--seed", help="seed of the random bandits and points; in [0, 2^32 − 1]"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Run the loss battery: finite at extreme inputs, gradient vs finite differences, counterpart, fixed point, convexity, constraints; exit 1 if a must-pass check fails."""
    from bandit_lab.infra import bounds, progress
    from bandit_lab import loss_check
    from bandit_lab.errors import BanditError

    e = bounds.SEED.error(seed)
    if e:
        raise BanditError(f"--seed: {e}")
    with progress.bar(f"check-loss {name}"):
        rep = loss_check.check_loss(name, parse_params(param), seed=seed)
    print(json.dumps(loss_check.to_json(rep), allow_nan=False) if as_json else loss_check.report(rep))
    if not rep.passed:
        failed = [r.name for r in rep.rows if r.passed is False]
        print(f"bandit-lab: check-loss {name}: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
