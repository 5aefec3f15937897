"""Which restricted loss leads test loss, and how much of the lead is memorisation?

Measures the paper's restricted and excluded loss (Nanda et al.'s per-class projection),
the difference projection (grok_interp 0.1's default), the TransformerLens demo's
neuron-level computation and the neuron projection that keeps the skip path, on every
checkpoint of one run (key frequencies of the final checkpoint, held fixed), prints
``compare_measures`` and each measure's value at a few steps of the memorisation phase,
and writes the table next to the run (``RUN-lead.csv``).

    python examples/restricted_loss_lead.py runs/p97                # an existing run
    python examples/restricted_loss_lead.py runs/p97 --train --p 97  # train it first (stop_after_grok=1000)
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import grok_interp as g

MEASURES = ["restricted_loss", "restricted_loss_difference", "restricted_loss_tl_demo",
            "restricted_loss_neuron_projection", "excluded_loss", "excluded_loss_tl_demo"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--train", action="store_true", help="train the run first")
    ap.add_argument("--p", type=int, default=97)
    args = ap.parse_args()
    pd.set_option("display.width", 250)
    if args.train:
        t = time.time()
        g.train_hooked(p=args.p, stop_after_grok=1000, out=args.run, progress=False)
        print(f"trained in {time.time() - t:.0f} s")
    run = g.load_run(args.run)
    t = time.time()
    table = run.measure(MEASURES, key_freqs_from="final")
    print(f"{len(table)} checkpoints measured in {time.time() - t:.0f} s; "
          f"key frequencies {g.measures.key_frequencies(run.model, run.task)}")
    print(g.events(run.history))
    print(g.compare_measures(run, table).to_string())
    hist = run.history.set_index("step")
    for step in (200, 1000, 2000, 5000):
        row = table[table.step == step]
        if len(row) and step in hist.index:
            r = row.iloc[0]
            print(f"step {step}: test loss {hist.loc[step, 'test_loss']:.3g}, "
                  + ", ".join(f"{m} {r[m]:.3g}" for m in MEASURES[:3]))
    table.to_csv(str(args.run).rstrip("/") + "-lead.csv", index=False)


if __name__ == "__main__":
    main()
