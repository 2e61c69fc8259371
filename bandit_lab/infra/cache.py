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
is never used. They are **verified, not trusted** (issue 24): each entry is written by
:class:`VerifiedCache` with a header holding a SHA-256 of its key and its bytes, atomically
(a temporary file renamed into place, so two processes filling one cache never leave a torn
file), and checked when read: an entry under the wrong name (two files swapped), truncated or
garbled is a miss — JAX compiles the program again, the answer is the ``--no-cache`` one — and is
replaced. One line on stderr says so, once per process; a read-only directory is one line too. Beside them, in ``exported/``, :mod:`bandit_lab.infra.export_cache` keeps the traced
programs themselves (so a cold start skips Python tracing too); it is on exactly when this is. The library never turns it on by itself (importing :mod:`bandit_lab` changes no
JAX setting); call :func:`enable` to opt in from Python.
"""
from __future__ import annotations

import hashlib
import contextlib
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

    if not _verified_cache_installed():  # this JAX's cache cannot be verified: not used (export cache neither)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Our programs compile in 0.05–1 s each; JAX's default threshold (1 s) would skip most.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    export_cache.set_dir(os.path.join(path, "exported"))
    return path


def disable() -> None:
    """Turn both caches off in this process (``--no-cache`` after an earlier in-process command
    turned them on: an in-process caller such as a test must get what it asked for)."""
    import sys

    if "bandit_lab.infra.export_cache" in sys.modules:
        sys.modules["bandit_lab.infra.export_cache"].set_dir(None)
    if "jax" in sys.modules:
        try:
            sys.modules["jax"].config.update("jax_compilation_cache_dir", None)
            from jax._src import compilation_cache as cc  # whether the cache is used is memoised: forget it

            cc.reset_cache()
        except Exception:
            pass


# ----------------------------------------------------------------------------- verified entries
MAGIC = b"BLCACHE1"
SUFFIX = "-blcache"  # not JAX's "-cache": entries of JAX's own format are never read
_SAID: set = set()


def note_once(what: str, msg: str) -> None:
    """One stderr line per kind of cache trouble per process (``damaged``, ``read-only``)."""
    if what in _SAID:
        return
    _SAID.add(what)
    import sys

    try:
        print(f"bandit-lab: warning: {msg}", file=sys.stderr, flush=True)
    except Exception:
        pass


def seal(name: str, data: bytes) -> bytes:
    """``data`` with its header: MAGIC + SHA-256(name, data)."""
    return MAGIC + hashlib.sha256(name.encode() + b"\0" + data).digest() + data


def unseal(name: str, blob: bytes) -> bytes | None:
    """The data of a sealed entry, or ``None`` when it was written for another name (swapped),
    truncated or garbled."""
    n = len(MAGIC) + 32
    if len(blob) < n or not blob.startswith(MAGIC):
        return None
    data = blob[n:]
    if hashlib.sha256(name.encode() + b"\0" + data).digest() != blob[len(MAGIC):n]:
        return None
    return data


def read_sealed(file: str, name: str, where: str) -> bytes | None:
    """The verified contents of ``file``, else ``None`` (missing: silently; damaged: the file is
    removed and one line said, once)."""
    try:
        with open(file, "rb") as fh:
            blob = fh.read()
    except OSError:
        return None
    data = unseal(name, blob)
    if data is None:
        try:
            os.unlink(file)
        except OSError:
            pass
        note_once("damaged", f"a damaged cache entry in {where} was ignored and will be replaced (results are unaffected)")
    return data


def write_sealed(file: str, name: str, data: bytes, where: str) -> bool:
    """Write atomically (temporary file + rename, replacing a damaged entry), or not at all."""
    from bandit_lab.infra import files

    d = os.path.dirname(file)
    tmp = files.temp_name(d, ".", ".tmp")  # named first: a signal right after creating it still removes it
    try:
        os.makedirs(d, exist_ok=True)
        fd = files.create_exclusive(tmp)
    except BaseException as e:
        if not isinstance(e, OSError):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        note_once("read-only", f"the cache directory {where} is not writable; compiled programs are not saved")
        return False
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(seal(name, data))
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)
        return True
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if not isinstance(e, OSError):
            raise
        note_once("read-only", f"the cache directory {where} is not writable (or full); compiled programs are not saved")
        return False


class VerifiedCache:
    """JAX's persistent-cache interface (``get``/``put``) over sealed files ``KEY-blcache``."""

    def __init__(self, path: str):
        import pathlib

        self._path = self.path = pathlib.Path(path)

    def _file(self, key: str) -> str:
        return os.path.join(str(self._path), f"{key}{SUFFIX}")

    def get(self, key: str):
        return read_sealed(self._file(key), key, str(self._path))

    def put(self, key: str, value: bytes) -> None:
        write_sealed(self._file(key), key, bytes(value), str(self._path))

    def clear(self) -> None:
        pass


_INSTALLED: list = []


def _verified_cache_installed() -> bool:
    """Make JAX build :class:`VerifiedCache` instead of its own file cache (``get_file_cache`` is
    a private hook of ``jax._src.compilation_cache``, checked by shape). False when this JAX has
    no such hook: the compilation cache is then not used at all."""
    if _INSTALLED:
        return _INSTALLED[0]
    try:
        from jax._src import compilation_cache as cc

        ok = callable(getattr(cc, "get_file_cache", None)) and hasattr(cc, "reset_cache") and hasattr(cc, "_cache")
        if ok:
            cc.get_file_cache = lambda path: (VerifiedCache(path), path)
            if cc._cache is not None and not isinstance(cc._cache, VerifiedCache):
                cc.reset_cache()  # an earlier, unverified cache in this process
    except Exception:
        ok = False
    _INSTALLED.append(ok)
    return ok
