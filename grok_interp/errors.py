"""The package's errors: one base type, raised by every input check.

:class:`GrokInterpError` subclasses :class:`ValueError`, so code written against the
older ``except ValueError`` keeps working. The command line prints it as one line
(``error: ...``) and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

__all__ = ["GrokInterpError", "RunDirectoryError"]


class GrokInterpError(ValueError):
    """Bad input to grok_interp: the message names the value and what is allowed."""


class RunDirectoryError(GrokInterpError):
    """A run directory is missing, corrupt, inconsistent, hostile or in use (the
    message names the file)."""
