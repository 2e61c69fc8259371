"""Columnar records (bandit_lab.infra.records): the npz round trip, its schema, its speed at 10⁵ rows,
and the CLI writing records.npz beside records.json (rows listed in JSON up to 10⁴ only)."""
import json
import os
import time

import numpy as np
import pytest

from bandit_lab.infra import records
from bandit_lab.infra.records import Table
from cli.main import main


def test_rows_round_trip_through_npz(tmp_path):
    rows = [
        {"loss": "dpo", "alpha": 0.0, "n": 3, "ok": True, "policy": [0.5, 0.3, 0.2], "oracle": None, "ragged": [1, 2],
         "nested": {"a": 1.5, "b": "x"}, "tags": ["p", "q"]},
        {"loss": "ipo", "alpha": 0.25, "n": 4, "ok": False, "policy": [0.1, 0.1, 0.8], "oracle": [0.2, 0.2, 0.6], "ragged": [3],
         "nested": {"a": 2.5, "b": "yy"}, "tags": ["r"]},
    ]
    rows.append({"kind": "landscape", "alpha": 0.5})  # records of another kind: the other fields absent, not None
    t = Table.from_rows(rows)
    path = t.save(str(tmp_path / "records.npz"))
    back = records.load(path)
    flat = [{**{k: v for k, v in r.items() if k != "nested"}, "nested.a": r["nested"]["a"], "nested.b": r["nested"]["b"]} for r in rows[:2]]
    flat.append(rows[2])
    assert back.rows() == flat == t.rows()
    assert type(back[0]["n"]) is int and type(back[1]["ok"]) is bool
    # the schema, read with NumPy alone
    with np.load(path, allow_pickle=False) as z:
        assert int(z["__n__"]) == 3 and list(z["__fields__"])[:3] == ["loss", "alpha", "n"]
        assert z["policy"].shape == (3, 3) and z["policy"].dtype == np.float64 and np.isnan(z["policy"][2]).all()
        assert z["alpha"].dtype == np.float64 and "alpha.__absent__" not in z.files and list(z["policy.__absent__"]) == [False, False, True]
        assert z["loss"].dtype.kind == "U" and z["kind"].dtype.kind == "U" and z["n"].dtype.kind == "i" and z["ok"].dtype == bool
        assert np.isnan(z["oracle"][0]).all() and list(z["oracle.__null__"]) == [True, False, False]
        assert bool(z["ragged.__json__"]) and json.loads(z["ragged"][1]) == [3]


def test_a_100k_row_sweep_writes_and_reloads_in_seconds(tmp_path):
    n = 100_000
    rng = np.random.default_rng(0)
    cols = {"loss": np.repeat(np.array(["dpo", "fdpo[forward_kl]", "ipo"]), -(-n // 3))[:n], "alpha": rng.random(n),
            "policy": rng.dirichlet(np.ones(3), n), "exact": rng.dirichlet(np.ones(3), n), "oracle": np.full((n, 3), np.nan),
            "tv": rng.random(n), "counterpart_declared": np.ones(n, bool)}
    t = Table(cols, {"oracle": np.ones(n, bool)})
    t0 = time.perf_counter()
    path = t.save(str(tmp_path / "records.npz"))
    back = records.load(path)
    dt = time.perf_counter() - t0
    assert dt < 5.0, dt  # measured ≈ 0.05 s on the 2-core machine; JSON of the same rows took seconds
    for k, v in cols.items():
        assert np.array_equal(back.column(k), v, equal_nan=v.dtype.kind == "f")
    assert back[7]["oracle"] is None and back[7]["loss"] == "dpo" and back[-1]["policy"] == cols["policy"][-1].tolist()
    assert records.first_nonfinite(back) is None
    bad = Table({"tv": np.array([0.0, np.inf])})
    assert records.first_nonfinite(bad) == "records[1].tv"


def _cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_writes_npz_equal_to_the_json_records(tmp_path, capsys, monkeypatch):
    out = tmp_path / "wd"
    code, _, err = _cli(["run", "weight-decay", "--n-alphas", "4", "--steps", "50", "--no-plot", "--out", str(out)], capsys)
    assert code == 0, err
    listed = json.loads((out / "records.json").read_text())["records"]
    t = records.load(str(out / "records.npz"))
    assert len(listed) == 12 and t.rows() == listed
    # the distances in the columns are those of the policies beside them (an independent recomputation)
    p, q = t.column("policy"), t.column("counterpart_policy")
    np.testing.assert_array_equal(t.column("tv"), 0.5 * np.abs(p - q).sum(-1))
    # above JSON_MAX_RECORDS the JSON file names the npz instead of listing the rows
    monkeypatch.setattr(records, "JSON_MAX_RECORDS", 5)
    code, _, err = _cli(["run", "weight-decay", "--n-alphas", "4", "--steps", "50", "--no-plot", "--out", str(out), "--overwrite"], capsys)
    assert code == 0, err
    head = json.loads((out / "records.json").read_text())
    assert head["records"] == "records.npz" and head["settings"]["n_alphas"] == 4
    assert records.load(str(out / "records.json")).rows() == listed
    assert sorted(os.listdir(out)) == ["records.json", "records.npz"]
