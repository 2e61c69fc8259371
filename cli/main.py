"""The ``bandit-lab`` command: a thin typer layer over :mod:`bandit_lab` (no numerics here)."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import typing
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Exact preference-optimisation bandits: DPO, IPO, f-DPO, RLHF and friends.")


class UserError(Exception):
    pass


def _bandit_error():
    from bandit_lab.errors import BanditError

    return BanditError


@app.callback()
def _root(float32: bool = typer.Option(False, "--float32", help="float32 instead of float64 (speed option; not for checks)"),
          no_cache: bool = typer.Option(False, "--no-cache", help="don't use JAX's persistent compilation cache "
                                        "(default: on, in $BANDIT_LAB_CACHE_DIR or the user cache dir; BANDIT_LAB_NO_CACHE=1 also disables it)")):
    if not no_cache:
        from bandit_lab import cache

        cache.enable()
    if float32:
        import bandit_lab

        bandit_lab.use_float32()


# ----------------------------------------------------------------------------- helpers

def _clean(obj):
    from bandit_lab.runner import jsonable

    return jsonable(obj)


def _prepare_out(path: str, overwrite: bool) -> str:
    from bandit_lab.errors import BanditError

    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BanditError(f"output path {path} exists and is not a directory")
        if os.listdir(path) and not overwrite:
            raise BanditError(f"output directory {path} exists; pass --overwrite to replace its files or choose another --out")
    return path


def _parse_options(settings_cls, tokens: list[str]) -> dict:
    """``--field value`` / ``--flag`` / ``--no-flag`` / repeated ``--item v`` for tuple fields."""
    from bandit_lab.errors import BanditError

    hints = typing.get_type_hints(settings_cls)
    fields = {f.name: f for f in dataclasses.fields(settings_cls)}
    out: dict = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--"):
            raise BanditError(f"unexpected argument {tok!r}")
        name, _, val = tok[2:].partition("=")
        key = name.replace("-", "_")
        neg = key.startswith("no_") and key[3:] in fields and hints[key[3:]] is bool
        if neg:
            key = key[3:]
        if key not in fields:
            raise BanditError(f"unknown option --{name} (see --help)")
        typ = hints[key]
        if typ is bool:
            out[key] = not neg
            i += 1
            continue
        if not val:
            if i + 1 >= len(tokens):
                raise BanditError(f"option --{name} needs a value")
            val = tokens[i + 1]
            i += 1
        i += 1
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        base = args[0] if args else typ
        try:
            if base is tuple or typing.get_origin(typ) is tuple or typing.get_origin(base) is tuple:
                default = fields[key].default
                elem = type(default[0]) if isinstance(default, tuple) and default else float
                parts = [elem(v) for v in val.split(",") if v != ""]
                out[key] = tuple(out.get(key, ())) + tuple(parts) if key in out else tuple(parts)
            else:
                out[key] = base(val)
        except (TypeError, ValueError):
            raise BanditError(f"option --{name} expects {getattr(base, '__name__', base)}; got {val!r}") from None
    return out


def _experiment_help(exp) -> str:
    hints = typing.get_type_hints(exp.settings)
    lines = [f"bandit-lab run {exp.name} [OPTIONS]", "", exp.summary + (f"  ({exp.reference})" if exp.reference else ""), "", "Options:"]
    for f in dataclasses.fields(exp.settings):
        t = hints[f.name]
        flag = f"--{f.name.replace('_', '-')}" + ("" if t is bool else " VALUE")
        lines.append(f"  {flag:<28} {f.metadata.get('help', '')} [default: {f.default}]")
    lines += [
        f"  {'--out DIR':<28} write records.json and figures to DIR (sweeps default to runs/NAME-TIMESTAMP/)",
        f"  {'--overwrite':<28} allow replacing files in an existing --out",
        f"  {'--json':<28} print one JSON object to stdout",
        f"  {'--no-plot':<28} skip figures",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- commands

@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def run(ctx: typer.Context, name: str = typer.Argument(..., help="experiment name (see `bandit-lab list`)")):
    """Run an experiment: `bandit-lab run NAME --help` lists its options."""
    from bandit_lab import experiments

    exp = experiments.get(name)
    tokens = list(ctx.args)
    common = {"out": None, "overwrite": False, "json": False, "plot": True}
    rest = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("--help", "-h"):
            print(_experiment_help(exp))
            return 0
        if t == "--out" or t.startswith("--out="):
            if "=" in t:
                common["out"] = t.split("=", 1)[1]
            else:
                if i + 1 >= len(tokens):
                    raise _bandit_error()("option --out needs a directory")
                common["out"] = tokens[i + 1]
                i += 1
        elif t == "--overwrite":
            common["overwrite"] = True
        elif t == "--json":
            common["json"] = True
        elif t == "--no-plot":
            common["plot"] = False
        else:
            rest.append(t)
        i += 1
    settings = experiments.make_settings(exp, _parse_options(exp.settings, rest))
    writes = getattr(settings, "saves", lambda: True)()
    # Without --out, a sweep writes to a fresh runs/NAME-YYYYmmdd-HHMMSS/: never over earlier results.
    out = common["out"] or (os.path.join("runs", f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}") if writes else None)
    if out:
        _prepare_out(out, common["overwrite"])
    result = exp.run(settings)
    files = []
    if out:
        os.makedirs(out, exist_ok=True)
        rec_path = os.path.join(out, "records.json")
        with open(rec_path, "w") as fh:
            json.dump(_clean({"experiment": exp.name, "settings": dataclasses.asdict(settings), **result}), fh, indent=1)
        files.append(rec_path)
        if common["plot"] and exp.plot is not None:
            files += exp.plot(result, out)
    if common["json"]:
        print(json.dumps(_clean({"experiment": exp.name, "settings": dataclasses.asdict(settings), **result, "files": files})))
    else:
        print(exp.report(result))
        for f in files:
            print(f"wrote {f}")
    return 0


@app.command()
def solve(
    spec: str = typer.Argument(..., help="a JSON (or .toml) spec; see examples/"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Train and exactly solve a user-defined bandit; compare with the closed form."""
    from bandit_lab import spec as spec_mod

    res = spec_mod.solve(spec_mod.load(spec))
    print(json.dumps(_clean(res)) if as_json else spec_mod.report(res))
    return 0


