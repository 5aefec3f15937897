"""Training a hooked ResNet-18 on the shapes-sum dataset, with run directories.

The paper's recipe is the default: Adam, learning rate 1e-3, weight decay 1e-4 (added
to the gradient, as ``torch.optim.Adam`` does), mini-batches of 200 drawn by a
``DataLoader``, cross-entropy, a random 25% of the 14641 images for training. One
history row per evaluation (``step`` = epochs done), with train/test loss and accuracy
in evaluation mode (BatchNorm running statistics) and the pooled-feature uniformity of
:func:`feature_uniformity`.

The run directory has the same files as a transformer run (``config.json`` with
``"kind": "resnet"``, ``data.safetensors``, ``model.safetensors``, ``history.csv``,
``status.json``, ``checkpoints/step_*.safetensors``, ``state-*/``), so
:func:`grok_interp.load_run` and the history tools read it. Weights are saved in
torchvision's state-dict layout (BatchNorm buffers included). Each epoch's shuffle is
drawn from a generator seeded with ``seed * 100003 + epoch``, so a run resumed from a
saved state repeats the uninterrupted run exactly (bit for bit on CPU).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torch.optim.swa_utils import update_bn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from .. import store
from .._validate import bad_value, check_choice, check_float, check_int, check_open_unit, check_seed
from ..errors import RunDirectoryError
from ..sizes import format_bytes, memory_limit
from ..store import DATA, RunStore
from ..config import check_agrees
from ..training import (
    GradientTransform, RunState, Schedule, build_optimizer, flush_denormals, lifecycle, resolve_device, train_loop,
)
from .resnet import HookedResNet, build_resnet
from .shapes import N_CLASSES, SHAPE_WEIGHTS, STYLES, ShapesDataset, ShapesSplit, all_combos, load_shapes

__all__ = [
    "ResNetConfig",
    "ResNetRun",
    "PRESETS",
    "train_resnet",
    "load_resnet_run",
    "feature_uniformity",
    "evaluate",
    "scale_parameters",
]

log = logging.getLogger(__name__)

#: Named settings. ``paper``: the paper's network and images (224 px, width 64).
#: ``cpu``: chosen from ``benchmarks/resnet_epoch.py`` so thousands of epochs fit in
#: hours on two CPU cores (see the docs page on the image branch). ``reference``: the
#: reference code's recipe (``resnet/resnet_test.py`` in Qihuai27/Grokking-Insight):
#: its drawing style, torchvision's ResNet-18 (width 64) with a 52-way head, 3660
#: training images (a seeded random split), Adam with L2 weight decay 1e-4 added to the
#: gradient, lr 1e-3, batch 200, ImageNet normalisation (every input), 20000 epochs,
#: accuracy every 100 epochs, here also with batch statistics (the reference counts
#: training accuracy in training mode). Its image size is a parameter: 224 as in the
#: reference (a GPU job), 32 or 64 on a CPU; the reference's ImageNet weights are
#: ``pretrained=PATH`` (a local file; nothing is downloaded).
PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(image_size=224, width=64, eval_every=1, checkpoint_every=50),
    "cpu": dict(image_size=32, width=16, eval_every=10, checkpoint_every=100),
    "reference": dict(image_size=224, width=64, style="reference", num_classes=52, frac=0.25, optimizer="adam",
                      lr=1e-3, weight_decay=1e-4, batch_size=200, epochs=20000, eval_every=100,
                      checkpoint_every=500, batch_stats_eval=True),
}

#: Logits of the stand-in pretraining head: the shape (one of 11) in each of 4 cells.
PRETRAIN_OUTPUTS = 4 * len(SHAPE_WEIGHTS)


@dataclass
class ResNetConfig:
    """Everything that defines a ResNet shapes-sum run (``config.json`` holds it).

    Args:
        image_size: Image side in pixels (224 in the paper).
        width: Channels after the stem (64: torchvision's ResNet-18 itself).
        frac: Training fraction of the images (random split).
        data_seed: Seed of the split (and of ``subset``).
        subset: Use only this many images (drawn with ``data_seed``); None: all 14641.
        seed: Seed of the initialisation and of the per-epoch shuffles.
        weights_path: Optional local weights file (torchvision layout); never downloaded.
        epochs: Epochs to train.
        lr: Learning rate.
        weight_decay: Weight decay (L2 added to the gradient for ``adam``, decoupled
            for ``adamw``).
        optimizer: ``adam`` (the paper) or ``adamw``.
        batch_size: Training mini-batch size.
        eval_every: History row every N epochs (and at epoch 0 and the last).
        checkpoint_every: Weights and a resume state every N epochs (plus 0, 1, 2, 4, ...).
        eval_batch_size: Batch size of the evaluation passes.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
        style: Drawing style of the images: ``library`` or ``reference`` (the
            reference code's images; see :mod:`grok_interp.vision.shapes`).
        autocast: Run forward passes under ``torch.autocast`` in bfloat16 on the run's
            device (mixed precision: weights, gradients and optimiser state stay float32;
            on a GPU the convolutions use tensor cores). Off: float32 throughout.
        init_scale: Multiplies every parameter of the freshly initialised network
            (Omnigrok's alpha: Liu, Michaud and Tegmark 2022 make MNIST grok with a large
            initial weight norm and weight decay). 1: torchvision's initialisation.
        num_classes: Outputs of the final layer (49 label values, 0..48; the reference
            uses 52). At least 49.
        pretrain_epochs: Epochs of the stand-in for ImageNet pretraining before the
            shapes-sum task (0: none): the same network, with a temporary 44-way head,
            learns which of the 11 shapes sits in each of the four cells of the
            *training* images (four 11-way cross-entropies); then the head is replaced
            by a fresh ``num_classes``-way one and the sum task trains as usual. The
            pretraining's history is ``pretrain.csv`` in the run directory and its
            weights ``pretrained.safetensors``.
        batch_stats_eval: Also evaluate with BatchNorm in training mode (batch
            statistics; the running statistics are left unchanged): columns
            ``train_acc_batch``, ``test_acc_batch``, ``train_loss_batch``,
            ``test_loss_batch``, over batches in a fixed random order. The reference reports
            training accuracy in training mode; eval-mode accuracy swings while the running
            statistics lag shrinking weights.
        eval_sparse: Adaptive evaluation, as the transformer's (``k > 1``; see
            :mod:`grok_interp.training.loop`): at a row step that is not full the
            training images are evaluated (with the batch-statistics columns,
            ``epoch_loss`` and ``epoch_acc``) and the row is held back with a copy of
            the weights and BatchNorm buffers; the test images and the feature
            uniformity (every image) are evaluated every ``k * eval_every`` epochs, at
            every checkpoint and the last epoch, and at the held epochs only where the
            test metrics moved. Every recorded row equals the dense run's (bit for bit
            on CPU). 1 (the default): every row in full.
    """

    image_size: int = 224
    width: int = 64
    frac: float = 0.25
    data_seed: int = 0
    subset: int | None = None
    seed: int = 0
    weights_path: str | None = None
    epochs: int = 3000
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    batch_size: int = 200
    eval_every: int = 1
    checkpoint_every: int = 50
    eval_batch_size: int = 500
    device: str = "auto"
    style: str = "library"
    init_scale: float = 1.0
    autocast: bool = False
    num_classes: int = N_CLASSES
    pretrain_epochs: int = 0
    batch_stats_eval: bool = False
    eval_sparse: int = 1

    #: Field name -> allowed values (checked below, offered by the command line).
    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"optimizer": ("adam", "adamw"), "device": ("cpu", "cuda", "auto"),
                                                     "style": STYLES}
    #: Fields added in each run-directory format, with the value older ``config.json``
    #: files meant by leaving them out (:class:`grok_interp.store.Migrating`).
    ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {
        3: {"style": "library", "init_scale": 1.0, "autocast": False},  # the ResNet recipe search (issue 16)
        # the reference recipe and stand-in pretraining (0.2): a 49-way head, none of them
        5: {"num_classes": 49, "pretrain_epochs": 0, "batch_stats_eval": False},
        6: {"eval_sparse": 1},  # adaptive evaluation for the ResNet (issue 38): older runs' rows are dense
    }

    def __post_init__(self) -> None:
        for name, allowed in self.CHOICES.items():
            check_choice(name, getattr(self, name), allowed)
        check_int("image_size", self.image_size, low=16)
        if self.image_size % 2:
            raise bad_value("image_size", self.image_size, "must be even (a 2 x 2 grid of square cells)")
        check_int("width", self.width, low=1)
        check_open_unit("frac", self.frac)
        check_seed("data_seed", self.data_seed)
        if self.subset is not None:
            check_int("subset", self.subset, low=2, high=11**4)
        check_int("seed", self.seed, low=0, high=2**64 - 1)
        check_int("epochs", self.epochs, low=0)
        self.lr = check_float("lr", self.lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", self.weight_decay, low=0.0)
        check_int("batch_size", self.batch_size, low=1)
        check_int("eval_every", self.eval_every, low=1)
        check_int("eval_sparse", self.eval_sparse, low=1)
        check_int("checkpoint_every", self.checkpoint_every, low=1)
        check_int("eval_batch_size", self.eval_batch_size, low=1)
        self.init_scale = check_float("init_scale", self.init_scale, low=0.0, low_open=True)
        check_int("num_classes", self.num_classes, low=N_CLASSES, high=100_000)
        check_int("pretrain_epochs", self.pretrain_epochs, low=0, high=10**7)
        if not isinstance(self.batch_stats_eval, bool):
            raise bad_value("batch_stats_eval", self.batch_stats_eval, "must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise bad_value("ResNetConfig", sorted(unknown), "unknown keys; allowed: " + ", ".join(sorted(names)))
        return cls(**d)


store.register_config_section("config", ResNetConfig)


# --- measures ----------------------------------------------------------------------
def feature_uniformity(
    features: Float[Tensor, "n d"], labels: Int[Tensor, " n"]
) -> dict[str, float]:
    """How evenly the class means of a representation line up along the label order.

    Let ``mu_y`` be the mean feature vector (here: ``hook_pooled``) of the samples with
    label ``y``, for the label values present, in increasing order ``y_0 < y_1 < ...``,
    and ``d_j = ||mu_{y_{j+1}} - mu_{y_j}||_2`` the distances between consecutive class
    means. This is the paper's MED taken on representations instead of embeddings (the
    labels are sums, not residues, so there is no wrap-around):

    * ``feature_med`` = mean_j d_j;
    * ``feature_med_ratio`` = ``feature_med`` / (mean distance over all pairs of class
      means): scale-free; about 1 when the classes sit in no particular order, and
      ``3 / (K + 1)`` (0.06 for K = 49 classes) when they are evenly spaced on a line;
    * ``feature_cv`` = std_j d_j / mean_j d_j: 0 when consecutive classes are equally
      far apart (uniform spacing).

    Args:
        features: One feature vector per sample.
        labels: Label per sample.

    Returns:
        ``{"feature_med": ..., "feature_med_ratio": ..., "feature_cv": ...}``.
    """
    features = features.to(torch.float64)
    values = labels.unique(sorted=True)
    if len(values) < 3:
        raise bad_value("labels", values.tolist(), "need at least three label values")
    onehot = (labels[:, None] == values[None, :]).to(torch.float64)
    means = (onehot.T @ features) / onehot.sum(0)[:, None]
    steps = (means[1:] - means[:-1]).norm(dim=1)
    pair = torch.cdist(means, means)
    k = len(values)
    mean_pair = pair.sum() / (k * (k - 1))
    med = steps.mean()
    return {
        "feature_med": float(med),
        "feature_med_ratio": float(med / mean_pair) if mean_pair > 0 else float("nan"),
        "feature_cv": float(steps.std(unbiased=False) / med) if med > 0 else float("nan"),
    }


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def evaluate(
    model: HookedResNet, dataset: ShapesDataset, split: ShapesSplit, batch_size: int = 500, autocast: bool = False,
    batch_stats: bool = False, images: str = "all",
) -> dict[str, float]:
    """Loss and accuracy on the train and test images (evaluation mode) and the
    pooled-feature uniformity of :func:`feature_uniformity` over all images
    (``autocast``: forward passes in bfloat16 mixed precision, measures in float64).

    With ``batch_stats`` the loss and accuracy are also taken with BatchNorm in training
    mode (each batch normalised by its own statistics), as ``train_acc_batch`` ...
    ``test_loss_batch``; the running statistics are restored afterwards.

    ``images="train"`` or ``"test"`` passes only those images in evaluation mode: the
    row has only their loss and accuracy, and no feature uniformity (it needs every
    image). The batch-statistics pass always covers every image (its batches mix train
    and test images), so its four columns are the same whatever ``images`` is."""
    was_training = model.training
    try:
        row = _pass(model, dataset, split, batch_size, autocast, train_mode=False, images=images)
        if batch_stats:
            saved = {k: v.clone() for k, v in model.state_dict().items() if "running_" in k or "num_batches" in k}
            try:
                extra = _pass(model, dataset, split, batch_size, autocast, train_mode=True)
            finally:
                model.load_state_dict(saved, strict=False)
            row.update({f"{k}_batch": v for k, v in extra.items() if k in ("train_loss", "test_loss", "train_acc",
                                                                            "test_acc")})
    finally:
        model.train(was_training)
    return row


def _pass(model: HookedResNet, dataset: ShapesDataset, split: ShapesSplit, batch_size: int, autocast: bool,
          train_mode: bool, images: str = "all") -> dict[str, float]:
    """One pass over the images (``all``, or only the ``train`` or ``test`` images of
    ``split``), BatchNorm in evaluation (or training) mode. In training mode each batch
    is normalised by its own statistics, so the batches are a fixed random order
    (seeded), like training mini-batches: consecutive images share shapes, and batches
    in dataset order would have biased statistics. In evaluation mode a sample's values
    do not depend on the other images of its batch, so a subset's are those of the pass
    over every image (bit for bit on CPU, as the tests check; a GPU kernel chosen for
    another batch size may round otherwise)."""
    check_choice("images", images, ("all", "train", "test"))
    model.train(train_mode)
    device = next(model.parameters()).device
    labels = dataset.labels
    n = len(dataset)
    chosen = {"all": None, "train": split.train_indices, "test": split.test_indices}[images]
    m = n if chosen is None else len(chosen)
    order = torch.randperm(m, generator=torch.Generator().manual_seed(0)) if train_mode else torch.arange(m)
    if chosen is not None:
        order = chosen[order]
    losses, correct, pooled = [], [], []
    for start in range(0, m, batch_size):
        idx = order[start : start + batch_size]
        with _autocast(device, autocast):
            logits, feats = model(dataset.inputs(idx).to(device), return_pooled=True)
        logits, feats = logits.float(), feats.float()
        y = labels[idx].to(device)
        losses.append(F.cross_entropy(logits.double(), y, reduction="none").cpu())
        correct.append((logits.argmax(-1) == y).cpu())
        pooled.append(feats.cpu())
    # per-sample values back in dataset order (NaN for images not passed)
    loss = torch.full((n,), float("nan"), dtype=torch.float64).index_put_((order,), torch.cat(losses))
    hit = torch.full((n,), float("nan")).index_put_((order,), torch.cat(correct).float())
    row = {}
    for part, mask in (("train", split.train_mask), ("test", split.test_mask)):
        if images in ("all", part):
            row[f"{part}_loss"], row[f"{part}_acc"] = float(loss[mask].mean()), float(hit[mask].mean())
    if not train_mode and chosen is None:
        row.update(feature_uniformity(torch.cat(pooled), labels))
    return _in_history_order(row)


@torch.no_grad()
def recalibrate_batchnorm(model: HookedResNet, dataset: ShapesDataset, split: ShapesSplit, batch_size: int = 500,
                          seed: int = 0) -> HookedResNet:
    """Set every BatchNorm's running mean and variance to their averages over the
    training images under the current weights, in place ("precise BatchNorm").

    Eval-mode accuracy normalises with running statistics that trail the weights by the
    momentum's horizon; while weights move (or shrink under weight decay) it then reads
    a network other than the one trained, and swings between evaluations. Recalibrated,
    eval mode reads the weights as they are. The training images pass in batches of a
    seeded random order (neighbouring images share shapes), BatchNorm in training mode
    with a cumulative average (``torch.optim.swa_utils.update_bn``: an equal weight per
    batch; a last batch of one image joins the one before). Only the running statistics
    change; the model is left in eval mode.
    """
    check_int("batch_size", batch_size, low=2)
    device = next(model.parameters()).device
    idx = split.train_indices
    if len(idx) < 2:
        raise bad_value("split", f"{len(idx)} training images", "must have at least 2 (BatchNorm needs a batch)")
    order = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
    starts = list(range(0, len(order), batch_size))
    if len(order) - starts[-1] == 1 and len(starts) > 1:  # a last batch of one image has no statistics:
        starts.pop()                                      # it joins the batch before
    ends = starts[1:] + [len(order)]
    batches = (dataset.inputs(order[s:e]).to(device) for s, e in zip(starts, ends))
    update_bn(batches, model)
    return model.eval()


@torch.no_grad()
def recalibrated_accuracy(run: ResNetRun, steps: Sequence[int] | None = None, batch_size: int = 500,
                          dataset: ShapesDataset | None = None) -> pd.DataFrame:
    """Eval-mode loss and accuracy at checkpoints after :func:`recalibrate_batchnorm`:
    one row per step (default every checkpoint) with ``train_loss_recal``,
    ``test_loss_recal``, ``train_acc_recal``, ``test_acc_recal``. The third reading of
    BatchNorm beside eval mode (``test_acc``) and batch statistics (``test_acc_batch``).
    ``dataset``: the full dataset (as :func:`train_resnet` takes it) instead of the cache."""
    steps = run.checkpoint_steps if steps is None else [int(s) for s in steps]
    if dataset is None:
        data = run.dataset()
    else:  # the full dataset, as train_resnet(dataset=) takes it
        _check_full(dataset, run.config)
        data = _take(dataset, run.indices)
    rows = []
    for step in steps:
        model = recalibrate_batchnorm(run.model_at(step), data, run.split, batch_size)
        row = _pass(model, data, run.split, batch_size, autocast=False, train_mode=False, images="all")
        rows.append({"step": step, **{f"{k}_recal": row[k] for k in ("train_loss", "test_loss", "train_acc",
                                                                      "test_acc")}})
    return pd.DataFrame(rows, columns=["step", "train_loss_recal", "test_loss_recal", "train_acc_recal",
                                       "test_acc_recal"])


def _in_history_order(row: dict[str, float]) -> dict[str, float]:
    order = ("train_loss", "test_loss", "train_acc", "test_acc")
    return {**{k: row[k] for k in order if k in row}, **{k: v for k, v in row.items() if k not in order}}


# --- the run object ------------------------------------------------------------------
@dataclass
class ResNetRun:
    """A trained ResNet with its split, configuration and history.

    Attributes:
        model: The :class:`HookedResNet` after training.
        config: Its :class:`ResNetConfig`.
        history: One row per evaluation: step (= epochs done), train/test loss and
            accuracy, ``epoch_loss`` (mean mini-batch loss in training mode) and the
            feature-uniformity columns.
        indices: Which of the 14641 images the run uses (all, or a ``subset``).
        split: The train/test split over those images.
        path: The run directory, if the run lives on disk.
    """

    model: HookedResNet
    config: ResNetConfig
    history: pd.DataFrame
    indices: Int[Tensor, " n"] = field(repr=False)
    split: ShapesSplit = field(repr=False)
    path: Path | None = None
    checkpoints: dict[int, dict[str, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def combos(self) -> Int[Tensor, "n 4"]:
        """Shape indices of the run's images."""
        return all_combos()[self.indices]

    @property
    def labels(self) -> Int[Tensor, " n"]:
        """Labels of the run's images (sum of the four shapes' weights)."""
        return torch.tensor(SHAPE_WEIGHTS)[self.combos].sum(1)

    def dataset(self, cache_dir: str | os.PathLike | None = None) -> ShapesDataset:
        """The run's images (from the dataset cache, drawn when missing)."""
        full = load_shapes(self.config.image_size, cache_dir=cache_dir, style=self.config.style)
        return _take(full, self.indices)

    @property
    def checkpoint_steps(self) -> list[int]:
        """Epochs with saved weights, ascending."""
        if self.path is not None:
            return RunStore(self.path).checkpoint_steps()
        return sorted(self.checkpoints)

    def weights_at(self, step: int) -> dict[str, Tensor]:
        """The state dict (torchvision layout) saved after ``step`` epochs."""
        if step not in self.checkpoint_steps:
            raise bad_value("step", step, f"has no checkpoint; saved steps: {self.checkpoint_steps}")
        if self.path is not None:
            return RunStore(self.path).read_checkpoint(step)
        return self.checkpoints[step]

    def model_at(self, step: int) -> HookedResNet:
        """A fresh model holding the weights saved after ``step`` epochs (eval mode)."""
        model = build_resnet(self.config.width, self.config.num_classes, seed=self.config.seed)
        _load_state(model, self.weights_at(step))
        return model.to(next(self.model.parameters()).device).eval()

    def __repr__(self) -> str:
        last = self.history.iloc[-1] if len(self.history) else None
        tail = "" if last is None else f", epoch={int(last['step'])}, test_acc={last['test_acc']:.3f}"
        c = self.config
        return f"ResNetRun(image_size={c.image_size}, width={c.width}{tail}, path={self.path})"


