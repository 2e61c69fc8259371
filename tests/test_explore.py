"""`bandit-lab explore`: the page's data against independent references, the page's form, the CLI.

References: the single-problem path of `bandit-lab solve` (``spec.solve``: its own trainer call
and ``solve_exact``, not the stacked batch the explorer uses), the closed forms (at α = 0), and
NumPy recomputations of the distances from the embedded policies.
"""
import base64
import gzip
import json
import re
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from bandit_lab.explore import Settings, build, make_server, url_of
from bandit_lab.explore.build import KONG_APP_B, command, parse_objective, split_losses
from bandit_lab.explore.page import render
from cli.main import main
from conftest import count_compiles  # noqa: E402  (tests/ is on the path)

# small grid, constant lr: the policy after s steps of the T-step run is then *the* s-step run
SMALL = Settings(n_alpha=2, alpha_min=0.1, alpha_max=1.0, betas=(0.5, 1.0), steps=400, n_budget=5, schedule="constant", lr=0.05)


@pytest.fixture(scope="module")
def small():
    return build(SMALL)


@pytest.fixture(scope="module")
def page(small):
    return render(small)


def _spec(loss, loss_params, alpha, steps, schedule="constant"):
    return {**KONG_APP_B, "loss": loss, "loss_params": loss_params, "weight_decay": alpha,
            "optimizer": {"name": "adam", "lr": 0.05, "steps": steps, "schedule": schedule}}


def _obj(data, label):
    return next(o for o in data["objectives"] if o["label"] == label)


PARAMS = {"dpo": ("dpo", {}), "rlhf[reverse_kl]": ("rlhf", {"divergence": "reverse_kl", "reward": "bt"}),
          "fdpo[forward_kl]": ("fdpo", {"divergence": "forward_kl"}), "rlhf[forward_kl]": ("rlhf", {"divergence": "forward_kl", "reward": "bt"}),
          "ipo": ("ipo", {}), "rlhf[reverse_kl,ipo]": ("rlhf", {"divergence": "reverse_kl", "reward": "ipo"})}


def test_grid_axes_and_objectives(small):
    g = small["grid"]
    assert g["alpha"] == [0.0, 0.1, 1.0] and g["beta"] == [0.5, 1.0]
    assert g["steps"][0] == 0 and g["steps"][-1] == 400 and g["steps"] == sorted(set(g["steps"]))
    assert [o["label"] for o in small["objectives"]] == list(PARAMS)
    assert [(p["loss"], p["counterpart"]) for p in small["pairs"]] == [(0, 1), (2, 3), (4, 5)]
    assert small["spec"] == KONG_APP_B and small["view"] == "ternary"


@pytest.mark.parametrize("label, ib, ia", [("dpo", 1, 1), ("rlhf[reverse_kl,ipo]", 0, 2), ("fdpo[forward_kl]", 1, 2)])
def test_exact_and_trained_match_solve(small, label, ib, ia):
    """The stacked grid = `bandit-lab solve` of the same spec at that (α, β), one objective at a time."""
    from bandit_lab import spec as spec_mod

    a, b = small["grid"]["alpha"][ia], small["grid"]["beta"][ib]
    name, lp = PARAMS[label]
    res = spec_mod.solve(_spec(name, {**lp, "beta": b}, a, SMALL.steps))
    o = _obj(small, label)
    np.testing.assert_allclose(o["exact"][ib][ia], res["exact"], atol=1e-10)
    np.testing.assert_allclose(o["trained"][ib][ia][-1], res["policy"], atol=1e-10)


def test_step_budget_is_the_shorter_run(small):
    """Constant lr: the logged policy after s steps of the T-step run equals an s-step run."""
    from bandit_lab import spec as spec_mod

    il = 3
    s = small["grid"]["steps"][il]
    assert 0 < s < SMALL.steps
    res = spec_mod.solve(_spec("dpo", {"beta": 1.0}, 0.1, s))
    np.testing.assert_allclose(_obj(small, "dpo")["trained"][1][1][il], res["policy"], atol=1e-12)
    for o in small["objectives"]:  # step 0 is π_ref for every objective and grid point
        np.testing.assert_allclose(np.asarray(o["trained"])[:, :, 0], np.broadcast_to(KONG_APP_B["pi_ref"], (2, 3, 3)), atol=1e-15)


def test_alpha0_lands_on_the_closed_forms(small):
    """α = 0: every exact optimum is its closed form (Kong Eq. 10; Wang et al. Thm 1; Azar et al.),
    and each pair meets."""
    for o in small["objectives"]:
        for ib in range(2):
            np.testing.assert_allclose(o["exact"][ib][0], o["closed_form"][ib], atol=1e-9)
    for p in small["pairs"]:
        assert max(p["tv_exact"][ib][0] for ib in range(2)) < 1e-9
        assert min(p["tv_exact"][ib][ia] for ib in range(2) for ia in (1, 2)) > 1e-3  # α > 0: apart (Props. 3.1, 3.2)


