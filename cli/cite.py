"""``bandit-lab cite [NAME…]``: BibTeX for bandit-lab and the sources of the named losses, checks
and experiments (thin: the entries and the mapping live in :mod:`bandit_lab.bibliography`)."""
from __future__ import annotations

from typing import Optional

import typer


def cite(
    names: Optional[list[str]] = typer.Argument(None, metavar="NAME",
                                                help="losses, checks or experiments (see `bandit-lab list`), or bandit-lab; "
                                                     "none: bandit-lab, Kong et al. and DPO"),
):
    """Print BibTeX for bandit-lab and the papers behind the named losses, algorithms, checks and experiments."""
    from bandit_lab.bibliography import cite as bibtex

    typer.echo(bibtex(names or ()), nl=False)
