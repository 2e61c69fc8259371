"""The exceptions a user can cause, and the exit code the CLI gives each.

| exit | meaning |
|---|---|
| 0 | success |
| 1 | ``verify``: at least one theorem check failed |
| 2 | bad input (:class:`BanditError`): a malformed spec or option, a job over the memory/work budget, an output path that cannot be written |
| 3 | internal error: a bug in bandit-lab (one line; ``BANDIT_LAB_DEBUG=1`` shows the traceback) |
| 4 | divergence (:class:`DivergenceError`): training or the exact solver produced a non-finite loss or policy |
| 130 | interrupted (Ctrl-C) |
"""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_DIVERGED = 4
EXIT_INTERRUPTED = 130


class BanditError(ValueError):
    """Invalid user input (a malformed problem, spec, hyperparameter or path): exit 2."""


class DivergenceError(ArithmeticError):
    """A run produced a non-finite loss or policy (valid input, but the optimisation blew up: a
    learning rate too large, or β, α or rewards at the edge of float64): exit 4. The message
    names the run (label and hyperparameters), the first non-finite step and the likely cause."""


# ----------------------------------------------------------------------------- interrupts
# Ctrl-C / SIGTERM (issue 24): the signal is handled in Python. CPython runs a handler in the main
# thread *between bytecodes*, never inside a compiled XLA call (that runs without the interpreter),
# so the run stops between compiled calls. The first signal raises KeyboardInterrupt; later ones are
# only recorded (one line, not several). A KeyboardInterrupt that a callback swallows (JAX's gc
# callback: "Exception ignored in _xla_gc_callback") is still seen: the signal is recorded, and
# :func:`exit_if_interrupted` ends the run as interrupted. Leaving by :func:`exit_interrupted`
# (``os._exit`` after flushing) skips the interpreter's teardown, which can crash by SIGABRT/SIGSEGV
# ("pure virtual method called") while XLA's threads still run.
_INTERRUPTED: list = []
_ARMED = [True]
_INSTALLED: list = []


def install_interrupt_handlers(armed: bool = True) -> None:
    """SIGINT and SIGTERM → KeyboardInterrupt (first signal) and a record (every signal). Only for
    a process that *is* the command (the CLI's ``main()`` without argv; explore's server).

    ``armed=False``: only record, never raise, until :func:`arm` — the entry point installs the
    handlers first thing (``cli/__init__.py``, before typer and JAX are imported), so a signal during
    those imports is neither a death by signal nor an exception inside an import; ``main()`` then
    arms them inside its ``try`` and a signal that came early ends the run there (exit 130)."""
    import signal
    import sys

    _ARMED[0] = armed
    if _INSTALLED:
        return
    _INSTALLED.append(True)

    def handler(signum, frame):
        if not _ARMED[0]:
            _INTERRUPTED.append(signum)
            return
        if _unsafe(frame):  # raised there it would be swallowed or abort the process: again in 20 ms
            _resend(signum)
            return
        first = not _INTERRUPTED
        _INTERRUPTED.append(signum)
        if first:
            raise KeyboardInterrupt

    default_hook = sys.unraisablehook

    def unraisable(arg):  # a KeyboardInterrupt swallowed elsewhere (a __del__): recorded, not printed
        if not (arg.exc_type is not None and issubclass(arg.exc_type, KeyboardInterrupt)):
            default_hook(arg)

    sys.unraisablehook = unraisable

    for s in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(s, handler)
        except (ValueError, OSError):  # not the main thread, or the platform has no such signal
            pass


def arm() -> None:
    """Let the handlers raise from now on; raise KeyboardInterrupt at once if a signal came while
    they were only recording."""
    _ARMED[0] = True
    if _INTERRUPTED:
        raise KeyboardInterrupt


def _unsafe(frame) -> bool:
    """Whether raising here is unsafe: inside a gc callback (JAX's: the exception would be swallowed)
    or inside an import (a C extension's module init calling Python, e.g. jaxlib's enums through
    nanobind: an exception there is ``std::terminate`` → SIGABRT)."""
    import gc

    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks} - {None}
    while frame is not None:
        if frame.f_code in codes or frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _resend(signum: int) -> None:
    import os
    import threading

    t = threading.Timer(0.02, os.kill, (os.getpid(), signum))
    t.daemon = True
    t.start()


def interrupted() -> bool:
    """Whether SIGINT/SIGTERM arrived since :func:`install_interrupt_handlers`."""
    return bool(_INTERRUPTED)


def exit_interrupted(prog: str = "bandit-lab", hard: bool = True) -> None:
    """Print ``PROG: interrupted`` (once), flush, and exit 130. ``hard``: ``os._exit`` (no
    interpreter teardown, no atexit: the caller has already removed what it must, e.g. an --out
    directory it created, and atomic writes leave no partial file); else ``sys.exit`` (in-process
    callers such as tests)."""
    import os
    import signal
    import sys

    if hard:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(s, signal.SIG_IGN)
            except (ValueError, OSError):
                pass
    try:
        sys.stdout.flush()
    except Exception:  # a closed pipe: nothing more to say on it
        pass
    try:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
    except Exception:
        pass
    if hard:
        os._exit(EXIT_INTERRUPTED)
    sys.exit(EXIT_INTERRUPTED)
