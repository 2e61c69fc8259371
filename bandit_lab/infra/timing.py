"""Per-phase wall time of one process, for ``python -m bandit_lab.bench --phases``.

``with timing.phase("train"): ...`` costs one dictionary lookup unless the environment variable
``BANDIT_LAB_PHASES`` names a file: then each phase's seconds are summed and written there as
JSON when the process exits (``{"train": 7.1, "exact": 1.2, ...}``). The phases of a run (the
library marks them where the work is): ``train`` (the compiled sweep, compile and device time,
up to the arrays on the host), ``exact`` (the batched exact solve), ``records`` (the experiment
building its records from the arrays), ``write`` (the CLI checking and writing records.json,
records.npz and figures). What is left of the process's wall time is start-up: interpreter,
imports, option parsing.
"""
from __future__ import annotations

import contextlib
import os
import time

_TOTALS: dict[str, float] = {}
_REGISTERED = False


def _dump() -> None:
    import json

    path = os.environ.get("BANDIT_LAB_PHASES")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_TOTALS, fh)


@contextlib.contextmanager
def phase(name: str):
    if not os.environ.get("BANDIT_LAB_PHASES"):
        yield
        return
    global _REGISTERED
    if not _REGISTERED:
        import atexit

        atexit.register(_dump)
        _REGISTERED = True
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _TOTALS[name] = _TOTALS.get(name, 0.0) + time.perf_counter() - t0
