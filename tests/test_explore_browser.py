"""The explorer in a real browser: headless Debian Chromium driven by Playwright, offline.

Builds the default page with the real command (`bandit-lab explore --out …`, a new process),
loads it from a file URL with the network off (every non-file request aborted and recorded),
moves the α slider with the keyboard, reads the displayed optima and TV back from the page and
compares them with `bandit-lab solve --json` at the same α (to 1e-6), checks that the plot shows
the same points as the table, and that the plot renders (non-blank screenshot).

Skips, saying why, without /usr/bin/chromium or Playwright's Python package (the ``browser``
extra, which the README's test command installs; no browser download) — except in CI, where
``.ci/run`` installs Debian's chromium and sets ``BANDIT_LAB_REQUIRE_BROWSER=1``.
"""
import io
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bandit_lab.explore.browser import missing, open_page

# CI (.ci/run) installs the browser and sets BANDIT_LAB_REQUIRE_BROWSER=1: there a missing browser is
# a failure, not a skip, so the test cannot silently stop running.
if missing() is not None and os.environ.get("BANDIT_LAB_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"BANDIT_LAB_REQUIRE_BROWSER=1 but the browser test cannot run: {missing()}")
pytestmark = pytest.mark.skipif(missing() is not None, reason=f"browser test: {missing()}")

BIN = os.path.join(os.path.dirname(sys.executable), "bandit-lab")


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300)


def _solve(tmp_path, name, loss, loss_params, alpha) -> dict:
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"pi_ref": [0.4, 0.4, 0.2], "preference": {"pi_star": [0.6, 0.3, 0.1]}, "pairs": "uniform",
                             "loss": loss, "loss_params": loss_params, "weight_decay": alpha}))
    r = _cli("solve", str(p), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _vec(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.strip().strip("[]").split(",")])


@pytest.fixture(scope="module")
def default_page(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "explore.html"
    t = time.perf_counter()
    r = _cli("explore", "--out", str(out))
    seconds = time.perf_counter() - t
    assert r.returncode == 0, r.stderr
    print(f"\ncold `bandit-lab explore --out …`: {seconds:.1f} s (this machine, now), {out.stat().st_size / 1e6:.2f} MB")
    return out


def test_default_page_in_chromium(default_page, tmp_path):
    assert default_page.stat().st_size < 5_000_000
    with open_page(str(default_page)) as s:
        page = s.page
        assert page.evaluate("document.body.dataset.ready") == "1", page.inner_text("#plot")
        # move α one grid point down from the initial 0.1, with the keyboard, as a user would
        a0 = float(page.get_attribute("#alpha-value", "data-value"))
        assert a0 == pytest.approx(0.1, rel=1e-12)
        page.focus("#alpha")
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("document.body.dataset.plotted >= 2")
        alpha = float(page.get_attribute("#alpha-value", "data-value"))
        assert 0 < alpha < a0
        assert page.inner_text("#alpha-value") == f"α = {float(f'{alpha:.4g}'):g}"

        def row(label):
            r = page.locator(f'#policies tr[data-objective="{label}"]')
            return _vec(r.locator("td.exact").inner_text()), _vec(r.locator("td.trained").inner_text())

        shown = {lab: row(lab) for lab in ("dpo", "rlhf[reverse_kl]")}
        tv_cell = page.locator('#distances tr[data-pair="dpo vs rlhf[reverse_kl]"] td.tv-exact')
        tv_text, tv_value = float(tv_cell.inner_text()), json.loads(tv_cell.get_attribute("data-value"))
        # the plot draws the points the table lists (exact-optimum trace of DPO, plotly's own data)
        plotted = page.evaluate("""() => { const gd = document.getElementById('plot');
            const k = gd.data.findIndex(t => t.legendgroup === 'dpo' && t.mode === 'markers' && t.marker.symbol === 'circle');
            return [gd.data[k].b[0], gd.data[k].c[0], gd.data[k].a[0]]; }""")
        png = page.locator("#plot").screenshot()
        # α = 0 at the first slider position: each pair meets
        page.keyboard.press("Home")
        page.wait_for_function("document.body.dataset.plotted >= 3")
        assert float(page.get_attribute("#alpha-value", "data-value")) == 0.0
        tv0 = json.loads(page.locator('#distances tr[data-pair="dpo vs rlhf[reverse_kl]"] td.tv-exact').get_attribute("data-value"))
        assert s.requests == [] and s.errors == []

    dpo = _solve(tmp_path, "dpo", "dpo", {"beta": 1.0}, alpha)
    rlhf = _solve(tmp_path, "rlhf", "rlhf", {"beta": 1.0, "divergence": "reverse_kl", "reward": "bt"}, alpha)
    for lab, ref in (("dpo", dpo), ("rlhf[reverse_kl]", rlhf)):
        exact, trained = shown[lab]
        np.testing.assert_allclose(exact, ref["exact"], atol=1e-6)  # 6 decimals displayed
        np.testing.assert_allclose(trained, ref["policy"], atol=1e-6)  # same Adam run: lr 0.05, 3000 cosine steps
    tv_ref = 0.5 * np.abs(np.subtract(dpo["exact"], rlhf["exact"])).sum()
    assert abs(tv_value - tv_ref) < 1e-6 and tv_ref > 1e-3
    assert abs(tv_text - tv_value) <= 5e-4 * tv_value  # displayed to 4 significant digits
    np.testing.assert_allclose(plotted, dpo["exact"], atol=1e-6)
    assert tv0 < 1e-9

    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")[..., :3]
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert (img.min(-1) < 0.9).mean() > 0.02  # drawn, not blank
    blue = np.abs(img - np.array([0x1F, 0x77, 0xB4]) / 255).max(-1) < 0.08  # DPO's colour (the static figure's C0)
    assert blue.sum() > 20