def test_distances_recomputed(small):
    """Every embedded distance is ½Σ|p−q| / Σ p log(p/q) of the embedded policies at the same index
    (to 1e-15 absolute, as for TV: a KL near 0 is a cancellation, and JAX 0.4.30 / NumPy 1.26 round
    it 1.2e-16 away from the NumPy recomputation)."""
    objs = small["objectives"]
    for p in small["pairs"]:
        P, Q = (np.asarray(objs[p[k]]["exact"]) for k in ("loss", "counterpart"))
        np.testing.assert_allclose(p["tv_exact"], 0.5 * np.abs(P - Q).sum(-1), atol=1e-15)
        np.testing.assert_allclose(p["kl_exact"], (P * np.log(P / Q)).sum(-1), rtol=1e-12, atol=1e-15)
        Pt, Qt = (np.asarray(objs[p[k]]["trained"]) for k in ("loss", "counterpart"))
        np.testing.assert_allclose(p["tv_trained"], 0.5 * np.abs(Pt - Qt).sum(-1), atol=1e-15)
        np.testing.assert_allclose(p["kl_trained"], (Pt * np.log(Pt / Qt)).sum(-1), rtol=1e-12, atol=1e-15)
        C = np.asarray(objs[p["loss"]]["closed_form"])[:, None, :]
        np.testing.assert_allclose(p["tv_loss_closed"], 0.5 * np.abs(P - C).sum(-1), atol=1e-15)
    for o in objs:
        gap = 0.5 * np.abs(np.asarray(o["trained"]) - np.asarray(o["exact"])[:, :, None, :]).sum(-1)
        np.testing.assert_allclose(o["tv_trained_exact"], gap, atol=1e-15)


def test_page_is_self_contained(small, page):
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    m = re.search(r'<script type="application/json" id="bandit-lab-data">(.*?)</script>', page, re.S)
    embedded = json.loads(m.group(1))
    assert embedded["grid"] == small["grid"] and embedded["objectives"] == small["objectives"]
    assert embedded["command"] == "bandit-lab explore --n-alpha 2 --alpha-min 0.1 --alpha-max 1 --betas 0.5,1 --steps 400 --n-budget 5 --schedule constant --out explore.html"
    js = re.search(r'id="plotly-js-gzip-base64"[^>]*>(.*?)</script>', page, re.S).group(1)
    from plotly.offline import get_plotlyjs

    assert gzip.decompress(base64.b64decode(js)).decode() == get_plotlyjs()
    fig = json.loads(re.search(r'id="bandit-lab-figure">(.*?)</script>', page, re.S).group(1))
    assert len(fig["data"]) == len(fig["bindings"]) == 4 * 6 + 2
    assert {t["type"] for t in fig["data"]} == {"scatterternary"}


def test_page_is_deterministic(small, page):
    assert render(small) == page


def test_bars_for_more_than_three_responses(tmp_path):
    spec = {"pi_ref": [0.3, 0.3, 0.2, 0.2], "preference": {"reward": [1.0, 0.5, 0.0, -0.5]}, "loss_params": {"beta": 0.7}}
    d = build(Settings(n_alpha=1, alpha_min=0.1, alpha_max=0.1, betas=(1.0,), steps=50, n_budget=2, losses=("dpo",)), spec, "k4.json")
    assert d["view"] == "bars" and d["problem"]["labels"] == ["y_a", "y_b", "y_c", "y_d"]
    assert d["grid"]["beta"] == [0.7, 1.0] and d["initial"]["beta"] == 0
    assert any("β = 0.7" in n for n in d["notes"])
    fig = json.loads(re.search(r'id="bandit-lab-figure">(.*?)</script>', render(d), re.S).group(1))
    assert {t["type"] for t in fig["data"]} == {"bar", "scatter"}


def test_objectives_list_syntax():
    assert split_losses("dpo,fdpo[divergence=js,f_alpha=0.3],ipo") == ("dpo", "fdpo[divergence=js,f_alpha=0.3]", "ipo")
    assert parse_objective("fdpo[divergence=js,f_alpha=0.3]") == ("fdpo", {"divergence": "js", "f_alpha": 0.3})
    s = Settings(losses=("dpo", "fdpo[divergence=js]"))
    assert command(s, "my spec.json", "out.html") == "bandit-lab explore 'my spec.json' --losses 'dpo,fdpo[divergence=js]' --out out.html"
    assert command(Settings(), None, None) == "bandit-lab explore --serve"


