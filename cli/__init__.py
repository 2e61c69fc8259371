"""The ``bandit-lab`` command line (``cli.main``).

When this process *is* the command (the ``bandit-lab`` script, or ``python -m cli.main`` — while
``-m`` locates the module ``sys.argv[0]`` is ``"-m"``), SIGINT/SIGTERM handlers are installed here,
first thing, before typer or JAX is imported: they only record a signal until ``cli.main.main()``
arms them (issue 24: a SIGTERM during ``import cli.main`` used to kill the process by signal).
"""
import os as _os
import sys as _sys

if _sys.argv and (_sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]).startswith("bandit-lab")):
    from bandit_lab import errors as _errors

    _errors.install_interrupt_handlers(armed=False)
