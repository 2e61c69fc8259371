"""User-defined losses: a decorator with the same fields as the built-ins' :class:`LossSpec`,
and the loader behind the command line's ``--plugin PATH``.

A plugin is an ordinary Python file outside the package::

    import jax
    import bandit_lab as bl

    @bl.loss(defaults={"beta": 0.1}, counterpart="rlhf", citation="me 2026")
    def my_sigmoid(inputs, hp):
        hw, hl = bl.log_ratios(inputs)
        return bl.expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))

``bandit-lab --plugin my_losses.py solve spec.json`` (``--plugin`` repeatable, anywhere on the
command line) imports it before the command runs; the loss is then in ``list``, ``solve``,
``fixed-points``, ``check-loss`` and every experiment that takes ``--loss``. Code runs only from
files named on the command line (or :func:`load_plugin` in Python) — never because a spec file
names a loss: a spec that could name code would run it on opening.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import sys
import threading
from typing import Callable

from bandit_lab.errors import BanditError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LOADED: dict[str, list[str]] = {}  # real path → the loss names it registered
KINDS = ("pairwise", "policy")

# ----------------------------------------------------------------------------- the boundary
# Everything a plugin runs — its import, the registration trace, its loss (while JAX traces it), its
# check/oracle/exact/counterpart/state functions — runs inside :func:`boundary` (issue 24 item 1):
# - any exception (SystemExit included; not KeyboardInterrupt) becomes one :class:`PluginError`
#   line naming the plugin, the function and the line of the plugin's own file;
# - the plugin's ``print`` goes to stderr (``--json``'s stdout stays one JSON document);
# - a time limit (``--plugin-timeout``, :func:`set_timeout`; SIGALRM, main thread only) bounds the
#   Python time of each call (an import that sleeps, a loss whose tracing never ends). Compiled code
#   (XLA) is not interrupted: a host callback that blocks is not bounded.

#: the command line's time limit for one plugin call (seconds) when ``--plugin-timeout`` is not given.
#: The library itself sets none (``None``): a Python program's own SIGALRM is left alone unless it
#: calls :func:`set_timeout`.
DEFAULT_TIMEOUT = 60.0
_TIMEOUT: list = [None]
_ACTIVE = threading.local()
_OWNER: list = []  # the --plugin path being imported (so register_loss knows who registers)
_SHOWN: dict[str, str] = {}  # real path → the path as the user wrote it


class PluginError(BanditError):
    """A plugin's own code failed (bad input from the user's point of view: exit 2). ``kind``,
    ``line`` and ``detail`` are the exception's type name, the plugin file's line and message."""

    def __init__(self, msg: str, kind: str = "", line: int | None = None, detail: str = ""):
        super().__init__(msg)
        self.kind, self.line, self.detail = kind, line, detail


class PluginTimeout(BaseException):
    """Raised by the SIGALRM handler inside plugin code (a BaseException: ``except Exception`` in the
    plugin does not swallow it)."""


def set_timeout(seconds: float | None) -> None:
    """The time limit of one plugin call (import, trace, oracle…); ``None`` or 0: no limit."""
    if seconds is not None:
        import math

        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            raise BanditError(f"--plugin-timeout: a number of seconds ≥ 0; got {seconds!r}")
    _TIMEOUT[0] = seconds or None


def timeout() -> float | None:
    return _TIMEOUT[0]


def _line_in(tb, filename: str | None) -> int | None:
    line = None
    while tb is not None:
        if filename is not None and tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@contextlib.contextmanager
def _time_limit(seconds):
    import signal

    if (not seconds or getattr(_ACTIVE, "timer", False) or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")):
        yield
        return
    from bandit_lab import errors

    def on_alarm(signum, frame):
        if errors._unsafe(frame):  # inside an import's C init or a gc callback: try again in 20 ms
            signal.setitimer(signal.ITIMER_REAL, 0.02)
            return
        raise PluginTimeout

    try:
        old = signal.signal(signal.SIGALRM, on_alarm)
    except (ValueError, OSError):
        yield
        return
    _ACTIVE.timer = True
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        _ACTIVE.timer = False


@contextlib.contextmanager
def boundary(owner: str, function: str, filename: str | None = None):
    """Run user code: stdout → stderr, the time limit, any failure → one :class:`PluginError`
    ``"OWNER: FUNCTION (line N): Type: message"`` (``N``: the deepest line in ``filename``).
    A :class:`BanditError` the user raises on purpose (a ``check`` refusing a value) passes
    unchanged; KeyboardInterrupt passes (Ctrl-C is the interrupt, exit 130)."""
    depth = getattr(_ACTIVE, "depth", 0)
    _ACTIVE.depth = depth + 1
    try:
        with contextlib.redirect_stdout(sys.stderr), _time_limit(_TIMEOUT[0]):
            yield
    except (BanditError, KeyboardInterrupt):
        raise
    except PluginTimeout:
        if depth:  # an outer boundary owns the timer: it reports
            raise
        raise PluginError(f"{owner}: {function} took longer than --plugin-timeout {_TIMEOUT[0]:g} s", "timeout") from None
    except BaseException as e:  # SystemExit, GeneratorExit, any Exception of the user's
        line = _line_in(e.__traceback__, filename)
        kind = type(e).__name__
        detail = f"code {e.code}" if isinstance(e, SystemExit) else _first_line(e)
        where = f" (line {line})" if line else ""
        raise PluginError(f"{owner}: {function}{where}: {kind}: {detail}" + (" (a plugin must not exit)" if isinstance(e, SystemExit) else ""),
                          kind, line, detail) from None
    finally:
        _ACTIVE.depth = depth


def _guarded(fn: Callable, owner: str, function: str, check_result: Callable | None = None) -> Callable:
    """``fn`` called inside :func:`boundary`; the wrapper keeps ``fn``'s module and name (so
    :meth:`~bandit_lab.core.objective.Objective.stable_signature` still sees user code, never cached)."""
    filename = getattr(getattr(fn, "__code__", None), "co_filename", None) or getattr(
        getattr(getattr(fn, "func", None), "__code__", None), "co_filename", None)

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with boundary(owner, function, filename):
            out = fn(*args, **kwargs)
        if check_result is not None:
            check_result(out, args, owner, function)
        return out

    wrapped.__bandit_lab_user__ = fn
    return wrapped


def _check_oracle(out, args, owner, function):
    import numpy as np

    if not (isinstance(out, tuple) and len(out) == 2):
        raise PluginError(f"{owner}: {function} must return (policy or None, note); got {type(out).__name__}")
    pi, _note = out
    if pi is None:
        return
    problem = args[0]
    X, K = np.shape(problem.pi_ref)
    try:
        a = np.asarray(pi, dtype=np.float64)
    except (TypeError, ValueError):
        raise PluginError(f"{owner}: {function} returned a policy that is not an array of numbers") from None
    if a.shape not in ((K,), (X, K)) or (a.ndim == 1 and X != 1):
        raise PluginError(f"{owner}: {function} returned a policy of shape {a.shape} for a problem of {X} context(s) × {K} responses")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(np.abs(np.atleast_2d(a).sum(-1) - 1) > 1e-6):
        raise PluginError(f"{owner}: {function} returned a policy that is not a probability distribution "
                          "(non-finite, negative, or rows not summing to 1)")


# ----------------------------------------------------------------------------- host callbacks
# A loss may call back into Python from compiled code (jax.pure_callback / io_callback). An
# exception there is logged by JAX with its traceback and resurfaces as a JaxRuntimeError
# ("CpuCallback error"). While user losses are registered, JAX's callback logger is filtered: the
# exception is kept (not printed), and :func:`runtime_failure` turns the runtime error into one line.
_CALLBACK_ERRORS: list = []
_FILTERED: list = []


class _CallbackFilter:
    def filter(self, record) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            _CALLBACK_ERRORS.append(record.exc_info[1])
            return False
        return True


def _filter_callback_logs() -> None:
    if _FILTERED:
        return
    import logging

    logging.getLogger("jax._src.callback").addFilter(_CallbackFilter())
    _FILTERED.append(True)


def _user_files() -> set:
    import inspect

    files = set(_LOADED)
    from bandit_lab.losses import base

    for name in _USER:
        spec = base.REGISTRY.get(name)
        for field in _CODE_FIELDS:
            fn = getattr(getattr(spec, field, None), "__bandit_lab_user__", None)
            try:
                files.add(os.path.realpath(inspect.getsourcefile(fn)))
            except (TypeError, OSError):
                pass
    return files


def runtime_failure(e: BaseException) -> str | None:
    """One line for an error that user code caused inside compiled code (a host callback that
    raised), or ``None`` when ``e`` is not one."""
    if not _CALLBACK_ERRORS or "callback" not in str(e).lower():
        return None
    exc = _CALLBACK_ERRORS[-1]
    files = _user_files()
    line, fname, func = None, None, None
    tb = exc.__traceback__
    while tb is not None:
        f = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if f in files or not f.startswith(os.path.dirname(os.path.dirname(os.__file__))):
            line, fname, func = tb.tb_lineno, f, tb.tb_frame.f_code.co_name
        tb = tb.tb_next
    owner = next((f"--plugin {_SHOWN.get(p, p)}" for p in _LOADED if p == fname), None) or (f"{fname}" if fname else "a user loss")
    where = f" (line {line})" if line else ""
    return f"{owner}: host callback {func or '?'}{where}: {type(exc).__name__}: {_first_line(exc)}"


#: LossSpec fields that hold user code: each runs inside the boundary
_CODE_FIELDS = ("fn", "check", "oracle", "exact", "counterpart", "state_init", "state_update", "configure", "translate")


def _guard_spec(spec):
    import dataclasses

    owner = f"--plugin {_OWNER[-1]}" if _OWNER else f"loss {spec.name!r}"
    changes = {}
    for field in _CODE_FIELDS:
        fn = getattr(spec, field, None)
        if fn is None or not callable(fn) or hasattr(fn, "__bandit_lab_user__"):
            continue
        mod = getattr(fn, "__module__", None) or ""
        if mod == "bandit_lab" or mod.startswith("bandit_lab."):  # the library's own helpers
            continue
        what = f"loss {spec.name!r}" if field == "fn" else f"{field} of loss {spec.name!r}"
        changes[field] = _guarded(fn, owner, what, _check_oracle if field == "oracle" else None)
    return dataclasses.replace(spec, **changes) if changes else spec


def _counterpart(c) -> Callable | None:
    """``None`` | ``"rlhf"`` | ``("rlhf", {"divergence": …, "reward": …})`` | ``f(static) -> (name, static)``."""
    if c is None or callable(c):
        return c
    if isinstance(c, str):
        name, static = c, {}
    elif isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str) and isinstance(c[1], dict):
        name, static = c
    else:
        raise BanditError(f"counterpart must be a loss name, a (name, options) pair or a function; got {c!r}")
    from bandit_lab.losses import get

    full = {**get(name).static, **static}
    return lambda _static: (name, dict(full))


def register_loss(spec) -> None:
    """Add a :class:`~bandit_lab.LossSpec` to the registry beside the built-ins (which are loaded
    first, so a name clash is caught here, not later). The loss is traced once on a 3-response
    bandit (shapes only, no arithmetic) so a broken loss fails now with its own message."""
    from bandit_lab.losses import base

    base.registry()
    if not isinstance(spec, base.LossSpec):
        raise BanditError(f"spec: a LossSpec (or use @bandit_lab.loss); got {type(spec).__name__}")
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise BanditError(f"loss name must be lower-case letters, digits and _ (starting with a letter); got {spec.name!r}")
    if spec.name in base.REGISTRY:
        raise BanditError(f"loss {spec.name!r} is already registered; choose another name")
    if spec.kind not in KINDS:
        raise BanditError(f"loss {spec.name!r}: kind must be one of {', '.join(KINDS)}; got {spec.kind!r}")
    for k, v in spec.defaults.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BanditError(f"loss {spec.name!r}: defaults must map names to numbers; got {k!r}: {v!r}")
    for field in ("summary", "citation", "bibtex"):
        if not isinstance(getattr(spec, field, ""), str):
            raise BanditError(f"loss {spec.name!r}: {field} must be a string; got {type(getattr(spec, field)).__name__}")
    if spec.bibtex:
        from bandit_lab.bibliography import check_bibtex

        check_bibtex(spec.bibtex, f"loss {spec.name!r}")
    spec = _guard_spec(spec)
    _filter_callback_logs()
    _trace(spec)
    base.register(spec)
    _USER.add(spec.name)


#: names registered through :func:`register_loss` (plugin files or user code), not built-ins
_USER: set[str] = set()


def is_user_loss(name: str) -> bool:
    """True for a loss registered by :func:`register_loss` (a ``--plugin`` file or user code)."""
    return name in _USER


def unregister_loss(name: str) -> None:
    """Remove a user-defined loss (built-ins cannot be removed)."""
    from bandit_lab.losses import base

    spec = base.REGISTRY.get(name)
    if spec is None:
        raise BanditError(f"no loss {name!r} is registered")
    if name in _USER:
        del base.REGISTRY[name]
        _USER.discard(name)
        for names in _LOADED.values():
            if name in names:
                names.remove(name)
        return
    raise BanditError(f"loss {name!r} is built in; it cannot be unregistered")


#: the problems a loss is traced on before it is accepted (shapes only): K = 3, another K, and contexts
_TRACE_PROBLEMS = (
    ("a 3-response bandit", [0.5, 0.3, 0.2], [0.6, 0.3, 0.1]),
    ("a 5-response bandit", [0.3, 0.2, 0.2, 0.2, 0.1], [0.1, 0.2, 0.3, 0.2, 0.2]),
    ("a 2-response bandit", [0.6, 0.4], [0.3, 0.7]),
    ("a 2-context, 4-response bandit", [[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]],
     [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]),
)


def _trace(spec) -> None:
    """Trace the loss and its gradient (``jax.eval_shape``: shapes only, nothing compiled or run)
    on several bandits (:data:`_TRACE_PROBLEMS`): a loss that works only for K = 3, only without
    contexts, or that cannot be differentiated fails here, with its own line, not later."""
    import jax

    from bandit_lab.losses import base
    from bandit_lab.core.objective import make_objective
    from bandit_lab.core.problems import Problem

    base.REGISTRY[spec.name] = spec  # make_objective looks the loss up by name
    try:
        for what, ref, star in _TRACE_PROBLEMS:
            try:
                pb = Problem.create(ref, pi_star=star, pairs="uniform")
                obj = make_objective(pb, spec.name, {})
                out = jax.eval_shape(lambda p: obj.value(p, obj.hp), obj.param.init())
                if getattr(out, "shape", None) == () and jax.numpy.issubdtype(out.dtype, jax.numpy.floating):
                    jax.eval_shape(jax.grad(lambda p: obj.value(p, obj.hp)), obj.param.init())
            except PluginError as e:
                if e.kind == "timeout":
                    raise
                where = f" (line {e.line})" if e.line else ""
                raise BanditError(f"loss {spec.name!r} fails on {what}: {e.kind}{where}: {e.detail}") from None
            except BanditError as e:
                raise BanditError(f"loss {spec.name!r}: {e}") from None
            except Exception as e:  # JAX refusing what the loss returned (e.g. a non-array): one line naming it
                raise BanditError(f"loss {spec.name!r} fails on {what}: {type(e).__name__}: {_first_line(e)}") from None
            if getattr(out, "shape", None) != ():
                raise BanditError(f"loss {spec.name!r} must return a scalar; it returns shape {getattr(out, 'shape', type(out).__name__)}"
                                  f" on {what}")
            if not jax.numpy.issubdtype(out.dtype, jax.numpy.floating):
                raise BanditError(f"loss {spec.name!r} must return a floating-point scalar; it returns {out.dtype}")
    finally:
        del base.REGISTRY[spec.name]


def loss(name: str | None = None, *, defaults: dict | None = None, static: dict | None = None, kind: str = "pairwise",
         summary: str = "", citation: str = "", bibtex: str = "", check: Callable | None = None, counterpart=None,
         oracle: Callable | None = None, exact: Callable | None = None, beta_zero: bool = False):
    """Register ``fn(inputs, hp, **static) -> scalar`` as a loss; the fields are those of
    :class:`~bandit_lab.LossSpec` (``defaults``: float hyperparameters, sweepable; ``static``:
    options that change the function; ``kind``: "pairwise" reads ``inputs.data``, "policy" reads
    ``inputs.logp``/``inputs.reward``; ``check(hp, static)`` raises ``BanditError`` on bad
    values; ``counterpart``: the RLHF objective it should match, e.g. ``"rlhf"`` or
    ``("rlhf", {"reward": "ipo"})``; ``oracle(problem, hp, static) -> (policy or None, note)``:
    its closed-form optimum). The name defaults to the function's.

    >>> import jax, bandit_lab as bl
    >>> @bl.loss(defaults={"beta": 1.0}, counterpart="rlhf", summary="DPO, written as a plugin")
    ... def doc_dpo(inputs, hp):
    ...     hw, hl = bl.log_ratios(inputs)
    ...     return bl.expect(inputs.data, -jax.nn.log_sigmoid(hp["beta"] * (hw - hl)))
    >>> "doc_dpo" in bl.loss_registry()
    True
    >>> bl.unregister_loss("doc_dpo")
    """
    from bandit_lab.losses.base import LossSpec

    def deco(fn):
        register_loss(LossSpec(name or fn.__name__, fn, dict(defaults or {}), dict(static or {}), kind=kind,
                               summary=summary or (fn.__doc__ or "").strip().split("\n")[0], citation=citation, bibtex=bibtex,
                               check=check, exact=exact, counterpart=_counterpart(counterpart), oracle=oracle,
                               beta_zero=beta_zero))
        return fn

    return deco


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else ""


def load_plugin(path: str) -> list[str]:
    """Import a plugin file (once per real path) and return the names of the losses it registered.
    Any failure — no such file, a syntax error, an exception in the file, a bad registration — is
    a :class:`~bandit_lab.BanditError` naming the file (the CLI prints it as one line, exit 2)."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise BanditError(f"path: the path of a plugin file; got {type(path).__name__}")
    real = os.path.realpath(os.path.expanduser(path))
    if real in _LOADED:
        return list(_LOADED[real])
    if not os.path.isfile(real):
        raise BanditError(f"--plugin {path}: no such file")
    if not real.endswith(".py"):
        raise BanditError(f"--plugin {path}: a plugin is a Python file (*.py)")
    from bandit_lab.losses import base

    base.registry()
    before = set(base.REGISTRY)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(real))[0])
    modname = f"bandit_lab_plugin_{stem}_{hashlib.sha1(real.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(modname, real)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        with open(real, "rb") as fh:
            source = fh.read()
    except OSError as e:
        sys.modules.pop(modname, None)
        raise BanditError(f"--plugin {path}: cannot read it: {e.strerror or e}") from None
    try:
        code = compile(source, real, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        _rollback(before, modname)
        line = getattr(e, "lineno", None)
        raise BanditError(f"--plugin {path}: syntax error at line {line}: {getattr(e, 'msg', None) or _first_line(e)}") from None
    # executed here, not through importlib's loader: the plugin's frames are then not inside an
    # import, so Ctrl-C and the time limit reach a plugin that sleeps or loops at import
    _OWNER.append(path)
    try:
        with boundary(f"--plugin {path}", "import", real):
            exec(code, module.__dict__)
    except PluginError as e:
        _rollback(before, modname)
        if e.kind in ("", "timeout"):
            raise
        if e.kind == "SystemExit":
            raise BanditError(f"--plugin {path}: SystemExit ({e.detail}) at import" + (f" (line {e.line})" if e.line else "")
                              + ": a plugin must not exit") from None
        where = f" (line {e.line})" if e.line else ""
        raise BanditError(f"--plugin {path}: {e.kind}{where}: {e.detail}") from None
    except BanditError as e:
        _rollback(before, modname)
        msg = str(e)
        raise BanditError(msg if msg.startswith(f"--plugin {path}") else f"--plugin {path}: {msg}") from None
    except BaseException:
        _rollback(before, modname)
        raise
    finally:
        _OWNER.pop()
    names = sorted(set(base.REGISTRY) - before)
    _LOADED[real] = names
    _SHOWN[real] = path
    return list(names)


def _rollback(before: set, modname: str) -> None:
    from bandit_lab.losses import base

    for n in set(base.REGISTRY) - before:
        del base.REGISTRY[n]
        _USER.discard(n)
    sys.modules.pop(modname, None)


def loaded() -> dict[str, list[str]]:
    """The plugin files loaded in this process and the losses each registered."""
    return {p: list(n) for p, n in _LOADED.items()}


# ----------------------------------------------------------------------------- --json's stdout
class _JsonStdout:
    """``sys.stdout`` while a command prints one JSON document (``--json``): a write reaches the real
    stdout only from the command-line layer itself (``cli/``, or click/typer's ``echo`` on its
    behalf); every other write — ``jax.debug.print`` / ``jax.debug.callback`` / a ``pure_callback``
    that prints, running on XLA's host-callback thread while the compiled program executes, far
    outside any :func:`boundary` — goes to stderr. Output written by C code straight to file
    descriptor 1 is not caught (nothing in JAX's CPU runtime does that)."""

    def __init__(self, real, allowed: tuple):
        self._real = real
        self._allowed = allowed

    def _target(self):
        f = sys._getframe(2)  # the caller of print()/write() (C frames are not on the stack)
        name = f.f_code.co_filename if f is not None else ""
        return self._real if name.startswith(self._allowed) else sys.stderr

    def write(self, text):
        return self._target().write(text)

    def writelines(self, lines):
        return self._target().writelines(lines)

    def flush(self):
        self._real.flush()
        sys.stderr.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer, …
        return getattr(self._real, name)


@contextlib.contextmanager
def json_stdout():
    """Keep stdout one JSON document for the duration (see :class:`_JsonStdout`)."""
    import os

    import click

    cli_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cli") + os.sep
    allowed = tuple({cli_dir, os.path.dirname(os.path.abspath(click.__file__)) + os.sep})
    old = sys.stdout
    sys.stdout = _JsonStdout(old, allowed)
    try:
        yield
    finally:
        if isinstance(sys.stdout, _JsonStdout):
            sys.stdout.flush()
        sys.stdout = old
