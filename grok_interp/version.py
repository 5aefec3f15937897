"""The library's version, in one place: ``grok_interp.__version__`` is :data:`VERSION`.

A module of its own so that package modules can read the version (the run cache keys
runs by it) without importing the package ``__init__`` back.
"""

__all__ = ["VERSION"]

#: The version of grok_interp, written only here: ``grok_interp.__version__`` and the package metadata
#: (pyproject.toml's ``dynamic = ["version"]``) read it.
VERSION = "0.1.0"
