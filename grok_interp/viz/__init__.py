"""Pictures of grokking runs: circuitsvis attention, matplotlib plots, an HTML report.

* :func:`attention_heads` / :func:`attention_patterns`: attention at any checkpoint,
  as a circuitsvis widget that renders offline (``.save(path)`` for a standalone page).
* ``plot_*``: matplotlib figures (Agg canvas) of a run or of the data they draw;
  each is an :class:`InlineFigure`, shown by a notebook cell that ends in it (no magic);
  :func:`save_figure` writes PNG and SVG.
* :func:`write_report`: one self-contained HTML page per run
  (``grok-interp report RUN_DIR``).
"""

from ._figure import InlineFigure
from .attention import OfflineHTML, attention_heads, attention_patterns, default_pairs
from .plots import (
    plot_embedding_fourier_norms,
    plot_measures,
    plot_neuron_clusters,
    plot_split,
    plot_table,
    plot_training,
    save_figure,
    smooth,
)
from .report import report_html, write_report

__all__ = [
    "InlineFigure",
    "OfflineHTML",
    "attention_heads",
    "attention_patterns",
    "default_pairs",
    "plot_training",
    "plot_measures",
    "plot_embedding_fourier_norms",
    "plot_neuron_clusters",
    "plot_split",
    "plot_table",
    "save_figure",
    "smooth",
    "write_report",
    "report_html",
]
