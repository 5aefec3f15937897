"""CONTRIBUTING.md's worked examples run as written: every ``python`` block of its
"Extending grok_interp" section, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def _blocks() -> list[str]:
    text = CONTRIBUTING.read_text()
    section = text[text.index("## Extending grok_interp"):]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_extension_examples_run(monkeypatch):
    from grok_interp import store
    from grok_interp.measures import record
    from grok_interp.training import lifecycle

    monkeypatch.setattr(record, "_REGISTRY", dict(record._REGISTRY))  # the examples register things
    monkeypatch.setattr(store, "_LOADERS", dict(store._LOADERS))
    monkeypatch.setattr(store, "_CONFIG_SECTIONS", dict(store._CONFIG_SECTIONS))
    monkeypatch.setattr(lifecycle, "_KINDS", dict(lifecycle._KINDS))
    blocks = _blocks()
    assert len(blocks) == 3  # a measure, an optimiser option, a run kind
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(CONTRIBUTING), "exec", dont_inherit=True), namespace)  # noqa: S102 - the docs, run as a user runs them
    assert "logit_margin" not in record.measure_names()  # the example cleans up after itself
    assert "toy" in lifecycle.run_kinds() and "toy" in store.config_sections()  # the run kind's example registered
