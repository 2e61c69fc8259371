"""``--help`` without placeholder noise (issue 23 item 5): types as words, no type for flags,
square brackets shown as typed.

typer ≥ 0.26 prints a type column from the annotation — ``<bool>`` beside every flag (``--json``,
``--help``), ``<str>``/``<int>``/``<float>`` beside every value — and parses each help text as Rich
markup, so ``[default: 21]`` or ``NAME[key=value]`` written in a help string silently vanished.
:func:`install` changes the two hooks typer renders through (``display_type_rich`` and
``rich_utils._make_rich_text``, typer 0.26–0.29): flags get no type, values a word (``TEXT``,
``INTEGER``, ``NUMBER``, ``PATH``; an explicit ``metavar`` wins), and help texts are escaped before
the markup parse. On a typer without those hooks it does nothing (the help is then typer's own).
``tests/test_help.py`` renders every command's ``--help`` and checks the result.
"""
from __future__ import annotations

_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "Path": "PATH", "path": "PATH", "file": "PATH",
          "dir": "PATH", "list[str]": "TEXT", "list[int]": "INTEGER", "list[float]": "NUMBER", "bool": None}


def _word(label: str | None) -> str | None:
    if label is None:
        return None
    inner = label[1:-1] if label.startswith("<") and label.endswith(">") else label
    suffix = "..." if inner.endswith("...") else ""
    inner = inner.removesuffix("...")
    if inner in _WORDS:
        w = _WORDS[inner]
        return None if w is None else w + suffix
    return label if not label.startswith("<") else inner.upper() + suffix


def install() -> None:
    try:
        from typer import core
    except ImportError:  # pragma: no cover - typer is a dependency
        return
    for cls_name in ("TyperOption", "TyperArgument"):
        cls = getattr(core, cls_name, None)
        orig = getattr(cls, "display_type_rich", None)
        if orig is None or getattr(orig, "_bandit_lab", False):
            continue

        def display_type_rich(self, ctx, _orig=orig):
            if getattr(self, "metavar", None) is not None:
                return self.metavar
            if getattr(self, "is_flag", False) or getattr(self, "is_bool_flag", False):
                return None
            return _word(_orig(self, ctx))

        display_type_rich._bandit_lab = True
        cls.display_type_rich = display_type_rich
    for cls_name in ("TyperCommand", "TyperGroup"):  # rich is imported only when help is shown (cold start)
        cls = getattr(core, cls_name, None)
        orig = getattr(cls, "format_help", None)
        if orig is None or getattr(orig, "_bandit_lab", False):
            continue

        def format_help(self, ctx, formatter, _orig=orig):
            _escape_help_markup()
            return _orig(self, ctx, formatter)

        format_help._bandit_lab = True
        cls.format_help = format_help


def _escape_help_markup() -> None:
    try:
        from typer import rich_utils
    except ImportError:  # no rich: typer prints plain help, nothing is parsed as markup
        return
    make = getattr(rich_utils, "_make_rich_text", None)
    if make is None or getattr(make, "_bandit_lab", False):
        return
    from rich.markup import escape

    def _make_rich_text(*, text: str, style: str = "", markup_mode, _make=make):
        return _make(text=escape(text), style=style, markup_mode=markup_mode)

    _make_rich_text._bandit_lab = True
    rich_utils._make_rich_text = _make_rich_text
