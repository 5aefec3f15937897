"""grok_interp.vision.train: the ResNet runs through the one loop, their run directories and CLI."""

from __future__ import annotations

import json

import pytest
import torch

import grok_interp as g
from grok_interp.vision import (
    ResNetRun,
    load_resnet_run,
    train_resnet,
)

from ..helpers import TINY_RESNET as TINY

pytestmark = pytest.mark.portable


# --- training and run directories ------------------------------------------------------
def test_two_epoch_smoke_run_and_load_run(tmp_path, data16):
    out = tmp_path / "run"
    run = train_resnet(epochs=2, eval_every=1, checkpoint_every=1, out=out, dataset=data16, progress=False, **TINY)
    h = run.history
    assert h["step"].tolist() == [0, 1, 2]
    for col in ("train_loss", "test_loss", "train_acc", "test_acc", "feature_med", "feature_med_ratio", "feature_cv"):
        assert h[col].notna().all(), col
    assert run.split.n_train == 30 and run.split.n_test == 90
    assert h["train_loss"].iloc[-1] < h["train_loss"].iloc[0]
    assert run.checkpoint_steps == [0, 1, 2]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "resnet" and "grok_interp" in cfg
    loaded = g.load_run(out)
    assert isinstance(loaded, ResNetRun) and loaded.history.equals(h)
    x = data16.inputs(run.indices[:4])
    assert torch.equal(loaded.model(x), run.model(x))
    assert torch.equal(loaded.model_at(2)(x), run.model(x))
    assert not torch.equal(loaded.model_at(0)(x), run.model(x))
    assert torch.equal(loaded.labels, data16.labels[run.indices])
    # accuracy recorded in the history equals an independent count with the saved model
    tr = run.indices[run.split.train_mask]
    acc = (loaded.model(data16.inputs(tr)).argmax(-1) == data16.labels[tr]).float().mean()
    assert float(acc) == pytest.approx(h["train_acc"].iloc[-1])
    with pytest.raises(ValueError, match="already holds a run"):
        train_resnet(epochs=2, out=out, dataset=data16, progress=False, **TINY)


