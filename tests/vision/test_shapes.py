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
