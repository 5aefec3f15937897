"""Where one core's training step goes: matrix products against the rest, and the MLP chunk size.

One half of the README main job's training set (p = ``--p``; what each core computes in
the split step), one torch thread, the fast forward with the default (collapse-free)
loss, backward and fused AdamW:

1. the step's wall time for each MLP chunk size of :mod:`grok_interp.training.fused`
   (``--chunks``; 512 is the default), alternated ``--repeats`` times, median ms;
2. at the default chunk, ``torch.profiler``'s split of the step's CPU time into matrix
   products (``mm``, ``addmm``, ``bmm``, ``baddbmm`` and their in-place forms) and
   everything else, and the products' rate (their FLOPs, counted by
   ``FlopCounterMode``, over their time) against a ``--size``^3 matmul's rate timed in
   the same process;
3. the step's matrix products recorded (op, sizes, strides) and replayed one by one on
   fresh tensors, each timed alone with its operands in cache: what the step would cost
   if it were nothing but its products, each at its own shape's best speed here.

    python benchmarks/step_anatomy.py
    python benchmarks/step_anatomy.py --chunks 256 512 1024 --repeats 5

The products' rate at these shapes is what keeps the step above the dense floor (the
step's FLOPs at the large matmul's rate): if the chunk size does not move the step, the
products are as fast as these shapes run here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

from grok_interp.training import forwards, fused
from grok_interp.training.loop import loss_fn

import half_step

PRODUCTS = {"aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::baddbmm_"}


#: The aten op names of :data:`PRODUCTS` (``mm``, ``addmm``, ...), as a dispatch sees them.
PRODUCT_OPS = {k.split("::")[1] for k in PRODUCTS}


class ProductRecorder(TorchDispatchMode):
    """Records every matrix product a step dispatches: the op and its tensors' sizes and strides."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket.__name__ in PRODUCT_OPS:
            spec = lambda x: ("T", tuple(x.shape), x.stride()) if isinstance(x, torch.Tensor) else x  # noqa: E731
            self.calls.append((func, tree_map(spec, args), tree_map(spec, kwargs)))
        return func(*args, **kwargs)


def _is_spec(x) -> bool:
    """A tensor as :class:`ProductRecorder` recorded it: ``("T", sizes, strides)``."""
    return isinstance(x, tuple) and x[:1] == ("T",)


def _fresh(x):
    """A random tensor of a recorded tensor's sizes and strides; anything else as it is."""
    return torch.empty_strided(x[1], x[2]).normal_() if _is_spec(x) else x


def products_alone(calls: list[tuple], repeats: int = 20) -> float:
    """The recorded products replayed one by one on fresh tensors of the same sizes and
    strides, each timed alone (median of ``repeats``, operands hot in cache): ms, summed."""
    total = 0.0
    for func, args, kwargs in calls:
        a, k = tree_map(_fresh, args, is_leaf=_is_spec), tree_map(_fresh, kwargs, is_leaf=_is_spec)
        func(*a, **k)
        total += statistics.median([_timed(lambda: func(*a, **k)) for _ in range(repeats)])
    return total * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--chunks", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed block")
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(1)

    _, _, model, opt, toks, labels = half_step.half(args.p)
    default = fused.CHUNK

    def use_chunk(c: int) -> None:  # the MLP functions read fused.CHUNK at each call
        fused.CHUNK = c

    def step() -> None:
        loss = loss_fn(forwards.fast_forward(model, toks), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    times: dict[int, list[float]] = {c: [] for c in args.chunks}
    try:
        for c in args.chunks:
            use_chunk(c)
            step()
        for _ in range(args.repeats):
            for c in args.chunks:
                use_chunk(c)
                t = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[c].append((time.perf_counter() - t) / args.steps * 1e3)
    finally:
        fused.CHUNK = default

    with FlopCounterMode(display=False) as counter:
        step()
    recorder = ProductRecorder()
    with recorder:
        step()
    alone = products_alone(recorder.calls)
    flops = counter.get_total_flops()
    n = 5
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / n / 1e3
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS) / n / 1e3
    a, b = torch.randn(args.size, args.size), torch.randn(args.size, args.size)
    a @ b
    mm = statistics.median([_timed(lambda: a @ b) for _ in range(5)])
    big_rate = 2 * args.size**3 / mm / 1e9
    prod_rate = flops / (products / 1e3) / 1e9

    print(f"\nhalf a p = {args.p} step on one thread ({len(toks)} pairs), ms (median of {args.repeats})")
    for c, v in times.items():
        m = statistics.median(v)
        print(json.dumps({"benchmark": "step_anatomy", "p": args.p, "chunk": c, "ms": m}))
        print(f"  chunk {c:>5}: {m:6.2f} ms{'  (default)' if c == default else ''}")
    row = {"benchmark": "step_anatomy", "p": args.p, "profiled_ms": total, "products_ms": products,
           "rest_ms": total - products, "products_alone_ms": alone, "n_products": len(recorder.calls),
           "step_gflop": flops / 1e9, "products_gflops": prod_rate,
           "matmul_gflops": big_rate, "floor_ms": flops / (big_rate * 1e9) * 1e3}
    print(json.dumps(row))
    print(f"  under the profiler: {total:.2f} ms, of which matrix products {products:.2f} ms "
          f"({products / total:.0%}) and the rest {total - products:.2f} ms")
    print(f"  products: {flops / 1e9:.2f} GFLOP at {prod_rate:.1f} GFLOP/s; a {args.size}^3 matmul runs "
          f"{big_rate:.1f} GFLOP/s ({prod_rate / big_rate:.0%}); dense floor {row['floor_ms']:.2f} ms")
    print(f"  the step's {len(recorder.calls)} products replayed alone, each at its own shape and strides with "
          f"its operands in cache: {alone:.2f} ms ({flops / 1e9 / alone * 1e3:.1f} GFLOP/s)")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
