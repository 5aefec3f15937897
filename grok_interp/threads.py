"""How many torch threads a run uses, chosen from the cores that are free.

Two facts measured on a 2-core machine (``benchmarks/train_step.py --threads 1 2`` and
``... --busy 1``, the fused step with torch's own threads):

* on a quiet machine two threads make a p = 113 step 1.6x faster than one (61.2 ->
  39.0 ms);
* beside one busy process, two threads made it 2.5x *slower* than one (152.1 against
  61.3 ms): OpenMP's worker threads spin while they wait for each other, and a spinning
  thread holds the core the busy process needs, so both wait. ``OMP_WAIT_POLICY=PASSIVE``
  (threads sleep instead of spinning) removes most of that loss but cost about a third
  on a quiet machine in a side comparison (not a kept benchmark), and one thread is
  still fastest beside a busy process.

So :func:`auto_threads` gives a run one thread per core that no other process is using
at the moment it starts (sampled from ``/proc/stat`` over :data:`SAMPLE_S` seconds),
and ``import grok_interp`` caps how long idle OpenMP threads spin (``GOMP_SPINCOUNT``)
when neither the user nor an earlier ``import torch`` has settled it (see
:func:`default_spin_count`), so a process that starts beside a run mid-way costs it
less.

The thread count changes the order of float reductions, so runs trained with
different counts differ in the last bits (and can reach 0.99 a few hundred steps apart);
bit-exact comparisons (a resumed run against an uninterrupted one) need equal counts.
``train_hooked`` logs the count it uses.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator, MutableMapping

__all__ = ["usable_cores", "batch_parts", "busy_cores", "auto_threads", "resolve_threads", "using_threads",
           "default_spin_count", "MAX_PARTS", "SAMPLE_S", "SPIN_COUNT"]

#: ``GOMP_SPINCOUNT`` set at import (libgomp's default spins about 100x longer).
SPIN_COUNT = 3000

#: Most parts a full-batch step is split into (beyond this, parts get too small).
MAX_PARTS = 8

#: Seconds over which :func:`busy_cores` samples the machine.
SAMPLE_S = 0.1
#: A measurement is reused for this many seconds (runs started one after another).
REUSE_S = 5.0
_last: list[tuple[float, float]] = []


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def batch_parts(cores: int | None = None) -> int:
    """Parts a full-batch CPU step is cut into: one per usable core, at most
    :data:`MAX_PARTS`. A property of the machine, not of its load, so a run's bits do not
    change with how busy the machine is when it starts."""
    return max(1, min(MAX_PARTS, usable_cores() if cores is None else cores))


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(sample_s: float = SAMPLE_S) -> float:
    """How many cores other processes keep busy now (0 where it cannot be measured).

    Measured while this process sleeps, so it counts everyone else. Uses the
    machine-wide ``/proc/stat`` counters; falls back to the 1-minute load average where
    there are none. A measurement under :data:`REUSE_S` seconds old is reused.
    """
    now = time.monotonic()
    if sample_s == SAMPLE_S and _last and now - _last[0][0] < REUSE_S:
        return _last[0][1]
    busy = _busy_cores(sample_s)
    _last[:] = [(time.monotonic(), busy)]
    return busy


def _busy_cores(sample_s: float) -> float:
    first = _cpu_times()
    if first is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):  # pragma: no cover
            return 0.0
    time.sleep(sample_s)
    second = _cpu_times()
    if second is None or second[1] <= first[1]:
        return 0.0
    ncpu = os.cpu_count() or 1
    return ncpu * (second[0] - first[0]) / (second[1] - first[1])


def auto_threads(cores: int | None = None, busy: float | None = None) -> int:
    """One thread per usable core that other processes leave free (at least one).

    ``busy`` above ``x.3`` counts as ``x + 1`` cores: a core that another process uses
    a third of the time already costs a second thread more than it gives.
    """
    cores = usable_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    taken = int(busy + 0.7)
    return max(1, min(cores, cores - taken))


def env_threads(environ: dict[str, str] | None = None) -> int | None:
    """The thread count ``OMP_NUM_THREADS`` asks for (its first number, as OpenMP reads
    a nested list such as ``"2,1"``), or None when it is unset or not a positive number."""
    value = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "")
    first = value.split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def worker_threads(cores: int, workers: int, environ: dict[str, str] | None = None) -> int:
    """Torch threads for each of ``workers`` processes sharing ``cores`` free cores: an
    equal share (at least one), capped by ``OMP_NUM_THREADS`` where it is set."""
    share = max(1, cores // max(1, workers))
    cap = env_threads(environ)
    return share if cap is None else min(share, cap)


def resolve_threads(threads: int | str | None) -> int | None:
    """The thread count for a run: an int as given; ``"auto"`` by :func:`auto_threads`
    unless ``OMP_NUM_THREADS`` is set (then torch's own setting, which honours it);
    None: leave torch's setting alone."""
    from ._validate import bad_value, check_int

    if threads is None:
        return None
    if threads == "auto":
        return None if os.environ.get("OMP_NUM_THREADS") else auto_threads()
    if isinstance(threads, str):
        raise bad_value("threads", threads, "a positive number of threads or 'auto'")
    return check_int("threads", threads, low=1)


@contextmanager
def using_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch threads (None: as they are); restore after.
    Yields the count in effect."""
    import torch

    before = torch.get_num_threads()
    if threads is not None and threads != before:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def default_spin_count(environ: MutableMapping[str, str] | None = None, modules: dict | None = None) -> bool:
    """Cap OpenMP's spin-wait (``GOMP_SPINCOUNT``, PyTorch's libgomp) at
    :data:`SPIN_COUNT` unless the user set it or ``OMP_WAIT_POLICY``, or torch is already
    imported (OpenMP reads these once, when torch loads it). Returns whether it set it.

    Measured at p = 113 with two threads in a side comparison (a scratch script setting
    the variable per process; not a kept benchmark): on a quiet machine the capped spin
    was as fast as the default; beside one busy process about 1.5x faster than the
    default, while ``OMP_WAIT_POLICY=PASSIVE`` (no spinning at all) cost about 35 % on a
    quiet machine.
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ or "torch" in modules:
        return False
    environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return True
