"""Redraw the pictures of docs/pictures.md (docs/assets/gallery/*.png) from a small run.

    python docs/_scripts/make_gallery.py            # trains runs/docs-gallery (seconds) if absent

The run is p = 59, frac 0.4, with the default measures recorded; it groks within a few
thousand steps on a CPU. Each picture is drawn by the line docs/pictures.md shows and
saved small (dpi 60), so the committed PNGs stay light.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import grok_interp as g  # noqa: E402
from grok_interp import viz  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "assets" / "gallery"
RUN = ROOT / "runs" / "docs-gallery"


def main() -> None:
    run = g.train_hooked(p=59, frac=0.4, steps=8000, stop_after_grok=400, record="default", out=RUN,
                         resume=True, progress=False)
    figures = {
        "training": lambda: viz.plot_training(run),
        "measures": lambda: viz.plot_measures(run),
        "compare_measures": lambda: viz.plot_table(g.compare_measures(run)),
        "fourier_norms": lambda: viz.plot_embedding_fourier_norms(run),
        "neuron_clusters": lambda: viz.plot_neuron_clusters(run),
        "split": lambda: viz.plot_split(run),
        "attention_grid": lambda: viz.plot_attention_grid(run),
        "neuron_grid": lambda: viz.plot_neuron_grid(run),
        "fourier_2d": lambda: viz.plot_fourier_2d(run),
        "logit_map_fourier": lambda: viz.plot_logit_map_fourier(run),
        "trig_fit": lambda: viz.plot_trig_fit(run),
        "embedding_clock": lambda: viz.plot_embedding_clock(run),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    for name, draw in figures.items():
        draw().savefig(OUT / f"{name}.png", dpi=60)
        print(f"wrote {OUT / name}.png")


if __name__ == "__main__":
    main()
