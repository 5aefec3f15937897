"""Pictures of grokking runs: circuitsvis attention, matplotlib plots, an HTML report.

* :func:`attention_heads` / :func:`attention_patterns`: attention at any checkpoint,
  as a circuitsvis widget that renders offline (``.save(path)`` for a standalone page);
  :func:`attention_widget` draws patterns already computed.
* :mod:`.data`: the data each plot draws, read or computed from a run (the one
  place viz runs a model); the plots themselves only draw.
* ``plot_*``: matplotlib figures (Agg canvas) of the data they are given, or of a run
  through :mod:`.data`;
  each is an :class:`InlineFigure`, shown by a notebook cell that ends in it (no magic),
  and draws into axes you give it (``ax=``; :func:`new_figure` makes a figure that
  displays the same way);
  :func:`save_figure` writes PNG and SVG.
* the TransformerLens demo's and ARENA's circuit pictures (:mod:`.circuit`):
  :func:`plot_attention_grid`, :func:`plot_neuron_grid`, :func:`plot_fourier_2d`,
  :func:`plot_logit_map_fourier`, :func:`plot_trig_fit`, :func:`plot_embedding_clock`;
* :mod:`.interactive`: plotly views with hover, zoom and a slider over checkpoints (the
  optional extra ``grok-interp[interactive]``; the matplotlib plots stay the default);
* :func:`write_report`: one self-contained HTML page per run
  (``grok-interp report RUN_DIR``).
"""

from . import data, interactive
from ._figure import InlineFigure, new_figure
from .circuit import (
    plot_attention_grid,
    plot_embedding_clock,
    plot_fourier_2d,
    plot_logit_map_fourier,
    plot_neuron_grid,
    plot_trig_fit,
    trig_fit,
)
from .attention import OfflineHTML, attention_heads, attention_patterns, attention_widget, default_pairs
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
    "new_figure",
    "OfflineHTML",
    "attention_heads",
    "attention_patterns",
    "attention_widget",
    "data",
    "interactive",
    "default_pairs",
    "plot_training",
    "plot_measures",
    "plot_embedding_fourier_norms",
    "plot_neuron_clusters",
    "plot_split",
    "plot_table",
    "plot_attention_grid",
    "plot_neuron_grid",
    "plot_fourier_2d",
    "plot_logit_map_fourier",
    "plot_trig_fit",
    "trig_fit",
    "plot_embedding_clock",
    "save_figure",
    "smooth",
    "write_report",
    "report_html",
]