def test_gradient_transforms_reach_every_mini_batch(data16):
    calls = []

    def zero(params):  # Adam with no gradient and no weight decay leaves the weights alone
        calls.append(len(params))
        for p in params:
            p.grad.zero_()

    run = train_resnet(epochs=2, eval_every=1, checkpoint_every=1, dataset=data16, progress=False,
                       gradient_transforms=[zero], **{**TINY, "weight_decay": 0.0})
    batches = -(-run.split.n_train // run.config.batch_size)
    assert len(calls) == 2 * batches
    w0, w2 = run.weights_at(0), run.weights_at(2)
    params = dict(run.model.net.named_parameters())
    assert all(torch.equal(w0[k], w2[k]) for k in params)


def test_resume_equals_uninterrupted(tmp_path, data16):
    opts = dict(eval_every=1, checkpoint_every=2, dataset=data16, progress=False, **TINY)
    full = train_resnet(epochs=4, out=tmp_path / "full", **opts)
    train_resnet(epochs=2, out=tmp_path / "part", **opts)
    part_s = json.loads((tmp_path / "part" / "status.json").read_text())["train_s"]
    resumed = train_resnet(epochs=4, out=tmp_path / "part", resume=True, **opts)
    assert resumed.history.equals(full.history)
    # the training time goes on from the first sitting's (status.json's train_s)
    assert 0 < part_s < json.loads((tmp_path / "part" / "status.json").read_text())["train_s"]
    a, b = full.model.net.state_dict(), resumed.model.net.state_dict()
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k
    reloaded = load_resnet_run(tmp_path / "part")
    assert reloaded.history.equals(full.history)
    with pytest.raises(ValueError, match="other settings"):
        train_resnet(epochs=4, out=tmp_path / "part", resume=True, **{**opts, "lr": 3e-3})


def test_resume_without_a_config_takes_the_saved_one(tmp_path, data16):
    """As train_hooked: resume=True with only the options to change continues the saved
    run (it used to build the defaults, 224 px, and refuse the run's own dataset)."""
    opts = dict(eval_every=1, checkpoint_every=2, dataset=data16, progress=False)
    full = train_resnet(epochs=4, out=tmp_path / "full", **opts, **TINY)
    train_resnet(epochs=2, out=tmp_path / "part", **opts, **TINY)
    resumed = train_resnet(out=tmp_path / "part", resume=True, epochs=4, **opts)
    assert resumed.history.equals(full.history) and resumed.config == full.config
    with pytest.raises(ValueError, match="other settings"):  # a change the run cannot take is still refused
        train_resnet(out=tmp_path / "part", resume=True, epochs=5, lr=3e-3, **opts)
    with pytest.raises(ValueError, match="unknown keys"):
        train_resnet(out=tmp_path / "part", resume=True, epoch=5, **opts)


def test_cli_resnet(tmp_path, capsys, data16, monkeypatch):
    from grok_interp.cli import main

    monkeypatch.setenv("GROK_INTERP_CACHE", str(data16.path.parent))
    out = tmp_path / "cli"
    rc = main(["resnet", "--image-size", "16", "--width", "4", "--subset", "60", "--epochs", "1",
               "--batch-size", "30", "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "epoch 1" in capsys.readouterr().out
    assert isinstance(g.load_run(out), ResNetRun)
    # --resume keeps the saved run's values (not the paper preset's 224 px): only --epochs changes
    assert main(["resnet", "--out", str(out), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert "trained to epoch 2" in capsys.readouterr().out
    assert g.load_run(out).config.image_size == 16
    assert main(["resnet", "--image-size", "15", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    assert "--image-size 15 is invalid" in capsys.readouterr().err


def test_theory_coverage_accepts_the_shapes_dataset(data16):
    from grok_interp.theory import class_coverage, coverage_ceiling

    split = data16.subset(400, seed=1).split(0.05, seed=2)
    sub = data16.subset(400, seed=1)
    cov = class_coverage(sub.labels, split.train_mask)
    labels = sub.labels
    for y, row in cov.iterrows():
        assert row["n_train"] == int(((labels == y) & split.train_mask).sum())
        assert row["n_test"] == int(((labels == y) & ~split.train_mask).sum())
    seen = set(labels[split.train_mask].tolist())
    test_labels = labels[~split.train_mask].tolist()
    assert coverage_ceiling(sub.labels, split.train_mask) == pytest.approx(
        sum(y in seen for y in test_labels) / len(test_labels)
    )
    assert coverage_ceiling(sub.labels, split.train_mask) < 1  # 20 training images miss some classes


# --- recipe options: drawing style, initial weight scale ----------------------------------
def test_init_scale_multiplies_the_initial_parameter_norm():
    from grok_interp.vision import build_resnet, scale_parameters

    model = build_resnet(4, 49, seed=3)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    norm = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters()))
    scale_parameters(model, 2.5)
    after = torch.sqrt(sum((p.detach().double() ** 2).sum() for p in model.parameters()))
    assert float(after) == pytest.approx(2.5 * float(norm), rel=1e-6)
    params = dict(model.net.named_parameters())
    for k, v in model.net.state_dict().items():  # parameters scaled, buffers left alone
        assert torch.equal(v, before[k] * 2.5 if k in params else before[k]), k


def test_init_scale_and_style_reach_the_run_and_its_directory(tmp_path, data16):
    out = tmp_path / "run"
    run = train_resnet(epochs=0, out=out, dataset=data16, progress=False, init_scale=3.0, **TINY)
    plain = train_resnet(epochs=0, dataset=data16, progress=False, **TINY)
    w3, w1 = run.weights_at(0), plain.weights_at(0)
    assert torch.allclose(w3["conv1.weight"], 3.0 * w1["conv1.weight"])
    assert torch.equal(w3["bn1.running_var"], w1["bn1.running_var"])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["config"]["init_scale"] == 3.0 and cfg["config"]["style"] == "library"
    assert g.load_run(out).config == run.config
    with pytest.raises(ValueError, match="style"):  # the library-style images are not the reference's
        train_resnet(epochs=0, dataset=data16, progress=False, style="reference", **TINY)


def test_reference_style_run_round_trips(tmp_path):
    from grok_interp.vision import load_shapes

    ref = load_shapes(16, cache_dir=tmp_path / "cache", style="reference")
    assert ref.style == "reference" and ref.path.name.startswith("shapes-reference-16-")
    assert ref.images.float().mean() > 128  # white background
    out = tmp_path / "run"
    run = train_resnet(epochs=1, out=out, dataset=ref, progress=False, style="reference", **TINY)
    loaded = g.load_run(out)
    assert loaded.config.style == "reference" and loaded.config == run.config
    assert torch.equal(loaded.dataset(cache_dir=tmp_path / "cache").images, ref.images[run.indices])


def test_a_format_2_resnet_run_loads_with_the_library_style_and_scale_1(tmp_path, data16):
    from grok_interp.vision import ResNetConfig

    out = tmp_path / "run"
    train_resnet(epochs=0, out=out, dataset=data16, progress=False, style="library", init_scale=1.0, **TINY)
    raw = json.loads((out / "config.json").read_text())
    added = list(ResNetConfig.ADDED_KEYS[3])
    old = {**raw, "grok_interp": {**raw["grok_interp"], "format": 2},
           "config": {k: v for k, v in raw["config"].items() if k not in added}}
    (out / "config.json").write_text(json.dumps(old))
    cfg = g.load_run(out).config
    assert (cfg.style, cfg.init_scale) == ("library", 1.0)
    (out / "config.json").write_text(json.dumps({**old, "grok_interp": raw["grok_interp"]}))
    with pytest.raises(g.RunDirectoryError, match="is missing"):
        g.load_run(out)  # a format-3 file must have the key


def test_autocast_trains_in_bfloat16_and_keeps_float32_weights(tmp_path, data16):
    opts = dict(epochs=1, eval_every=1, checkpoint_every=1, dataset=data16, progress=False, **TINY)
    # oneDNN's bfloat16 convolution backward on some CPUs returns non-finite gradients
    # now and then (512 entries of layer4.0.conv1.weight, about one run in four here):
    # the run's weights went NaN without a word; the divergence check now stops such a
    # run (TrainingDiverged). PyTorch's own kernels compute the same bfloat16 forward
    # passes without that fault.
    with torch.backends.mkldnn.flags(enabled=False):
        mixed = train_resnet(autocast=True, out=tmp_path / "amp", **opts)
    assert all(bool(torch.isfinite(p).all()) for p in mixed.model.parameters())
    plain = train_resnet(**opts)
    assert all(p.dtype == torch.float32 for p in mixed.model.parameters())
    h = mixed.history
    assert h[["train_loss", "test_loss", "feature_med_ratio"]].notna().all().all()
    # bfloat16 forward passes give other numbers than float32 ones from the same start
    assert torch.equal(mixed.weights_at(0)["conv1.weight"], plain.weights_at(0)["conv1.weight"])
    assert not torch.equal(mixed.weights_at(1)["conv1.weight"], plain.weights_at(1)["conv1.weight"])
    assert h["epoch_loss"].iloc[-1] == pytest.approx(plain.history["epoch_loss"].iloc[-1], rel=0.05)
    assert g.load_run(tmp_path / "amp").config.autocast is True


def test_dataset_on_another_device_builds_the_same_inputs(data16):
    moved = data16.to("meta")  # no GPU here: the meta device shows where the batches are built
    idx = torch.tensor([0, 5, 14640])
    x = moved.inputs(idx)
    assert x.device.type == "meta" and x.shape == data16.inputs(idx).shape
    assert data16.images.device.type == "cpu" and moved.style == data16.style


def test_an_extension_killed_before_config_json_reports_its_true_state(tmp_path, data16, monkeypatch):
    opts = dict(eval_every=1, checkpoint_every=2, dataset=data16, progress=False, **TINY)
    path = tmp_path / "part"
    train_resnet(epochs=2, out=path, **opts)
    with pytest.raises(g.GrokInterpError, match=r"^epochs=1 is invalid: the run in .* has trained to epoch 2"):
        train_resnet(epochs=1, out=path, resume=True, **opts)
    assert json.loads((path / "config.json").read_text())["config"]["epochs"] == 2

    class Killed(BaseException):
        pass

    def killed(self, meta):
        raise Killed

    monkeypatch.setattr(g.store.RunStore, "write_config", killed)
    with pytest.raises(Killed):
        train_resnet(epochs=4, out=path, resume=True, **opts)
    monkeypatch.undo()
    status = json.loads((path / "status.json").read_text())
    assert status["finished"] is False  # was: finished at epoch 2 while a sweep asked for 4 (then skipped)
    assert load_resnet_run(path).config.epochs == 4
    resumed = train_resnet(epochs=4, out=path, resume=True, **opts)
    assert resumed.history["step"].max() == 4
    assert json.loads((path / "config.json").read_text())["config"]["epochs"] == 4


def test_resnet_checkpoints_go_through_the_background_writer(tmp_path, data16, write_threads):
    from grok_interp import store

    threads = write_threads
    run = train_resnet(epochs=2, eval_every=1, checkpoint_every=1, out=tmp_path / "r", dataset=data16,
                       progress=False, **TINY)
    assert len(threads) == 3 and all(n.startswith("grok-interp-checkpoint") for n in threads), threads
    loaded = g.load_run(tmp_path / "r")
    assert loaded.history.equals(run.history) and store.RunStore(tmp_path / "r").read_status()["finished"] is True


# --- adaptive (sparse) evaluation -------------------------------------------------------
# Nine epochs, a row each, checkpoints at 0, 1, 2, 4, 8 and 9; with eval_sparse 3 the
# rows at 3, 6 and 9 and at the checkpoints are full, those at 5 and 7 are held.
SPARSE = dict(epochs=9, eval_every=1, checkpoint_every=4, progress=False, **TINY)


@pytest.fixture
def passes(monkeypatch):
    """Every evaluation pass: (images, train_mode)."""
    from grok_interp.vision import train as vt

    seen: list[tuple[str, bool]] = []
    real = vt._pass

    def spy(*args, **kwargs):
        seen.append((kwargs.get("images", "all"), kwargs["train_mode"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(vt, "_pass", spy)
    return seen


def _test_passes(seen):
    """Evaluation-mode passes over the test images (every image: the full rows')."""
    return sum(1 for images, train_mode in seen if images in ("all", "test") and not train_mode)


@pytest.mark.parametrize("batch_stats", [False, True])
def test_a_sparse_resnet_run_records_the_dense_rows_where_it_records_them(data16, passes, batch_stats):
    import pandas as pd

    opts = dict(dataset=data16, batch_stats_eval=batch_stats, **SPARSE)
    dense = train_resnet(**opts)
    dense_passes = _test_passes(passes)
    assert dense_passes == len(dense.history) == 10
    passes.clear()
    sparse = train_resnet(eval_sparse=3, **opts)
    d, s = dense.history.set_index("step"), sparse.history.set_index("step")
    assert {0, 1, 2, 3, 4, 6, 8, 9} <= set(s.index) <= set(d.index)
    assert list(s.columns) == list(d.columns)  # the dense row's columns, in its order
    pd.testing.assert_frame_equal(s, d.loc[s.index], check_exact=True)
    assert _test_passes(passes) == len(s)  # one test pass per recorded row, none for a dropped one
    assert ("train", False) in passes  # held rows evaluate the training images only
    for k, w in dense.model.net.state_dict().items():  # evaluation never touches training
        assert torch.equal(w, sparse.model.net.state_dict()[k]), k


def test_held_rows_that_do_not_move_are_dropped_without_a_test_pass(data16, passes, monkeypatch):
    from grok_interp.training import loop

    monkeypatch.setattr(loop, "backfill_needed", lambda *a: False)
    run = train_resnet(eval_sparse=3, dataset=data16, **SPARSE)
    assert run.history["step"].tolist() == [0, 1, 2, 3, 4, 6, 8, 9]
    assert _test_passes(passes) == 8 < 10  # the dense run's ten rows take ten
    assert sum(1 for p in passes if p == ("train", False)) == 10  # every row's training images


def test_a_backfilled_row_is_evaluated_with_its_own_batchnorm_statistics(data16, monkeypatch):
    """Forced backfills: rows 5 and 7 are evaluated after training went on, with the
    weights *and* BatchNorm running statistics of their own epoch put back."""
    from grok_interp.training import loop

    dense = train_resnet(dataset=data16, **SPARSE)
    seen = {}

    def stats(epoch, model, ctx):  # what the model holds while a row is recorded
        seen[epoch] = torch.cat([b.flatten().double() for b in model.buffers()])

    monkeypatch.setattr(loop, "backfill_needed", lambda *a: True)
    sparse = train_resnet(eval_sparse=3, dataset=data16, callbacks=[stats], **SPARSE)
    assert sparse.history.equals(dense.history)
    assert not torch.equal(seen[5], seen[6])  # the running statistics move every epoch
    after = torch.cat([b.flatten().double() for b in sparse.model.buffers()])
    assert torch.equal(after, torch.cat([b.flatten().double() for b in dense.model.buffers()]))


def test_an_interrupted_sparse_resnet_run_resumes_to_the_uninterrupted_one(tmp_path, data16):
    from grok_interp import store

    class Stop(Exception):
        pass

    def interrupt(epoch, model, ctx):
        if epoch >= 6:
            raise Stop

    opts = dict(eval_sparse=3, dataset=data16, **SPARSE)
    with pytest.raises(Stop):
        train_resnet(out=tmp_path / "r", callbacks=[interrupt], **opts)
    assert max(store.RunStore(tmp_path / "r").state_steps()) == 4
    resumed = train_resnet(out=tmp_path / "r", resume=True, **opts)
    straight = train_resnet(**opts)
    assert resumed.history.equals(straight.history)
    a, b = straight.model.net.state_dict(), resumed.model.net.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert g.load_run(tmp_path / "r").history.equals(straight.history)


def test_eval_sparse_is_checked_and_a_format_5_resnet_config_means_dense_rows(tmp_path, data16):
    from grok_interp.vision import ResNetConfig

    with pytest.raises(ValueError, match="eval_sparse"):
        ResNetConfig(eval_sparse=0)
    out = tmp_path / "old"
    train_resnet(epochs=0, out=out, dataset=data16, progress=False, **TINY)
    meta = json.loads((out / "config.json").read_text())
    del meta["config"]["eval_sparse"]
    meta["grok_interp"]["format"] = 5
    (out / "config.json").write_text(json.dumps(meta))
    assert load_resnet_run(out).config.eval_sparse == 1
    meta["grok_interp"]["format"] = 6
    (out / "config.json").write_text(json.dumps(meta))
    with pytest.raises(g.GrokInterpError, match="eval_sparse"):
        load_resnet_run(out)


# --- BatchNorm recalibration -----------------------------------------------------------------
def test_recalibrated_statistics_are_the_training_images_own(data16):
    """One batch of every training image: the first BatchNorm's running mean and variance
    become the mean and unbiased variance of conv1's output over those images, whatever
    the statistics were before; the weights do not move."""
    from grok_interp.vision import ShapesSplit, build_resnet, recalibrate_batchnorm

    model = build_resnet(4, 49, seed=0)
    mask = torch.zeros(len(data16), dtype=torch.bool)
    mask[torch.randperm(len(data16), generator=torch.Generator().manual_seed(1))[:150]] = True
    split = ShapesSplit("random", 150 / len(data16), 1, mask)
    net = model.net
    net.bn1.running_mean.fill_(100.0)
    net.bn1.running_var.fill_(1e-3)
    before = {k: v.clone() for k, v in net.named_parameters()}
    recalibrate_batchnorm(model, data16, split, batch_size=len(split.train_indices))
    with torch.no_grad():
        z = net.conv1(data16.inputs(split.train_indices))
    assert torch.allclose(net.bn1.running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(net.bn1.running_var, z.transpose(0, 1).reshape(z.shape[1], -1).var(1), rtol=1e-4)
    assert all(torch.equal(v, before[k]) for k, v in net.named_parameters())
    assert not model.training and net.bn1.momentum == 0.1
    # batches of 149: the last one (1 image) joins the first, which is then every image
    again = recalibrate_batchnorm(build_resnet(4, 49, seed=0), data16, split, batch_size=149)
    assert torch.allclose(again.net.bn1.running_mean, net.bn1.running_mean, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        recalibrate_batchnorm(model, data16, split, batch_size=1)


def test_recalibrated_accuracy_equals_an_independent_count(tmp_path, data16):
    from grok_interp.vision import recalibrate_batchnorm, recalibrated_accuracy

    run = train_resnet(epochs=2, eval_every=1, checkpoint_every=1, out=tmp_path / "r", dataset=data16,
                       progress=False, **TINY)
    table = recalibrated_accuracy(g.load_run(tmp_path / "r"), dataset=data16)
    assert table["step"].tolist() == [0, 1, 2]
    test = run.indices[run.split.test_mask]
    model = recalibrate_batchnorm(run.model_at(2), _subset(data16, run.indices), run.split)
    acc = (model(data16.inputs(test)).argmax(-1) == data16.labels[test]).float().mean()
    assert float(table["test_acc_recal"].iloc[-1]) == pytest.approx(float(acc))
    with pytest.raises(ValueError, match="14641"):
        recalibrated_accuracy(run, dataset=_subset(data16, run.indices))
    with pytest.raises(ValueError, match="no checkpoint"):
        recalibrated_accuracy(run, steps=[7], dataset=data16)


def _subset(data, indices):
    from grok_interp.vision import ShapesDataset

    return ShapesDataset(images=data.images[indices], combos=data.combos[indices], image_size=data.image_size,
                         style=data.style)


def test_resnet_training_flushes_subnormals_and_restores_the_setting(data16):
    """Weight decay drives ResNet weights into float32's subnormal range, where a CPU
    computes through slow microcode: the ResNet trains with subnormals flushed to zero
    (benchmarks/denormals.py) unless asked not to, and the process is left as found."""
    from grok_interp.training import flushing_denormals

    before, seen = flushing_denormals(), []
    for flush in (True, False):
        seen.clear()
        train_resnet(dataset=data16, callbacks=[lambda epoch, model, ctx: seen.append(flushing_denormals())],
                     epochs=2, eval_every=1, checkpoint_every=4, progress=False, flush_denormal=flush, **TINY)
        assert seen and set(seen) == {flush} and flushing_denormals() == before
