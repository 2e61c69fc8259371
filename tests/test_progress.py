"""Progress on the commands that can take more than 2 s (issue 23 item 5): on stderr, only when it
is a terminal (bandit_lab/infra/progress.py); ``fixed-points`` printed nothing for ~36 s before."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from bandit_lab.infra import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_on_a_terminal_and_nowhere_else(monkeypatch):
    monkeypatch.delenv("BANDIT_LAB_NO_PROGRESS", raising=False)
    tty, pipe = _Tty(), io.StringIO()
    with progress.bar("fixed-points: working", stream=tty) as p:
        p.update("fixed-points: still working")
    with progress.bar("fixed-points: working", stream=pipe):
        pass
    assert "fixed-points" in tty.getvalue() and pipe.getvalue() == ""
    monkeypatch.setenv("BANDIT_LAB_NO_PROGRESS", "1")
    quiet = _Tty()
    with progress.bar("x", stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_fixed_points_shows_progress_and_keeps_stdout_clean(monkeypatch, capsys):
    opened = []

    @contextlib.contextmanager
    def bar(description, total=None, *, stream=None):
        opened.append(description)
        yield progress._Silent()

    monkeypatch.setattr(progress, "bar", bar)
    from cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["fixed-points", "--only", "ipo", "--json"])
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    assert any(d.startswith("fixed-points") for d in opened), opened
    assert [r["loss"] for r in json.loads(out)["records"]] == ["ipo"]
