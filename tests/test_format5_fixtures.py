"""Run directories written by grok_interp 0073e3b (format 5) load and resume bit for bit.

``tests/data/format5/`` holds a transformer run and a ResNet run that the code of that
commit wrote and that stopped between checkpoints (``make_fixtures.py`` there). Whatever
moves inside the library (the run lifecycle, the store, the config migrations), these
directories must still load, resume and end where an uninterrupted run of today ends.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

import grok_interp as g

FIXTURES = Path(__file__).parent / "data" / "format5"
sys.path.insert(0, str(FIXTURES))
from make_fixtures import RESNET, TRANSFORMER  # noqa: E402

sys.path.remove(str(FIXTURES))


def copy_of(name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    shutil.copytree(FIXTURES / name, out)
    return out


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k].float(), b[k].float()) for k in a)


def skip_unless_this_machine_repeats(saved: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> None:
    """The fixture's first half came from another machine; a machine that rounds its
    floats otherwise cannot repeat it, and then the bit-for-bit comparison means nothing."""
    if not same_weights(saved, fresh):
        pytest.skip("this machine's floats differ from those of the machine that wrote the fixture")


def test_a_format_5_transformer_run_loads_and_resumes_bit_for_bit(tmp_path):
    out = copy_of("transformer", tmp_path)
    partial = g.load_run(out)
    assert partial.history["step"].tolist() == [0, 10, 20]  # its newest resume state
    assert same_weights(g.models.weights(partial.model), partial.weights_at(20))
    straight = g.train_hooked(**TRANSFORMER)
    skip_unless_this_machine_repeats(partial.weights_at(20), straight.weights_at(20))
    opts = {k: v for k, v in TRANSFORMER.items() if k in ("progress", "threads", "batch_parts")}
    resumed = g.train_hooked(out=out, resume=True, **opts)
    assert resumed.history["step"].tolist() == [0, 10, 20, 30, 40]
    assert resumed.history.equals(straight.history)
    assert same_weights(g.models.weights(resumed.model), g.models.weights(straight.model))
    reloaded = g.load_run(out)
    assert same_weights(g.models.weights(reloaded.model), g.models.weights(straight.model))
    assert reloaded.checkpoint_steps == straight.checkpoint_steps
    assert all(same_weights(reloaded.weights_at(s), straight.weights_at(s)) for s in straight.checkpoint_steps)


@pytest.mark.portable
def test_a_format_5_resnet_run_loads_and_resumes_bit_for_bit(tmp_path):
    from grok_interp.vision import load_shapes, train_resnet

    data = load_shapes(16, cache_dir=tmp_path / "cache")
    out = copy_of("resnet", tmp_path)
    partial = g.load_run(out)
    assert partial.history["step"].tolist() == [0, 1, 2]
    straight = train_resnet(dataset=data, **RESNET)
    skip_unless_this_machine_repeats(partial.weights_at(2), straight.weights_at(2))
    resumed = train_resnet(out=out, resume=True, dataset=data, **RESNET)
    assert resumed.history["step"].tolist() == [0, 1, 2, 3, 4]
    assert resumed.history.equals(straight.history)
    assert same_weights(resumed.model.net.state_dict(), straight.model.net.state_dict())
    reloaded = g.load_run(out)
    assert same_weights(reloaded.model.net.state_dict(), straight.model.net.state_dict())
