"""The docs (issue 23): a README of one screenful, a site that builds in strict mode with its
tutorials executed, every page in the nav, and shown outputs that match a fresh run.

Cost in the default suite: the strict build (≈ 15 s under load: the three tutorials execute,
one JAX import) and the cheap shown outputs (errors refused before any compile, `list`, `cite`,
the README's main job); every other shown output is checked by the slow test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bandit_lab import docs_outputs

ROOT = Path(__file__).resolve().parent.parent


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        for v in (item.values() if isinstance(item, dict) else [item]):
            out += _nav_pages(v) if isinstance(v, list) else [v]
    return out


def _mkdocs_config() -> dict:
    yaml = pytest.importorskip("yaml", reason="the docs extra (pip install -e '.[docs]') builds the site")

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


def test_readme_is_one_screenful_and_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    import re

    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_every_docs_page_is_in_the_nav():
    nav = set(_nav_pages(_mkdocs_config()["nav"]))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert not pages - nav, f"docs pages missing from mkdocs.yml's nav: {sorted(pages - nav)}"
    assert not nav - pages, f"nav entries without a page: {sorted(nav - pages)}"


def test_docs_build_in_strict_mode_with_executed_tutorials(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds the site")
    pytest.importorskip("markdown_exec", reason="the docs extra runs the tutorials")
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-6000:]
    teacher = (tmp_path / "site" / "tutorials" / "teacher" / "index.html").read_text()
    assert "trained [0.631579 0.315789 0.052632]" in teacher  # executed, and Adam reached the closed form
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "train_policy" in api and "solve_exact" in api


def test_shown_files_are_verbatim():
    assert docs_outputs.check_files() == []


# the shown outputs whose commands stop before any compilation, plus the README's main job
CHEAP = ["docs/specs/bad-key.json", "docs/specs/bad-lr.json", "--steps 1e12", "list experiments"]


@pytest.mark.parametrize("only", CHEAP)
def test_cheap_shown_outputs_match_a_fresh_run(only):
    shown = [s for s in docs_outputs.shown_outputs() if only in s.command and s.command.endswith(only) or only == s.command.split()[-1]]
    assert shown, only
    fresh = docs_outputs.run_command(shown[0].command)
    for s in shown:
        assert docs_outputs.normalise(s.text) == docs_outputs.normalise(fresh), f"{s.path}: `{s.command}` drifted"


def _git_status() -> str:
    r = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else "(not a git checkout)"


def test_readme_commands_match_and_leave_the_clone_clean():
    """Every command the README shows, run in the repository itself: the shown output, and no file
    created or changed (a fresh clone stays clean)."""
    shown = [s for s in docs_outputs.shown_outputs() if s.path.name == "README.md"]
    assert {s.command for s in shown} >= {"bandit-lab run weight-decay --alpha 0.1", "bandit-lab cite"}
    before = _git_status()
    for s in shown:
        fresh = docs_outputs.run_command(s.command, cwd=ROOT)
        assert docs_outputs.normalise(fresh) == docs_outputs.normalise(s.text), f"README: `{s.command}` drifted"
    assert _git_status() == before


def test_timing_fields_are_the_only_exception():
    a = "wrote x (3.68 MB; built in 5.4 s)\ncheck-loss dpo  seed 0  (4.2 s)\nTV 1.0e-02"
    b = "wrote x (3.71 MB; built in 7.0 s)\ncheck-loss dpo  seed 0  (12 s)\nTV 1.0e-02"
    assert docs_outputs.normalise(a) == docs_outputs.normalise(b)
    assert docs_outputs.normalise("TV 1.0e-02") != docs_outputs.normalise("TV 1.1e-02")
    # the time stamp of a default output directory, and nothing else of the path
    assert docs_outputs.normalise("wrote runs/early-stopping-20261205-084715/records.json") == \
        docs_outputs.normalise("wrote runs/early-stopping-20261206-101010/records.json")
    assert docs_outputs.normalise("wrote runs/simplex-20261205-084715/a.png") != \
        docs_outputs.normalise("wrote runs/early-stopping-20261205-084715/a.png")
    # float64 rounding residue (the README's weight-decay TV column: 1.2e-16 on one CPU, 8.3e-17 on
    # another, same commit) is compared as "below 1e-12"; 1e-12 and up, and underflow-scale claims, exactly
    assert docs_outputs.normalise("fdpo  0.5029  1.2e-16") == docs_outputs.normalise("fdpo  0.5029  8.3e-17")
    assert docs_outputs.normalise("dpo  0.0e+00") == docs_outputs.normalise("dpo  2.8e-17")
    assert docs_outputs.normalise("TV 1.0e-12") != docs_outputs.normalise("TV 2.0e-12")
    assert docs_outputs.normalise("TV 3e-16") != docs_outputs.normalise("TV 3e-11")
    assert docs_outputs.normalise("π(y3) ≈ 1e-100") != docs_outputs.normalise("π(y3) ≈ 1e-99")


@pytest.mark.slow
def test_reproduce_regenerates_the_committed_figures_exactly(tmp_path):
    """`bandit-lab reproduce --out figures --overwrite` in a fresh clone leaves it clean: every file
    it writes equals the committed one in figures/ (records, RESULTS.md and the PNGs, bit for bit)."""
    out = tmp_path / "figures"
    text = docs_outputs.run_command(f"bandit-lab reproduce --out {out}")
    assert "[exit" not in text, text
    written = sorted(p.name for p in out.iterdir())
    assert "RESULTS.md" in written and any(n.endswith(".json") for n in written)
    differ = [n for n in written if not (ROOT / "figures" / n).is_file() or (ROOT / "figures" / n).read_bytes() != (out / n).read_bytes()]
    assert not differ, f"reproduce changes these committed files: {differ} (regenerate: bandit-lab reproduce --out figures --overwrite)"


@pytest.mark.slow
def test_every_shown_output_matches_a_fresh_run():
    """`python -m bandit_lab.docs_outputs --check`: verify, reproduce, explore, check-loss, … (minutes)."""
    problems = docs_outputs.check()
    assert not problems, "\n\n".join(problems) + "\n(fix: python -m bandit_lab.docs_outputs --write)"


def test_list_tags_only_plugin_losses():
    out = docs_outputs.run_command("bandit-lab --plugin examples/my_losses.py list losses")
    tagged = [line.split()[0] for line in out.splitlines() if line.endswith("(plugin)")]
    assert tagged == ["tempered_dpo"], tagged  # not grpo, ppo, … (built in, defined by a factory)


def test_python_examples_in_the_docs_run():
    """The `>>>` examples of docs/plugins.md (the Python API section) run as doctests."""
    import doctest

    text = (ROOT / "docs" / "plugins.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:] if b.lstrip().startswith(">>>")]
    assert blocks
    for b in blocks:
        test = doctest.DocTestParser().get_doctest(b, {}, "docs/plugins.md", "docs/plugins.md", 0)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test)
        assert runner.failures == 0
