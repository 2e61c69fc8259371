"""Open an explorer page in headless Chromium, offline (the browser test and the README screenshot).

Uses Playwright's Python package (the optional ``browser`` extra) driving the system's Chromium
(Debian's ``chromium``, ``/usr/bin/chromium``) — no browser download, never ``playwright install``.
The context is offline and every request that is not a ``file:`` URL is aborted and recorded,
so a page that tried to fetch anything shows up in :attr:`Session.requests`.

Regenerate the README screenshots (static and live, both from one build of the default page)::

    python -m bandit_lab.explore.browser --readme      # figures/explorer.png, figures/explorer_live.png

or one at a time::

    bandit-lab explore --out explore.html
    python -m bandit_lab.explore.browser explore.html figures/explorer.png
    python -m bandit_lab.explore.browser --live figures/explorer_live.png
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def chromium_path() -> str | None:
    """The system Chromium (``BANDIT_LAB_CHROMIUM`` overrides), or ``None``."""
    env = os.environ.get("BANDIT_LAB_CHROMIUM")
    for p in ((env,) if env else CANDIDATES):
        if p and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def missing() -> str | None:
    """Why a browser session cannot start here (``None`` if it can)."""
    if chromium_path() is None:
        return "no system Chromium (apt-get install chromium chromium-driver)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed (pip install -e '.[browser]'; no browser download needed)"
    return None


class Session:
    """A page loaded from a file URL; ``requests`` lists every non-file URL it asked for."""

    def __init__(self, page, requests: list, errors: list):
        self.page, self.requests, self.errors = page, requests, errors


@contextlib.contextmanager
def open_page(path: str, width: int = 1500, height: int = 1000, timeout_ms: int = 60000):
    """Load ``path`` offline, wait until the page reports ready, yield a :class:`Session`.
    ``path`` may be a loopback URL (``http://127.0.0.1:PORT/…``, the live page): then requests to
    that origin pass and every other request is aborted and recorded, as for a file."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise RuntimeError(missing())
    profile = tempfile.mkdtemp(prefix="bandit-lab-chromium-")
    live = path.startswith("http://127.0.0.1:")
    origin = "/".join(path.split("/")[:3]) + "/" if live else None
    requests: list = []
    errors: list = []
    try:
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(profile, executable_path=exe, headless=True, offline=not live,
                                                        args=CHROMIUM_ARGS, viewport={"width": width, "height": height})
            try:
                def route(r):
                    if r.request.url.startswith("file:") or (live and r.request.url.startswith(origin)):
                        r.continue_()
                    else:
                        requests.append(r.request.url)
                        r.abort()

                ctx.route("**/*", route)
                page = ctx.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(path if live else "file://" + os.path.abspath(path))
                page.wait_for_function("document.body.dataset.ready !== undefined", timeout=timeout_ms)
                yield Session(page, requests, errors)
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(html_path: str, png_path: str) -> str:
    """Full-page PNG of an explorer page (figures/explorer.png); a loopback URL: the live page,
    after its first answer (figures/explorer_live.png)."""
    with open_page(html_path) as s:
        if html_path.startswith("http://"):
            s.page.wait_for_function("document.body.dataset.liveSeq !== undefined", timeout=600000)
            # again until warm: the page shows a re-solve's time, not the first request's compile
            for _ in range(4):
                n = int(s.page.evaluate("document.body.dataset.liveSeq"))
                s.page.evaluate("window.banditLabLive.request()")
                s.page.wait_for_function(f"+document.body.dataset.liveSeq > {n} && !document.body.dataset.liveBusy", timeout=600000)
                if float(s.page.evaluate("document.body.dataset.liveServerMs || 1e9")) < 2000:
                    break
            if s.page.inner_text("#live-error"):
                raise RuntimeError("the live panel shows an error: " + s.page.inner_text("#live-error"))
        if s.page.evaluate("document.body.dataset.ready") != "1":
            raise RuntimeError("the page did not draw its plot: " + s.page.inner_text("#plot"))
        s.page.screenshot(path=png_path, full_page=True)
    return png_path


def live_screenshot(png_path: str, html: str | None = None) -> str:
    """The live page (figures/explorer_live.png): the default page (or ``html``) served on a free
    loopback port, after a warm live answer (its defaults: the offline losses and GRPO, RLOO, PPO)."""
    import threading

    from bandit_lab.explore import Settings, build, make_server, url_of
    from bandit_lab.explore.page import render

    srv = make_server(html if html is not None else render(build(Settings())), 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        return screenshot(url_of(srv), png_path)
    finally:
        srv.shutdown()
        srv.server_close()


def readme_screenshots(folder: str = "figures") -> list[str]:
    """Both README screenshots from one build of the default page: ``explorer.png`` (the static
    file) and ``explorer_live.png`` (the same page served, live panel answered)."""
    from bandit_lab.explore import Settings, build, write
    from bandit_lab.explore.page import render

    html = render(build(Settings()))
    tmp = tempfile.mkdtemp(prefix="bandit-lab-readme-")
    try:
        page = os.path.join(tmp, "explore.html")
        write(html, page)
        return [screenshot(page, os.path.join(folder, "explorer.png")), live_screenshot(os.path.join(folder, "explorer_live.png"), html)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    import bandit_lab

    bandit_lab.enable_x64()  # float64, as the bandit-lab command computes the pages it serves
    if sys.argv[1:2] == ["--readme"] and len(sys.argv) <= 3:
        why = missing()
        if why:
            sys.exit(f"cannot take a screenshot: {why}")
        print("\n".join(readme_screenshots(*sys.argv[2:])))
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--live":
        why = missing()
        if why:
            sys.exit(f"cannot take a screenshot: {why}")
        print(live_screenshot(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bandit_lab.explore.browser PAGE.html OUT.png | --live OUT.png | --readme [FOLDER]")
    why = missing()
    if why:
        sys.exit(f"cannot take a screenshot: {why}")
    print(screenshot(sys.argv[1], sys.argv[2]))
