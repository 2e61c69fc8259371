"""``bandit-lab explore``: the teaching page (thin: numerics in :mod:`bandit_lab.explore`).

Options default to ``None`` so that importing the CLI does not import JAX; unset options take
:class:`bandit_lab.explore.Settings`' defaults, which the help texts quote
(``tests/test_explore.py`` checks that they agree).
"""
from __future__ import annotations

import time
from typing import Optional

import typer


def explore(
    spec: Optional[str] = typer.Argument(None, help="a bandit spec (JSON/TOML) with K ≥ 3 responses; default: Kong et al. App. B (π* = [0.6, 0.3, 0.1], π_ref = [0.4, 0.4, 0.2], uniform pairs)"),
    out: Optional[str] = typer.Option(None, "--out", help="HTML file to write [default: explore.html; none with --serve]"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out file"),
    serve: bool = typer.Option(False, "--serve", help="also serve the page at http://127.0.0.1:PORT/ until Ctrl-C"),
    port: int = typer.Option(0, "--port", help="port for --serve (0 = a free port)"),
    losses: Optional[str] = typer.Option(None, "--losses", help="objectives, comma list, NAME[key=value] for static options; each comes with its RLHF counterpart [default: dpo,fdpo[divergence=forward_kl],ipo]"),
    n_alpha: Optional[int] = typer.Option(None, "--n-alpha", help="log-spaced positive weight decays α; α = 0 is always on the grid [default: 21]"),
    alpha_min: Optional[float] = typer.Option(None, "--alpha-min", help="smallest positive α [default: 0.001]"),
    alpha_max: Optional[float] = typer.Option(None, "--alpha-max", help="largest α [default: 10]"),
    betas: Optional[str] = typer.Option(None, "--betas", help="KL strengths β, comma list [default: 0.25,0.5,1,2,4]"),
    steps: Optional[int] = typer.Option(None, "--steps", help="optimizer steps T of every run = the largest step budget [default: 3000]"),
    n_budget: Optional[int] = typer.Option(None, "--n-budget", help="log-spaced step budgets in [1, T]; step 0 (π_ref) is added [default: 24]"),
    lr: Optional[float] = typer.Option(None, "--lr", help="peak learning rate [default: 0.05]"),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | sgd [default: adam]"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine | exponential | constant [default: cosine]"),
    penalty: Optional[str] = typer.Option(None, "--penalty", help="params: α‖θ‖² | policy: α‖π‖² [default: params]"),
):
    """Write an interactive, offline HTML page: DPO, f-DPO, IPO and their RLHF counterparts on the simplex as α, β and the step budget move."""
    from bandit_lab import explore as ex
    from bandit_lab.errors import BanditError
    from bandit_lab.explore.build import split_losses

    given: dict = {"n_alpha": n_alpha, "alpha_min": alpha_min, "alpha_max": alpha_max, "steps": steps, "n_budget": n_budget,
                   "lr": lr, "optimizer": optimizer, "schedule": schedule, "penalty": penalty}
    if losses is not None:
        given["losses"] = split_losses(losses)
    if betas is not None:
        try:
            given["betas"] = tuple(float(b) for b in betas.split(",") if b.strip())
        except ValueError:
            raise BanditError(f"--betas expects a comma list of numbers; got {betas!r}") from None
    settings = ex.Settings(**{k: v for k, v in given.items() if v is not None}).validate()
    loaded = None
    if spec is not None:
        from bandit_lab import spec as spec_mod

        loaded = spec_mod.load(spec)
    if out is None and not serve:
        out = "explore.html"
    if out is not None:
        ex.check_out(out, overwrite)
    if serve:
        ex.check_port(port)
    t0 = time.perf_counter()
    from bandit_lab.explore.page import render
    from bandit_lab.infra import progress

    with progress.bar("explore: training every objective on the grid"):
        data = ex.build(settings, loaded, spec, out)
        html = render(data)
    seconds = time.perf_counter() - t0
    s = data["summary"]
    grid = f"{s['objectives']} objectives × {len(data['grid']['beta'])} β × {len(data['grid']['alpha'])} α × {len(data['grid']['steps'])} step budgets"
    if out is not None:
        size = ex.write(html, out, overwrite)
        print(f"wrote {out} ({size / 1e6:.2f} MB; {grid}; data and page built in {seconds:.1f} s)")
    for note in data["notes"]:
        print(f"note: {note}")
    if serve:
        server = ex.make_server(html, port)
        print(f"serving {ex.url_of(server)} (127.0.0.1 only) — press Ctrl-C to stop", flush=True)
        try:  # Ctrl-C / SIGTERM: the socket is closed, then main() says "bandit-lab: interrupted", exit 130
            server.serve_forever()           # (bandit_lab.errors.exit_interrupted), like every command
        finally:
            server.server_close()
    return 0
