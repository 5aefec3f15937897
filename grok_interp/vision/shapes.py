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

Two drawing styles (``style``):

* ``library`` (the default): white strokes on black, circumradius 0.42 of the cell,
  first vertex straight up, no compression, no crop; each cell drawn on its own.
* ``reference``: the images of the paper's reference code (Qihuai27/Grokking-Insight,
  ``resnet/data_gen.py`` and the transform of ``resnet/resnet_test.py``), see
  :func:`reference_vertices` and :func:`reference_image`: black 1-px outlines and
  spokes on a white 224 px RGB canvas, a JPEG round trip, then ``Resize(256)`` +
  ``CenterCrop(224)`` scaled to ``image_size``.

Images are drawn deterministically with Pillow (one channel, uint8) and cached
on disk as one compressed ``.npz`` file whose name carries a hash of the drawing
parameters; a JSON sidecar holds the parameters and the SHA-256 of the pixel array,
checked on every load. A cache file for other parameters, or one whose checksum does
not match, is never used: the dataset is drawn again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8
from PIL import Image, ImageDraw
from torch import Tensor
from tqdm.auto import tqdm

from .. import store
from .._validate import bad_value, check_choice, check_int, check_open_unit, check_seed

__all__ = [
    "N_SHAPES",
    "SHAPE_WEIGHTS",
    "N_CLASSES",
    "STYLES",
    "draw_shape",
    "reference_vertices",
    "reference_image",
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
#: Drawing styles: ``library`` (white on black, no crop) and ``reference`` (the
#: reference code's images, JPEG round trip and centre crop).
STYLES = ("library", "reference")

# --- the reference drawing, in the reference code's 224 px canvas coordinates ---------
#: Canvas side, cell side and cell centre offset of the reference drawing.
REFERENCE_CANVAS, REFERENCE_CELL = 224, 112
#: Circumradius asked for by the reference code. It clamps the radius to the distance of
#: the centre from the edges of the *top-left* cell, ``min(cx, cy, 112 - cx, 112 - cy)``,
#: which is 56 there (46 stays) and -56 in the other three cells: their polygons are
#: drawn with radius -56 - larger, and rotated by 180 degrees, touching the cell edges.
REFERENCE_RADIUS = 46
#: JPEG quality of the round trip (Pillow's default, which ``Image.save(...jpg)`` uses).
REFERENCE_JPEG_QUALITY = 75
#: The reference transform ``Resize(256)`` then ``CenterCrop(224)`` keeps the canvas
#: box [14, 210] x [14, 210] (16 px of 256 cut per side = 14 px of 224).
REFERENCE_CROP = (14.0, 14.0, 210.0, 210.0)

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


def _reference_radius(cx: float, cy: float) -> float:
    c = REFERENCE_CELL
    return min(REFERENCE_RADIUS, min(cx, cy, c - cx, c - cy))


def reference_vertices(sides: int, position: int) -> list[tuple[float, float]]:
    """Vertices of the reference drawing's ``sides``-gon in cell ``position``, in the
    224 px canvas coordinates (before the crop).

    ``position`` 0..3 is top-left, top-right, bottom-left, bottom-right; the centre is
    the cell centre ``(56 + 112 col, 56 + 112 row)``; vertex ``k`` lies at angle
    ``2 pi k / sides`` from the x axis (y pointing down) at radius 46 (top-left) or
    -56 (the other three, see :data:`REFERENCE_RADIUS`).
    """
    check_int("sides", sides, low=3)
    check_int("position", position, low=0, high=3)
    half = REFERENCE_CELL / 2
    cx, cy = half + REFERENCE_CELL * (position % 2), half + REFERENCE_CELL * (position // 2)
    r = _reference_radius(cx, cy)
    return [(cx + r * math.cos(2 * math.pi * k / sides), cy + r * math.sin(2 * math.pi * k / sides))
            for k in range(sides)]


def _reference_canvas(combo: tuple[int, ...]) -> Image.Image:
    img = Image.new("RGB", (REFERENCE_CANVAS, REFERENCE_CANVAS), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    half = REFERENCE_CELL / 2
    for position, index in enumerate(combo):
        if index == 0:
            continue
        verts = reference_vertices(SHAPE_WEIGHTS[index], position)
        centre = (half + REFERENCE_CELL * (position % 2), half + REFERENCE_CELL * (position // 2))
        draw.polygon(verts, outline=(0, 0, 0), fill=(255, 255, 255))  # 1-px outline
        for v in verts:
            draw.line([centre, v], fill=(0, 0, 0))  # 1-px spoke
    return img


def reference_image(combo: Sequence[int], image_size: int = 224, jpeg: bool = True) -> Image.Image:
    """One image of the reference style, as the reference network receives it.

    Draws the four shapes on a white 224 px RGB canvas (black 1-px outlines and spokes,
    :func:`reference_vertices`), round-trips it through JPEG in memory (quality
    :data:`REFERENCE_JPEG_QUALITY`, as the reference saves ``.jpg`` files), then crops and
    resizes as ``Resize(256)`` + ``CenterCrop(224)`` do, scaled to ``image_size``: the
    canvas box :data:`REFERENCE_CROP` resampled bilinearly to ``image_size`` pixels
    (at 224 px this equals torchvision's two transforms pixel for pixel).

    Args:
        combo: Four shape indices (top-left, top-right, bottom-left, bottom-right).
        image_size: Output side in pixels.
        jpeg: False: skip the JPEG round trip (to see the geometry alone).

    Returns:
        An RGB Pillow image (its three channels are equal: the drawing is grey).
    """
    combo = tuple(int(i) for i in combo)
    if len(combo) != 4 or min(combo) < 0 or max(combo) >= N_SHAPES:
        raise bad_value("combo", combo, f"must be four shape indices in 0..{N_SHAPES - 1}")
    check_int("image_size", image_size, low=1)
    img = _reference_canvas(combo)
    if jpeg:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=REFERENCE_JPEG_QUALITY)
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return img.resize((image_size, image_size), Image.Resampling.BILINEAR, box=REFERENCE_CROP)


def _cells(image_size: int) -> np.ndarray:
    cell = image_size // 2
    return np.stack([np.asarray(draw_shape(i, cell), dtype=np.uint8) for i in range(N_SHAPES)])


def render_images(
    combos: Int[Tensor, "n 4"], image_size: int = 224, style: str = "library"
) -> UInt8[Tensor, "n size size"]:
    """Draw the 2 x 2 grid images of the given shape-index 4-tuples.

    Args:
        combos: Shape indices (top-left, top-right, bottom-left, bottom-right), each in
            ``0..10``.
        image_size: Side of the image in pixels (even, >= 16).
        style: ``library`` (0 background, 255 strokes, cells drawn apart) or
            ``reference`` (:func:`reference_image`: grey levels, white background; one
            channel of the RGB image, whose channels are equal).

    Returns:
        uint8 grey-scale images.
    """
    _check_size(image_size)
    check_choice("style", style, STYLES)
    combos = torch.as_tensor(combos, dtype=torch.long)
    if combos.ndim != 2 or combos.shape[1] != 4 or combos.min() < 0 or combos.max() >= N_SHAPES:
        raise bad_value("combos", tuple(combos.shape), f"must be (n, 4) shape indices in 0..{N_SHAPES - 1}")
    if style == "reference":
        out = np.empty((len(combos), image_size, image_size), dtype=np.uint8)
        for n, combo in enumerate(tqdm(combos.tolist(), desc="drawing (reference style)", leave=False,
                                       disable=len(combos) < 1000)):
            out[n] = np.asarray(reference_image(combo, image_size))[:, :, 0]
        return torch.from_numpy(out)
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
        style: The drawing style (:data:`STYLES`).
    """

    images: UInt8[Tensor, "n size size"] = field(repr=False)
    combos: Int[Tensor, "n 4"] = field(repr=False)
    image_size: int
    path: Path | None = None
    style: str = "library"

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
        index = torch.as_tensor(index).to(self.images.device)
        x = self.images[index].to(torch.float32).div_(255.0).unsqueeze(1).expand(-1, 3, -1, -1)
        mean = torch.tensor(_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def to(self, device: str | torch.device) -> "ShapesDataset":
        """The same dataset with its images on ``device`` (then :meth:`inputs` builds the
        batches there: on a GPU no image crosses the bus after this one copy)."""
        return dataclasses.replace(self, images=self.images.to(device))

    def subset(self, n: int, seed: int = 0) -> "ShapesDataset":
        """``n`` samples drawn without replacement with ``seed`` (kept in dataset order)."""
        check_int("subset", n, low=2, high=len(self))
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        return ShapesDataset(images=self.images[idx], combos=self.combos[idx], image_size=self.image_size,
                             style=self.style)

    def split(self, frac: float = 0.25, seed: int = 0) -> ShapesSplit:
        """A random split: ``int(frac * n)`` samples train, the rest test.

        The same rule and generator as :meth:`grok_interp.Split.random` (a
        ``torch.randperm`` seeded with ``seed``); ``frac=0.25`` gives the paper's 3660
        training images out of 14641.
        """
        frac = check_open_unit("frac", frac)
        check_seed("seed", seed)
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


def _params(image_size: int, style: str = "library") -> dict:
    params = {"dataset": "shapes-sum", "drawing_version": DRAWING_VERSION, "image_size": image_size,
              "shape_weights": list(SHAPE_WEIGHTS)}
    if style != "library":  # the library style keeps the cache key it had before styles existed
        params["style"] = style
    return params


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def load_shapes(
    image_size: int = 224, cache_dir: str | os.PathLike | None = None, cache: bool = True, style: str = "library"
) -> ShapesDataset:
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
        style: Drawing style (:data:`STYLES`); part of the cache key.

    Returns:
        A :class:`ShapesDataset` of 14641 images.
    """
    _check_size(image_size)
    check_choice("style", style, STYLES)
    params = _params(image_size, style)
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    combos = all_combos()
    if not cache:
        return ShapesDataset(images=render_images(combos, image_size, style), combos=combos, image_size=image_size,
                             style=style)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    tag = "" if style == "library" else f"{style}-"
    path = root / f"shapes-{tag}{image_size}-{key}.npz"
    side = path.with_suffix(".json")
    images = _load_cached(path, side, params)
    if images is None:
        log.info("drawing the shapes-sum dataset (%s style) at %d px into %s", style, image_size, path)
        images = render_images(combos, image_size, style).numpy()

        # a file object: numpy does not append ".npz"
        store.atomic_write(path, lambda fh: np.savez_compressed(fh, images=images, combos=combos.numpy()))
        store.write_json(side, {**params, "sha256": _digest(images)})
    return ShapesDataset(images=torch.from_numpy(images), combos=combos, image_size=image_size, path=path,
                         style=style)


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
