"""`bandit-lab verify --jobs N` (checks in spawned worker processes) and `--slow` (the full-size
tier of a long check): same values, same order, as the in-process run (issue 22)."""
import json

import pytest

from bandit_lab import checks
from cli.main import main as _main


def main(argv):
    with pytest.raises(SystemExit) as e:
        _main(argv)
    return e.value.code


CHEAP = ["kong-prop32-ipo-eq53", "token-eq28", "ipo-lemma-3.1", "radpo-lemma31"]


def _json(argv, capsys):
    code = main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_jobs_gives_the_in_process_values_in_order(capsys):
    argv = ["verify", "--json", "--instances", "3"] + [a for n in CHEAP for a in ("--only", n)]
    code1, one = _json(argv + ["--jobs", "1"], capsys)
    code2, two = _json(argv + ["--jobs", "2"], capsys)
    assert code1 == code2 == 0
    assert [r["check"] for r in two] == CHEAP == [r["check"] for r in one]
    # the same float64 programs on the same platform: bit-identical values
    assert [r["value"] for r in two] == [r["value"] for r in one]
    assert all(r["tier"] == "default" for r in one + two)


def test_slow_tier_runs_the_full_size_and_says_so():
    calls = []
    c = checks.Check("toy", "claim at N = 16", 1.0, lambda n, s: calls.append(("quick", n, s)) or 0.5,
                     slow=lambda n, s: calls.append(("full", n, s)) or 2.0, slow_claim="claim at N = 4096")
    quick, full = checks.run_check(c, 3, 7), checks.run_check(c, 3, 7, slow=True)
    assert calls == [("quick", 3, 7), ("full", 3, 7)]
    assert (quick.value, quick.passed, quick.tier) == (0.5, True, "default")
    assert (full.value, full.passed, full.tier) == (2.0, False, "slow")
    assert checks.claim(c) == "claim at N = 16" and checks.claim(c, slow=True) == "claim at N = 4096"
    # a check without a slow tier runs its one `run` under --slow too
    plain = checks.Check("plain", "c", 1.0, lambda n, s: 0.0)
    assert checks.run_check(plain, 1, 0, slow=True).tier == "default"


def test_sampled_checks_have_the_paper_size_as_their_slow_tier():
    reg = checks.registry()
    assert "4096" in checks.claim(reg["sampled-rate"], slow=True) and "16…128" in reg["sampled-rate"].claim
    assert reg["sampled-4096"].slow is not None and "N = 4096" in checks.claim(reg["sampled-4096"], slow=True)
    from bandit_lab.checks import onpolicy

    assert onpolicy.SAMPLE_SIZES[-1] == 4096 and max(onpolicy.QUICK_SIZES) < min(onpolicy.SAMPLE_SIZES[1:])


def test_bad_jobs_is_refused(capsys):
    assert main(["verify", "--jobs", "0", "--only", "token-eq28"]) == 2
    assert "--jobs" in capsys.readouterr().err
