"""The shapes-sum image dataset of the paper's ResNet-18 experiment.

A dictionary of 11 shapes: shape 0 is blank (weight 0) and shape ``i`` for
``i = 1..10`` is a regular polygon with ``n = i + 2`` sides (weight ``n``), drawn as its
outline plus a spoke from the centre to every vertex. An image is a 2 x 2 grid of
dictionary shapes (top-left, top-right, bottom-left, bottom-right); its label is the
sum of the four weights, an integer in ``0..48`` (49 classes). All ``11**4 = 14641``
combinations make the dataset, in base-11 order of the four shape indices.

The label is a sum over parts, so - like ``a + b`` in the prime-field tasks - many
inputs share one answer: the *equivalence classes* are the label values, and a test
image can only be answered by analogy with training images of the same class (the
coverage view of :mod:`grok_interp.theory`). :class:`ShapesDataset` exposes what such
a tool needs: ``labels``, the shape indices ``combos`` and ``equivalence_classes()``;
:class:`ShapesSplit` adds ``train_mask``.

Images are drawn deterministically with Pillow (binary, one channel, uint8) and cached
on disk as one compressed ``.npz`` file whose name carries a hash of the drawing
parameters; a JSON sidecar holds the parameters and the SHA-256 of the pixel array,
checked on every load. A cache file for other parameters, or one whose checksum does
not match, is never used: the dataset is drawn again.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8
from PIL import Image, ImageDraw
from torch import Tensor

from .. import store
from .._validate import bad_value, check_int, check_open_unit

__all__ = [
    "N_SHAPES",
    "SHAPE_WEIGHTS",
    "N_CLASSES",
    "draw_shape",
    "render_images",
    "all_combos",
    "ShapesDataset",
    "ShapesSplit",
    "load_shapes",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

#: Number of dictionary shapes (blank + polygons with 3..12 sides).
N_SHAPES = 11
#: Weight of each dictionary shape: 0 for blank, else the polygon's number of sides.
SHAPE_WEIGHTS: tuple[int, ...] = (0,) + tuple(range(3, 13))
#: Label values 0..48.
N_CLASSES = 4 * max(SHAPE_WEIGHTS) + 1
#: Bump when the drawing changes: it is part of the cache key.
DRAWING_VERSION = 1

# ImageNet statistics: inputs are normalised with them so that a local file of
# ImageNet weights sees the input scale it was trained on.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _line_width(cell: int) -> int:
    return max(1, round(cell / 56))


def polygon_vertices(sides: int, cell: int) -> list[tuple[float, float]]:
    """Vertices of the regular ``sides``-gon drawn in a ``cell`` x ``cell`` square.

    Centre ``(c/2, c/2)``, circumradius ``0.42 c``, first vertex straight up, the
    others counter-clockwise (in image coordinates) at equal angles.
    """
    r, mid = 0.42 * cell, cell / 2
    return [
        (mid + r * math.sin(2 * math.pi * k / sides), mid - r * math.cos(2 * math.pi * k / sides))
        for k in range(sides)
    ]


def draw_shape(index: int, cell: int) -> Image.Image:
    """Draw dictionary shape ``index`` on a black ``cell`` x ``cell`` grey-scale image.

    Args:
        index: 0 (blank) or ``1..10`` (polygon with ``index + 2`` sides).
        cell: Side of the square in pixels.

    Returns:
        A Pillow image in mode ``L``: outline and spokes in white (255), the rest 0.
    """
    check_int("index", index, low=0, high=N_SHAPES - 1)
    check_int("cell", cell, low=8)
    img = Image.new("L", (cell, cell), 0)
    if index == 0:
        return img
    draw = ImageDraw.Draw(img)
    verts = polygon_vertices(SHAPE_WEIGHTS[index], cell)
    width = _line_width(cell)
    draw.line(verts + [verts[0]], fill=255, width=width)
    centre = (cell / 2, cell / 2)
    for v in verts:
        draw.line([centre, v], fill=255, width=width)
    return img


def _cells(image_size: int) -> np.ndarray:
    cell = image_size // 2
    return np.stack([np.asarray(draw_shape(i, cell), dtype=np.uint8) for i in range(N_SHAPES)])


def render_images(combos: Int[Tensor, "n 4"], image_size: int = 224) -> UInt8[Tensor, "n size size"]:
    """Draw the 2 x 2 grid images of the given shape-index 4-tuples.

    Args:
        combos: Shape indices (top-left, top-right, bottom-left, bottom-right), each in
            ``0..10``.
        image_size: Side of the image in pixels (even, >= 16).

    Returns:
        uint8 images, 0 background and 255 strokes.
    """
    _check_size(image_size)
    combos = torch.as_tensor(combos, dtype=torch.long)
    if combos.ndim != 2 or combos.shape[1] != 4 or combos.min() < 0 or combos.max() >= N_SHAPES:
        raise bad_value("combos", tuple(combos.shape), f"must be (n, 4) shape indices in 0..{N_SHAPES - 1}")
    cells = _cells(image_size)
    c = combos.numpy()
    top = np.concatenate([cells[c[:, 0]], cells[c[:, 1]]], axis=2)
    bottom = np.concatenate([cells[c[:, 2]], cells[c[:, 3]]], axis=2)
    return torch.from_numpy(np.concatenate([top, bottom], axis=1))


def all_combos() -> Int[Tensor, "14641 4"]:
    """All ``11**4`` shape-index 4-tuples in base-11 order (last position fastest)."""
    return torch.tensor(list(itertools.product(range(N_SHAPES), repeat=4)), dtype=torch.long)


def _check_size(image_size: int) -> None:
    check_int("image_size", image_size, low=16)
    if image_size % 2:
        raise bad_value("image_size", image_size, "must be even (the image is a 2 x 2 grid of square cells)")


@dataclass
class ShapesSplit:
    """A train/test partition of a :class:`ShapesDataset` (``train_mask`` over samples)."""

    kind: str
    frac: float
    seed: int
    train_mask: Bool[Tensor, " n"] = field(repr=False)

    @property
    def test_mask(self) -> Bool[Tensor, " n"]:
        return ~self.train_mask

    @property
    def train_indices(self) -> Int[Tensor, " n_train"]:
        return self.train_mask.nonzero().squeeze(1)

    @property
    def test_indices(self) -> Int[Tensor, " n_test"]:
        return self.test_mask.nonzero().squeeze(1)

    @property
    def n_train(self) -> int:
        return int(self.train_mask.sum())

    @property
    def n_test(self) -> int:
        return int(self.test_mask.sum())


@dataclass
class ShapesDataset:
    """The shapes-sum images, their shape indices and labels.

    Attributes:
        images: uint8 ``(n, size, size)`` grey-scale images (0 or 255).
        combos: Shape indices per sample (top-left, top-right, bottom-left, bottom-right).
        image_size: Side of the images in pixels.
        path: The cache file the images came from (None when drawn in memory only).
    """

    images: UInt8[Tensor, "n size size"] = field(repr=False)
    combos: Int[Tensor, "n 4"] = field(repr=False)
    image_size: int
    path: Path | None = None

    @property
    def labels(self) -> Int[Tensor, " n"]:
        """Label per sample: the sum of the four shapes' weights (0..48)."""
        return torch.tensor(SHAPE_WEIGHTS)[self.combos].sum(1)

    @property
    def n_classes(self) -> int:
        return N_CLASSES

    def __len__(self) -> int:
        return len(self.combos)

    def equivalence_classes(self) -> dict[int, Int[Tensor, " m"]]:
        """Sample indices per label value (the classes a coverage analysis counts)."""
        labels = self.labels
        return {int(y): (labels == y).nonzero().squeeze(1) for y in labels.unique()}

    def inputs(self, index: Int[Tensor, " b"]) -> Float[Tensor, "b 3 size size"]:
        """Model inputs for samples ``index``: the grey image in [0, 1] copied into three
        channels and normalised with the ImageNet mean and standard deviation."""
        x = self.images[index].to(torch.float32).div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
        mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(_STD).view(1, 3, 1, 1)
        return (x - mean) / std

    def subset(self, n: int, seed: int = 0) -> "ShapesDataset":
        """``n`` samples drawn without replacement with ``seed`` (kept in dataset order)."""
        check_int("subset", n, low=2, high=len(self))
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return ShapesDataset(images=self.images[idx], combos=self.combos[idx], image_size=self.image_size)

    def split(self, frac: float = 0.25, seed: int = 0) -> ShapesSplit:
        """A random split: ``int(frac * n)`` samples train, the rest test.

        The same rule and generator as :meth:`grok_interp.Split.random` (a
        ``torch.randperm`` seeded with ``seed``); ``frac=0.25`` gives the paper's 3660
        training images out of 14641.
        """
        frac = check_open_unit("frac", frac)
        check_int("seed", seed)
        n_train = int(frac * len(self))
        if n_train < 1 or n_train >= len(self):
            raise bad_value("frac", frac, f"leaves an empty train or test set of {len(self)} samples")
        chosen = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n_train]
        mask = torch.zeros(len(self), dtype=torch.bool)
        mask[chosen] = True
        return ShapesSplit(kind="random", frac=frac, seed=seed, train_mask=mask)


