"""Fixtures of every test: no test reads or writes the user's run cache.

Sweeps consult a run cache by default (``~/.cache/grok_interp/runs``, see
:mod:`grok_interp.run_cache`). A test that sweeps one configuration into two directories
to compare them must train both, and no test may leave entries in a home directory; so
the cache is off unless a test passes ``cache=`` (tests/test_run_cache.py does).
"""

from __future__ import annotations

import threading

import pytest

from grok_interp.run_cache import ENV


@pytest.fixture(autouse=True)
def _no_user_run_cache(monkeypatch):
    monkeypatch.setenv(ENV, "off")


@pytest.fixture
def write_threads(monkeypatch):
    """The names of the threads that write checkpoints (``RunStore.write_progress``), in
    call order, for the run trained after the fixture is set up."""
    from grok_interp import store

    threads: list[str] = []
    real = store.RunStore.write_progress

    def spy(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(store.RunStore, "write_progress", spy)
    return threads
