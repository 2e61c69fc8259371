"""Command outputs shown in README.md and docs/ are generated, never typed: ``--write`` reruns them.

A shown output is a marker line followed by a fenced ``text`` block::

    <!-- output: bandit-lab solve examples/kong_app_b.json -->
    ```text
    $ bandit-lab solve examples/kong_app_b.json
    ...what the command printed (stdout, then stderr)...
    ```

``<!-- file: PATH -->`` before a fenced block shows a repository file verbatim (an example spec
that must copy-paste). ``<!-- output[slow]: CMD -->`` marks a command too slow for the default test suite (it is checked by
the ``slow`` test and rewritten by ``--write`` all the same). A command that exits non-zero gets a
last line ``[exit N]``. Commands run with the repository's own code (``python -m cli.main``) in a
temporary working directory that holds links to ``examples/`` and ``docs/`` — so ``--out figures``
in a shown command never touches the repository's ``figures/``.

Timing fields are the one documented exception: ``--check`` compares the outputs after replacing
every duration (a number followed by `` s`` or ``ms``, e.g. ``3.9 s``, ``(4.2 s)``, ``built in
5.4 s``), the page size of ``explore`` (``3.68 MB``) and the time stamp of a default output
directory (``runs/early-stopping-20261205-084715/``) by a placeholder; everything else must match
byte for byte.

    python -m bandit_lab.docs_outputs --check            # exit 1 and a diff when a shown output drifted
    python -m bandit_lab.docs_outputs --write            # rerun every marked command and rewrite the blocks
    python -m bandit_lab.docs_outputs --check --fast     # only the commands not marked [slow]
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ``<!-- file: PATH -->`` and a fenced block of any language: the block is the file, verbatim
FILE_MARKER = re.compile(r"^<!-- file: (.+?) -->\n```[\w-]*\n(.*?)^```$", re.M | re.S)
MARKER = re.compile(r"^<!-- output(\[slow\])?: (.+?) -->\n```text\n(.*?)^```$", re.M | re.S)

#: what ``--check`` does not compare: durations, file sizes, timestamps and float64 rounding residue
#: (documented in the docs' pages too)
TIMING = [
    (re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)? ?(?:s|ms|min)\b"), "<time>"),
    (re.compile(r"\b\d+(?:\.\d+)? (?:kB|MB|GB)\b"), "<size>"),
    # the default output directory of a sweep or a `run` without --out: runs/NAME-YYYYMMDD-HHMMSS/
    (re.compile(r"\bruns/([\w-]+?)-\d{8}-\d{6}\b"), r"runs/\1-<timestamp>"),
    # float64 rounding residue: a residual or distance printed as 1e-13 … 1e-39 is the last bits of a
    # float64 computation, and those bits depend on the CPU XLA compiled for (the same commit printed
    # 1.2e-16 on one machine and 8.3e-17 on another: AVX2 vs AVX-512 code for the same fused loop).
    # Such a number (or an exact 0 printed as 0.0e+00, which another CPU prints as 3e-17) is compared
    # as "below 1e-12", never by its digits; 1e-12 and above, and the
    # underflow-scale numbers (1e-100, 1e-300: claims about vanishing masses), are compared exactly.
    (re.compile(r"(?<![\w.])[-+]?(?:\d(?:\.\d+)?e-(?:1[3-9]|[23]\d)|0(?:\.0+)?e[-+]?0+)\b"), "<below 1e-12>"),
]


@dataclass
class Shown:
    path: Path
    command: str
    slow: bool
    text: str  # the block's current content (without the fences)
    span: tuple[int, int]  # of the block's content in the file


def pages(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def shown_outputs(root: Path = ROOT) -> list[Shown]:
    found = []
    for path in pages(root):
        text = path.read_text()
        for m in MARKER.finditer(text):
            found.append(Shown(path, m.group(2).strip(), bool(m.group(1)), m.group(3), m.span(3)))
    return found


def normalise(text: str) -> str:
    for pattern, repl in TIMING:
        text = pattern.sub(repl, text)
    return text


def run_command(command: str, root: Path = ROOT, timeout: float = 600, *, cwd: Path | None = None) -> str:
    """The block a command's marker should hold: ``$ CMD``, its stdout then stderr, ``[exit N]``.
    ``cwd``: run there instead of a temporary directory (e.g. the repository itself, to check
    that a command leaves a clone clean). It runs with XLA's default flags, as a reader's would:
    the test suite's fast-compile mode (:mod:`bandit_lab.infra.xla_flags`) is removed from its
    environment (``verify`` still turns it on for itself, as for a reader)."""
    from bandit_lab.infra import xla_flags

    argv = shlex.split(command)
    if not argv or argv[0] != "bandit-lab":
        raise SystemExit(f"docs_outputs: only `bandit-lab …` commands can be shown, got {command!r}")
    env = {**xla_flags.removed(os.environ), "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    with tempfile.TemporaryDirectory(prefix="bandit-lab-docs-") as tmp:
        for name in ("examples", "docs"):
            os.symlink(root / name, Path(tmp) / name)
        proc = subprocess.run([sys.executable, "-m", "cli.main", *argv[1:]], cwd=cwd or tmp, env=env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    out = out.replace(tmp, "<tmp>")
    body = f"$ {command}\n" + out
    if not body.endswith("\n"):
        body += "\n"
    if proc.returncode:
        body += f"[exit {proc.returncode}]\n"
    return body


def check(root: Path = ROOT, *, slow: bool = True, only: str | None = None) -> list[str]:
    """A unified diff for each shown output that differs from a fresh run (timings excepted)."""
    problems = []
    for s in shown_outputs(root):
        if (s.slow and not slow) or (only and only not in s.command):
            continue
        fresh = run_command(s.command, root)
        if normalise(fresh) != normalise(s.text):
            diff = difflib.unified_diff(s.text.splitlines(), fresh.splitlines(), "shown", "fresh run", lineterm="")
            problems.append(f"{s.path.relative_to(root)}: `{s.command}` drifted:\n" + "\n".join(diff))
    return problems


def check_files(root: Path = ROOT) -> list[str]:
    """Each ``<!-- file: PATH -->`` block must be the file's content, verbatim (no run needed)."""
    problems = []
    for path in pages(root):
        for m in FILE_MARKER.finditer(path.read_text()):
            target = root / m.group(1).strip()
            if not target.is_file():
                problems.append(f"{path.relative_to(root)}: shows {m.group(1)}, which does not exist")
            elif target.read_text() != m.group(2):
                problems.append(f"{path.relative_to(root)}: the block shown as {m.group(1)} differs from the file")
    return problems


