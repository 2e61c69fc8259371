"""``bandit-lab explain KIND [CONFIG] [--set k=v,…]``: what a library's on-policy config optimises
(thin: the numerics live in :mod:`bandit_lab.explain`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def _value(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return {"True": True, "False": False, "None": None}.get(s, s)


def explain(
    kind: str = typer.Argument(..., help="config kind: grpo | rloo (TRL 1.16), verl (0.9.1), openrlhf (0.11.2), a preset name, "
                                          "or `presets` (every preset in one table)"),
    config: Optional[Path] = typer.Argument(None, help="GRPOConfig/RLOOConfig, a verl trainer/actor config, OpenRLHF arguments: YAML or JSON"),
    set_: Optional[str] = typer.Option(None, "--set", help="fields, e.g. loss_type=dapo,beta=0.04"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
):
    """The objective, divergence, exact stationary point, verdict and TV to Gibbs of a library config."""
    from bandit_lab import enable_x64
    from bandit_lab.errors import BanditError
    from bandit_lab.explain import PRESETS, explain as run, lines

    enable_x64()
    if kind == "presets":
        if config is not None or set_:
            raise BanditError("presets: takes no CONFIG and no --set (it runs every preset as defined in bandit_lab.explain.PRESETS)")
        from bandit_lab.explain import preset_lines, preset_table
        from bandit_lab.infra import progress

        with progress.bar(f"explain presets: solving {len(PRESETS)} stationary points"):
            rows = preset_table()
        typer.echo(json.dumps(rows) if as_json else "\n".join(preset_lines(rows)))
        return
    cfg: dict = {}
    if kind in PRESETS:
        kind, cfg = PRESETS[kind][0], dict(PRESETS[kind][1])
    if config is not None:
        try:
            text = config.read_text()
        except (OSError, UnicodeDecodeError) as e:  # issue 24: one line naming the file (was "internal error")
            raise BanditError(f"cannot read {config}: {getattr(e, 'strerror', None) or e}") from None
        try:
            if config.suffix in (".yaml", ".yml"):
                import yaml

                loaded = yaml.safe_load(text) or {}
            else:
                loaded = json.loads(text)
        except Exception as e:  # a YAML or JSON syntax error
            raise BanditError(f"{config}: not valid {'YAML' if config.suffix in ('.yaml', '.yml') else 'JSON'}: "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if not isinstance(loaded, dict):
            raise BanditError(f"{config}: expected a mapping of config fields; got {type(loaded).__name__}")
        cfg.update(loaded)
    for item in filter(None, (set_ or "").split(",")):
        if "=" not in item:
            raise BanditError(f"--set: expected field=value; got {item!r}")
        k, v = item.split("=", 1)
        cfg[k.strip()] = _value(v.strip())
    from bandit_lab.infra import progress

    with progress.bar(f"explain {kind}: solving for the stationary point"):
        r = run(kind, cfg)
    typer.echo(json.dumps(r) if as_json else "\n".join(lines(r)))
