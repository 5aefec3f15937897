"""The image branch: grokking on a ResNet-18 with the shapes-sum dataset.

The paper tests its theory outside transformers on images built so that the label is
a sum over parts: a 2 x 2 grid of shapes (blank or a polygon with 3..12 sides), label =
total number of sides. This package draws that dataset (:mod:`.shapes`), wraps
torchvision's ResNet-18 as a TransformerLens ``HookedRootModule`` (:mod:`.resnet`) and
trains it with run directories that :func:`grok_interp.load_run` reads (:mod:`.train`)::

    from grok_interp.vision import train_resnet
    run = train_resnet(preset="cpu", epochs=200, out="runs/resnet-cpu")
    logits, cache = run.model.run_with_cache(run.dataset().inputs(torch.arange(8)))
    cache["hook_pooled"].shape      # (8, 8 * width)
"""

from .resnet import HOOK_NAMES, HookedResNet, build_resnet, load_local_weights, resnet18_width
from .shapes import (
    N_CLASSES,
    N_SHAPES,
    SHAPE_WEIGHTS,
    STYLES,
    ShapesDataset,
    ShapesSplit,
    all_combos,
    default_cache_dir,
    draw_shape,
    load_shapes,
    reference_image,
    reference_vertices,
    render_images,
)
from .train import (
    PRESETS,
    ResNetConfig,
    ResNetRun,
    evaluate,
    feature_uniformity,
    load_resnet_run,
    recalibrate_batchnorm,
    recalibrated_accuracy,
    scale_parameters,
    train_resnet,
)

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
    "HookedResNet",
    "HOOK_NAMES",
    "resnet18_width",
    "build_resnet",
    "load_local_weights",
    "ResNetConfig",
    "ResNetRun",
    "PRESETS",
    "train_resnet",
    "load_resnet_run",
    "feature_uniformity",
    "evaluate",
    "recalibrate_batchnorm",
    "recalibrated_accuracy",
    "scale_parameters",
]
