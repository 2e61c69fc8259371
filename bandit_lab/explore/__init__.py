"""``bandit-lab explore``: a self-contained interactive page where DPO and RLHF part ways.

- :mod:`.build` — the numbers: one grid (α × β × step budget) of trained trajectories and exact
  optima, computed by the library (:class:`~bandit_lab.explore.build.Settings`, :func:`build`);
- :mod:`.page` — the HTML: ``template.html`` + the data as JSON + plotly.js, all inlined;
- :func:`write` and :func:`serve` — a file (never over an existing one without ``overwrite``) or
  a local URL (stdlib ``http.server`` on 127.0.0.1).

plotly is imported only here (lazily, by :mod:`.page`), so no other command pays for it.
"""
from __future__ import annotations

import os

from bandit_lab.infra import files
from bandit_lab.errors import BanditError
from bandit_lab.explore.build import OBJECTIVES, Settings, build  # noqa: F401


def check_out(path: str, overwrite: bool) -> None:
    """Refuse an output path before any work is done: an existing file without ``overwrite``,
    a directory, or a missing parent directory."""
    if os.path.isdir(path):
        raise BanditError(f"--out {path} is a directory; give a file name such as {os.path.join(path, 'explore.html')}")
    if os.path.exists(path) and not overwrite:
        raise BanditError(f"output file {path} exists; pass --overwrite to replace it or choose another --out")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise BanditError(f"--out {path}: directory {parent} does not exist")
    try:  # probe: can a file really be created (and removed) there? (/proc, read-only, unwritable)
        files.probe_dir(parent)  # removes its file even when a signal lands half-way
    except OSError as e:
        raise files.os_error(path, e) from None


def write(html: str, path: str, overwrite: bool = False) -> int:
    """Write the page atomically (a temporary file in the same directory, renamed into place:
    a full device, a file-size limit or ``kill -9`` never leaves a partial page); returns its size
    in bytes. OS errors are one :class:`BanditError` line."""
    check_out(path, overwrite)
    data = html.encode("utf-8")
    with files.atomic(path, "wb") as fh:
        fh.write(data)
    return len(data)


def check_port(port: int) -> int:
    """A TCP port for ``--serve``: 0 (any free port) to 65535."""
    if not 0 <= int(port) <= 65535:
        raise BanditError(f"--port must be 0 (a free port) to 65535; got {port}")
    return int(port)


def make_server(html: str, port: int = 0):
    """An HTTP server on 127.0.0.1 (``port`` 0 = a free port) that serves the page at ``/``."""
    import http.server

    body = html.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] == "/api/solve":
                return self._solve()
            if self.path.split("?")[0] == "/api/options":  # the on-policy algorithms and library presets
                from bandit_lab.explore import live

                try:
                    return self._json(200, {"onpolicy": live.onpolicy_names(), "presets": live.presets()})
                except Exception as e:  # noqa: BLE001 - never a stack trace to the page
                    return self._json(500, {"error": f"internal error: {type(e).__name__}: {e}".splitlines()[0]})
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404, "the explorer serves one page, at /")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _solve(self):
            """``GET /api/solve?pi_star=…&pi_ref=…&alpha=…&beta=…&steps=…&lr=…&losses=…`` → JSON
            (:func:`bandit_lab.explore.live.answer`); bad input → 400 ``{"error": one line}``."""
            import urllib.parse

            from bandit_lab.explore import live

            # blank values kept: an emptied number field is refused by name, never replaced by a default
            q = {k: v[-1] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True).items()}
            try:
                status, obj = 200, live.answer(q)
            except BanditError as e:
                status, obj = 400, {"error": str(e)}
            except Exception as e:  # noqa: BLE001 - never a stack trace to the page
                status, obj = 500, {"error": f"internal error: {type(e).__name__}: {e}".splitlines()[0]}
            self._json(status, obj)

        def _json(self, status, obj):
            import json

            from bandit_lab.runner import jsonable  # non-finite numbers → null: the page never gets invalid JSON

            data = json.dumps(jsonable(obj), allow_nan=False, default=str).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):  # quiet: the CLI prints the URL once
            pass

    port = check_port(port)
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except (OSError, OverflowError) as e:
        raise BanditError(f"cannot listen on 127.0.0.1:{port}: {getattr(e, 'strerror', None) or e}") from None


def url_of(server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