def _take(full: ShapesDataset, indices: Tensor) -> ShapesDataset:
    if len(indices) == len(full):
        return full
    return ShapesDataset(images=full.images[indices], combos=full.combos[indices], image_size=full.image_size,
                         style=full.style)


def _net_state(model: torch.nn.Module) -> dict[str, Tensor]:
    """What a ResNet checkpoint holds: the network's state dict (torchvision layout,
    BatchNorm buffers included)."""
    net = model.net
    assert isinstance(net, torch.nn.Module)
    return net.state_dict()


def _state(model: HookedResNet) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in _net_state(model).items()}


def _load_state(model: HookedResNet, state: dict[str, Tensor]) -> None:
    try:
        model.net.load_state_dict(state)
    except RuntimeError as exc:
        raise RunDirectoryError(f"saved weights do not fit the configured ResNet: {exc}") from exc


# --- data loading ------------------------------------------------------------------------
class _Batches(Dataset):
    """Index a dataset by a list of sample positions: one call returns a whole batch."""

    def __init__(self, dataset: ShapesDataset, positions: Tensor) -> None:
        self.dataset, self.positions = dataset, positions
        self.labels = dataset.labels

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, batch: list[int]) -> tuple[Tensor, Tensor]:
        idx = self.positions[torch.as_tensor(batch)]
        return self.dataset.inputs(idx), self.labels[idx]