@app.command()
def verify(
    only: Optional[list[str]] = typer.Option(None, "--only", help="run only these checks (repeatable)"),
    instances: Optional[int] = typer.Option(None, "--instances", help="random instances per check"),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Run the registered theorem checks; non-zero exit on any failure."""
    from bandit_lab import checks

    reg = checks.registry()
    names = list(only) if only else list(reg)
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise _bandit_error()(f"unknown check(s) {', '.join(unknown)}; see `bandit-lab list`")
    if instances is not None and instances < 1:
        raise _bandit_error()("--instances must be ≥ 1")
    results = []
    if not as_json:
        print(f"{'check':<24}{'claim':<92}{'value':>11}{'tol':>10}  pass")
    for n in names:
        r = checks.run_check(reg[n], instances, seed)
        results.append(r)
        if not as_json:
            sign = "≥" if r.check.direction == "≥" else "≤"
            print(f"{n:<24}{r.check.claim[:90]:<92}{r.value:>11.2e}{sign + format(r.check.tolerance, '.0e'):>10}  {'PASS' if r.passed else 'FAIL'}", flush=True)
    if as_json:
        print(json.dumps(_clean([{"check": r.check.name, "claim": r.check.claim, "value": r.value, "tolerance": r.check.tolerance,
                                  "direction": r.check.direction, "passed": r.passed, "instances": instances or r.check.n_instances,
                                  "seconds": r.seconds} for r in results])))
    failed = [r.check.name for r in results if not r.passed]
    if failed:
        print(f"bandit-lab: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


@app.command()
def reproduce(
    out: str = typer.Option("figures", "--out", help="directory for the figures and RESULTS.md"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace files in an existing --out"),
    quick: bool = typer.Option(False, "--quick", help="small settings (CI smoke run), not the paper's"),
):
    """Regenerate every figure of Kong et al. and write RESULTS.md (paper | measured | command)."""
    from bandit_lab import reproduce as reproduce_mod

    _prepare_out(out, overwrite)
    for line in reproduce_mod.reproduce(out, quick=quick):
        print(line, flush=True)
    return 0


@app.command("fixed-points")
def fixed_points(
    spec: Optional[str] = typer.Argument(None, help="a bandit spec (JSON/TOML); default: Kong et al. App. B"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """The exact population optimum of every registered loss on one bandit."""
    from bandit_lab import fixed_points as fp

    res = fp.fixed_points(None if spec is None else __import__("bandit_lab.spec", fromlist=["load"]).load(spec))
    print(json.dumps(_clean(res)) if as_json else fp.report(res))
    return 0


@app.command("list")
def list_(what: str = typer.Argument("all", help="all | experiments | losses | checks")):
    """List experiments, losses and theorem checks."""
    from bandit_lab import checks, experiments, losses

    if what not in ("all", "experiments", "losses", "checks"):
        raise _bandit_error()(f"list what? choose all, experiments, losses or checks; got {what!r}")
    if what in ("all", "experiments"):
        print("experiments:")
        for n, e in experiments.registry().items():
            print(f"  {n:<22} {e.summary}" + (f"  [{e.reference}]" if e.reference else ""))
    if what in ("all", "losses"):
        print("losses:")
        for n, s in sorted(losses.registry().items()):
            params = ", ".join([f"{k}={v}" for k, v in s.defaults.items()] + [f"{k}={v}" for k, v in s.static.items()])
            print(f"  {n:<22} {s.summary} ({params})  [{s.citation}]")
    if what in ("all", "checks"):
        print("checks:")
        for n, c in checks.registry().items():
            print(f"  {n:<22} {c.claim}")
    return 0


from cli.explore import explore as _explore  # noqa: E402  (the teaching page, issue 14)

app.command()(_explore)


def _usage_error(e: BaseException) -> bool:
    """A typer usage error (unknown option, missing argument, bad value). Matched by shape: typer
    < 0.26 raises click's ``UsageError``, typer ≥ 0.26 its own vendored copy; both carry
    ``format_message()`` and exit code 2, and we import neither click nor typer internals."""
    return hasattr(e, "format_message") and getattr(e, "exit_code", None) == 2


def main(argv: list[str] | None = None) -> None:
    BanditError = _bandit_error()
    try:
        rv = app(args=argv, standalone_mode=False)
    except BanditError as e:
        print(f"bandit-lab: error: {e}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(getattr(e, "exit_code", 0))
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as e:
        if _usage_error(e):
            print(f"bandit-lab: error: {e.format_message()}", file=sys.stderr)
            sys.exit(2)
        if os.environ.get("BANDIT_LAB_DEBUG"):  # a bug, not bad input: one line, traceback on request
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"bandit-lab: internal error: {type(e).__name__}: {msg} (set BANDIT_LAB_DEBUG=1 for the traceback; please report it)",
              file=sys.stderr)
        sys.exit(3)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
