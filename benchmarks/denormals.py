"""What subnormal weights cost a ResNet training step on a CPU, and what flushing saves.

Weight decay (the reference recipe's Adam with coupled L2) drives many of a long ResNet
run's weights and Adam moments towards zero, into float32's subnormal range (below
1.2e-38), where x86 CPUs compute through slow microcode. The image campaign's runs had
more than half their weights subnormal after about 1500 epochs. Since then the ResNet
trains with subnormals flushed to zero (``grok_interp.training.flush_denormals``).

This script measures it two ways (one thread, CPU seconds):

* ``--run DIR``: a ResNet run directory (the campaign's, say) resumed in a copy for
  ``--epochs`` epochs from its newest resume state, with its real weights *and* Adam
  moments, flushing off and on, alternating ``--repeats`` times (median);
* without it: a made-up state, a ResNet-18 at ``--image-size`` and ``--width`` with
  ``--share`` of every weight tensor's entries set to subnormal values and a fresh Adam,
  timed over ``--batches`` mini-batches of 200 against the same network as initialised.

It prints the share of subnormal weights, the times and their ratios.

    python benchmarks/denormals.py
    python benchmarks/denormals.py --run runs/examples/resnet_reference/library/pretrain_epochs=0,seed=1 --epochs 4
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from grok_interp.training import flush_denormals
from grok_interp.vision import build_resnet, load_shapes

TINY = torch.finfo(torch.float32).tiny


def subnormal_share(model: torch.nn.Module) -> float:
    n = s = 0
    for p in model.parameters():
        x = p.detach()
        s += int(((x != 0) & (x.abs() < TINY)).sum())
        n += x.numel()
    return s / n


def with_subnormals(model: torch.nn.Module, share: float, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with ``share`` of every weight's entries made subnormal (sign kept)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            mask = torch.rand(p.shape, generator=gen) < share
            p[mask] = torch.sign(p[mask]) * 1e-39
    return out


def time_batches(model: torch.nn.Module, data, flush: bool, batches: int, seed: int) -> float:
    """Median CPU seconds of one training batch (after one warm-up), flushing or not."""
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    times = []
    with flush_denormals(flush):
        for i in range(batches + 1):
            idx = torch.randint(len(data), (200,), generator=gen)
            t = time.process_time()
            model.train()
            loss = F.cross_entropy(model(data.inputs(idx)), data.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i:
                times.append(time.process_time() - t)
    return statistics.median(times)


def resumed(run_dir: str, epochs: int, flush: bool) -> tuple[float, float, dict, "object"]:
    """CPU seconds to train ``epochs`` more epochs in a copy of ``run_dir`` (resumed from
    its newest state), the share of subnormal weights it starts from, and the weights and
    history it ends with."""
    import dataclasses
    import tempfile
    from pathlib import Path

    from grok_interp import load_run, store
    from grok_interp.vision import train_resnet

    with tempfile.TemporaryDirectory() as tmp:
        copy_dir = store.copy_run_dir(run_dir, Path(tmp) / "run")  # locked: never a run halfway through a write
        run = load_run(copy_dir, device="cpu")
        share = subnormal_share(run.model)
        data = load_shapes(run.config.image_size, style=run.config.style)
        start = max(int(p.name.split("-")[1]) for p in copy_dir.glob("state-*"))
        config = dataclasses.replace(run.config, epochs=start + epochs, device="cpu")
        t = time.process_time()
        out = train_resnet(config, out=copy_dir, resume=True, dataset=data, progress=False, flush_denormal=flush)
        weights = {k: v.detach().clone() for k, v in out.model.state_dict().items()}
        return time.process_time() - t, share, weights, out.history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--share", type=float, default=0.5, help="share of subnormal entries in the made-up state")
    ap.add_argument("--run", default=None, help="a ResNet run directory: resume a copy of it instead")
    ap.add_argument("--epochs", type=int, default=4, help="epochs per timing with --run")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    if args.run:
        label = f"{args.run}: {args.epochs} epochs resumed from its newest state"
        times: dict[bool, list[float]] = {False: [], True: []}
        share, ends = 0.0, {}
        for _ in range(args.repeats):
            for flush in (False, True):
                t, share, weights, history = resumed(args.run, args.epochs, flush)
                times[flush].append(t)
                ends[flush] = (weights, history)
        (w_off, h_off), (w_on, h_on) = ends[False], ends[True]
        apart = max(float((w_off[k].double() - w_on[k].double()).abs().max()) for k in w_off)
        same_history = h_off.round(6).equals(h_on.round(6))
        off, on = (statistics.median(times[f]) for f in (False, True))
        rows.append({"weights": "the run's", "subnormal_share": round(share, 4), "s_per_epoch_ieee": round(off / args.epochs, 2),
                     "s_per_epoch_flushed": round(on / args.epochs, 2), "ratio": round(off / on, 2),
                     "weights_apart": apart, "history_equal_6_digits": bool(same_history)})
        print(label)
        print(f"  {share:.1%} subnormal weights; {rows[0]['s_per_epoch_ieee']} CPU-s an epoch with IEEE subnormals, "
              f"{rows[0]['s_per_epoch_flushed']} flushed: {rows[0]['ratio']}x")
        print(f"  after {args.epochs} epochs the two copies' weights are at most {apart:.3g} apart; "
              f"histories equal to 6 digits: {same_history}")
    else:
        clean = build_resnet(args.width, 49, seed=0)
        states = {"as initialised": clean, "made subnormal": with_subnormals(clean, args.share)}
        data = load_shapes(args.image_size)
        label = f"{args.image_size} px, width {args.width}, {args.share:.0%} of weight entries made subnormal, fresh Adam"
        per: dict[str, dict[bool, list[float]]] = {k: {False: [], True: []} for k in states}
        for r in range(args.repeats):
            for name, model in states.items():
                for flush in (False, True):
                    per[name][flush].append(time_batches(model, data, flush, args.batches, seed=r))
        print(label)
        for name, model in states.items():
            off, on = (statistics.median(per[name][f]) for f in (False, True))
            rows.append({"weights": name, "subnormal_share": round(subnormal_share(model), 4),
                         "ms_ieee": round(1000 * off, 1), "ms_flushed": round(1000 * on, 1),
                         "ratio": round(off / on, 2)})
            print(f"  {name:>15}: {rows[-1]['subnormal_share']:.1%} subnormal weights; {rows[-1]['ms_ieee']} ms a "
                  f"batch with IEEE subnormals, {rows[-1]['ms_flushed']} ms flushed: {rows[-1]['ratio']}x")
    print(json.dumps({"benchmark": "denormals", "label": label, "rows": rows}))


if __name__ == "__main__":
    main()
