"""grok_interp.vision.shapes: labels, drawings, splits, the cache."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from grok_interp.vision import (
    N_CLASSES,
    SHAPE_WEIGHTS,
    draw_shape,
    load_shapes,
    render_images,
)
from grok_interp.vision import shapes as shapes_mod

pytestmark = pytest.mark.portable


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


# --- the reference style ----------------------------------------------------------------
def _to_image(x: float, size: int = 224) -> float:
    """A canvas coordinate (224 px, before the crop) in the cropped image of ``size`` px."""
    lo, hi = shapes_mod.REFERENCE_CROP[0], shapes_mod.REFERENCE_CROP[2]
    return (x - lo) * size / (hi - lo)


def _dark_runs_on_circle(img: np.ndarray, cx: float, cy: float, r: float) -> int:
    angles = np.linspace(0, 2 * np.pi, 2880, endpoint=False)
    ys = np.round(cy + r * np.sin(angles)).astype(int)
    xs = np.round(cx + r * np.cos(angles)).astype(int)
    on = img[ys, xs] < 200  # strokes are black on white (grey where resampling spreads them)
    return int(np.sum(on & ~np.roll(on, 1)))


@pytest.mark.parametrize("position", range(4))
@pytest.mark.parametrize("sides", [3, 4, 7, 12])
def test_reference_vertices_geometry(sides, position):
    verts = np.array(shapes_mod.reference_vertices(sides, position))
    assert len(verts) == sides
    centre = np.array([56 + 112 * (position % 2), 56 + 112 * (position // 2)])
    d = verts - centre
    radius = 46 if position == 0 else 56
    assert np.allclose(np.hypot(d[:, 0], d[:, 1]), radius)
    # vertex 0 points along +x at radius 46 in the top-left cell, along -x (rotated by
    # 180 degrees) in the other three, whose shapes touch their cell's inner edges
    assert np.sign(d[0, 0]) == (1 if position == 0 else -1) and abs(d[0, 1]) < 1e-9
    cell_lo = centre - 56
    assert (verts >= cell_lo - 1e-9).all() and (verts <= cell_lo + 112 + 1e-9).all()


@pytest.mark.parametrize("combo", [(1, 2, 3, 4), (10, 9, 8, 7), (5, 0, 10, 6)])
def test_reference_images_show_the_sides_and_clip_outer_vertices(combo):
    img = np.asarray(shapes_mod.reference_image(combo, 224, jpeg=False))
    assert img.shape == (224, 224, 3)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()  # grey
    assert set(np.unique(img[..., 0])) <= set(range(256)) and img.max() == 255 and img.min() == 0
    grey = img[..., 0]
    lo, hi = shapes_mod.REFERENCE_CROP[0], shapes_mod.REFERENCE_CROP[2]
    clipped_total = 0
    for position, shape in enumerate(combo):
        cx, cy = 56 + 112 * (position % 2), 56 + 112 * (position // 2)
        # spokes crossed by a small circle around the centre: one per vertex (0 if blank)
        count = _dark_runs_on_circle(grey, _to_image(cx), _to_image(cy), 0.25 * 46 * 224 / 196)
        assert count == SHAPE_WEIGHTS[shape]
        if shape:
            verts = shapes_mod.reference_vertices(SHAPE_WEIGHTS[shape], position)
            outside = [v for v in verts if not (lo <= v[0] <= hi and lo <= v[1] <= hi)]
            clipped_total += len(outside)
            for x, y in outside:  # its spoke runs to the image border: a dark pixel there
                t = min(1.0, *[(b - c) / (v - c) for b, c, v in ((lo, cx, x), (hi, cx, x), (lo, cy, y), (hi, cy, y))
                               if (v - c) and 0 < (b - c) / (v - c) <= 1])
                ex, ey = _to_image(cx + t * (x - cx)), _to_image(cy + t * (y - cy))
                ix, iy = int(np.clip(round(ex), 0, 223)), int(np.clip(round(ey), 0, 223))
                assert grey[max(0, iy - 1):iy + 2, max(0, ix - 1):ix + 2].min() < 200
    assert clipped_total > 0  # the crop cuts outer vertices off


def test_reference_pipeline_equals_resize_and_center_crop():
    import io

    from torchvision import transforms

    combo = (3, 7, 10, 1)
    buf = io.BytesIO()
    shapes_mod._reference_canvas(combo).save(buf, format="JPEG")  # the reference saves .jpg with defaults
    buf.seek(0)
    jpeg = Image.open(buf).convert("RGB")
    expected = transforms.CenterCrop(224)(transforms.Resize(256)(jpeg))
    got = shapes_mod.reference_image(combo, 224)
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    # the JPEG round trip changes pixels (ringing around strokes) but keeps the image grey
    plain = np.asarray(shapes_mod.reference_image(combo, 224, jpeg=False))
    assert not np.array_equal(np.asarray(got), plain)
    assert (np.asarray(got)[..., 0] == np.asarray(got)[..., 2]).all()


def test_reference_style_dataset_at_small_sizes(tmp_path):
    combos = torch.tensor([[0, 0, 0, 0], [10, 10, 10, 10], [1, 5, 0, 9]])
    imgs = render_images(combos, 32, style="reference")
    assert imgs.shape == (3, 32, 32) and imgs.dtype == torch.uint8
    assert int(imgs[0].min()) >= 250  # blank: white
    assert imgs[1].float().mean() < imgs[2].float().mean() < imgs[0].float().mean()  # more strokes, darker
    for n, combo in enumerate(combos.tolist()):
        assert np.array_equal(imgs[n].numpy(), np.asarray(shapes_mod.reference_image(combo, 32))[..., 0])
    assert not torch.equal(imgs, render_images(combos, 32))  # not the library style
    with pytest.raises(ValueError, match="style"):
        render_images(combos, 32, style="nope")
