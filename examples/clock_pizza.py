"""Clock or pizza (Zhong et al. 2023): train one-layer transformers on addition mod p
with attention rate 1 (ordinary attention, the paper's model A) and 0 (constant
attention, model B), then print gradient symmetricity, distance irrelevance and the
classification of :func:`grok_interp.measures.algorithms.classify_algorithm`.

The attention rate is a hook on the pattern (:func:`set_attention_rate`), which only the
hooked forward runs, so this script trains with its own full-batch AdamW loop (lr 3e-3,
weight decay 1, betas 0.9/0.98, frac 0.8) rather than ``train_hooked``.

Run: ``OMP_NUM_THREADS=1 python examples/clock_pizza.py [--p 17] [--d-model 64] [--steps 1500]``
(about a minute per model on one core).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

import grok_interp as g
from grok_interp.measures.algorithms import classify_algorithm, set_attention_rate
from grok_interp.models import build_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--p", type=int, default=17)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = g.Task(args.p)
    split = g.Split.random(task, 0.8, seed=0)
    X, Y = task.tokens(split.train_pairs), task.answers(split.train_pairs)
    Xt, Yt = task.tokens(split.test_pairs), task.answers(split.test_pairs)
    for rate in (0.0, 1.0):
        t0 = time.time()
        torch.manual_seed(0)
        cfg = g.ModelConfig(d_model=args.d_model, n_heads=4, d_mlp=4 * args.d_model, seed=args.seed)
        model = set_attention_rate(build_model(cfg, task), rate)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1.0, betas=(0.9, 0.98))
        for _ in range(args.steps):
            loss = F.cross_entropy(model(X)[:, -1].double(), Y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            acc = float((model(Xt)[:, -1].argmax(-1) == Yt).float().mean())
        out = {"attention_rate": rate, "test_acc": round(acc, 3), **classify_algorithm(model, task),
               "seconds": round(time.time() - t0, 1)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
