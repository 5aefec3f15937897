"""Shared fixtures of the image-branch tests: the 16 px shapes dataset, drawn once."""

from __future__ import annotations


import pytest

from grok_interp.vision import (
    load_shapes,
)


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture(scope="session")
def data16(cache):
    return load_shapes(16, cache_dir=cache)
