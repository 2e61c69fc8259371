"""Fast-compile mode: XLA flags for processes whose cost is compiling, not running (issue 22).

``bandit-lab verify`` and the test suite compile hundreds of small programs and run each for
milliseconds: on the CPU, XLA's compiler is most of their time (docs/performance.md). Three XLA
CPU flags cut it without touching a claim:

- ``--xla_cpu_use_fusion_emitters=false``: XLA's classic LLVM IR fusion emitters instead of
  jaxlib 0.10's default MLIR-based ones (≈ −35 % compile CPU on the on-policy solver's programs);
- ``--xla_cpu_parallel_codegen_split_count=1``: one LLVM module per program, not one per thread
  (the same code; −8 % CPU, at the cost of wall time when a single compile has the machine alone);
- ``--xla_backend_optimization_level=0``: LLVM at -O0 (XLA's compile time of a cold test suite
  290 → 135 s; a cold ``verify`` 60.6 → 42.2 s, medians of 3 interleaved).

They change the generated code, so results differ from the default's in the last bits — through
a long Adam run by up to ≈ 1e-7 (the zoo's 8,000 steps). Every ``verify`` check passes in both
modes (64 of 64, 2026-12-06), and so does the suite (2,233 passed in this mode; with XLA's
defaults, ``BANDIT_LAB_FAST_COMPILE=0``, 2,231 passed and this mode's two tests skipped). A
compiled program runs slower (at -O0, up to ≈ 2× on a long training loop): why this is not the
default for ``run``/``sweep``, whose big sweeps are run-bound and whose documented outputs are the
default's bits. The one program of the fast-compile processes that runs for seconds, not
milliseconds (``verify``'s ``sampled-rate``: 20 seeds × 1,500 sampled Adam steps), asks for LLVM
-O2 back (:func:`run_bound_jit`).

Where it is on:
- ``bandit-lab verify`` (its worker processes always; in-process when JAX's backend has not
  started), so the values ``verify`` prints (docs/commands/verify.md) are this mode's;
- the test suite (``tests/conftest.py``), whose subprocesses inherit it — except the commands
  that check documented outputs (:func:`bandit_lab.docs_outputs.run_command` removes it: a
  reader's command runs with XLA's defaults, and ``verify`` turns it on for itself);
- any command, with ``BANDIT_LAB_FAST_COMPILE=1`` (``=0``: never, not even for ``verify``);
- in every process on the CPU, the exact solver's and the certificates' programs, as per-program
  options (:func:`compile_bound_jit`): a Newton solve runs each of them a few times, so their
  compile is their cost, and their results are then the same bits in a command as in ``verify``
  and the suite.

The flags are read by XLA when JAX's backend starts, so :func:`enable` must run before the first
computation; JAX's compilation-cache keys include ``XLA_FLAGS``, so entries of the two modes never
mix. Other backends ignore them (the GPU compiler has its own flags). XLA *aborts the process* on a
flag it does not know, and jaxlib releases add and retire flags (``pyproject.toml`` admits jaxlib
0.4.30, which predates the fusion emitters): :func:`supported` looks for each flag's name in the
installed jaxlib's binaries first, and without them the mode is XLA's defaults.
"""
from __future__ import annotations

import os
from typing import MutableMapping

FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1",
         "--xla_backend_optimization_level=0")
# what a run-bound program of a fast-compile process is compiled with instead (:func:`run_bound_jit`)
RUN_BOUND = {"xla_backend_optimization_level": 2}
# :data:`FLAGS` as one program's XLA options (``--name=value`` → ``name: value``): what a
# compile-bound program of *any* CPU process is compiled with (:func:`compile_bound_jit`)
COMPILE_BOUND = {name.lstrip("-"): value == "true" if value in ("true", "false") else int(value)
                 for name, value in (f.split("=", 1) for f in FLAGS)}
ENV = "BANDIT_LAB_FAST_COMPILE"


