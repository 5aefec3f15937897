"""The image branch: shapes-sum dataset, hooked ResNet-18, training and run directories."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

import grok_interp as g
from grok_interp.vision import (
    N_CLASSES,
    SHAPE_WEIGHTS,
    ResNetRun,
    build_resnet,
    draw_shape,
    feature_uniformity,
    load_local_weights,
    load_resnet_run,
    load_shapes,
    render_images,
    resnet18_width,
    train_resnet,
)
from grok_interp.vision import shapes as shapes_mod

pytestmark = pytest.mark.portable

TINY = dict(image_size=16, width=4, subset=120, batch_size=32, eval_batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture(scope="module")
def data16(cache):
    return load_shapes(16, cache_dir=cache)


# --- dataset ------------------------------------------------------------------------
def test_labels_are_sums_of_sides_by_construction(data16):
    assert len(data16) == 11**4 == 14641
    expected = [sum(SHAPE_WEIGHTS[i] for i in t) for t in itertools.product(range(11), repeat=4)]
    assert data16.labels.tolist() == expected
    assert data16.combos.tolist() == [list(t) for t in itertools.product(range(11), repeat=4)]
    assert N_CLASSES == 49 and int(data16.labels.min()) == 0 and int(data16.labels.max()) == 48
    # 1 and 2 sides in total cannot be drawn (the smallest polygon has 3): 47 of 49 values occur
    assert set(data16.labels.tolist()) == {0} | set(range(3, 49))
    classes = data16.equivalence_classes()
    assert sum(len(v) for v in classes.values()) == 14641
    assert len(classes[0]) == 1 and len(classes[48]) == 1 and len(classes[3]) == 4


def _count_spokes(cell: np.ndarray) -> int:
    """Vertices of the polygon in a cell, counted as the spokes crossed by a circle of
    radius 0.3 R around the centre (inside every polygon's inradius, >= 0.5 R)."""
    c = cell.shape[0]
    r = 0.3 * 0.42 * c
    angles = np.linspace(0, 2 * np.pi, 1440, endpoint=False)
    ys = np.round(c / 2 + r * np.sin(angles)).astype(int)
    xs = np.round(c / 2 + r * np.cos(angles)).astype(int)
    on = cell[ys, xs] > 0
    return int(np.sum(on & ~np.roll(on, 1)))  # rising edges around the circle


@pytest.mark.parametrize("combo", [(0, 0, 0, 0), (1, 2, 3, 4), (10, 9, 8, 7), (5, 0, 10, 6), (10, 10, 10, 10)])
def test_images_show_the_sides_their_label_counts(combo):
    img = render_images(torch.tensor([combo]), 224)[0].numpy()
    half = 112
    quads = [img[:half, :half], img[:half, half:], img[half:, :half], img[half:, half:]]
    counts = [_count_spokes(q) for q in quads]
    assert counts == [SHAPE_WEIGHTS[i] for i in combo]
    label = sum(SHAPE_WEIGHTS[i] for i in combo)
    assert sum(counts) == label


def test_images_equal_a_freshly_drawn_reference(data16):
    rng = np.random.default_rng(0)
    for n in rng.integers(0, 14641, size=6).tolist():
        combo = data16.combos[n].tolist()
        ref = Image.new("L", (16, 16), 0)
        for (row, col), shape in zip([(0, 0), (0, 1), (1, 0), (1, 1)], combo):
            ref.paste(draw_shape(shape, 8), (8 * col, 8 * row))
        assert np.array_equal(np.asarray(ref), data16.images[n].numpy())
    # every dictionary shape is a distinct picture at the CPU preset's 32 px
    cells = [np.asarray(draw_shape(i, 16)).tobytes() for i in range(11)]
    assert len(set(cells)) == 11


def test_split_sizes_and_seeds(data16):
    s = data16.split()
    assert (s.n_train, s.n_test) == (3660, 10981)
    assert not (s.train_mask & s.test_mask).any() and (s.train_mask | s.test_mask).all()
    assert torch.equal(s.train_mask, data16.split(0.25, 0).train_mask)
    assert not torch.equal(s.train_mask, data16.split(0.25, 1).train_mask)
    assert data16.split(0.5, 3).n_train == 7320
    with pytest.raises(ValueError, match="frac"):
        data16.split(1.5)


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    first = load_shapes(16, cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and first.path is not None and first.path.suffix == ".npz"

    def no_drawing(*a, **k):
        raise AssertionError("drew again although the cache is valid")

    monkeypatch.setattr(shapes_mod, "render_images", no_drawing)
    again = load_shapes(16, cache_dir=tmp_path)
    assert torch.equal(again.images, first.images)
    monkeypatch.undo()

    # other parameters: another file, never the 16 px one
    other = load_shapes(18, cache_dir=tmp_path)
    assert other.images.shape == (14641, 18, 18) and other.path != first.path

    # a sidecar that records other parameters, or a broken checksum, forces a redraw
    calls = []
    real = shapes_mod.render_images
    monkeypatch.setattr(shapes_mod, "render_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    side = first.path.with_suffix(".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "drawing_version": -1}))
    assert torch.equal(load_shapes(16, cache_dir=tmp_path).images, first.images) and len(calls) == 1
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({**meta, "sha256": "0" * 64}))
    assert torch.equal(load_shapes(16, cache_dir=tmp_path).images, first.images) and len(calls) == 2
    load_shapes(16, cache_dir=tmp_path)
    assert len(calls) == 2  # repaired cache is used again


