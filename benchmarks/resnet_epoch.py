"""Epoch time of the hooked ResNet-18 on the shapes-sum dataset, per image size and width.

One process, one thread (``torch.set_num_threads(1)``, as the background runs use).
For each (image_size, width) it times ``--batches`` training mini-batches of 200
(forward, backward, Adam step, after one warm-up batch) and ``--batches`` evaluation
batches of 500 (forward only, with pooled features), takes the median, and
extrapolates to one epoch of the paper's split: 3660 training images (18.3 batches)
plus one evaluation pass over all 14641 images (29.3 batches). Prints a readable table
and one JSON line.

    python benchmarks/resnet_epoch.py --sizes 32 48 64 --widths 8 16 32 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from grok_interp.vision import build_resnet, load_shapes


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(image_size: int, width: int, batches: int, cache_dir: str | None) -> dict:
    data = load_shapes(image_size, cache_dir=cache_dir)
    model = build_resnet(width, 49, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    labels = data.labels

    def train_batch() -> None:
        idx = torch.randint(len(data), (200,), generator=gen)
        model.train()
        loss = F.cross_entropy(model(data.inputs(idx)), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def eval_batch() -> None:
        idx = torch.randint(len(data), (500,), generator=gen)
        model.eval()
        model(data.inputs(idx), return_pooled=True)

    t_train = _median_time(train_batch, batches)
    t_eval = _median_time(eval_batch, batches)
    train_epoch = t_train * 3660 / 200
    eval_pass = t_eval * 14641 / 500
    return {
        "image_size": image_size,
        "width": width,
        "params": sum(p.numel() for p in model.parameters()),
        "train_batch_s": round(t_train, 4),
        "eval_batch_s": round(t_eval, 4),
        "train_epoch_s": round(train_epoch, 2),
        "eval_pass_s": round(eval_pass, 2),
        "epoch_plus_eval_s": round(train_epoch + eval_pass, 2),
        # hours for 1000 epochs when evaluating every 10 epochs
        "hours_per_1000_epochs_eval10": round((1000 * train_epoch + 100 * eval_pass) / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 48, 64])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(s, w, args.batches, args.cache_dir) for s in args.sizes for w in args.widths]
    head = ("size", "width", "params", "train/epoch s", "eval pass s", "h per 1000 ep (eval/10)")
    print("{:>5} {:>6} {:>10} {:>14} {:>12} {:>24}".format(*head))
    for r in rows:
        print(f"{r['image_size']:>5} {r['width']:>6} {r['params']:>10} {r['train_epoch_s']:>14} "
              f"{r['eval_pass_s']:>12} {r['hours_per_1000_epochs_eval10']:>24}")
    print(json.dumps({"benchmark": "resnet_epoch", "threads": args.threads, "rows": rows}))


if __name__ == "__main__":
    main()