def epoch_loader(dataset: ShapesDataset, split: ShapesSplit, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """The training mini-batches of ``epoch``: a shuffle drawn from a generator seeded
    with ``seed * 100003 + epoch`` (so any epoch can be replayed after a resume)."""
    gen = torch.Generator().manual_seed(seed * 100003 + epoch)
    batches = _Batches(dataset, split.train_indices)
    sampler = BatchSampler(RandomSampler(range(len(batches)), generator=gen), batch_size, drop_last=False)
    return DataLoader(batches, sampler=sampler, batch_size=None)


# --- run directory ------------------------------------------------------------------------
def _write_static(out: RunStore, config: ResNetConfig, indices: Tensor, split: ShapesSplit, labels: Tensor) -> None:
    out.write_config({  # first: a writer killed before the data leaves a run with nothing trained
        "kind": "resnet",
        "grok_interp": {"format": store.FORMAT_VERSION, "torchvision": version("torchvision")},
        "config": config.to_dict(),
    })
    out.write_data({"indices": indices, "labels": labels, "train_mask": split.train_mask.to(torch.uint8)})


def _read_config(path: Path) -> ResNetConfig:
    config, _ = lifecycle.read_saved_config(path, "resnet", {"config": ResNetConfig},
                                            lambda sections: ResNetConfig.from_dict(sections["config"]))
    return config


def _read_data(path: Path, config: ResNetConfig) -> tuple[Tensor, ShapesSplit]:
    file = path / DATA
    shapes = store.tensor_shapes(file)
    n = config.subset if config.subset is not None else 11**4
    for name in ("indices", "labels", "train_mask"):
        if shapes.get(name) != (n,):
            raise RunDirectoryError(f"run file {file}: {name} has shape {shapes.get(name)}, config.json says {n} images")
    data = store.read_tensors(file)
    return data["indices"].long(), ShapesSplit(kind="random", frac=config.frac, seed=config.data_seed,
                                               train_mask=data["train_mask"].bool())


def check_fits(config: ResNetConfig, device: str | torch.device = "cpu", training: bool = True) -> None:
    """Refuse (one line, with the estimate) a ResNet whose images or width cannot fit in memory."""
    params = 11_200_000 * (config.width / 64) ** 2 + 512 * config.width / 64 * config.num_classes
    images = 11**4 * config.image_size**2 if training else 0  # uint8, all drawn at once
    acts = 4 * min(config.batch_size, 11**4) * config.width * config.image_size**2 if training else 0
    total = 4 * params * (4 if training else 1) + images + acts
    limit = memory_limit(device)
    if total > limit:
        name, value = ("width", config.width) if 16 * params >= images + acts else ("image_size", config.image_size)
        raise bad_value(name, value, f"the run needs at least {format_bytes(total)} but "
                                     f"{torch.device(device).type} memory is {format_bytes(limit)}")


# --- training ---------------------------------------------------------------------------
@torch.no_grad()
def scale_parameters(model: torch.nn.Module, alpha: float) -> None:
    """Multiply every parameter of ``model`` by ``alpha`` in place (Omnigrok's initial
    weight scale): convolution and linear weights and biases and the BatchNorm affine
    parameters; buffers (BatchNorm running statistics) are left alone. The global
    parameter norm is multiplied by ``alpha`` exactly."""
    if alpha == 1.0:
        return
    for p in model.parameters():
        p.mul_(alpha)


def _build_model(config: ResNetConfig, device: torch.device | str = "cpu") -> HookedResNet:
    """The run's freshly initialised network (seeded; local weights if given; scaled)."""
    model = build_resnet(config.width, config.num_classes, seed=config.seed, weights_path=config.weights_path).to(device)
    scale_parameters(model, config.init_scale)
    return model


def _make_optimizer(model: HookedResNet, config: ResNetConfig) -> torch.optim.Optimizer:
    return build_optimizer(model.parameters(), config.optimizer, lr=config.lr, weight_decay=config.weight_decay)


def _check_full(dataset: ShapesDataset, config: ResNetConfig) -> None:
    """A dataset a user hands in must be every image, drawn as ``config`` draws them."""
    if dataset.image_size != config.image_size or len(dataset) != 11**4 or dataset.style != config.style:
        raise bad_value("dataset", f"{len(dataset)} images of {dataset.image_size} px ({dataset.style} style)",
                        f"must be the full dataset (all {11**4} images) at image_size={config.image_size}, "
                        f"style={config.style!r}")


def _select(dataset: ShapesDataset | None, config: ResNetConfig, cache_dir: Any) -> tuple[ShapesDataset, Tensor]:
    if dataset is None:
        dataset = load_shapes(config.image_size, cache_dir=cache_dir, style=config.style)
    else:
        _check_full(dataset, config)
    if config.subset is None:
        return dataset, torch.arange(len(dataset))
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(config.data_seed))
    indices = indices[: config.subset].sort().values
    return _take(dataset, indices), indices


