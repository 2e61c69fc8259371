"""Typed ``--help`` everywhere (issue 23 item 5): no ``<bool>``/``<str>`` placeholders, types as
words, defaults shown, square brackets in help texts kept (cli/helpfmt.py)."""
from __future__ import annotations

import re

import pytest
import typer

from cli.main import app, main

PLACEHOLDER = re.compile(r"<(bool|str|int|float|Path|list\[\w+\])>")


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    # the rich table wraps long cells: drop its borders and join the pieces of a cell
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", out))


def _commands() -> list[list[str]]:
    group = typer.main.get_command(app)
    ctx = None  # list_commands/get_command of these groups never read it
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        out.append([name])
        if hasattr(cmd, "list_commands"):  # the ``run`` group (typer vendors its own click)
            out += [[name, sub] for sub in cmd.list_commands(ctx)]
    return out


COMMANDS = _commands()


def test_every_command_is_listed():
    flat = {" ".join(c) for c in COMMANDS}
    assert {"run", "solve", "verify", "reproduce", "fixed-points", "explore", "check-loss", "run weight-decay"} <= flat


def test_no_placeholder_noise_in_any_help(capsys):
    bad = {}
    for argv in [[], *COMMANDS]:
        text = _help(argv, capsys)
        if PLACEHOLDER.search(text):
            bad[" ".join(argv) or "(top)"] = PLACEHOLDER.findall(text)
    assert not bad, bad


def test_flags_have_no_type_and_values_have_a_word(capsys):
    text = _help(["fixed-points"], capsys)
    assert "--json print one JSON object" in text and "--help Show this message" in text
    assert "spec TEXT a bandit spec" in text and "--only LOSS,…" in text
    text = _help(["run", "weight-decay"], capsys)
    assert "--steps INTEGER optimizer steps" in text and "--lr NUMBER peak learning rate" in text


def test_defaults_and_brackets_are_shown(capsys):
    text = _help(["explore"], capsys)
    # these were swallowed as Rich markup before (``[default: 21]`` vanished)
    for s in ["[default: 21]", "[default: 0.001]", "[default: 3000]", "NAME[key=value]",
              "[default: dpo,fdpo[divergence=forward_kl],ipo]", "[default: adam]"]:
        assert s in text, s
    assert text.count("[default: 0]") == 1  # --port: typer's own default, said once
    text = _help(["run", "weight-decay"], capsys)
    assert "[default: 3000]" in text and "[default: cosine]" in text and "[default: 1.0]" in text
