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

    monkeypatch.setattr(record, "_REGISTRY", dict(record._REGISTRY))  # the examples register things
    monkeypatch.setattr(store, "_LOADERS", dict(store._LOADERS))
    blocks = _blocks()
    assert len(blocks) == 3  # a measure, an optimiser option, a run kind
    namespace: dict = {}
    for code in blocks:
        exec(compile(code, str(CONTRIBUTING), "exec"), namespace)  # noqa: S102 - the project's own docs
    assert "logit_margin" not in record.measure_names()  # the example cleans up after itself
