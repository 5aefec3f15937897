"""The library's version, in one place: ``grok_interp.__version__`` is :data:`VERSION`.

A module of its own so that package modules can read the version (the run cache keys
runs by it) without importing the package ``__init__`` back.
"""

__all__ = ["VERSION"]

#: The version of grok_interp (also ``grok_interp.__version__``; keep equal to pyproject.toml's).
VERSION = "0.1.0"
