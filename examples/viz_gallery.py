"""Every picture of one run as files: PNG + SVG plots, an offline attention page, the report.

    python examples/viz_gallery.py runs/p113                  # writes runs/p113/figures/
    python examples/viz_gallery.py runs/p113 --out figs --step 5000 --smooth

Prints one line per file with the seconds it took. The same functions work in a
notebook: each ``plot_*`` returns a matplotlib ``Figure`` and ``attention_heads``
returns a circuitsvis object that displays inline without internet.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import grok_interp as g
from grok_interp.measures import compare_measures, events, neuron_frequency_clusters
from grok_interp.viz import (
    attention_heads,
    plot_embedding_fourier_norms,
    plot_measures,
    plot_neuron_clusters,
    plot_split,
    plot_table,
    plot_training,
    save_figure,
    write_report,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/figures)")
    ap.add_argument("--step", type=int, default=None, help="checkpoint for spectrum, clusters, attention (default final)")
    ap.add_argument("--smooth", action="store_true", help="the paper's smoothing on the curves")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    run = g.load_run(args.run_dir)
    out = Path(args.out or Path(args.run_dir) / "figures")
    ev = events(run.history)
    print(f"{run}: memorised at {ev.memorised_at}, grokked at {ev.grokked_at}, U-Acc {ev.u_acc:.3f}")

    def timed(name, make):
        t0 = time.perf_counter()
        paths = make()
        print(f"{time.perf_counter() - t0:6.2f}s  {', '.join(str(p) for p in paths)}")

    recorded = [c for c in run.history.columns if c not in ("step", "train_loss", "test_loss", "train_acc", "test_acc")]
    measures = run.history if recorded else run.measure(["med", "gini", "weight_norm"])
    clusters = neuron_frequency_clusters(run.model if args.step is None else run.model_at(args.step), run.task)
    keys = sorted(int(k) for k in set(clusters["frequency"]) if k > 0)
    print(f"key frequencies: {keys}")
    timed("training", lambda: save_figure(plot_training(run, smoothing=args.smooth), out / "training"))
    timed("measures", lambda: save_figure(plot_measures(measures, history=run.history, smoothing=args.smooth),
                                          out / "measures"))
    timed("fourier", lambda: save_figure(plot_embedding_fourier_norms(run, step=args.step, key_frequencies=keys),
                                         out / "fourier_norms"))
    timed("clusters", lambda: save_figure(plot_neuron_clusters(clusters), out / "neuron_clusters"))
    timed("split", lambda: save_figure(plot_split(run), out / "split"))
    timed("compare", lambda: save_figure(plot_table(compare_measures(run, None if recorded else measures)),
                                         out / "compare_measures"))
    timed("attention", lambda: [attention_heads(run, step=args.step).save(out / "attention.html")])
    timed("report", lambda: [write_report(run, out / "report.html", step=args.step, smoothing=args.smooth)])


if __name__ == "__main__":
    main()
