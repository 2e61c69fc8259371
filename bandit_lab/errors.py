"""The exceptions a user can cause, and the exit code the CLI gives each.

| exit | meaning |
|---|---|
| 0 | success |
| 1 | ``verify``: at least one theorem check failed |
| 2 | bad input (:class:`BanditError`): a malformed spec or option, a job over the memory/work budget, an output path that cannot be written |
| 3 | internal error: a bug in bandit-lab (one line; ``BANDIT_LAB_DEBUG=1`` shows the traceback) |
| 4 | divergence (:class:`DivergenceError`): training or the exact solver produced a non-finite loss or policy |
| 130 | interrupted (Ctrl-C) |
"""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_DIVERGED = 4
EXIT_INTERRUPTED = 130


class BanditError(ValueError):
    """Invalid user input (a malformed problem, spec, hyperparameter or path): exit 2."""


class DivergenceError(ArithmeticError):
    """A run produced a non-finite loss or policy (valid input, but the optimisation blew up: a
    learning rate too large, or β, α or rewards at the edge of float64): exit 4. The message
    names the run (label and hyperparameters), the first non-finite step and the likely cause."""
