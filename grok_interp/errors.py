"""The package's errors: one base type, raised by every input check.

:class:`GrokInterpError` subclasses :class:`ValueError`, so code written against the
older ``except ValueError`` keeps working. The command line prints it as one line
(``error: ...``) and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

from typing import Any

__all__ = ["GrokInterpError", "RunDirectoryError", "TrainingDiverged"]


class GrokInterpError(ValueError):
    """Bad input to grok_interp: the message names the value and what is allowed.

    Errors about one parameter (built by the package's input checks) also carry it:
    ``param`` (its Python name), ``value`` (what was given) and ``allowed`` (what may be
    given instead), so each interface words the error with its own names: Python's
    ``p=12 is invalid: ...``, the command line's ``--p 12 is invalid: ...``. For other
    errors the three are None.
    """

    def __init__(self, message: str, *, param: str | None = None, value: Any = None, allowed: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.value = value
        self.allowed = allowed


class RunDirectoryError(GrokInterpError):
    """A run directory is missing, corrupt, inconsistent, hostile or in use (the
    message names the file)."""


class TrainingDiverged(GrokInterpError):
    """Training stopped because a loss or a weight became non-finite (NaN or inf).

    Nothing non-finite is saved: a run directory keeps its last finite checkpoint, from
    which it resumes (and, the training being deterministic, diverges again unless the
    cause, typically too high a learning rate, is changed in a new run). ``step`` is the
    step at which it was seen.
    """

    def __init__(self, message: str, *, step: int | None = None) -> None:
        super().__init__(message)
        self.step = step