def requested(default: bool, environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether fast-compile mode is wanted: ``BANDIT_LAB_FAST_COMPILE`` = ``1`` / ``0`` when set, else ``default``."""
    v = (os.environ if environ is None else environ).get(ENV, "").strip()
    return default if v == "" else v == "1"


def enabled(environ: MutableMapping[str, str] | None = None, flags: tuple = FLAGS) -> bool:
    """Whether ``XLA_FLAGS`` carries every one of ``flags`` (default: the fast-compile flags)."""
    have = set((os.environ if environ is None else environ).get("XLA_FLAGS", "").split())
    return all(f in have for f in flags)


def backend_started() -> bool:
    """Whether JAX's backend has started in this process (after which ``XLA_FLAGS`` is not read again)."""
    import sys

    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return bool(xla_bridge.backends_are_initialized())


_SUPPORTED: dict[tuple, bool] = {}


def supported(flags: tuple = FLAGS) -> bool:
    """Whether the installed jaxlib knows every one of ``flags``: each name, NUL-terminated as a C
    string literal, occurs in one of its shared libraries (XLA registers its flags by name). Scanned
    once per process and flag set through ``mmap`` (≈ 0.01 s when present, ≈ 0.15 s to rule a 350 MB
    library out)."""
    if flags not in _SUPPORTED:
        import glob
        import importlib.util
        import mmap

        spec = importlib.util.find_spec("jaxlib")
        root = os.path.dirname(spec.origin) if spec and spec.origin else None
        missing = {f.split("=")[0].lstrip("-").encode() + b"\0" for f in flags}
        for lib in sorted(glob.glob(os.path.join(root, "**", "*.so*"), recursive=True)) if root else ():
            try:
                with open(lib, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                    missing = {name for name in missing if m.find(name) < 0}
            except (OSError, ValueError):
                continue
            if not missing:
                break
        _SUPPORTED[flags] = not missing
    return _SUPPORTED[flags]


def enable(environ: MutableMapping[str, str] | None = None, flags: tuple = FLAGS) -> bool:
    """Add ``flags`` (default :data:`FLAGS`) to ``XLA_FLAGS`` of ``environ`` (default this
    process's, so its subprocesses inherit them). Returns whether this process compiles with
    them: ``False`` when its backend has already started without them (then nothing is changed:
    the process's programs stay one mode), or when the installed jaxlib does not know them
    (:func:`supported`)."""
    env = os.environ if environ is None else environ
    if enabled(env, flags):
        return True
    if (environ is None and backend_started()) or not supported(flags):
        return False
    have = env.get("XLA_FLAGS", "").split()
    env["XLA_FLAGS"] = " ".join(have + [f for f in flags if f not in have])
    return True


def removed(environ: MutableMapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the fast-compile flags (for a subprocess that must run with
    XLA's defaults)."""
    env = dict(environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if f not in FLAGS]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    env.pop(ENV, None)
    return env


def run_bound_jit(fn, **kw):
    """``jax.jit(fn, **kw)`` for a program whose running, not its compile, is its cost: in
    fast-compile mode compiled at LLVM -O2 (:data:`RUN_BOUND`, a per-program XLA option) instead of
    the process's -O0; otherwise, or on a JAX without per-``jit`` compiler options, plain ``jit``.
    ``verify``'s ``sampled-rate`` (four programs, 20 × 1,500 sampled Adam steps each): 17.5 s at
    -O0, 7.7 s at -O2 (10.1 s at XLA's default level, which compiles longer), the same value to
    the last bit in all three."""
    return _jit(fn, RUN_BOUND if enabled() else None, **kw)


def _jit(fn, options: dict | None, **kw):
    """``jax.jit(fn, compiler_options=options, **kw)``; plain ``jax.jit`` without ``options`` or on
    a JAX without per-``jit`` compiler options (older JAX: the process's mode)."""
    import jax

    if options:
        try:
            return jax.jit(fn, compiler_options=options, **kw)
        except TypeError:
            pass
    return jax.jit(fn, **kw)


def compile_bound_options() -> dict | None:
    """The per-program XLA options of a compile-bound program (:func:`compile_bound_jit`): the
    fast-compile flags as options (:data:`COMPILE_BOUND`) on the CPU, or ``None`` — XLA's defaults,
    or the process's own mode — when this process already compiles with the flags (the suite,
    ``verify``: the same code either way), on another backend (the GPU compiler has flags of its
    own), with ``BANDIT_LAB_FAST_COMPILE=0`` (XLA's defaults everywhere) or when the installed
    jaxlib does not know them (:func:`supported`). Starts JAX's backend if it has not started."""
    if not requested(True) or enabled():
        return None
    import jax

    if jax.default_backend() != "cpu" or not supported():
        return None
    return dict(COMPILE_BOUND)


def compile_bound_jit(fn, **kw):
    """``jax.jit(fn, **kw)`` for a program whose compile, not its running, is its cost, in every
    process: the exact solver's batched value-and-gradient, policy and Hessian programs and the
    certificates' (a Newton solve runs each a few times, for milliseconds to a second). On the
    CPU it is compiled in fast-compile mode whatever the process's mode (:func:`compile_bound_options`),
    so its results are the same bits in a command, in ``verify`` and in the test suite
    (tests/test_verify_scale.py). Measured on the 4,096-point weight-decay sweep's exact solve and
    certificate (2 cores, each run a new process, 3 runs each, interleaved with the previous code):
    XLA compile 0.71–0.86 → 0.24–0.27 s, the cold solve 2.10–2.55 → 1.67–2.04 s (CPU 2.83–3.31 →
    2.05–2.50 s); its programs run slower, so at 16,384 points the cold solve is about even
    (3.90–4.52 → 3.86–4.04 s) and beyond it the fast-compile code costs more than it saves
    (docs/performance.md, "Big sweeps")."""
    return _jit(fn, compile_bound_options(), **kw)