def default_cache_dir() -> Path:
    """``$GROK_INTERP_CACHE`` if set, else ``~/.cache/grok_interp``."""
    return Path(os.environ.get("GROK_INTERP_CACHE", Path.home() / ".cache" / "grok_interp"))


def _params(image_size: int) -> dict:
    return {"dataset": "shapes-sum", "drawing_version": DRAWING_VERSION, "image_size": image_size,
            "shape_weights": list(SHAPE_WEIGHTS)}


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def load_shapes(image_size: int = 224, cache_dir: str | os.PathLike | None = None, cache: bool = True) -> ShapesDataset:
    """The full shapes-sum dataset at ``image_size``, from the cache when it is valid.

    The cache file is ``<cache_dir>/shapes-<size>-<hash of parameters>.npz`` with a
    sidecar ``.json`` holding the parameters and the SHA-256 of the images. A file is
    used only when the sidecar's parameters equal the requested ones and the checksum
    of the loaded pixels matches; otherwise the images are drawn again and the cache
    rewritten (atomically).

    Args:
        image_size: Side of the images (224 as in the paper; smaller for CPU runs).
        cache_dir: Where to cache (default :func:`default_cache_dir`).
        cache: False: draw in memory, touch no file.

    Returns:
        A :class:`ShapesDataset` of 14641 images.
    """
    _check_size(image_size)
    params = _params(image_size)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    combos = all_combos()
    if not cache:
        return ShapesDataset(images=render_images(combos, image_size), combos=combos, image_size=image_size)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"shapes-{image_size}-{key}.npz"
    side = path.with_suffix(".json")
    images = _load_cached(path, side, params)
    if images is None:
        log.info("drawing the shapes-sum dataset at %d px into %s", image_size, path)
        images = render_images(combos, image_size).numpy()

        # a file object: numpy does not append ".npz"
        store.atomic_write(path, lambda fh: np.savez_compressed(fh, images=images, combos=combos.numpy()))
        store.write_json(side, {**params, "sha256": _digest(images)})
    return ShapesDataset(images=torch.from_numpy(images), combos=combos, image_size=image_size, path=path)


def _load_cached(path: Path, side: Path, params: dict) -> np.ndarray | None:
    if not (path.exists() and side.exists()):
        return None
    try:
        meta = json.loads(side.read_text())
        if {k: meta.get(k) for k in params} != params:
            log.info("cache %s was drawn with other parameters: drawing again", path)
            return None
        with np.load(io.BytesIO(path.read_bytes())) as z:
            images = z["images"]
        if _digest(images) != meta.get("sha256"):
            log.warning("cache %s fails its checksum: drawing again", path)
            return None
        return images
    except Exception as exc:  # noqa: BLE001 - any unreadable cache is redrawn
        log.warning("cache %s is unreadable (%s): drawing again", path, exc)
        return None
