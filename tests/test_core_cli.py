"""The CLI in-process: bad input is one line on stderr with exit code 2; JSON outputs; --overwrite."""
import json
import os

import pytest

from cli.main import main


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "weight-decay", "--alpha", "-1"],
        ["run", "weight-decay", "--beta", "0"],
        ["run", "weight-decay", "--beta", "abc"],
        ["run", "weight-decay", "--no-such-option", "1"],
        ["run", "no-such-experiment"],
        ["run", "weight-decay", "--alpha", "0.1", "--distance", "hellinger"],
        ["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "0.5,0.6,0.2"],
        ["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "-0.2,0.6,0.6"],
        ["run", "weight-decay", "--alpha", "0.1", "--pi-ref", "0.5,0.5"],
        ["verify", "--only", "no-such-check"],
        ["list", "nonsense"],
        ["solve", "/nonexistent/spec.json"],
        ["frobnicate"],
    ],
)
def test_bad_input_is_one_line_exit_2(argv, capsys):
    code, out, err = run_cli(argv, capsys)
    assert code == 2, (argv, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("{not json", "malformed spec"),
        ('{"pi_ref": [0.5, 0.5]}', "preference: is required"),
        ('{"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss": "nope"}', "loss: unknown loss 'nope'"),
        ('{"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "loss_params": {"beta": -1}}', "loss_params.beta: must be a finite number in [1e-06, 1e+06], got -1"),
        ('{"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "weight_decay": -0.1}', "weight_decay: must be a finite number in [0, 1e+06]"),
        ('{"pi_ref": [0.5, 0.5], "preference": {"reward": [0, 1]}, "colour": "red"}', "colour: unknown spec key"),
        ('{"pi_ref": [0.5, 0.6], "preference": {"reward": [0, 1]}}', "pi_ref: must sum to 1"),
        ('{"pi_ref": [0.3, 0.3, 0.4], "preference": {"matrix": [[0.5, 0.8, 0.3], [0.2, 0.5, 0.9], [0.7, 0.1, 0.5]]}, "loss": "rlhf"}', "loss: this preference matrix is not Bradley"),
    ],
)
def test_malformed_specs(tmp_path, spec, msg, capsys):
    p = tmp_path / "s.json"
    p.write_text(spec)
    code, out, err = run_cli(["solve", str(p)], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err


def test_run_weight_decay_json(capsys):
    code, out, err = run_cli(["run", "weight-decay", "--alpha", "0.1", "--json"], capsys)
    assert code == 0
    res = json.loads(out)
    recs = res["records"]
    assert {r["loss"] for r in recs} == {"dpo", "fdpo[forward_kl]", "ipo"}
    for r in recs:
        assert {"loss", "policy", "counterpart_policy", "tv"} <= set(r)
        assert r["tv"] > 1e-2 and r["adam_gap"] < 1e-3


def test_out_dir_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "wd"
    args = ["run", "weight-decay", "--n-alphas", "3", "--steps", "50", "--out", str(out)]
    code, _, _ = run_cli(args, capsys)
    assert code == 0 and (out / "records.json").exists() and (out / "weight_decay.png").exists()
    mtime = os.path.getmtime(out / "records.json")
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "--overwrite" in err
    assert os.path.getmtime(out / "records.json") == mtime
    from bandit_lab.infra.files import prepare_out  # --overwrite lets the same directory through

    assert prepare_out(str(out), True) == str(out)


def test_runs_started_in_the_same_second_get_their_own_default_directory(tmp_path, capsys, monkeypatch):
    """Without --out a sweep writes to runs/NAME-TIMESTAMP/, to the second: a second run started
    in the same second (a shell loop of background jobs) gets NAME-TIMESTAMP-2/, never the
    first run's directory — before, it wrote into it while it was still empty, or was refused
    with "--overwrite" although the user chose no directory."""
    import time as time_mod

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time_mod, "strftime", lambda fmt, *a: "20261206-233000")
    args = ["run", "weight-decay", "--n-alphas", "3", "--steps", "20", "--no-plot"]
    outs = []
    for _ in range(3):
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        outs.append([ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("wrote ")])
    dirs = [os.path.dirname(o[0]) for o in outs]
    assert dirs == [os.path.join("runs", "weight-decay-20261206-233000" + s) for s in ("", "-2", "-3")]
    assert sorted(os.listdir(tmp_path / "runs")) == sorted(os.path.basename(d) for d in dirs)
    for d in dirs:
        assert sorted(os.listdir(tmp_path / d)) == ["records.json", "records.npz"]


def test_fresh_directories_claimed_at_once_are_all_different(tmp_path):
    """``prepare_out(path, fresh=True)`` from 8 threads at the same moment: 8 different new
    directories (each claimed by an atomic mkdir), the parents made once; a failed run removes
    what it created (``OutDir.discard``), so the name is free again."""
    import threading

    from bandit_lab.infra.files import prepare_out

    base = str(tmp_path / "runs" / "x-20261206-233000")
    got, go = [], threading.Barrier(8)

    def claim():
        go.wait()
        got.append(prepare_out(base, fresh=True))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted([base] + [f"{base}-{n}" for n in range(2, 9)])
    assert all(os.path.isdir(d) and os.listdir(d) == [] for d in got)
    last = max(got, key=lambda d: int(d.rsplit("-", 1)[1]) if d != base else 1)
    last.discard()
    assert not os.path.exists(last) and prepare_out(base, fresh=True) == last


def test_solve_examples_json(capsys):
    root = os.path.join(os.path.dirname(__file__), "..", "examples")
    for name in sorted(os.listdir(root)):
        if not name.endswith((".json", ".toml")):
            continue  # examples/my_losses.py is the plugin example (tests/test_api.py)
        plugin = ["--plugin", os.path.join(root, "my_losses.py")] if name == "tempered_dpo.json" else []
        code, out, err = run_cli(plugin + ["solve", os.path.join(root, name), "--json"], capsys)
        assert code == 0, (name, err)
        res = json.loads(out)
        assert {"policy", "exact", "oracle"} <= set(res)
        assert res["adam_vs_exact_tv"] < 1e-3, name
        if res["oracle_applies"]:
            assert res["exact_vs_oracle_tv"] < 1e-8, name


def test_list_and_verify_subset(capsys):
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and "weight-decay" in out and "dpo" in out and "dpo-rlhf" in out
    code, out, _ = run_cli(["verify", "--only", "gaussian-nll", "--only", "ipo-rlhf", "--instances", "3"], capsys)
    assert code == 0 and out.count("PASS") == 2
