"""ResNet-18 as a TransformerLens ``HookedRootModule``.

:class:`HookedResNet` wraps a torchvision ResNet-18 (kept whole as ``.net``, so its
state dict is torchvision's own layout) and adds hook points between its stages::

    hook_stem     after conv1 / bn1 / relu / maxpool   (batch, w, H/4, W/4)
    hook_layer1   after residual stage 1               (batch, w, H/4, W/4)
    hook_layer2   after residual stage 2               (batch, 2w, H/8, W/8)
    hook_layer3   after residual stage 3               (batch, 4w, H/16, W/16)
    hook_layer4   after residual stage 4               (batch, 8w, H/32, W/32)
    hook_pooled   global-average-pooled features       (batch, 8w)
    hook_logits   class scores                         (batch, num_classes)

(``w = 64`` for the standard network; ``H/32`` is rounded up by the strided
convolutions.) ``run_with_cache`` and ``run_with_hooks`` work as on a transformer.

The default network is exactly ``torchvision.models.resnet18(weights=None,
num_classes=...)``. torchvision fixes its widths (64, 128, 256, 512), so for CPU-sized
experiments :func:`resnet18_width` builds the same topology - the same torchvision
``BasicBlock``s, ``[2, 2, 2, 2]`` of them, the same stem, strides and initialisation -
with ``width`` channels after the stem instead of 64 (stages ``w, 2w, 4w, 8w``).
Nothing is ever downloaded: pretrained weights come only from a local file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torchvision.models import resnet18
from torchvision.models.resnet import BasicBlock, ResNet

from .. import store
from ..tl_backend import HookedRootModule, HookPoint
from .._validate import bad_value, check_int

__all__ = ["HookedResNet", "resnet18_width", "build_resnet", "load_local_weights", "HOOK_NAMES"]

log = logging.getLogger(__name__)

HOOK_NAMES = ("hook_stem", "hook_layer1", "hook_layer2", "hook_layer3", "hook_layer4", "hook_pooled", "hook_logits")


class _WidthResNet(ResNet):
    """torchvision's ResNet with the stem width ``width`` instead of 64.

    Built from torchvision's own ``BasicBlock`` and ``ResNet._make_layer``; only the
    channel counts differ, and the initialisation follows ``ResNet.__init__`` (Kaiming
    normal, fan-out, for convolutions; BatchNorm weight 1, bias 0; PyTorch's default
    for the final linear layer).
    """

    def __init__(self, width: int, num_classes: int) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # BasicBlock only checks this; the widths come from `planes`
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def resnet18_width(width: int = 64, num_classes: int = 49) -> ResNet:
    """A ResNet-18 with ``width`` channels after the stem.

    ``width=64`` returns exactly ``torchvision.models.resnet18(weights=None,
    num_classes=num_classes)``; other widths the same topology, narrower.
    """
    check_int("width", width, low=1)
    check_int("num_classes", num_classes, low=2)
    if width == 64:
        return resnet18(weights=None, num_classes=num_classes)
    return _WidthResNet(width, num_classes)


class HookedResNet(HookedRootModule):
    """A torchvision ResNet-18 with TransformerLens hook points between its stages.

    Args:
        net: The torchvision ResNet to wrap (kept as ``self.net``; its parameters and
            state dict are unchanged, under the prefix ``net.``).

    Example:
        >>> model = HookedResNet(resnet18_width(8, num_classes=49))
        >>> logits, cache = model.run_with_cache(torch.zeros(2, 3, 32, 32))
        >>> logits.shape, cache["hook_pooled"].shape
        (torch.Size([2, 49]), torch.Size([2, 64]))
    """

    def __init__(self, net: ResNet) -> None:
        super().__init__()
        self.net = net
        self.hook_stem = HookPoint()
        self.hook_layer1 = HookPoint()
        self.hook_layer2 = HookPoint()
        self.hook_layer3 = HookPoint()
        self.hook_layer4 = HookPoint()
        self.hook_pooled = HookPoint()
        self.hook_logits = HookPoint()
        self.setup()

    @property
    def width(self) -> int:
        """Channels after the stem (64 for the standard ResNet-18)."""
        return self.net.conv1.out_channels

    @property
    def num_classes(self) -> int:
        return self.net.fc.out_features

    def forward(
        self, x: Float[Tensor, "batch 3 height width"], *, return_pooled: bool = False
    ) -> Float[Tensor, "batch num_classes"] | tuple[Float[Tensor, "batch num_classes"], Float[Tensor, "batch d_pooled"]]:
        """Class scores (and, with ``return_pooled``, the pooled features too)."""
        n = self.net
        x = self.hook_stem(n.maxpool(n.relu(n.bn1(n.conv1(x)))))
        x = self.hook_layer1(n.layer1(x))
        x = self.hook_layer2(n.layer2(x))
        x = self.hook_layer3(n.layer3(x))
        x = self.hook_layer4(n.layer4(x))
        pooled = self.hook_pooled(torch.flatten(n.avgpool(x), 1))
        logits = self.hook_logits(n.fc(pooled))
        return (logits, pooled) if return_pooled else logits


def load_local_weights(net: ResNet, path: str | os.PathLike) -> list[str]:
    """Load a local weights file into a torchvision ResNet; never downloads anything.

    Accepts ``.safetensors`` or a ``torch.save`` state dict (read with
    ``weights_only=True``), in torchvision's layout (keys may carry a ``net.`` prefix).
    Tensors whose shape does not fit - typically the 1000-class ImageNet ``fc`` - are
    skipped, so the final layer stays new, as in the paper.

    Returns:
        The names of the skipped tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise bad_value("weights_path", str(path), "is not a file (weights are only read from local files)")
    # Both readers refuse pickled objects and name the file when it is corrupt or hostile.
    state = store.read_tensors(path) if path.suffix == ".safetensors" else store.read_torch(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise bad_value("weights_path", str(path), "must hold a state dict of tensors")
    state = {k.removeprefix("net."): v for k, v in state.items()}
    own = net.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise bad_value("weights_path", str(path), f"holds tensors this ResNet lacks: {unknown[:5]}")
    fit = {k: v for k, v in state.items() if v.shape == own[k].shape}
    skipped = sorted(set(own) - set(fit))
    net.load_state_dict(fit, strict=False)
    if skipped:
        log.info("weights file %s: kept the fresh init for %s", path, skipped)
    return skipped


def build_resnet(
    width: int = 64, num_classes: int = 49, seed: int = 0, weights_path: str | os.PathLike | None = None
) -> HookedResNet:
    """A :class:`HookedResNet` initialised with ``seed`` (global RNG left untouched),
    optionally loaded from a local weights file."""
    check_int("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = resnet18_width(width, num_classes)
    if weights_path is not None:
        load_local_weights(net, weights_path)
    return HookedResNet(net)
