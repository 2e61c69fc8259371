"""Progress for long commands: a rich display on stderr when stderr is a terminal, silent otherwise.

Never on stdout (so ``--json`` output and pipes stay clean), and rich is imported only when a
display is actually shown (the cold start of a piped command pays nothing). When stdout is the
terminal too, lines printed during the display go above it (rich's stdout redirection); when
stdout is a file or a pipe it is left alone.

    with progress.bar("verify", total=len(names)) as p:
        for n in names:
            p.update(f"verify {n}")
            ...
            p.advance()

A single compiled ``jit(vmap(scan))`` cannot report from inside, so sweeps show a spinner with
the elapsed time (``total=None``).
"""
from __future__ import annotations

import contextlib
import os
import sys


def enabled(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    if os.environ.get("BANDIT_LAB_NO_PROGRESS"):
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced stream
        return False


class _Silent:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, description: str) -> None:
        pass


class _Task:
    def __init__(self, prog, task):
        self._p, self._t = prog, task

    def advance(self, n: int = 1) -> None:
        self._p.update(self._t, advance=n)

    def update(self, description: str) -> None:
        self._p.update(self._t, description=description)


@contextlib.contextmanager
def bar(description: str, total: int | None = None, *, stream=None):
    """A progress bar (``total`` steps) or a spinner (``total=None``) on ``stream`` (stderr)."""
    stream = sys.stderr if stream is None else stream
    if not enabled(stream):
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    cols = [SpinnerColumn(), TextColumn("{task.description}")]
    if total:
        cols += [BarColumn(), MofNCompleteColumn()]
    cols.append(TimeElapsedColumn())
    try:
        same_tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        same_tty = False
    with Progress(*cols, console=Console(file=stream, soft_wrap=True), transient=True, redirect_stdout=same_tty, redirect_stderr=False) as prog:
        yield _Task(prog, prog.add_task(description, total=total))
