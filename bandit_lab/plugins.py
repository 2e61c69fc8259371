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

import hashlib
import importlib.util
import os
import re
import sys
from typing import Callable

from bandit_lab.errors import BanditError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_LOADED: dict[str, list[str]] = {}  # real path → the loss names it registered
KINDS = ("pairwise", "policy")


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
    if not isinstance(spec.name, str) or not _NAME.match(spec.name):
        raise BanditError(f"loss name must be lower-case letters, digits and _ (starting with a letter); got {spec.name!r}")
    if spec.name in base.REGISTRY:
        raise BanditError(f"loss {spec.name!r} is already registered; choose another name")
    if spec.kind not in KINDS:
        raise BanditError(f"loss {spec.name!r}: kind must be one of {', '.join(KINDS)}; got {spec.kind!r}")
    for k, v in spec.defaults.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BanditError(f"loss {spec.name!r}: defaults must map names to numbers; got {k!r}: {v!r}")
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


def _trace(spec) -> None:
    import jax

    from bandit_lab.losses import base
    from bandit_lab.core.objective import make_objective
    from bandit_lab.core.problems import Problem

    pb = Problem.create([0.5, 0.3, 0.2], pi_star=[0.6, 0.3, 0.1], pairs="uniform")
    base.REGISTRY[spec.name] = spec  # make_objective looks the loss up by name
    try:
        obj = make_objective(pb, spec.name, {})
        out = jax.eval_shape(lambda p: obj.value(p, obj.hp), obj.param.init())
    except BanditError as e:
        raise BanditError(f"loss {spec.name!r}: {e}") from None
    except Exception as e:  # the user's code: one line naming it
        raise BanditError(f"loss {spec.name!r} fails on a 3-response bandit: {type(e).__name__}: {_first_line(e)}") from None
    finally:
        del base.REGISTRY[spec.name]
    if getattr(out, "shape", None) != ():
        raise BanditError(f"loss {spec.name!r} must return a scalar; it returns shape {getattr(out, 'shape', type(out).__name__)}")


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
        spec.loader.exec_module(module)
    except BanditError as e:
        _rollback(before, modname)
        raise BanditError(f"--plugin {path}: {e}") from None
    except SyntaxError as e:
        _rollback(before, modname)
        raise BanditError(f"--plugin {path}: syntax error at line {e.lineno}: {e.msg}") from None
    except Exception as e:
        _rollback(before, modname)
        tb = e.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == real:
                line = tb.tb_lineno
            tb = tb.tb_next
        where = f" (line {line})" if line else ""
        raise BanditError(f"--plugin {path}: {type(e).__name__}{where}: {_first_line(e)}") from None
    names = sorted(set(base.REGISTRY) - before)
    _LOADED[real] = names
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
