"""Fixtures of every test: no test reads or writes the user's run cache.

Sweeps consult a run cache by default (``~/.cache/grok_interp/runs``, see
:mod:`grok_interp.run_cache`). A test that sweeps one configuration into two directories
to compare them must train both, and no test may leave entries in a home directory; so
the cache is off unless a test passes ``cache=`` (tests/test_run_cache.py does).
"""

from __future__ import annotations

import pytest

from grok_interp.run_cache import ENV


@pytest.fixture(autouse=True)
def _no_user_run_cache(monkeypatch):
    monkeypatch.setenv(ENV, "off")