def test_server_serves_the_page_on_loopback(page):
    server = make_server(page, 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        assert server.server_address[0] == "127.0.0.1" and url_of(server).startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url_of(server), timeout=10) as r:
            assert r.read().decode() == page and r.headers["Content-Type"].startswith("text/html")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url_of(server) + "other", timeout=10)
        assert e.value.code == 404
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


# ----------------------------------------------------------------------------- CLI

def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("spec, args, msg", [
    ('{"pi_ref": [0.5, 0.5], "preference": {"pi_star": [0.7, 0.3]}}', [], "at least 3 responses"),
    ('{"pi_ref": [[0.4, 0.4, 0.2], [0.3, 0.3, 0.4]], "preference": {"pi_star": [[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]]}}', [], "one context"),
    ('{"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "parameterization": "simplex"}', [], "softmax"),
    ('{"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "init": "uniform"}', [], "init"),
    ('{"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "colour": 1}', [], "unknown spec key"),
    (None, ["--betas", "0,1"], "betas must be > 0"),
    (None, ["--betas", "x"], "--betas expects"),
    (None, ["--losses", "nope"], "unknown loss"),
    (None, ["--losses", "fdpo[divergence=banana]"], "divergence"),
    (None, ["--losses", "dpo[[x"], "cannot read"),
    (None, ["--n-alpha", "0"], "n_alpha"),
    (None, ["--steps", "0"], "steps"),
    (None, ["--schedule", "linear"], "schedule"),
    (None, ["--alpha-min", "5", "--alpha-max", "1"], "alpha_min"),
    (None, ["--out", "/nonexistent-dir/x.html"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, spec, args, msg):
    argv = ["explore"]
    if spec is not None:
        (tmp_path / "s.json").write_text(spec)
        argv.append(str(tmp_path / "s.json"))
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / "p.html")]
    code, out, err = run_cli(argv + args, capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "p.html").exists()


def test_never_overwrites_without_flag(tmp_path, capsys):
    target = tmp_path / "page.html"
    target.write_text("mine")
    code, out, err = run_cli(["explore", "--out", str(target)], capsys)
    assert code == 2 and "--overwrite" in err and target.read_text() == "mine"
    code, out, err = run_cli(["explore", "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err


def test_cli_writes_a_page(tmp_path, capsys):
    target = tmp_path / "page.html"
    target.write_text("old")
    code, out, err = run_cli(["explore", "--n-alpha", "1", "--alpha-min", "0.1", "--alpha-max", "0.1", "--betas", "1", "--steps", "20",
                              "--n-budget", "2", "--losses", "dpo", "--out", str(target), "--overwrite"], capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {target} (") and "2 objectives × 1 β × 2 α × 3 step budgets" in out
    text = target.read_text()
    assert 'id="bandit-lab-data"' in text and target.stat().st_size < 5_000_000


def test_cli_help_quotes_the_settings_defaults():
    """The CLI's options default to None (no JAX import at CLI import); their help texts quote
    Settings' defaults, which must agree."""
    import dataclasses
    import inspect

    from cli.explore import explore

    params = inspect.signature(explore).parameters
    fmt = lambda v: ",".join(format(x, "g") if isinstance(x, float) else str(x) for x in v) if isinstance(v, tuple) else format(v, "g") if isinstance(v, float) else str(v)  # noqa: E731
    for f in dataclasses.fields(Settings):
        opt = params[f.name].default
        assert opt.default is None, f.name
        assert f"[default: {fmt(f.default)}]" in opt.help, (f.name, opt.help)


def test_cli_serve_until_ctrl_c(tmp_path, monkeypatch, capsys):
    """--serve: prints the loopback URL, serves the page, Ctrl-C stops it like every command (one
    line, exit 130: bandit_lab.errors.exit_interrupted); no file written."""
    import bandit_lab.explore as ex

    real, got = ex.make_server, {}

    def one_request_then_ctrl_c(html, port=0):
        srv = real(html, port)

        def serve_forever():
            t = threading.Thread(target=srv.handle_request)
            t.start()
            with urllib.request.urlopen(url_of(srv), timeout=10) as r:
                got["body"] = r.read().decode()
            t.join(10)
            raise KeyboardInterrupt

        srv.serve_forever = serve_forever
        return srv

    monkeypatch.setattr(ex, "make_server", one_request_then_ctrl_c)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["explore", "--serve", "--n-alpha", "1", "--alpha-min", "0.1", "--alpha-max", "0.1", "--betas", "1",
                              "--steps", "20", "--n-budget", "2", "--losses", "dpo"], capsys)
    assert code == 130 and err == "bandit-lab: interrupted\n", (code, err)
    assert re.search(r"serving http://127\.0\.0\.1:\d+/ ", out)
    assert 'id="bandit-lab-data"' in got["body"] and "--serve" in got["body"]
    assert list(tmp_path.iterdir()) == []


def test_grid_is_one_compiled_sweep(small):
    """The whole grid is a vmapped axis: a grid costs at most four XLA compiles — one training
    program for all objectives, the batched Newton's value-and-grad (at two row counts since
    b547f47: the full batch and the certificate's re-check of the rows still open) and its policy
    map — and the bound does not grow with the grid (21 points, then 36: a new shape, so the same
    programs compile again, and no more of them; the re-check's row count may already be compiled,
    hence 3 or 4)."""
    import dataclasses

    def compiles(n_alpha):
        return count_compiles(lambda: build(dataclasses.replace(SMALL, n_alpha=n_alpha, betas=(0.5, 1.0, 2.0))))

    small_grid, big_grid = compiles(7), compiles(12)
    assert 1 <= small_grid <= 4 and 1 <= big_grid <= 4, (small_grid, big_grid)


# ----------------------------------------------------------------------------- issue 24: explore keeps the bad-input promise

@pytest.mark.parametrize("args, msg", [
    (["explore", "--steps", "1000000000000"], "over the limit"),  # refused by the same budget check as `run`, in ms
    (["explore", "--n-alpha", "1000000000"], "over the limit"),
    (["--max-memory", "1k", "explore"], "over the limit of 1 kB"),  # the root option reaches explore
    (["explore", "--serve", "--port", "70000"], "--port must be 0"),
    (["explore", "--serve", "--port", "-1"], "--port must be 0"),
])
def test_budget_and_port_refused_before_work(tmp_path, capsys, args, msg):
    from bandit_lab.infra import budget

    try:
        code, out, err = run_cli(args + ([] if "--serve" in args else ["--out", str(tmp_path / "p.html")]), capsys)
    finally:
        budget.set_limits(None, None)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_cost_of_the_default_page_is_within_the_default_budget():
    from bandit_lab.infra import budget
    from bandit_lab.explore.build import cost

    c = cost(Settings(), 3, 6)
    budget.check(c, "the default page")
    assert c.work < 60e9 and c.memory < 1e9
    big = cost(Settings(steps=10**12), 3, 6)
    assert big.memory > 1e15 and big.work > 1e15


@pytest.mark.skipif(not __import__("os").path.isdir("/proc/self"), reason="no /proc")
def test_out_under_proc_is_one_line(capsys):
    code, out, err = run_cli(["explore", "--out", "/proc/explore.html"], capsys)
    assert code == 2 and err.startswith("bandit-lab: error: cannot write /proc/explore.html") and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="root writes anywhere")
def test_out_in_unwritable_directory_is_one_line(tmp_path, capsys):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        code, out, err = run_cli(["explore", "--out", str(d / "p.html")], capsys)
    finally:
        d.chmod(0o755)
    assert code == 2 and "Permission denied" in err and len(err.strip().splitlines()) == 1, err
    assert list(d.iterdir()) == []


def test_write_is_atomic_under_a_file_size_limit(tmp_path):
    """A 64 kB RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write fails with EFBIG): one line,
    nothing left — neither a partial page nor the temporary file; an old page is kept intact."""
    import subprocess
    import sys

    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))\n"
            "from bandit_lab.errors import BanditError\n"
            "from bandit_lab.explore import write\n"
            "try:\n"
            "    write('x' * 200_000, sys.argv[1], overwrite=True)\n"
            "except BanditError as e:\n"
            "    print(e); sys.exit(2)\n")
    target = tmp_path / "p.html"
    target.write_text("old page")
    r = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout.startswith(f"cannot write {target}:") and "File too large" in r.stdout, (r.stdout, r.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["p.html"] and target.read_text() == "old page"


def test_write_goes_through_a_temporary_file(tmp_path, monkeypatch):
    """kill -9 mid-write leaves at most a hidden temporary file, never a partial page under the
    target name, so a rerun without --overwrite is not blocked."""
    import os

    import bandit_lab.explore as ex

    seen = {}
    real_replace = os.replace

    def spy(src, dst):
        seen["src"], seen["dst"] = src, dst
        assert not os.path.exists(dst)  # the page does not exist under its name until complete
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    target = tmp_path / "p.html"
    assert ex.write("<html>page</html>", str(target)) == len("<html>page</html>")
    assert os.path.basename(seen["src"]).startswith(".p.html.") and seen["dst"] == str(target)
    assert target.read_text() == "<html>page</html>" and [p.name for p in tmp_path.iterdir()] == ["p.html"]
    (tmp_path / ".q.html.abc.tmp").write_text("<ht")  # what kill -9 could leave behind
    ex.check_out(str(tmp_path / "q.html"), overwrite=False)  # does not block the rerun
