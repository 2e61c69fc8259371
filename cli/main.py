"""The ``bandit-lab`` command: a thin typer layer over :mod:`bandit_lab` (no numerics here).

Layout:
- the root callback (``--float32``, ``--max-memory``, ``--max-work``);
- ``run NAME``: one typer command per experiment, generated from its settings dataclass
  (:func:`experiment_command`); experiments are discovered from their files without importing
  them (:func:`experiment_index`), so ``bandit-lab run --help`` needs no JAX and a cold
  ``bandit-lab run NAME`` imports exactly one experiment module;
- the other commands (``solve``, ``schema``, ``verify``, ``reproduce``, ``fixed-points``, ``list``);
- "command modules": commands that live in their own ``cli/NAME.py`` are registered in one place;
- :func:`main`: every exception a user can cause → one stderr line and its exit code (see
  :mod:`bandit_lab.errors`).
"""
from __future__ import annotations

import ast
import dataclasses
import decimal
import difflib
import importlib
import importlib.util
import inspect
import contextlib
import json
import os
import sys
import time
import warnings
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from cli import helpfmt

helpfmt.install()  # typed --help: no <bool>/<str> placeholders, [brackets] in help texts kept

EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 4, 130  # = bandit_lab.errors (tested equal)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Exact preference-optimisation bandits: DPO, IPO, f-DPO, RLHF and friends.")


def _errors():
    from bandit_lab import errors

    return errors


def _bandit_error(msg: str):
    return _errors().BanditError(msg)


@app.callback()
def _root(
    float32: bool = typer.Option(False, "--float32", help="float32 instead of float64 (speed option; not for checks)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="don't use JAX's persistent compilation cache "
                                  "(default: on, in $BANDIT_LAB_CACHE_DIR or the user cache dir; BANDIT_LAB_NO_CACHE=1 also disables it)"),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", metavar="SIZE",
                                             help="refuse jobs estimated to need more memory (e.g. 16G) [default: a quarter of RAM]"),
    max_work: Optional[str] = typer.Option(None, "--max-work", metavar="DURATION",
                                           help="refuse jobs estimated to take longer (e.g. 30m, 2h) [default: 10m]"),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", metavar="PATH",
                                               help="import user-defined losses from this Python file first (repeatable; "
                                                    "may appear anywhere on the command line; see examples/my_losses.py)"),
    plugin_timeout: Optional[float] = typer.Option(None, "--plugin-timeout", metavar="SECONDS", parser=lambda t: _parse_float(t),
                                                   help="time limit for each call into plugin code: its import, tracing "
                                                        "its loss, its oracle (0: none) [default: 60]"),
):
    from bandit_lab.infra import cache

    if not no_cache:
        cache.enable()
    else:
        cache.disable()
    from bandit_lab.infra import precision  # importing bandit_lab leaves JAX's config alone; the command chooses

    precision.enable_x64(not float32)
    from bandit_lab.infra import xla_flags

    if xla_flags.requested(False):  # BANDIT_LAB_FAST_COMPILE=1: every command (before JAX's backend starts)
        xla_flags.enable()
    if plugin or plugin_timeout is not None:
        from bandit_lab import plugins

        plugins.set_timeout(plugins.DEFAULT_TIMEOUT if plugin_timeout is None else plugin_timeout)
        for path in plugin or ():
            plugins.load_plugin(path)
    from bandit_lab.infra import budget

    # every invocation sets both limits (None: the default), so an in-process caller's earlier
    # `--max-memory 1k …` (a test's) does not carry over into its next command
    budget.set_limits(None if max_memory is None else budget.parse_size(max_memory),
                      None if max_work is None else budget.parse_duration(max_work))


# ----------------------------------------------------------------------------- helpers

def _clean(obj, what: str):
    """JSON-ready result; a non-finite number is a divergence, never printed (nor a ``null``)."""
    from bandit_lab.infra import guards
    from bandit_lab.runner import jsonable

    guards.check_result(obj, what)
    return jsonable(obj)


