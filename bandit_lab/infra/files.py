"""Every file bandit-lab writes goes through here: output directories are checked before any work,
files are written to a temporary name in the same directory and renamed into place
(``os.replace``), and every OS failure becomes one :class:`~bandit_lab.errors.BanditError` line
naming the path and the reason (exit 2) — never a traceback, never a half-written file.

- :func:`prepare_out` — before a run: the ``--out`` directory exists and is empty (or
  ``--overwrite``), or can be created; it is probed with a real temporary file, so an
  unwritable, immutable or read-only directory (or ``/proc``) is refused before the run, not
  after it. An :class:`OutDir` remembers whether it created the directory, so a run that then
  fails leaves nothing behind (:meth:`OutDir.discard`). With ``fresh=True`` (a sweep's default
  ``runs/NAME-TIMESTAMP/``) the directory is claimed new with ``os.mkdir`` — ``NAME-TIMESTAMP-2``,
  ``-3``, … when taken — so two runs started in the same second never share one.
- :func:`atomic` — a context manager yielding a file handle on a temporary file, renamed to
  the target on success, removed on failure.
- :func:`write_text`, :func:`write_json` — the common cases.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os

from bandit_lab.errors import BanditError


def _reason(e: OSError) -> str:
    return e.strerror or (errno.errorcode.get(e.errno, "") if e.errno else "") or str(e) or type(e).__name__


def os_error(path: str, e: OSError, doing: str = "write") -> BanditError:
    """``cannot write PATH: Permission denied`` (one line)."""
    return BanditError(f"cannot {doing} {path}: {_reason(e)}")


def temp_name(d: str, prefix: str, suffix: str = "") -> str:
    """A fresh temporary path in ``d``, named *before* the file exists: a caller that assigns it and
    then creates the file (:func:`create_exclusive`) can always remove it, even when a signal lands
    between the file's creation and the return of the call that made it (``tempfile.mkstemp`` would
    leave an unnamed stray file then)."""
    import secrets

    return os.path.join(d, f"{prefix}{os.getpid()}-{secrets.token_hex(6)}{suffix}")


def create_exclusive(path: str) -> int:
    """``open(path, O_CREAT | O_EXCL)``, mode 0600 (as ``mkstemp``); the file descriptor."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)


def probe_dir(d: str) -> None:
    """Create, write and remove a file in ``d`` (OSError if that fails); a signal on the way
    leaves nothing behind."""
    tmp = temp_name(d, ".bandit-lab-probe-")
    try:
        os.close(create_exclusive(tmp))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class OutDir(str):
    """An output directory path that knows which directories this process created for it."""

    created: tuple = ()

    def discard(self) -> None:
        """Remove the directories this process created, innermost first, if (still) empty."""
        for d in self.created:
            try:
                os.rmdir(d)
            except FileNotFoundError:  # interrupted before it was made (makedirs goes outermost first)
                continue
            except OSError:
                break


def prepare_out(path: str, overwrite: bool = False, *, fresh: bool = False) -> OutDir:
    """Check (and create) an output directory before a run; see the module docstring. With
    ``fresh``, a directory that no one else has: ``path`` or, when it exists, the first free
    ``path-2``, ``path-3``, … (each claimed by an atomic ``os.mkdir``)."""
    if fresh:
        return _probed(_claim(path))
    out = OutDir(path)
    if os.path.lexists(path) and not os.path.exists(path):
        raise BanditError(f"cannot write {path}: it is a dangling symbolic link")
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise BanditError(f"output path {path} exists and is not a directory")
        try:
            entries = os.listdir(path)
        except OSError as e:
            raise os_error(path, e, "read") from None
        if entries and not overwrite:
            raise BanditError(f"output directory {path} exists; pass --overwrite to replace its files or choose another --out")
    else:
        out.created = _missing(path)  # before makedirs: a Ctrl-C half-way still knows what to remove
        try:
            _creating(os.makedirs, path, out, taken=FileExistsError)
        except FileExistsError:  # raced, or a dangling link somewhere on the way
            out.created = ()
            raise BanditError(f"cannot create {path}: a file of that name exists on the way") from None
    return _probed(out)


def _probed(out: OutDir) -> OutDir:
    try:  # probe: can we really create, write and remove a file here?
        probe_dir(out)
    except OSError as e:
        out.discard()
        raise os_error(out, e) from None
    except BaseException:  # interrupted during the probe (the probe file is already gone)
        out.discard()
        raise
    return out


def _missing(path: str) -> tuple:
    """The directories ``os.makedirs(path)`` would create, innermost first."""
    new, d = [], os.path.abspath(path)
    while not os.path.lexists(d):
        new.append(d)
        d = os.path.dirname(d)
    return tuple(new)


def _creating(make, path: str, made: OutDir, taken: tuple = ()) -> None:
    """``make(path)``; on any failure except ``taken`` the directories in ``made`` are removed
    first, and an ``OSError`` becomes one :func:`os_error` line."""
    try:
        make(path)
    except taken:
        raise
    except OSError as e:
        made.discard()
        raise os_error(path, e, "create") from None
    except BaseException:  # Ctrl-C / SIGTERM while creating: nothing left behind
        made.discard()
        raise


def _claim(base: str) -> OutDir:
    """``base`` or the first free ``base-N`` (N = 2, 3, …), created by this process."""
    parent = os.path.dirname(base) or "."
    parents = OutDir(parent)
    parents.created = new = _missing(parent)  # before makedirs: a Ctrl-C half-way still knows what to remove
    # another run may create the parent at the same moment: exist_ok
    _creating(lambda p: os.makedirs(p, exist_ok=True), parent, parents)
    for n in range(1, 10_000):
        path = base if n == 1 else f"{base}-{n}"
        try:
            _creating(os.mkdir, path, parents, taken=FileExistsError)  # atomic: one claimant wins
        except FileExistsError:
            continue
        out = OutDir(path)
        out.created = (os.path.abspath(path), *new)
        return out
    parents.discard()
    raise BanditError(f"cannot create a new directory {base}: {base} and {base}-2 … {base}-9999 exist")


@contextlib.contextmanager
def atomic(path: str, mode: str = "w"):
    """Write ``path`` through a temporary file in the same directory, renamed into place on
    success (readers never see a half-written file; on failure nothing is left)."""
    d = os.path.dirname(path) or "."
    tmp = temp_name(d, "." + os.path.basename(path)[:100] + ".", ".tmp")
    try:
        fd = create_exclusive(tmp)
    except OSError as e:
        raise os_error(path, e) from None
    except BaseException:  # a signal right after the file was created: remove it by name
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str) -> str:
    with atomic(path) as fh:
        fh.write(text)
    return path


def write_json(path: str, obj, indent: int | None = 1) -> str:
    """``obj`` must already be JSON-safe (``runner.jsonable``); NaN is refused, not written."""
    text = json.dumps(obj, indent=indent, allow_nan=False)
    return write_text(path, text)
