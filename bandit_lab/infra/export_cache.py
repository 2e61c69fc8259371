"""Exported programs on disk, so a cold start with a warm cache skips Python tracing.

JAX's persistent compilation cache (:mod:`bandit_lab.infra.cache`) skips XLA compilation, not the
tracing and lowering that produce the program it is keyed by: for the six-objective trainer that
is still ~0.3–0.6 s of Python on every new process. This module keeps the *lowered* program too:
the first run serializes it with :mod:`jax.export` (StableHLO, JAX's stable format); later runs
deserialize it and call it, and its XLA executable then comes from JAX's own cache as before.

Keys must mean the same thing in every process, so they are built from names, never from object
identities: the caller's static key (e.g. :meth:`bandit_lab.core.objective.Objective.stable_signature`,
the train config, the hyperparameter names), the pytree structure, shapes and dtypes of the
arguments, a hash of bandit-lab's own source tree, the JAX/jaxlib/optax/NumPy versions, the JAX
settings that change a traced program (x64, PRNG implementation, …) and the backend. Callers pass
no key (``None``) for code the source hash does not cover (user plugin losses, parameterizations
that are not shareable): those are traced as before.

It is on exactly when the compilation cache is (:func:`bandit_lab.infra.cache.enable`, the command line
by default; off with ``--no-cache`` / ``BANDIT_LAB_NO_CACHE=1``), in ``exported/`` inside that
directory. A missing, unreadable, corrupt or stale entry, or a read-only directory, only means
tracing as before: nothing here can make a run fail. Each entry is sealed with a SHA-256 of its
file name (the hash of key, signature, avals and environment) and bytes
(:func:`bandit_lab.infra.cache.seal`): an entry swapped with another, truncated or garbled is never
deserialized, and is replaced. Results are bit-identical to the traced
program (tested in ``tests/test_cold_start.py``).
"""
from __future__ import annotations

import hashlib
import os
from typing import Callable

import jax

_DIR: str | None = None  # set by bandit_lab.infra.cache.enable; None = off
SUFFIX = ".jaxexport"
# JAX settings that change what a function traces to (jax.config names; read if present)
_TRACE_FLAGS = ("jax_enable_x64", "jax_default_prng_impl", "jax_threefry_partitionable", "jax_numpy_dtype_promotion",
                "jax_numpy_rank_promotion", "jax_default_matmul_precision", "jax_use_shardy_partitioner")


def set_dir(path: str | None) -> None:
    """Keep exported programs in ``path`` (``None``: off)."""
    global _DIR
    _DIR = path


def directory() -> str | None:
    return _DIR


_SOURCE_HASH: str | None = None


def source_hash() -> str:
    """SHA-256 of every ``.py`` file of the installed :mod:`bandit_lab` package (paths and bytes):
    any edit to the library's code invalidates every entry. ~2 ms, once per process."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        root = os.path.dirname(os.path.abspath(__file__))
        h = hashlib.sha256()
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(".py"):
                    p = os.path.join(d, f)
                    h.update(os.path.relpath(p, root).encode() + b"\0")
                    with open(p, "rb") as fh:
                        h.update(fh.read())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


def _environment() -> tuple:
    import importlib.metadata

    import jaxlib
    import numpy as np

    flags = []
    for name in _TRACE_FLAGS:
        try:
            flags.append((name, str(jax.config.read(name))))
        except (AttributeError, KeyError, ValueError):
            pass
    return (source_hash(), jax.__version__, jaxlib.__version__, importlib.metadata.version("optax"), np.__version__, tuple(flags),
            jax.default_backend())


def _aval(x) -> tuple:
    a = jax.typeof(x) if hasattr(jax, "typeof") else jax.core.get_aval(x)
    return tuple(a.shape), str(a.dtype), bool(getattr(a, "weak_type", False))


_SERIALIZABLE: bool | None = None


def _serializable() -> bool:
    """jax.export writes with ``flatbuffers`` (a dependency of bandit-lab, optional for JAX): without
    it nothing could be saved, and exporting every run would only add time."""
    global _SERIALIZABLE
    if _SERIALIZABLE is None:
        import importlib.util

        _SERIALIZABLE = importlib.util.find_spec("flatbuffers") is not None and supported()
    return _SERIALIZABLE


def supported() -> bool:
    """Whether this JAX has the public ``jax.export`` with NamedTuple serialization (jax ≥ 0.4.31;
    older releases have only ``jax.experimental.export``): without it the cache is off and every
    program is traced, as with ``--no-cache``."""
    try:
        from jax import export as jexport
    except ImportError:
        return False
    return hasattr(jexport, "register_namedtuple_serialization") and hasattr(jexport, "deserialize")


def jit(fn: Callable, key=None, *, compile_bound: bool = False) -> Callable:
    """``jax.jit(fn)``, except that with a stable ``key`` and the cache on, each call signature
    (argument structure, shapes, dtypes) is deserialized from disk when present, else traced,
    exported and saved. Positional arguments only. ``compile_bound``: compiled as
    :func:`bandit_lab.infra.xla_flags.compile_bound_jit` does (the exported program is the same;
    only XLA's compile of it differs)."""
    from bandit_lab.infra.xla_flags import compile_bound_jit

    jit_ = compile_bound_jit if compile_bound else jax.jit
    if key is None or _DIR is None or not _serializable():
        return jit_(fn)
    return _Exported(fn, key, _DIR, jit_)


class _Exported:
    def __init__(self, fn: Callable, key, path: str, jit_: Callable = jax.jit):
        self.fn, self.key, self.path, self.jit = fn, key, path, jit_
        self.calls: dict = {}

    def __call__(self, *args):
        leaves, tree = jax.tree_util.tree_flatten(args)
        sig = (str(tree), tuple(_aval(x) for x in leaves))
        call = self.calls.get(sig)
        if call is not None:
            return call(*leaves)
        file = os.path.join(self.path, hashlib.sha256(repr((self.key, sig, _environment())).encode()).hexdigest() + SUFFIX)
        exp = _load(file)
        if exp is not None:
            try:
                call = self.jit(exp.call)
                out = call(*leaves)  # a stale or damaged entry fails here, before any result is used
                self.calls[sig] = call
                return out
            except Exception:
                pass

        def flat(*lv):
            return self.fn(*jax.tree_util.tree_unflatten(tree, lv))

        try:
            exp = jax.export.export(jax.jit(flat))(*leaves)
        except Exception:  # not exportable (e.g. a host callback): the plain traced program
            call = self.calls[sig] = self.jit(flat)
            return call(*leaves)
        _save(file, exp)
        # the program that was saved, so this run and every later one execute the same executable
        call = self.calls[sig] = self.jit(exp.call)
        return call(*leaves)


def _load(file: str):
    """The exported program in ``file``, verified against its name (:func:`bandit_lab.infra.cache.read_sealed`:
    a swapped, truncated or garbled entry is ``None``, removed, and said once), else ``None``."""
    from bandit_lab.infra.cache import read_sealed

    data = read_sealed(file, os.path.basename(file), os.path.dirname(file))
    if data is None:
        return None
    try:
        return jax.export.deserialize(bytearray(data))
    except Exception:  # verified bytes from another format version…
        return None


def _save(file: str, exp) -> None:
    """Write sealed and atomically (a temporary file renamed into place), or not at all."""
    from bandit_lab.infra.cache import write_sealed

    try:
        data = exp.serialize()
    except Exception:  # an output jax.export cannot serialize…
        return
    write_sealed(file, os.path.basename(file), bytes(data), os.path.dirname(file))