def _prepare_out(path: str, overwrite: bool, fresh: bool = False):
    from bandit_lab.infra import files

    return files.prepare_out(path, overwrite, fresh=fresh)


def _bad_value(msg: str) -> Exception:
    return typer.BadParameter(msg)


def _int_text(text) -> int:
    """``12``, ``1_000`` or an integral ``1e8`` → int (never ``2.5`` or ``true``); ValueError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    try:
        return int(text)
    except (TypeError, ValueError):
        pass
    try:
        d = decimal.Decimal(str(text).strip())
    except decimal.InvalidOperation:
        raise ValueError(text) from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(text)
    return int(d)


def _parse_int(text) -> int:
    """An integer option (see :func:`_int_text`)."""
    try:
        return _int_text(text)
    except ValueError:
        raise _bad_value(f"must be an integer, got {str(text)!r}") from None


def _parse_float(text) -> float:
    """A number option (``inf``/``nan`` parse; the option's range then refuses them by name)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    try:
        return float(text)
    except (TypeError, ValueError):
        raise _bad_value(f"must be a number, got {str(text)!r}") from None


# ----------------------------------------------------------------------------- experiments

@dataclasses.dataclass(frozen=True)
class ExperimentInfo:
    name: str
    module: str
    summary: str
    reference: str


def _experiments_dir() -> str:
    spec = importlib.util.find_spec("bandit_lab")  # locates the package without importing it (no JAX)
    return os.path.join(list(spec.submodule_search_locations)[0], "experiments")


_INDEX: dict[str, ExperimentInfo] = {}


def experiment_index() -> dict[str, ExperimentInfo]:
    """Every experiment's name, module, summary and reference, read from the literal
    ``EXPERIMENT = Experiment(name=..., summary=...)`` of each file in ``bandit_lab/experiments/``
    (``ast``, no import). A test checks it equals :func:`bandit_lab.experiments.registry`."""
    if not _INDEX:
        d = _experiments_dir()
        for fn in sorted(os.listdir(d)):
            if not fn.endswith(".py") or fn.startswith("_"):
                continue
            try:
                with open(os.path.join(d, fn), encoding="utf-8") as fh:
                    tree = ast.parse(fh.read())
            except (OSError, SyntaxError):
                continue
            for node in tree.body:
                if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXPERIMENT" for t in node.targets)
                        and isinstance(node.value, ast.Call)):
                    kw = {k.arg: k.value for k in node.value.keywords}
                    lit = {k: v.value for k, v in kw.items() if isinstance(v, ast.Constant) and isinstance(v.value, str)}
                    if "name" in lit:
                        _INDEX[lit["name"]] = ExperimentInfo(lit["name"], fn[:-3], lit.get("summary", ""), lit.get("reference", ""))
    return dict(sorted(_INDEX.items()))


def _load_experiment(info: ExperimentInfo):
    return importlib.import_module(f"bandit_lab.experiments.{info.module}").EXPERIMENT


COMMON = ("out", "overwrite", "json", "plot")


