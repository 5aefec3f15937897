"""The reference recipe (preset="reference"), local pretrained weights, the stand-in
pretraining, and accuracy with BatchNorm in training mode."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

import grok_interp as g
from grok_interp.errors import GrokInterpError
from grok_interp.vision import train_resnet
from grok_interp.vision.resnet import resnet18_width
from grok_interp.vision.train import PRESETS, ResNetConfig, evaluate

from ..helpers import TINY_RESNET as TINY

pytestmark = pytest.mark.portable


def test_reference_preset_is_the_reference_codes_recipe():
    cfg = ResNetConfig(**PRESETS["reference"])
    assert (cfg.style, cfg.width, cfg.num_classes, cfg.optimizer) == ("reference", 64, 52, "adam")
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.eval_every, cfg.epochs) == (1e-3, 1e-4, 200, 100, 20000)
    assert int(cfg.frac * 11**4) == 3660  # the reference's random_split sizes
    with pytest.raises(GrokInterpError, match="num_classes"):
        ResNetConfig(num_classes=40)  # 49 label values need 49 outputs


def test_pretrained_loads_a_local_torchvision_file_and_keeps_a_new_head(tmp_path, data16):
    donor = resnet18_width(4, num_classes=1000)  # an "ImageNet" file: 1000-way fc
    with torch.no_grad():
        for p in donor.parameters():
            p.normal_()
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(tmp_path / "w.safetensors"))
    run = train_resnet(epochs=0, dataset=data16, progress=False, pretrained=tmp_path / "w.safetensors",
                       num_classes=52, **TINY)
    net = run.model.net
    assert torch.equal(net.conv1.weight, donor.conv1.weight) and torch.equal(net.layer4[1].bn2.bias, donor.layer4[1].bn2.bias)
    assert net.fc.out_features == 52 and not torch.equal(net.fc.weight[:52], donor.fc.weight[:52, :net.fc.in_features])
    assert run.config.weights_path == str(tmp_path / "w.safetensors")
    with pytest.raises(GrokInterpError, match="weights_path under another name"):
        train_resnet(epochs=0, dataset=data16, progress=False, pretrained=tmp_path / "w.safetensors",
                     weights_path=str(tmp_path / "other"), **TINY)


def test_batch_statistics_accuracy_leaves_the_running_statistics_alone(data16):
    run = train_resnet(epochs=1, dataset=data16, progress=False, **TINY)
    model = run.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    split = run.split
    sub = g.vision.shapes.ShapesDataset(images=data16.images[run.indices], combos=data16.combos[run.indices],
                                        image_size=16, style=data16.style)
    row = evaluate(model, sub, split, batch_size=64, batch_stats=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # independent: a training-mode forward of all images in batches of a seeded random
    # order (batch statistics), each sample's hit counted where it belongs
    model.train()
    order = torch.randperm(len(sub), generator=torch.Generator().manual_seed(0))
    hit = torch.zeros(len(sub), dtype=torch.bool)
    with torch.no_grad():
        for i in range(0, len(sub), 64):
            idx = order[i:i + 64]
            hit[idx] = model(sub.inputs(idx)).argmax(-1) == sub.labels[idx]
    model.load_state_dict(before)
    assert row["train_acc_batch"] == pytest.approx(float(hit[split.train_mask].float().mean()))
    assert row["test_acc_batch"] == pytest.approx(float(hit[split.test_mask].float().mean()))
    assert {"train_acc", "test_acc", "test_loss_batch"} <= set(row)


@pytest.mark.slow
def test_stand_in_pretraining_runs_first_and_is_recorded(tmp_path, data16):
    out = tmp_path / "run"
    run = train_resnet(epochs=2, eval_every=1, checkpoint_every=1, dataset=data16, progress=False, out=out,
                       pretrain_epochs=3, batch_stats_eval=True, **TINY)
    pre = pd.read_csv(out / "pretrain.csv")
    assert pre["epoch"].tolist() == [1, 2, 3]
    assert pre["loss"].iloc[-1] < pre["loss"].iloc[0]  # it learns the cells
    assert 0.0 <= pre["cell_acc"].min() and pre["cell_acc"].max() <= 1.0
    plain = train_resnet(epochs=0, dataset=data16, progress=False, **TINY)
    x = data16.inputs(run.indices[:4])
    # epoch 0 of the sum task starts from the pretrained backbone with a fresh head
    w0 = run.weights_at(0)
    assert not torch.equal(w0["conv1.weight"], plain.model.net.conv1.weight)
    assert torch.equal(w0["fc.weight"], plain.model.net.fc.weight)
    saved = g.store.read_tensors(out / "pretrained.safetensors")
    assert torch.equal(saved["conv1.weight"], w0["conv1.weight"])
    h = run.history
    assert {"epoch_acc", "train_acc_batch", "test_acc_batch"} <= set(h.columns)
    loaded = g.load_run(out)
    assert torch.equal(loaded.model(x), run.model(x))
    # a resume continues the sum task; pretraining is not repeated
    pre_mtime = (out / "pretrain.csv").stat().st_mtime_ns
    more = train_resnet(epochs=3, eval_every=1, checkpoint_every=1, dataset=data16, progress=False, out=out,
                        resume=True, pretrain_epochs=3, batch_stats_eval=True, **TINY)
    assert more.history["step"].tolist() == [0, 1, 2, 3]
    assert (out / "pretrain.csv").stat().st_mtime_ns == pre_mtime