_RESUMABLE = {"epochs", "device", "eval_batch_size"}

ResNetCallback = Callable[[int, HookedResNet, dict[str, Any]], "dict[str, float] | None"]


def train_resnet(
    config: ResNetConfig | None = None,
    *,
    preset: str | None = None,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    dataset: ShapesDataset | None = None,
    cache_dir: str | os.PathLike | None = None,
    callbacks: Iterable[ResNetCallback] = (),
    progress: bool = True,
    gradient_transforms: Iterable[GradientTransform] = (),
    pretrained: str | os.PathLike | None = None,
    flush_denormal: bool = True,
    **options: Any,
) -> ResNetRun:
    """Train a hooked ResNet-18 on the shapes-sum images and return the run.

    Args:
        config: A complete :class:`ResNetConfig`; a ``preset`` or option given beside it
            must agree with it (a conflict is an error).
        preset: ``paper``, ``cpu`` or ``reference`` (see :data:`PRESETS`); options
            override it.
        out: Run directory written as training goes (None: in memory only).
        resume: Continue the run in ``out`` from its latest resume state; only
            ``epochs``, ``device`` and ``eval_batch_size`` may differ from the saved config.
            Without ``config``, the saved configuration is used, changed only by the
            options given (``train_resnet(out=d, resume=True, epochs=5000)``).
        dataset: The full dataset at the configured image size (default: loaded from
            the cache with :func:`~grok_interp.vision.load_shapes`).
        cache_dir: Dataset cache directory (default ``~/.cache/grok_interp``).
        callbacks: ``cb(epoch, model, context) -> dict | None`` at every history row;
            ``context`` holds ``dataset``, ``split`` and ``device``; values become columns.
        progress: Show a bar over epochs and a transient bar over each epoch's batches.
        gradient_transforms: ``fn(params)`` changing the gradients in place before
            every mini-batch's optimiser step (see :class:`grok_interp.training.RunState`).
        pretrained: A local file of torchvision ResNet-18 weights (for instance
            ImageNet's, saved where you have them): the same as ``weights_path``; every
            tensor of the right shape is loaded, the 1000-way ``fc`` is not. Nothing is
            downloaded.
        flush_denormal: Train with subnormal floats flushed to zero
            (:func:`grok_interp.training.flush_denormals`; the setting found is restored
            on return). Weight decay drives many weights and Adam moments into float32's
            subnormal range, where a CPU computes slowly: a late epoch of the image
            campaign took 1.85 times longer without it (``benchmarks/denormals.py``). A
            flushed value counts as zero (a change below 1.2e-38); the run is not bit
            for bit the IEEE one, and Adam can carry the change further (see
            ``docs/speed.md``). An execution setting like ``device``, not part of the
            config.
        **options: Fields of :class:`ResNetConfig`.

    Returns:
        A :class:`ResNetRun`.
    """
    if pretrained is not None:
        if options.get("weights_path") not in (None, str(pretrained)):
            raise bad_value("pretrained", str(pretrained), "is weights_path under another name: give one of them")
        options["weights_path"] = str(pretrained)
    given = {**(PRESETS[check_choice("preset", preset, tuple(PRESETS))] if preset is not None else {}), **options}
    if config is not None:
        check_agrees(config.to_dict(), given, lambda key, value: ResNetConfig.from_dict({key: value}))
    elif resume and out is not None and store.is_run_dir(out):
        # the saved run, changed only as asked (as train_hooked resumes): not the defaults
        config = ResNetConfig.from_dict({**_read_config(Path(out)).to_dict(), **given})
    else:
        config = ResNetConfig(**given)
    device = resolve_device(config.device)
    check_fits(config, device)
    data, indices = _select(dataset, config, cache_dir)
    split = data.split(config.frac, config.data_seed)
    model = _build_model(config, device)
    optimizer = _make_optimizer(model, config)
    rows: list[dict[str, Any]] = []
    start, train_s = 0, 0.0
    with lifecycle.opened(out, resume) as (out_store, resuming):  # an error: a directory made for it and left empty goes
        if resuming:
            assert out_store is not None
            start, rows, train_s = _restore(out_store, config, split, model, optimizer, indices, data.labels)
        elif out_store is not None:
            _write_static(out_store, config, indices, split, data.labels)
    checkpoints = lifecycle.Checkpoints(out_store, weights_of=_net_state)  # background writes, by construction
    try:
        if start == 0 and config.pretrain_epochs:  # a resumed state holds the pretrained weights already
            with flush_denormals(flush_denormal):  # as the training loop (pretraining runs outside it)
                pre = pretrain_positions(model, data, split, config, device, progress)
            if out_store is not None:
                store.write_csv(out_store.file(PRETRAIN_HISTORY), pre)
                store.write_tensors(out_store.file(PRETRAINED), _state(model))
            optimizer = _make_optimizer(model, config)  # the sum task's optimiser starts afresh
        return _train(config, model, optimizer, data, indices, split, device, checkpoints, start, rows, callbacks,
                      progress, gradient_transforms, train_s, flush_denormal)
    finally:
        checkpoints.close()