def experiment_command(exp, action=None) -> TyperCommand:
    """A typer command for one experiment, generated from its settings' typed fields:
    ``--field VALUE`` for numbers and strings (type, range or choices and default in
    ``--help``), ``--flag/--no-flag`` for booleans, comma lists (``--betas 0.1,1``, or the
    option repeated) for tuples; plus ``--out``, ``--overwrite``, ``--json``, ``--no-plot``.
    ``action(exp, overrides, common)`` runs it (default :func:`run_experiment`)."""
    from bandit_lab import experiments

    action = action or run_experiment
    opts = experiments.options(exp.settings)
    params = []
    for o in opts:
        if o.flag[2:] in COMMON:
            raise TypeError(f"{exp.name}: option {o.flag} collides with a common option")
        rng = o.describe()
        text = o.help + (f"; {rng}" if rng and not o.choices else "")
        if o.many:
            kind = {float: "number", int: "integer", str: "name"}[o.kind]
            default = ",".join(experiments.format_value(x) for x in o.default) if o.default else "none"
            opt = typer.Option(None, o.flag, metavar=f"{kind.upper()},…", show_default=default,
                               help=f"{text} (comma-separated {kind}s, or repeat the option)")
            ann = Optional[list[str]]
        elif o.kind is bool:
            opt = typer.Option(o.default, f"{o.flag}/--no-{o.flag[2:]}", help=text)
            ann = bool
        elif o.kind is int:
            opt = typer.Option(o.default, o.flag, parser=_parse_int, metavar="INTEGER", help=text)
            ann = Optional[int] if o.optional else int
        elif o.kind is float:
            opt = typer.Option(o.default, o.flag, parser=_parse_float, metavar="NUMBER", help=text)
            ann = Optional[float] if o.optional else float
        else:
            opt = typer.Option(o.default, o.flag, metavar="|".join(o.choices) if o.choices else "TEXT", help=text)
            ann = Optional[str] if o.optional else str
        params.append(inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann))
    params += [
        inspect.Parameter("cli_out", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                          default=typer.Option(None, "--out", metavar="DIR",
                                               help="write records.json and figures to DIR (sweeps default to a new runs/NAME-TIMESTAMP/, -2, -3, … if taken)")),
        inspect.Parameter("cli_overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--overwrite", help="allow replacing files in an existing --out")),
        inspect.Parameter("cli_json", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(False, "--json", help="print one JSON object to stdout")),
        inspect.Parameter("cli_plot", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                          default=typer.Option(True, "--plot/--no-plot", help="draw figures (with --out or a sweep)")),
    ]

    def callback(**kw):
        overrides = {}
        for o in opts:
            v = kw[o.name]
            if o.many:
                if v is None:
                    continue
                items = [x.strip() for part in v for x in part.split(",") if x.strip()]
                conv = {float: float, int: _int_text, str: str}[o.kind]
                try:
                    overrides[o.name] = tuple(conv(x) for x in items)
                except ValueError:
                    kind = {float: "number", int: "integer", str: "name"}[o.kind]
                    raise _bandit_error(f"{o.flag}: must be comma-separated {kind}s, got {','.join(v)!r}") from None
            else:
                overrides[o.name] = v
        common = {"out": kw["cli_out"], "overwrite": kw["cli_overwrite"], "json": kw["cli_json"], "plot": kw["cli_plot"]}
        return action(exp, overrides, common)

    callback.__signature__ = inspect.Signature(params)
    callback.__name__ = exp.name.replace("-", "_")
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sub.command(name=exp.name, help=exp.summary + (f" ({exp.reference})" if exp.reference else ""))(callback)
    return typer.main.get_command(sub)


def _write_results(exp, settings, result: dict, common: dict, outdir) -> tuple[dict, list]:
    """Check the records (as columns), write records.json + records.npz (+ figures) to ``outdir``;
    return ``(record, written)``."""
    # records as columns (bandit_lab.infra.records): checked and written as arrays; listed in
    # records.json (and --json) only up to JSON_MAX_RECORDS rows unless --json asks for them
    from bandit_lab.infra import files
    from bandit_lab.infra import records as records_mod

    table = records_mod.as_table(result.get("records", []))
    bad = records_mod.first_nonfinite(table)
    if bad is not None:
        from bandit_lab.errors import DivergenceError

        raise DivergenceError(f"run {exp.name} produced a non-finite value at {bad}; the run diverged (a learning rate too "
                              "large, or β, α or rewards out of range) — nothing was printed")
    small = len(table) <= records_mod.JSON_MAX_RECORDS
    listed = small or common["json"]
    head = {k: v for k, v in result.items() if k != "records"}
    record = _clean({"experiment": exp.name, "settings": dataclasses.asdict(settings), **head}, f"run {exp.name}")
    record["records"] = records_mod.jsonable_records(result["records"]) if listed and "records" in result else "records.npz"
    if listed and "records" in result and not isinstance(result["records"], records_mod.Table):
        record["records"] = _clean(result["records"], f"run {exp.name}")
    written = []
    if outdir is not None:
        file_record = record if small else {**record, "records": "records.npz"}
        written.append(files.write_json(os.path.join(outdir, "records.json"), file_record))
        written.append(table.save(os.path.join(outdir, "records.npz")))
        if common["plot"] and exp.plot is not None:
            written += exp.plot(result, outdir)
    return record, written


