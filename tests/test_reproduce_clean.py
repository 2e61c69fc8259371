"""``bandit-lab reproduce --out figures --overwrite`` leaves a fresh clone clean (issue 23 item 3):
the committed ``figures/`` are exactly what a rerun writes — records and RESULTS.md carry no
timings, dates or absolute paths, and the figures are byte-identical (matplotlib's Agg PNGs carry
no timestamp). Slow (the seven experiments at paper settings: ≈ 30 s idle, minutes under load)."""
from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from bandit_lab.reproduce import without_wall_clock

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_without_wall_clock_drops_only_seconds_fields():
    rec = {"a": 1, "train_seconds": 3.2, "rows": [{"solve_seconds": 0.1, "tv": 0.5}], "seconds_total": 2}
    assert without_wall_clock(rec) == {"a": 1, "rows": [{"tv": 0.5}], "seconds_total": 2}


def test_committed_records_have_no_wall_clock_or_paths():
    for f in sorted((ROOT / "figures").glob("*.json")) + [ROOT / "figures" / "RESULTS.md"]:
        text = f.read_text(encoding="utf-8")
        assert "_seconds" not in text and "in this run" not in text, f.name
        assert str(ROOT) not in text and "/tmp/" not in text and "/home/" not in text, f.name
        if f.suffix == ".json":
            assert without_wall_clock(json.loads(text)) == json.loads(text), f.name


def _tracked(rel: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", rel], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted(out.split())


@pytest.mark.slow
def test_reproduce_rewrites_the_committed_figures_byte_for_byte(tmp_path):
    from cli.main import main

    out = tmp_path / "figures"
    shutil.copytree(ROOT / "figures", out)
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--out", str(out), "--overwrite"])
    assert e.value.code in (0, None)
    differ = [rel for rel in _tracked("figures")
              if (out / pathlib.Path(rel).name).read_bytes() != (ROOT / rel).read_bytes()]
    assert not differ, f"reproduce changed committed files: {differ} (regenerate: bandit-lab reproduce --out figures --overwrite)"
    new = sorted(p.name for p in out.iterdir())
    assert new == sorted(pathlib.Path(r).name for r in _tracked("figures")), "reproduce wrote an untracked file"