# --- model ---------------------------------------------------------------------------
def test_default_network_is_torchvision_resnet18():
    model = build_resnet(64, 49, seed=3)
    torch.manual_seed(3)
    ref = resnet18(weights=None, num_classes=49)
    ours = model.net.state_dict()
    assert list(ours) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(ours[k], v), k
    # the narrow variant keeps the topology: same tensor names, widths scaled
    narrow = resnet18_width(16, 49).state_dict()
    assert list(narrow) == list(ours)
    assert narrow["layer4.1.conv2.weight"].shape == (128, 128, 3, 3) and narrow["fc.weight"].shape == (49, 128)


@pytest.mark.parametrize("width,size", [(8, 32), (64, 64)])
def test_hooks_return_expected_shapes(width, size):
    model = build_resnet(width, 49, seed=0).eval()
    x = torch.randn(2, 3, size, size)
    logits, cache = model.run_with_cache(x)
    s = size // 4
    expected = {
        "hook_stem": (2, width, s, s),
        "hook_layer1": (2, width, s, s),
        "hook_layer2": (2, 2 * width, s // 2, s // 2),
        "hook_layer3": (2, 4 * width, s // 4, s // 4),
        "hook_layer4": (2, 8 * width, max(s // 8, 1), max(s // 8, 1)),
        "hook_pooled": (2, 8 * width),
        "hook_logits": (2, 49),
    }
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    assert torch.allclose(logits, model.net(x), atol=1e-5)  # hooks do not change the network
    assert torch.equal(cache["hook_pooled"], cache["hook_layer4"].mean((2, 3)))
    # run_with_hooks: zeroing the pooled features leaves only the final bias
    zeroed = model.run_with_hooks(x, fwd_hooks=[("hook_pooled", lambda act, hook: torch.zeros_like(act))])
    assert torch.allclose(zeroed, model.net.fc.bias.expand(2, -1))


def test_local_weights_file_keeps_a_new_final_layer(tmp_path):
    torch.manual_seed(5)
    imagenet_like = resnet18(weights=None)  # 1000-class head, as an ImageNet file has
    path = tmp_path / "r18.pth"
    torch.save(imagenet_like.state_dict(), path)
    net = resnet18_width(64, 49)
    fc_before = net.fc.weight.clone()
    skipped = load_local_weights(net, path)
    assert skipped == ["fc.bias", "fc.weight"]
    assert torch.equal(net.layer3[0].conv1.weight, imagenet_like.layer3[0].conv1.weight)
    assert torch.equal(net.fc.weight, fc_before)
    with pytest.raises(ValueError, match="weights_path"):
        load_local_weights(net, tmp_path / "missing.pth")


def test_feature_uniformity_analytic():
    k = 49
    labels = torch.arange(k).repeat_interleave(3)
    line = labels[:, None].double() * torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # unit steps on a line
    u = feature_uniformity(line, labels)
    assert u["feature_med"] == pytest.approx(1.0)
    assert u["feature_cv"] == pytest.approx(0.0, abs=1e-12)
    assert u["feature_med_ratio"] == pytest.approx(3 / (k + 1))
    # the same points in a shuffled label order are far less uniform
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(0))
    shuffled = feature_uniformity(line, perm[labels])
    assert shuffled["feature_med_ratio"] > 5 * u["feature_med_ratio"]
    assert shuffled["feature_cv"] > 0.3


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
    resumed = train_resnet(epochs=4, out=tmp_path / "part", resume=True, **opts)
    assert resumed.history.equals(full.history)
    a, b = full.model.net.state_dict(), resumed.model.net.state_dict()
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k
    reloaded = load_resnet_run(tmp_path / "part")
    assert reloaded.history.equals(full.history)
    with pytest.raises(ValueError, match="other settings"):
        train_resnet(epochs=4, out=tmp_path / "part", resume=True, **{**opts, "lr": 3e-3})


def test_cli_resnet(tmp_path, capsys, data16, monkeypatch):
    from grok_interp.cli import main

    monkeypatch.setenv("GROK_INTERP_CACHE", str(data16.path.parent))
    out = tmp_path / "cli"
    rc = main(["resnet", "--image-size", "16", "--width", "4", "--subset", "60", "--epochs", "1",
               "--batch-size", "30", "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    assert "epoch 1" in capsys.readouterr().out
    assert isinstance(g.load_run(out), ResNetRun)
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
