"""``bandit-lab cite`` and ``bandit_lab.bibliography``: every registered loss, check and experiment
has a source; every entry is well-formed BibTeX with the fields its type needs; a few entries
against facts checked by hand (see the header of :mod:`bandit_lab.bibliography`); the CLI; plugin
losses' ``bibtex``."""
import re
import subprocess
import sys

import pytest

from bandit_lab import bibliography as bib
from bandit_lab.errors import BanditError
from cli.main import main

REQUIRED = {
    "article": {"author", "title", "journal", "year"},
    "inproceedings": {"author", "title", "booktitle", "year"},
    "misc": {"title", "year"},
    "software": {"author", "title", "year"},
}


def parse_bibtex(text: str) -> list[tuple[str, str, dict]]:
    """``[(type, key, {field: value})]`` of a BibTeX text; ``%`` comment lines are skipped.
    AssertionError on unbalanced braces or a malformed field (the check a BibTeX reader makes)."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("%"))
    out, pos = [], 0
    for m in re.finditer(r"@(\w+)\{([^\s,{}]+),", text):
        assert m.start() >= pos, f"entry {m.group(2)} starts inside the previous one"
        i, fields = m.end(), {}
        while True:
            f = re.compile(r"\s*(\w+)\s*=\s*\{").match(text, i)
            if f is None:
                break
            depth, j = 1, f.end()
            while depth:
                assert j < len(text), f"{m.group(2)}: unbalanced braces in {f.group(1)}"
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            assert f.group(1) not in fields, f"{m.group(2)}: {f.group(1)} twice"
            fields[f.group(1)] = text[f.end():j - 1]
            i = j + 1 if text[j:j + 1] == "," else j
        close = re.compile(r"\s*\}").match(text, i)
        assert close is not None, f"{m.group(2)}: no closing brace after its fields"
        pos = close.end()
        out.append((m.group(1).lower(), m.group(2), fields))
    return out


@pytest.fixture(scope="module")
def registries():
    from bandit_lab import checks, experiments
    from bandit_lab.losses import registry

    return registry(), checks.registry(), experiments.registry()


def _known(keys):
    return bool(keys) and all(k in bib.ENTRIES or k == bib.SOFTWARE for k in keys)


def test_every_loss_check_and_experiment_has_a_source(registries):
    losses, checks, exps = registries
    missing = [f"loss {n}: citation {s.citation!r}" for n, s in losses.items()
               if not s.bibtex and not _known(bib.LOSS_SOURCES.get(s.citation))]
    onpolicy = [n for n, s in losses.items() if s.kind == "onpolicy"]
    assert onpolicy and all(_known(bib.LOSS_SOURCES.get(losses[n].citation)) for n in onpolicy)
    missing += [f"check {n}" for n in checks if not _known(bib.CHECK_SOURCES.get(n))]
    missing += [f"experiment {n}: reference {e.reference!r}" for n, e in exps.items()
                if not _known(bib.EXPERIMENT_SOURCES.get(e.reference))]
    assert not missing, "add these to bandit_lab/bibliography.py:\n" + "\n".join(missing)


def test_mapping_has_no_stale_rows_or_unused_entries(registries):
    losses, checks, exps = registries
    assert set(bib.LOSS_SOURCES) <= {s.citation for s in losses.values()}
    assert set(bib.CHECK_SOURCES) <= set(checks)
    assert set(bib.EXPERIMENT_SOURCES) <= {e.reference for e in exps.values()}
    used = set(bib.CORE).union(*bib.LOSS_SOURCES.values(), *bib.CHECK_SOURCES.values(), *bib.EXPERIMENT_SOURCES.values())
    assert set(bib.ENTRIES) <= used, sorted(set(bib.ENTRIES) - used)
    assert set(bib.FLAGS) <= set(bib.ENTRIES)
    assert set(bib.PROVENANCE) == set(bib.ENTRIES)  # every entry says where it was checked


def test_names_are_unique_across_registries(registries):
    """:func:`bibliography.cite` takes the first registry that knows a name."""
    losses, checks, exps = registries
    names = [bib.SOFTWARE, *losses, *checks, *exps]
    assert len(names) == len(set(names))


def test_every_entry_parses_with_its_required_fields():
    for key, text in {**bib.ENTRIES, bib.SOFTWARE: bib._software_entry()}.items():
        assert text.isascii(), key  # accents as LaTeX escapes
        (kind, k, fields), = parse_bibtex(text)
        assert k == key and kind in REQUIRED, key
        need = REQUIRED[kind] | ({"author"} if key not in bib.FLAGS or "author" in fields else set())
        assert need <= set(fields), (key, need - set(fields))
        assert re.fullmatch(r"\d{4}", fields["year"]), key
        if "eprint" in fields:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", fields["eprint"]) and fields["archivePrefix"] == "arXiv", key
            yy, mm = int(fields["eprint"][:2]), int(fields["eprint"][2:4])
            assert 1 <= mm <= 12 and int(fields["year"]) >= 2000 + yy, key  # never before the preprint


def test_full_output_parses_without_duplicate_keys(registries):
    losses, checks, exps = registries
    out = bib.cite([*losses, *checks, *exps])
    keys = [k for _, k, _ in parse_bibtex(out)]
    assert len(keys) == len(set(keys)) and set(keys) == set(bib.ENTRIES) | {bib.SOFTWARE}
    assert "WARNING" not in out
    assert out.count("% UNVERIFIED") == len(bib.FLAGS)


def _entry(out, key):
    return next(f for _, k, f in parse_bibtex(out) if k == key)


@pytest.mark.parametrize("name, key, facts", [
    ("dpo", "rafailov2023direct", {"eprint": "2305.18290", "year": "2023", "author": "Rafailov, Rafael and Sharma, Archit"}),
    ("dpo", "kong2025constraints", {"volume": "258", "pages": "2215--2223", "year": "2025", "author": "Kong, Lemin and Hu"}),
    ("ipo", "azar2024general", {"eprint": "2310.12036", "pages": "4447--4455", "author": "Azar, Mohammad Gheshlaghi"}),
    ("fdpo", "wang2024beyond", {"eprint": "2309.16240", "author": "Wang, Chaoqi and Jiang, Yibo"}),
    ("grpo", "shao2024deepseekmath", {"eprint": "2402.03300", "author": "Shao, Zhihong"}),
    ("ppo", "schulman2017proximal", {"eprint": "1707.06347", "year": "2017"}),
    ("rloo", "ahmadian2024back", {"eprint": "2402.14740", "pages": "12248--12267"}),
    # the one where a third-party reference list had other authors: the authors' own README
    ("apo_zero", "doosterlinck2024anchored", {"eprint": "2408.06266", "author": "D'Oosterlinck, Karel and Xu, Winnie"}),
    ("spo", "sharifnassab2024soft", {"eprint": "2405.00747", "author": "Sharifnassab, Arsalan"}),
    ("reinforce", "williams1992simple", {"volume": "8", "pages": "229--256", "doi": "10.1007/BF00992696"}),
])
def test_entries_match_verified_facts(name, key, facts):
    fields = _entry(bib.cite([name]), key)
    for f, v in facts.items():
        assert fields[f].startswith(v), (key, f, fields[f])


def test_no_names_is_bandit_lab_and_the_core_sources():
    keys = [k for _, k, _ in parse_bibtex(bib.cite())]
    assert keys == list(bib.CORE) == ["bandit-lab", "kong2025constraints", "rafailov2023direct"]


def test_dedup_and_used_by():
    out = bib.cite(["dpo", "dpo-rlhf", "weight-decay", "dpo"])
    keys = [k for _, k, _ in parse_bibtex(out)]
    assert keys == ["bandit-lab", "rafailov2023direct", "kong2025constraints"]
    assert "% used by: dpo, dpo-rlhf, weight-decay\n@inproceedings{kong2025constraints," in out


def test_unknown_name_suggests():
    with pytest.raises(BanditError, match="did you mean 'dpo'"):
        bib.cite(["dpoo"])


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_prints_both_keys(capsys):
    code, out, err = run_cli(["cite", "dpo", "ipo"], capsys)
    assert code == 0 and not err
    assert "@inproceedings{rafailov2023direct," in out and "@inproceedings{azar2024general," in out
    assert parse_bibtex(out)


def test_cli_unknown_name_exit_2_one_line(capsys):
    code, out, err = run_cli(["cite", "dpo", "no-such-loss"], capsys)
    assert code == 2 and not out
    assert len(err.strip().splitlines()) == 1 and "no-such-loss" in err and "Traceback" not in err


def _plugin(name, **kw):
    from bandit_lab.losses import base

    base.registry()
    base.register(base.LossSpec(name=name, fn=lambda inputs, hp: 0.0, defaults={"beta": 1.0}, **kw))


def _unregister(name):
    from bandit_lab.losses import base

    base.REGISTRY.pop(name, None)


PLUGIN_BIB = ("@article{doe2026mine,\n  title = {My {DPO} Variant},\n  author = {Doe, Jane},\n"
              "  journal = {Journal of Examples},\n  year = {2026}\n}")


def test_plugin_bibtex_is_printed_verbatim(capsys):
    try:
        _plugin("test_cite_plugin", citation="Doe 2026", bibtex=PLUGIN_BIB)
        code, out, err = run_cli(["cite", "test_cite_plugin", "dpo"], capsys)
        assert code == 0 and ("% used by: test_cite_plugin\n" + PLUGIN_BIB + "\n") in out
        assert [k for _, k, _ in parse_bibtex(out)] == ["bandit-lab", "doe2026mine", "rafailov2023direct", "kong2025constraints"]
    finally:
        _unregister("test_cite_plugin")


def test_plugin_bibtex_must_parse():
    try:
        _plugin("test_cite_badbib", bibtex="Doe, J. My loss. 2026.")
        with pytest.raises(BanditError, match="test_cite_badbib.*bibtex"):
            bib.cite(["test_cite_badbib"])
    finally:
        _unregister("test_cite_badbib")


def test_loss_without_known_citation_gets_a_flagged_misc():
    try:
        _plugin("test_cite_nocite", citation="Someone {et al.} 2031")
        out = bib.cite(["test_cite_nocite"])
        assert "% WARNING: loss 'test_cite_nocite' has no known citation" in out
        fields = _entry(out, "bandit-lab-loss-test_cite_nocite")
        assert "Someone" in fields["note"] and "2031" in fields["note"]
    finally:
        _unregister("test_cite_nocite")


def test_no_names_loads_no_registry():
    """The core entries need no registry (cite is fast); names load only the registry they need."""
    code = ("import sys; from bandit_lab.bibliography import cite; cite(); "
            "assert 'bandit_lab.losses.base' not in sys.modules and 'bandit_lab.checks' not in sys.modules; "
            "cite(['dpo']); assert 'bandit_lab.checks' not in sys.modules and 'bandit_lab.experiments' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
