"""Epoch time of the hooked ResNet-18 on the shapes-sum dataset, per image size and width.

One process, one thread (``torch.set_num_threads(1)``, as the background runs use).
For each (image_size, width) it times ``--batches`` training mini-batches of 200
(forward, backward, Adam step, after one warm-up batch) and ``--batches`` evaluation
batches of 500 (forward only, with pooled features), takes the median of both the
CPU time and the wall-clock time, and extrapolates to one epoch of the paper's split:
3660 training images (18.3 batches) plus one evaluation pass over all 14641 images
(29.3 batches). CPU seconds are the cost on a free core; wall seconds also count the
waiting on a shared machine (the 1-minute load average is printed with them). Prints
a readable table and one JSON line.

    python benchmarks/resnet_epoch.py --sizes 32 48 64 --widths 8 16 32 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from grok_interp.vision import build_resnet, load_shapes


def _median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds of ``fn`` (one thread: CPU time is what the
    call costs whatever else runs on the machine; wall time includes waiting)."""
    fn()  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


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

    wall_train, cpu_train = _median_time(train_batch, batches)
    wall_eval, cpu_eval = _median_time(eval_batch, batches)
    per_epoch = 3660 / 200  # training batches per epoch
    per_pass = 14641 / 500  # evaluation batches per pass over all images
    cpu_epoch, cpu_pass = cpu_train * per_epoch, cpu_eval * per_pass
    return {
        "image_size": image_size,
        "width": width,
        "params": sum(p.numel() for p in model.parameters()),
        "train_batch_wall_s": round(wall_train, 4),
        "train_batch_cpu_s": round(cpu_train, 4),
        "eval_batch_wall_s": round(wall_eval, 4),
        "eval_batch_cpu_s": round(cpu_eval, 4),
        "train_epoch_cpu_s": round(cpu_epoch, 2),
        "eval_pass_cpu_s": round(cpu_pass, 2),
        "train_epoch_wall_s": round(wall_train * per_epoch, 2),
        # CPU hours for 1000 epochs evaluating every 10 epochs (= wall hours on a free core)
        "cpu_hours_per_1000_epochs_eval10": round((1000 * cpu_epoch + 100 * cpu_pass) / 3600, 2),
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
    load_before = os.getloadavg()[0]
    rows = [measure(s, w, args.batches, args.cache_dir) for s in args.sizes for w in args.widths]
    load_after = os.getloadavg()[0]
    head = ("size", "width", "params", "train epoch cpu-s", "eval pass cpu-s", "train epoch wall-s", "cpu-h/1000 ep")
    print("{:>5} {:>6} {:>9} {:>18} {:>16} {:>19} {:>14}".format(*head))
    for r in rows:
        print(f"{r['image_size']:>5} {r['width']:>6} {r['params']:>9} {r['train_epoch_cpu_s']:>18} "
              f"{r['eval_pass_cpu_s']:>16} {r['train_epoch_wall_s']:>19} {r['cpu_hours_per_1000_epochs_eval10']:>14}")
    # the machine is shared: the 1-minute load average says how contended these timings are
    print(f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}; cores {os.cpu_count()}")
    print(json.dumps({"benchmark": "resnet_epoch", "threads": args.threads, "load_before": load_before,
                      "load_after": load_after, "cpus": os.cpu_count(), "rows": rows}))


if __name__ == "__main__":
    main()
