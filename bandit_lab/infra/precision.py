"""Floating-point precision: the one place bandit-lab touches JAX's ``jax_enable_x64``.

Importing :mod:`bandit_lab` changes nothing in JAX's configuration. Exact solvers and theorem
checks need float64, so:

- the ``bandit-lab`` command switches float64 on for its own process (``--float32`` keeps JAX's
  float32, a speed option not meant for checks);
- library callers choose: :func:`enable_x64` (process-wide, like the CLI) or the scoped
  ``with x64():`` (JAX's own thread-local context, restored on exit);
- the public functions that build their own problem (:func:`bandit_lab.solve`,
  :func:`bandit_lab.fixed_points`, :func:`bandit_lab.verify`, :func:`bandit_lab.check_loss`) run
  inside ``x64()`` themselves and return NumPy float64 results; those that take the caller's
  objects (:func:`bandit_lab.core.train`, :func:`bandit_lab.solve_exact`) compute in the caller's
  precision, and the exact solver refuses float32 with one line saying how to switch
  (:func:`require_x64`).

Arrays keep the dtype they were made with: build the problem's JAX arrays (data, objectives)
inside the same precision you solve in.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading


def x64_enabled() -> bool:
    """Whether JAX computes in float64 here (in this thread, with any active ``x64()`` scope)."""
    if "jax" not in sys.modules:  # JAX reads JAX_ENABLE_X64 when it is first imported
        return os.environ.get("JAX_ENABLE_X64", "").lower() in ("1", "true", "yes", "on")
    import jax

    return bool(jax.config.read("jax_enable_x64"))


_SCOPE = threading.local()  # the innermost explicit ``x64(on)`` scope of this thread, if any
_PROCESS_CHOICE: list = [None]  # True/False once enable_x64/use_float32 was called, else None


def float32_chosen() -> bool:
    """Whether the caller *asked* for float32 (``use_float32()``, ``enable_x64(False)``, ``with
    x64(False):``, the command's ``--float32``), as opposed to JAX's float32 default, which
    nobody chose. Functions that promise float64 answers honour a choice and override a default."""
    scoped = getattr(_SCOPE, "on", None)
    if scoped is not None:
        return not scoped
    return _PROCESS_CHOICE[0] is False


@contextlib.contextmanager
def promised_float64(what: str, arrays=(), *, refuse_float32: bool = False):
    """The precision rule of the functions that promise float64 answers (``train_policy``,
    ``solve_exact``): float64 when JAX is in float64 already; float64 *for this call* when JAX is
    in its default float32 and nobody chose it; and when float32 was chosen, float32 for training
    (``refuse_float32`` False) or one clear error (True). Never a silent float32 answer: if JAX is
    in its default float32 and one of ``arrays`` was built in float32, the call is refused with the
    way out, since computing in float64 on float32-rounded data would not be float64 either."""
    if x64_enabled():
        yield
        return
    if float32_chosen():
        if refuse_float32:
            require_x64(what)
        yield
        return
    import numpy as np

    if any(getattr(a, "dtype", None) == np.float32 for a in arrays):
        from bandit_lab.errors import BanditError

        raise BanditError(f"{what}: this objective holds float32 arrays (built while JAX computed in float32, its default); "
                          "build it again inside `with bandit_lab.x64():`, or call bandit_lab.enable_x64() first "
                          "(bandit_lab.use_float32() trains in float32 on purpose)")
    with x64(True):
        yield


def enable_x64(on: bool = True) -> None:
    """Switch float64 on (or off) for the whole process, as the ``bandit-lab`` command does.

    If JAX is not imported yet this only sets ``JAX_ENABLE_X64`` for the import to come (so a
    command that never computes does not pay for importing JAX)."""
    if "jax" in sys.modules:
        import jax

        jax.config.update("jax_enable_x64", bool(on))
    else:
        os.environ["JAX_ENABLE_X64"] = "1" if on else "0"
    _PROCESS_CHOICE[0] = bool(on)


def use_float32() -> None:
    """``enable_x64(False)``: float32 for the rest of the process (speed option, not for checks)."""
    enable_x64(False)


@contextlib.contextmanager
def x64(on: bool = True):
    """Compute in float64 inside the ``with`` block only (JAX's ``jax.enable_x64`` context).

    >>> import jax, jax.numpy as jnp, bandit_lab
    >>> before = jax.config.read("jax_enable_x64")
    >>> with bandit_lab.x64():
    ...     jnp.ones(2).dtype
    dtype('float64')
    >>> jax.config.read("jax_enable_x64") == before
    True
    """
    import jax

    scope = jax.enable_x64 if hasattr(jax, "enable_x64") else jax.experimental.enable_x64  # jax.enable_x64 from JAX 0.8
    before = getattr(_SCOPE, "on", None)
    _SCOPE.on = bool(on)
    try:
        with scope(bool(on)):
            yield
    finally:
        _SCOPE.on = before


def float64(fn):
    """Decorator: run ``fn`` in float64 whatever the caller's precision — inside :func:`x64` only
    when float64 is off, since a thread-local config scope slows every jitted call inside it
    (measured ≈ 8 % on a matrix-free tree solve)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if x64_enabled():
            return fn(*args, **kwargs)
        with x64(True):
            return fn(*args, **kwargs)

    return wrapped


def require_x64(what: str) -> None:
    """Refuse float32 where a float64 result is promised (exact solvers, checks)."""
    if not x64_enabled():
        from bandit_lab.errors import BanditError

        raise BanditError(f"{what} needs float64: call bandit_lab.enable_x64() first or run inside `with bandit_lab.x64():` "
                          "(the bandit-lab command does this unless --float32)")