#: Files of the stand-in pretraining in a run directory.
PRETRAIN_HISTORY, PRETRAINED = "pretrain.csv", "pretrained.safetensors"


def pretrain_positions(
    model: HookedResNet, data: ShapesDataset, split: ShapesSplit, config: ResNetConfig, device: torch.device,
    progress: bool = False,
) -> pd.DataFrame:
    """The stand-in for ImageNet pretraining: ``config.pretrain_epochs`` epochs in which
    ``model`` (its ``fc`` swapped for a temporary 44-way head) learns the shape in each
    of the four cells of the training images (the sum of four 11-way cross-entropies),
    with the run's optimiser settings and batch size. Test images are never seen, so no
    test label leaks. Afterwards the model's own fresh ``fc`` is put back.

    Returns:
        One row per epoch: ``epoch``, ``loss`` (training mode, mean over mini-batches)
        and ``cell_acc`` (share of the 4 x n_train cells named right, evaluation mode).
    """
    net = model.net
    head = net.fc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 7919)
        net.fc = torch.nn.Linear(head.in_features, PRETRAIN_OUTPUTS).to(device)
    optimizer = _make_optimizer(model, config)
    combos = data.combos
    rows = []
    try:
        for epoch in tqdm(range(1, config.pretrain_epochs + 1), desc="pretraining", disable=not progress):
            model.train()
            total, count = 0.0, 0
            # the shuffle of epoch e is the sum task's epoch -e's: never one it will draw
            gen = torch.Generator().manual_seed(config.seed * 100003 - epoch)
            order = split.train_indices[torch.randperm(split.n_train, generator=gen)]
            for i in range(0, len(order), config.batch_size):
                idx = order[i : i + config.batch_size]
                with _autocast(device, config.autocast):
                    logits = model(data.inputs(idx).to(device))
                loss = _cells_loss(logits.float(), combos[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            rows.append({"epoch": epoch, "loss": total / count, "cell_acc": _cell_accuracy(model, data, split, config,
                                                                                           device)})
    finally:
        net.fc = head
    return pd.DataFrame(rows)


def _cells_loss(logits: Tensor, combos: Tensor) -> Tensor:
    return sum(F.cross_entropy(logits[:, 11 * c : 11 * (c + 1)], combos[:, c]) for c in range(4))  # type: ignore[return-value]


@torch.no_grad()
def _cell_accuracy(model: HookedResNet, data: ShapesDataset, split: ShapesSplit, config: ResNetConfig,
                   device: torch.device) -> float:
    model.eval()
    hits, total = 0, 0
    for i in range(0, split.n_train, config.eval_batch_size):
        idx = split.train_indices[i : i + config.eval_batch_size]
        with _autocast(device, config.autocast):
            logits = model(data.inputs(idx).to(device)).float()
        pred = torch.stack([logits[:, 11 * c : 11 * (c + 1)].argmax(-1) for c in range(4)], 1)
        hits += int((pred == data.combos[idx].to(device)).sum())
        total += 4 * len(idx)
    return hits / total


def _train(
    config: ResNetConfig, model: HookedResNet, optimizer: torch.optim.Optimizer, data: ShapesDataset,
    indices: Tensor, split: ShapesSplit, device: torch.device, checkpoints: lifecycle.Checkpoints, start: int,
    rows: list[dict[str, Any]], callbacks: Iterable[ResNetCallback], progress: bool,
    gradient_transforms: Iterable[GradientTransform], train_s: float = 0.0, flush_denormal: bool = True,
) -> ResNetRun:
    path = checkpoints.store.path if checkpoints.store is not None else None
    if device.type == "cuda":  # the images cross to the GPU once, not every batch
        data = data.to(device)
    ctx = {"dataset": data, "split": split, "device": device}

    def write_history(state: RunState) -> None:
        r = state.history[-1]
        log.info("epoch %d: train_acc %.4f test_acc %.4f test_loss %.4f feature_med_ratio %.4f", r["step"],
                 r["train_acc"], r["test_acc"], r["test_loss"], r["feature_med_ratio"])
        checkpoints.write_history(state.history)

    state = RunState(
        model=model, optimizer=optimizer,
        schedule=Schedule(steps=config.epochs, lr=config.lr, eval_every=config.eval_every,
                          checkpoint_every=config.checkpoint_every, eval_at_checkpoints=True,
                          eval_sparse=config.eval_sparse),
        history=rows, step=start, callbacks=list(callbacks), context=ctx, on_checkpoint=checkpoints.save,
        on_row=write_history,
        gradient_transforms=list(gradient_transforms), train_s=train_s, evaluated_by=_params_and_buffers,
    )
    train_loop([state], EpochStep(data, split, config, device, progress), progress=progress, desc="epochs",
               flush_denormal=flush_denormal)
    model.eval()
    checkpoints.finish(state.step, state.train_s, history=state.history)
    return ResNetRun(model=model, config=config, history=pd.DataFrame(state.history), indices=indices, split=split,
                     path=path, checkpoints=checkpoints.memory)


def _params_and_buffers(state: RunState) -> list[Tensor]:
    """What a ResNet's evaluation depends on: its trained parameters and its BatchNorm
    buffers (running statistics), which a held row must copy."""
    return [*state.params, *state.model.buffers()]


class EpochStep:
    """The ResNet's step for :func:`grok_interp.training.train_loop`: one epoch of
    mini-batches (shuffled by :func:`epoch_loader`), each an optimiser step through
    :meth:`~grok_interp.training.RunState.optimizer_step`. A history row evaluates the
    model on all images (:func:`evaluate`) and adds ``epoch_loss``, the mean mini-batch
    loss of the epoch just trained and ``epoch_acc``, the share of its mini-batch samples
    classified right in training mode (the reference's training accuracy; NaN at epoch 0).

    With ``eval_sparse > 1`` it is adaptive: :meth:`train_rows` evaluates the training
    images (and the batch-statistics pass, if asked), :meth:`test_rows` the test images
    and the feature uniformity, which needs every image."""

    def __init__(self, data: ShapesDataset, split: ShapesSplit, config: ResNetConfig, device: torch.device,
                 progress: bool) -> None:
        self.data, self.split, self.config, self.device, self.progress = data, split, config, device, progress
        self.adaptive = config.eval_sparse > 1
        self.epoch_loss = float("nan")
        self.epoch_acc = float("nan")

    def forward(self, states: Sequence[RunState]) -> None:
        return None

    def evaluate(self, states: Sequence[RunState], due: list[int], out: None) -> list[dict[str, Any]]:
        return [{**evaluate(states[i].model, self.data, self.split, self.config.eval_batch_size,
                            self.config.autocast, batch_stats=self.config.batch_stats_eval),
                 "epoch_loss": self.epoch_loss, "epoch_acc": self.epoch_acc} for i in due]

    def train_rows(self, states: Sequence[RunState], due: list[int], out: None) -> list[dict[str, Any]]:
        """Loss and accuracy on the training images (evaluation mode), the
        batch-statistics columns if configured, and the epoch's ``epoch_loss`` and
        ``epoch_acc``: what a held row keeps."""
        cfg = self.config
        return [{**evaluate(states[i].model, self.data, self.split, cfg.eval_batch_size, cfg.autocast,
                            batch_stats=cfg.batch_stats_eval, images="train"),
                 "epoch_loss": self.epoch_loss, "epoch_acc": self.epoch_acc} for i in due]

    def test_rows(self, states: Sequence[RunState], due: list[int]) -> list[dict[str, Any]]:
        """Loss and accuracy on the test images and the feature uniformity, of the
        models as they are now (one evaluation-mode pass over every image, the dense
        row's own, so the values are the dense row's)."""
        cfg = self.config
        rows = []
        for i in due:
            row = evaluate(states[i].model, self.data, self.split, cfg.eval_batch_size, cfg.autocast)
            rows.append({k: v for k, v in row.items() if k not in ("train_loss", "train_acc")})
        return rows

    def update(self, states: Sequence[RunState], going: list[int], out: None) -> None:
        for i in going:
            state, cfg = states[i], self.config
            epoch = state.step + 1
            state.model.train()
            total, count, hits = 0.0, 0, 0
            loader = epoch_loader(self.data, self.split, cfg.batch_size, cfg.seed, epoch)
            for x, y in tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not self.progress):
                x, y = x.to(self.device), y.to(self.device)
                with _autocast(self.device, cfg.autocast):
                    logits = state.model(x)
                loss = F.cross_entropy(logits.float(), y)
                state.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                state.optimizer_step()
                total += loss.item() * len(y)
                hits += int((logits.argmax(-1) == y).sum())
                count += len(y)
            self.epoch_loss, self.epoch_acc = total / count, hits / count


def _restore(
    rs: RunStore, config: ResNetConfig, split: ShapesSplit, model: HookedResNet, optimizer: torch.optim.Optimizer,
    indices: Tensor, labels: Tensor,
) -> tuple[int, list[dict[str, Any]], float]:
    """Validate the run in ``rs`` and load its newest consistent resume state; only
    then record a changed number of epochs."""
    path = rs.path
    saved = _read_config(path)
    a, b = saved.to_dict(), config.to_dict()
    diffs = lifecycle.config_diffs(a, b, _RESUMABLE)
    if diffs:
        raise bad_value("resume", str(path), "the saved run has other settings (" + "; ".join(diffs) + ")")
    if lifecycle.nothing_trained(rs):  # killed before its first checkpoint
        _write_static(rs, config, indices, split, labels)
        return 0, [], 0.0
    _, saved_split = _read_data(path, saved)
    if not torch.equal(saved_split.train_mask, split.train_mask):
        raise RunDirectoryError(f"run file {rs.file(DATA)}: train mask differs from the rebuilt split")

    def load(state: store.ResumeState) -> None:
        _load_state(model, state.weights)
        try:
            optimizer.load_state_dict(state.optimizer_state)
        except (ValueError, KeyError, RuntimeError) as exc:
            raise RunDirectoryError(f"resume state {state.path} does not fit the configured optimiser: {exc}") from exc

    state = lifecycle.restore_newest(rs, load, eval_every=config.eval_every, eval_sparse=config.eval_sparse)
    if state is not None:
        lifecycle.check_not_behind("epochs", b["epochs"], state, path, unit="epoch")
    if a["epochs"] != b["epochs"] or "extending" in rs.read_status():

        def rewrite_config() -> None:
            meta = rs.read_meta()
            meta["config"] = b
            rs.write_config(meta)

        lifecycle.record_extension(rs, state, {"config": {"epochs": b["epochs"]}}, rewrite_config)
    if state is None:
        return 0, [], 0.0
    log.info("resuming %s from epoch %d", path, state.step)
    return state.step, state.history.to_dict("records"), state.train_s


def load_resnet_run(path: str | os.PathLike, device: str = "cpu") -> ResNetRun:
    """Load a ResNet run directory (finished, or its newest consistent resume state if
    unfinished); the store's ``resnet`` loader.

    Raises:
        RunDirectoryError: naming the missing, corrupt, inconsistent or hostile file.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirectoryError(f"run directory {path} does not exist")
    config = _read_config(path)
    indices, split = _read_data(path, config)
    check_fits(config, resolve_device(device), training=False)
    model = build_resnet(config.width, config.num_classes, seed=config.seed)
    w, history, _ = RunStore(path).read_latest(eval_every=config.eval_every, eval_sparse=config.eval_sparse)
    _load_state(model, w)
    model = model.to(resolve_device(device)).eval()
    return ResNetRun(model=model, config=config, history=history, indices=indices, split=split, path=path)


store.register_loader("resnet", load_resnet_run)
lifecycle.register_run_kind("resnet", lifecycle.RunKind(
    name="resnet", config_class=ResNetConfig, resume_changeable=frozenset(_RESUMABLE), build_model=_build_model,
    build_optimizer=_make_optimizer, step_function=EpochStep, write_static=_write_static, weights_of=_net_state,
    result=ResNetRun, train=train_resnet,
))