def run_experiment(exp, overrides: dict, common: dict) -> int:
    from bandit_lab import experiments
    from bandit_lab.infra import progress, timing

    settings = experiments.make_settings(exp, overrides)
    writes = getattr(settings, "saves", lambda: True)()
    # Without --out, a sweep writes to a fresh runs/NAME-YYYYmmdd-HHMMSS/ (-2, -3, … when a run
    # started in the same second has it): never over earlier results, never shared
    default = None if common["out"] or not writes else os.path.join("runs", f"{exp.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    outdir = None
    try:
        if common["out"]:
            outdir = _prepare_out(common["out"], common["overwrite"])
        elif default:
            outdir = _prepare_out(default, False, fresh=True)
        with progress.bar(f"run {exp.name}"):
            result = exp.run(settings)
        with timing.phase("write"):
            record, written = _write_results(exp, settings, result, common, outdir)
    except BaseException:
        if outdir is not None:
            outdir.discard()
        raise
    if common["json"]:
        print(json.dumps({**record, "files": written}, allow_nan=False))
    else:
        print(exp.report(result))
        for f in written:
            print(f"wrote {f}")
    return 0


class ExperimentGroup(TyperGroup):
    """``bandit-lab run``: lists experiments from :func:`experiment_index` (no imports) and
    builds the command of the one invoked."""

    def list_commands(self, ctx) -> list[str]:
        return list(experiment_index())

    def get_command(self, ctx, name):
        info = experiment_index().get(name)
        if info is None:
            return None
        # for the listing only: the summary, without importing the experiment
        return TyperCommand(name, help=info.summary + (f" [{info.reference}]" if info.reference else ""), callback=lambda: None)

    def resolve_command(self, ctx, args):
        name = args[0]
        # fast path, no index: the module named after the experiment (weight-decay → weight_decay.py)
        guess = name.replace("-", "_")
        if guess.isidentifier() and os.path.isfile(os.path.join(_experiments_dir(), guess + ".py")):
            exp = getattr(importlib.import_module(f"bandit_lab.experiments.{guess}"), "EXPERIMENT", None)
            if exp is not None and exp.name == name:
                return name, experiment_command(exp), args[1:]
        index = experiment_index()
        if name not in index:
            m = difflib.get_close_matches(name, list(index), n=1, cutoff=0.5)
            raise _bandit_error(f"unknown experiment {name!r}" + (f"; did you mean {m[0]!r}?" if m else "")
                                + f" (choose one of {', '.join(index)})")
        return name, experiment_command(_load_experiment(index[name])), args[1:]


run_app = typer.Typer(cls=ExperimentGroup, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                      help="Run an experiment: `bandit-lab run NAME --help` lists its typed options.")
app.add_typer(run_app, name="run")


# ----------------------------------------------------------------------------- commands

@app.command()
def solve(
    spec: str = typer.Argument(..., help="a JSON (or .toml) spec; see examples/ and `bandit-lab schema`"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """Train and exactly solve a user-defined bandit; compare with the closed form."""
    from bandit_lab import spec as spec_mod

    res = spec_mod.solve(spec_mod.load(spec))
    print(json.dumps(_clean(res, "solve"), allow_nan=False) if as_json else spec_mod.report(res))
    return 0


@app.command()
def schema():
    """Print the JSON Schema of a `solve` spec (for editors: validate spec files as you type)."""
    from bandit_lab import schema as schema_mod

    print(json.dumps(schema_mod.json_schema(), indent=1, ensure_ascii=False))
    return 0


@app.command()
def verify(
    only: Optional[list[str]] = typer.Option(None, "--only", help="run only these checks (repeatable)"),
    instances: Optional[int] = typer.Option(None, "--instances", parser=_parse_int, metavar="INTEGER",
                                            help="random instances per check; ≥ 1"),
    seed: int = typer.Option(0, "--seed", parser=_parse_int, metavar="INTEGER", help="seed of the random instances; in [0, 2^32 − 1]"),
    as_json: bool = typer.Option(False, "--json"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", parser=_parse_int, metavar="INTEGER",
                                       help="worker processes; ≥ 1 [default: the CPUs available, at most 4; 1 for fewer than 8 checks]"),
    slow: bool = typer.Option(False, "--slow", help="run long checks at the paper's full size (sampled-rate: N up to 4096; minutes)"),
):
    """Run the registered theorem checks; exit 1 on any failure."""
    from bandit_lab.infra import bounds, budget, progress, xla_flags
    from bandit_lab import checks

    if xla_flags.requested(True):  # compile-bound: fast-compile mode, here and in the workers (issue 22)
        xla_flags.enable()

    for flag, value, rng in (("--instances", instances, bounds.COUNT), ("--seed", seed, bounds.SEED), ("--jobs", jobs, bounds.COUNT)):
        e = None if value is None else rng.error(value)
        if e:
            raise _bandit_error(f"{flag}: {e}")
    reg = checks.registry()
    names = list(dict.fromkeys(only)) if only else list(reg)
    unknown = [n for n in names if n not in reg]
    if unknown:
        m = difflib.get_close_matches(unknown[0], list(reg), n=1, cutoff=0.5)
        raise _bandit_error(f"unknown check(s) {', '.join(unknown)}" + (f"; did you mean {m[0]!r}?" if m else "") + "; see `bandit-lab list checks`")
    n_inst = sum(instances or reg[n].n_instances for n in names)
    budget.check(budget.instances(n_inst, 1), "`bandit-lab verify`")
    results = []
    if not as_json:
        print(f"{'check':<24}{'claim':<92}{'value':>11}{'tol':>10}  pass")
    with progress.bar("verify", total=len(names)) as bar:
        bar.update(f"verify {names[0]}")
        for i, r in enumerate(checks.run_checks(names, instances, seed, jobs=jobs or checks.default_jobs(len(names)), slow=slow)):
            n = r.check.name
            bar.advance()
            if i + 1 < len(names):
                bar.update(f"verify {names[i + 1]}")
            results.append(r)
            if not as_json:
                sign = "≥" if r.check.direction == "≥" else "≤"
                value = f"{r.value:>11.2e}" if r.value == r.value else f"{'—':>11}"  # NaN: the check could not evaluate
                claim = checks.claim(r.check, slow)
                print(f"{n:<24}{claim[:90]:<92}{value}{sign + format(r.check.tolerance, '.0e'):>10}  {'PASS' if r.passed else 'FAIL'}", flush=True)
    if as_json:
        from bandit_lab.runner import jsonable

        print(json.dumps(jsonable([{"check": r.check.name, "claim": checks.claim(r.check, slow), "value": r.value, "tolerance": r.check.tolerance,
                                    "direction": r.check.direction, "passed": r.passed, "instances": instances or r.check.n_instances,
                                    "seconds": r.seconds, "tier": r.tier} for r in results]), allow_nan=False))
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

    outdir = None
    try:
        outdir = _prepare_out(out, overwrite)
        for line in reproduce_mod.reproduce(outdir, quick=quick):
            print(line, flush=True)
    except BaseException:
        if outdir is not None:
            outdir.discard()
        raise
    return 0


@app.command("fixed-points")
def fixed_points(
    spec: Optional[str] = typer.Argument(None, help="a bandit spec (JSON/TOML); default: Kong et al. App. B"),
    only: Optional[list[str]] = typer.Option(None, "--only", metavar="LOSS,…",
                                             help="only these losses (comma-separated or repeated; default: every registered loss)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
):
    """The exact population optimum of every registered loss (or --only these) on one bandit."""
    from bandit_lab import fixed_points as fp
    from bandit_lab import losses
    from bandit_lab import spec as spec_mod

    names = None
    if only:
        names = list(dict.fromkeys(x.strip() for part in only for x in part.split(",") if x.strip()))
        from bandit_lab.experiments import check_losses

        check_losses("--only", names, kinds=("pairwise", "policy", "onpolicy"))
    from bandit_lab.infra import progress

    loaded = None if spec is None else spec_mod.load(spec)
    with progress.bar("fixed-points: exact optimum of every loss"):  # ~36 s for all losses, silent before
        res = fp.fixed_points(loaded, names)
    if as_json:
        from bandit_lab.runner import jsonable

        print(json.dumps(jsonable(res)))  # NaN/∞ here mean "no finite minimiser", reported as such
    else:
        print(fp.report(res))
    return 0


@app.command("list")
def list_(what: str = typer.Argument("all", help="all | experiments | losses | checks")):
    """List experiments, losses and theorem checks."""
    if what not in ("all", "experiments", "losses", "checks"):
        raise _bandit_error(f"list what? choose all, experiments, losses or checks; got {what!r}")
    if what in ("all", "experiments"):
        print("experiments:")
        for n, e in experiment_index().items():
            print(f"  {n:<22} {e.summary}" + (f"  [{e.reference}]" if e.reference else ""))
    if what in ("all", "losses"):
        from bandit_lab import losses
        from bandit_lab.plugins import is_user_loss

        print("losses:")
        for n, s in sorted(losses.registry().items()):
            params = ", ".join([f"{k}={v}" for k, v in s.defaults.items()] + [f"{k}={v}" for k, v in s.static.items()])
            origin = "  (plugin)" if is_user_loss(n) else ""
            print(f"  {n:<22} {s.summary} ({params})" + (f"  [{s.citation}]" if s.citation else "") + origin)
    if what in ("all", "checks"):
        from bandit_lab import checks

        print("checks:")
        for n, c in checks.registry().items():
            print(f"  {n:<22} {c.claim}")
    return 0


# ----------------------------------------------------------------------------- command modules
# Commands defined in their own module ``cli/NAME.py`` are registered here, one line each.
from cli.cite import cite as _cite  # noqa: E402  (BibTeX of what was used, issue 15)
from cli.explore import explore as _explore  # noqa: E402  (the teaching page, issue 14)

app.command()(_cite)
app.command()(_explore)
from cli.check_loss import check_loss as _check_loss  # noqa: E402  (the loss battery, issue 15)

app.command("check-loss")(_check_loss)
from cli.explain import explain as _explain  # noqa: E402  (what a library config optimises, issue 21)

app.command()(_explain)


# ----------------------------------------------------------------------------- entry point

def _usage_error(e: BaseException) -> bool:
    """A typer usage error (unknown option, missing argument, bad value). Matched by shape: typer
    < 0.26 raises click's ``UsageError``, typer ≥ 0.26 its own vendored copy; both carry
    ``format_message()`` and exit code 2, and we import neither click nor typer internals."""
    return hasattr(e, "format_message") and getattr(e, "exit_code", None) == 2


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


GLOBAL_FLAGS = ("--float32", "--no-cache")
GLOBAL_VALUED = ("--plugin", "--plugin-timeout", "--max-memory", "--max-work")


def hoist_plugins(argv: list[str]) -> list[str]:
    """Move every global option (``--plugin PATH``, ``--max-memory SIZE``, ``--max-work DURATION``,
    their ``--opt=VALUE`` forms, ``--float32``, ``--no-cache``; before a ``--``) to the front, where
    the root callback reads it: ``bandit-lab check-loss mine --plugin f.py`` works like
    ``bandit-lab --plugin f.py check-loss mine`` (the losses must exist before the command parses),
    and ``bandit-lab run weight-decay --alpha 0.1 --no-cache`` like ``bandit-lab --no-cache run …``
    (issue 23). Relative order among the moved options is kept."""
    front, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest += argv[i:]
            break
        if a in GLOBAL_VALUED and i + 1 < len(argv):
            front += [a, argv[i + 1]]
            i += 2
            continue
        if a in GLOBAL_FLAGS or a.startswith(tuple(f"{o}=" for o in GLOBAL_VALUED)):
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


hoist_globals = hoist_plugins


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit codes: 0 ok, 1 a check failed, 2 bad input, 3 internal error,
    4 divergence, 130 interrupted (see :mod:`bandit_lab.errors`)."""
    if argv is None:  # the process is this command (not a caller passing argv, e.g. a test)
        # Python's exit collects garbage across every object JAX made (~0.2 s of a cold run);
        # frozen objects are skipped, and the operating system frees the memory anyway. Run last
        # (atexit is last-in, first-out): every other exit handler has run by then.
        import atexit
        import gc

        atexit.register(gc.freeze)
        from bandit_lab import errors as _errs  # light: no JAX

        _errs.install_interrupt_handlers(armed=False)  # already installed by cli/__init__.py, recording only
    process = argv is None
    argv = hoist_plugins(list(sys.argv[1:] if argv is None else argv))
    if "bandit_lab.infra.budget" in sys.modules:  # in-process callers (tests): limits do not leak between runs
        sys.modules["bandit_lab.infra.budget"].set_limits()
    try:
        if process:
            _errs.arm()  # a signal that came during the imports ends the run here: exit 130, one line
        with warnings.catch_warnings():
            # NumPy's RuntimeWarnings (overflow, invalid value) are not for the user's terminal: a
            # non-finite result is reported by the guards as one line, so these would only precede it.
            warnings.simplefilter("ignore", RuntimeWarning)
            with _json_stdout("--json" in argv):  # host-side prints (jax.debug.print in a plugin loss) → stderr
                rv = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        code = getattr(e, "exit_code", 0)
        if code == EXIT_INTERRUPTED or _interrupted():  # typer turns Ctrl-C into a silent Exit(130)
            _exit_interrupted(process)
        sys.exit(code)
    except (typer.Abort, KeyboardInterrupt):
        _exit_interrupted(process)
    except Exception as e:
        errors = sys.modules.get("bandit_lab.errors")
        if errors is not None and isinstance(e, errors.BanditError):
            print(f"bandit-lab: error: {_one_line(e)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if errors is not None and isinstance(e, errors.DivergenceError):
            print(f"bandit-lab: diverged: {_one_line(e)}", file=sys.stderr)
            sys.exit(EXIT_DIVERGED)
        if _usage_error(e):
            msg = _one_line(e.format_message())
            if msg:  # empty: a command given no arguments has printed its help
                print(f"bandit-lab: error: {msg}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if isinstance(e, MemoryError):
            print("bandit-lab: error: out of memory (the job's estimate missed it); make it smaller", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        plugins = sys.modules.get("bandit_lab.plugins")
        failure = plugins.runtime_failure(e) if plugins is not None else None
        if failure:  # a user's plugin failed inside compiled code (a host callback): its line, exit 2
            print(f"bandit-lab: error: {_one_line(failure)}", file=sys.stderr)
            sys.exit(EXIT_BAD_INPUT)
        if os.environ.get("BANDIT_LAB_DEBUG"):  # a bug, not bad input: one line, traceback on request
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"bandit-lab: internal error: {type(e).__name__}: {msg} (set BANDIT_LAB_DEBUG=1 for the traceback; please report it)",
              file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    # a Ctrl-C that a callback swallowed (the run went on): still interrupted; and click's own
    # KeyboardInterrupt → Exit(130), *returned* (not raised) under standalone_mode=False
    if _interrupted() or rv == EXIT_INTERRUPTED:
        _exit_interrupted(process)
    sys.exit(rv if isinstance(rv, int) else 0)


def _json_stdout(on: bool):
    """``--json``: stdout is one JSON document, whatever runs (bandit_lab.plugins.json_stdout)."""
    if not on:
        return contextlib.nullcontext()
    from bandit_lab import plugins

    return plugins.json_stdout()


def _interrupted() -> bool:
    errors = sys.modules.get("bandit_lab.errors")
    return errors is not None and errors.interrupted()


def _exit_interrupted(process: bool) -> None:
    """One line, exit 130; the process itself leaves without interpreter teardown (see
    :func:`bandit_lab.errors.exit_interrupted`)."""
    from bandit_lab import errors

    errors.exit_interrupted("bandit-lab", hard=process)


if __name__ == "__main__":
    main()
