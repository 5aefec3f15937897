"""Input checks shared by the public API: one message shape for every bad value.

Every check raises :class:`~grok_interp.errors.GrokInterpError` (a ``ValueError``) whose message names the parameter, the value
that was given and what is allowed, so the CLI can print it as one line.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import Any

from .errors import GrokInterpError


def bad_value(name: str, value: Any, allowed: str) -> GrokInterpError:
    """Build the project's one error shape: ``name=value is invalid: allowed``.

    The message uses Python's names (``p=12``); the error also carries ``param``,
    ``value`` and ``allowed``, so an interface that knows the parameter under another
    name re-renders it in its own words (the command line: ``--p 12 is invalid: ...``).
    """
    return GrokInterpError(f"{name}={value!r} is invalid: {allowed}", param=name, value=value, allowed=allowed)


#: The seeds torch's generators take (``torch.manual_seed``): a seed outside overflows in
#: C with no parameter named.
SEED_RANGE = (-(2**63), 2**64 - 1)


def check_seed(name: str, value: Any) -> int:
    """Check that ``value`` is an integer seed torch's generators take."""
    return check_int(name, value, low=SEED_RANGE[0], high=SEED_RANGE[1])


def physical_memory() -> int:
    """The machine's physical memory in bytes (2**62 where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 2**62


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: ``512 B``, ``1.5 GB``."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"  # pragma: no cover


def check_memory(name: str, value: Any, needed: int, what: str, limit: int | None = None) -> None:
    """Refuse ``name=value`` (one line) when ``what`` needs more than ``limit`` bytes
    (default: the machine's physical memory), before anything is allocated."""
    limit = physical_memory() if limit is None else limit
    if needed > limit:
        raise bad_value(name, value, f"{what} needs at least {format_bytes(needed)} but memory is {format_bytes(limit)}")


def is_prime(n: int) -> bool:
    """Trial-division primality test (p is at most a few thousand here)."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def check_prime(name: str, value: Any) -> int:
    """Check that ``value`` is a prime number >= 3 (the modulus of a task)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 3 or not is_prime(value):
        raise bad_value(name, value, "must be a prime number >= 3")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an int in ``[low, high]`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_value(name, value, "must be an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise bad_value(name, value, f"must lie in [{lo}, {hi}]")
    return value


def check_open_unit(name: str, value: Any) -> float:
    """Check that ``value`` is a real number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_value(name, value, "must be a number in the open interval (0, 1)")
    if not 0.0 < float(value) < 1.0:
        raise bad_value(name, value, "must lie in the open interval (0, 1)")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[Any, ...] | list[Any]) -> Any:
    """Check that ``value`` is one of ``choices`` (a near miss gets a "did you mean")."""
    if value not in choices:
        raise bad_value(name, value, "must be one of " + ", ".join(repr(c) for c in choices) + did_you_mean(value, choices))
    return value


def did_you_mean(value: Any, choices: Any) -> str:
    """``"; did you mean 'x'?"`` for the closest string in ``choices`` (or ``""``)."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [c for c in choices if isinstance(c, str)], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
def check_float(
    name: str, value: Any, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> float:
    """Check that ``value`` is a finite real number in the given interval.

    ``inf`` and ``nan`` are refused everywhere: no setting of this package means
    anything at infinity, and a NaN learning rate trains to NaN without a word.
    """
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    interval = ("(" if low_open or low is None else "[") + f"{lo}, {hi}" + (")" if high_open or high is None else "]")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_value(name, value, f"must be a finite number in {interval}")
    v = float(value)
    if low is not None and (v < low or (low_open and v == low)):
        raise bad_value(name, value, f"must lie in {interval}")
    if high is not None and (v > high or (high_open and v == high)):
        raise bad_value(name, value, f"must lie in {interval}")
    return v
