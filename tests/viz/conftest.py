"""Shared fixtures of the viz tests: one small run on disk, trained once."""

from __future__ import annotations


import pytest

import grok_interp as g

from ..helpers import small_run


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    """A small p=23 run on disk that memorises (train acc 1 by step ~220)."""
    out = tmp_path_factory.mktemp("viz") / "run"
    small_run(steps=300, eval_every=10, checkpoint_every=100, out=out)
    return out


@pytest.fixture(scope="session")
def run(run_dir):
    return g.load_run(run_dir)

