"""JAX's persistent compilation cache, on by default for the command line.

On this project's problem sizes the XLA compile *is* the cold start (a few seconds of a
`bandit-lab run`, against milliseconds of execution), and the compiled programs are the same
from one run to the next. JAX can keep them on disk (``jax_compilation_cache_dir``); this module
turns that on in the user's cache directory:

- ``$BANDIT_LAB_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("bandit-lab")/jax``
  (``$XDG_CACHE_HOME/bandit-lab/jax``, usually ``~/.cache/bandit-lab/jax``, on Linux);
- off with ``bandit-lab --no-cache …`` or ``BANDIT_LAB_NO_CACHE=1``;
- safe when the directory cannot be created or written: the cache is then read if it exists,
  or simply not used — a cache can only make a run faster, never make it fail.

Entries are keyed by JAX on the program, the JAX/XLA versions and the device, so a stale entry
is never used. Beside them, in ``exported/``, :mod:`bandit_lab.infra.export_cache` keeps the traced
programs themselves (so a cold start skips Python tracing too); it is on exactly when this is. The library never turns it on by itself (importing :mod:`bandit_lab` changes no
JAX setting); call :func:`enable` to opt in from Python.
"""
from __future__ import annotations

import os

ENV_DIR = "BANDIT_LAB_CACHE_DIR"
ENV_OFF = "BANDIT_LAB_NO_CACHE"


def default_dir() -> str:
    if os.environ.get(ENV_DIR):
        return os.environ[ENV_DIR]
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir("bandit-lab", appauthor=False), "jax")


def enable(path: str | None = None) -> str | None:
    """Use JAX's persistent compilation cache in ``path`` (default :func:`default_dir`).

    Returns the directory in use, or ``None`` when it is disabled (``BANDIT_LAB_NO_CACHE``) or
    neither writable nor readable."""
    from bandit_lab.infra import export_cache

    export_cache.set_dir(None)
    if os.environ.get(ENV_OFF, "") not in ("", "0"):
        return None
    path = path or default_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        pass
    if not os.path.isdir(path) or not os.access(path, os.R_OK | os.X_OK):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    # Our programs compile in 0.05–1 s each; JAX's default threshold (1 s) would skip most.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    export_cache.set_dir(os.path.join(path, "exported"))
    return path