def write_files(root: Path = ROOT) -> int:
    changed = 0
    for path in pages(root):
        text = path.read_text()

        def repl(m: re.Match) -> str:
            nonlocal changed
            content = (root / m.group(1).strip()).read_text()
            if content != m.group(2):
                changed += 1
            return m.group(0)[: m.start(2) - m.start(0)] + content + "```"

        new = FILE_MARKER.sub(repl, text)
        if new != text:
            path.write_text(new)
    return changed


def write(root: Path = ROOT, *, slow: bool = True, only: str | None = None) -> int:
    """Rerun every marked command and rewrite its block in place; the number of blocks changed."""
    changed = 0
    for path in pages(root):
        text = path.read_text()

        def repl(m: re.Match) -> str:
            nonlocal changed
            cmd = m.group(2).strip()
            if (m.group(1) and not slow) or (only and only not in cmd):
                return m.group(0)
            fresh = run_command(cmd, root)
            if fresh != m.group(3):
                changed += 1
                print(f"{path.relative_to(root)}: {cmd}", file=sys.stderr)
            return m.group(0)[: m.start(3) - m.start(0)] + fresh + "```"

        new = MARKER.sub(repl, text)
        if new != text:
            path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bandit_lab.docs_outputs", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="exit 1 if a shown output differs from a fresh run")
    mode.add_argument("--write", action="store_true", help="rerun the marked commands and rewrite their blocks")
    mode.add_argument("--list", action="store_true", help="list the marked commands")
    ap.add_argument("--fast", action="store_true", help="skip the commands marked [slow]")
    ap.add_argument("--only", help="only commands containing this text")
    a = ap.parse_args(argv)
    if a.list:
        for s in shown_outputs():
            print(f"{s.path.relative_to(ROOT)}\t{'slow' if s.slow else 'fast'}\t{s.command}")
        return 0
    if a.write:
        print(f"{write(slow=not a.fast, only=a.only) + write_files()} block(s) rewritten")
        return 0
    problems = check_files() + check(slow=not a.fast, only=a.only)
    for p in problems:
        print(p + "\n")
    print(f"{len(problems)} shown output(s) drifted" if problems else "every shown output matches a fresh run")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
