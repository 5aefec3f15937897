"""The reference recipe's ResNet-18 run end to end on a GPU: resumable, mixed precision, epochs per second.

Trains the ``reference`` preset by default (224 px images in the reference code's
drawing, torchvision's ResNet-18 with a 52-way head, Adam lr 1e-3 with coupled weight
decay 1e-4, batch 200, a seeded split of 3660 training images, accuracy every 100
epochs) with ``device="auto"`` and, on CUDA, bfloat16 autocast
(``ResNetConfig.autocast``; weights and optimiser state stay float32) - the setting a
lent GPU should run. ``--pretrained PATH`` starts from a local file of torchvision
ResNet-18 weights (the reference used ImageNet's; nothing is downloaded);
``--pretrain-epochs N`` uses the built-in stand-in instead; ``--preset paper`` trains the
library's 224 px preset. Rerun the same command to continue from the newest resume
state; raise ``--epochs`` to train on. Every history row records the wall clock
(``clock``), so the script prints the epochs per second of this sitting; the last line
is one JSON object for scripts.

    # on a GPU machine (draws the 224 px dataset into the cache first: ~30 s)
    python examples/resnet_paper_gpu.py --out runs/resnet-ref --pretrained resnet18-imagenet.safetensors --epochs 3000
    # the same run, continued later
    python examples/resnet_paper_gpu.py --out runs/resnet-ref --pretrained resnet18-imagenet.safetensors --epochs 6000
    # no weights file: 50 epochs of the built-in stand-in pretraining first
    python examples/resnet_paper_gpu.py --out runs/resnet-ref-standin --pretrain-epochs 50
    # a CPU smoke test (seconds): tiny images, a subset, float32
    python examples/resnet_paper_gpu.py --out /tmp/rp --tiny --epochs 3
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from grok_interp.training import resolve_device
from grok_interp.vision import train_resnet

#: A CPU-sized stand-in for the paper preset, for smoke tests.
TINY = dict(image_size=16, width=4, subset=200, batch_size=50, eval_batch_size=200, checkpoint_every=2)


def clock(epoch: int, model, context) -> dict[str, float]:
    """A history column: the wall clock (s since the epoch) when the row was recorded."""
    return {"clock": time.time()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/resnet-paper"))
    ap.add_argument("--epochs", type=int, default=3000)
    ap.add_argument("--preset", default="reference", choices=["reference", "paper"],
                    help="reference: the reference code's recipe (its drawing, 52-way head, seeded split, "
                         "accuracy every 100 epochs, batch statistics too); paper: the library's 224 px preset")
    ap.add_argument("--pretrained", type=Path, default=None,
                    help="a local file of torchvision ResNet-18 weights (ImageNet, as the reference); "
                         "nothing is downloaded")
    ap.add_argument("--pretrain-epochs", type=int, default=0,
                    help="epochs of the built-in stand-in pretraining when there is no weights file")
    ap.add_argument("--eval-every", type=int, default=None,
                    help="history row every N epochs (default: the preset's: reference 100, paper 1)")
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--autocast", choices=["auto", "on", "off"], default="auto",
                    help="bfloat16 mixed precision (auto: on CUDA only)")
    ap.add_argument("--style", default=None, choices=["library", "reference"],
                    help="the images' drawing (default: the preset's)")
    ap.add_argument("--tiny", action="store_true", help="a CPU-sized smoke test instead of the paper's sizes")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s")

    device = resolve_device(args.device)
    amp = args.autocast == "on" or (args.autocast == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    options = dict(epochs=args.epochs, device=device.type, autocast=amp)
    for key, value in (("eval_every", args.eval_every), ("style", args.style)):
        if value is not None:
            options[key] = value
    if args.pretrain_epochs:
        options["pretrain_epochs"] = args.pretrain_epochs
    if args.tiny:
        options.update(TINY)
    resume = args.out.is_dir() and any(args.out.iterdir())
    start = time.perf_counter()
    run = train_resnet(preset=args.preset, out=args.out, resume=resume, cache_dir=args.cache_dir,
                       pretrained=args.pretrained, callbacks=[clock], progress=not args.quiet, **options)
    wall = time.perf_counter() - start

    h = run.history
    sitting = h[h["clock"] >= time.time() - wall] if "clock" in h else h.iloc[0:0]
    rate = float("nan")
    if len(sitting) >= 2:
        rate = (sitting["step"].iloc[-1] - sitting["step"].iloc[0]) / (sitting["clock"].iloc[-1] - sitting["clock"].iloc[0])
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    start_from = ("weights " + str(args.pretrained) if args.pretrained else
                  f"{run.config.pretrain_epochs} epochs of stand-in pretraining" if run.config.pretrain_epochs else
                  "random init")
    print(f"device {device} ({gpu}), autocast {amp}, preset {args.preset}, {run.config.image_size} px, "
          f"width {run.config.width}, from {start_from}")
    print(f"epochs {int(h['step'].iloc[0])} -> {int(h['step'].iloc[-1])}; this sitting {wall:.1f} s; "
          f"{rate:.3f} epochs/s between its first and last history rows (evaluations included)")
    last = h.iloc[-1]
    print(f"epoch {int(last['step'])}: train_acc {last['train_acc']:.4f} test_acc {last['test_acc']:.4f} "
          f"best test_acc {h['test_acc'].max():.4f}")
    print(json.dumps({"script": "resnet_paper_gpu", "preset": args.preset, "device": str(device), "gpu": gpu,
                      "autocast": amp, "pretrained": str(args.pretrained) if args.pretrained else None,
                      "pretrain_epochs": run.config.pretrain_epochs,
                      "image_size": run.config.image_size, "width": run.config.width, "resumed": resume,
                      "epochs_done": int(last["step"]), "wall_s": round(wall, 2), "epochs_per_s": rate,
                      "test_acc": float(last["test_acc"])}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
