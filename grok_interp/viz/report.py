"""One self-contained HTML page per run: plots, attention, events and configuration.

:func:`write_report` (``grok-interp report RUN_DIR``) writes ``RUN_DIR/report.html``:
a single file with every plot embedded as a PNG data URI, the circuitsvis attention
widget with its JavaScript bundle inlined, and the events and configuration as
tables. It references no external URL, so it opens offline, from an e-mail
attachment or a cluster's scratch disk; nothing is opened or served.

Sections whose measure a run does not support (attention of the MLP baseline, say)
are replaced by a one-line note saying why, so a report is always written.

Each section first computes its data (:mod:`grok_interp.viz.data`,
:mod:`grok_interp.measures`), then hands it to a plot that only draws; the hooked
forward over the ``(a, b)`` grid is run once and shared by the circuit pictures.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
from matplotlib.figure import Figure

from .. import store
from .._validate import bad_value
from ..errors import GrokInterpError
from ..groups import lacks_cyclic_order
from ..measures import Events, compare_measures, events, measure_checkpoints, plot_columns
from ..protocols import Run, TaskRun, as_task_run, checkpointed
from . import data as viz_data
from .attention import attention_widget, html_page
from .circuit import (
    plot_attention_grid,
    plot_embedding_clock,
    plot_fourier_2d,
    plot_logit_map_fourier,
    plot_neuron_grid,
    plot_trig_fit,
)
from .plots import (
    BASE_COLUMNS,
    plot_embedding_fourier_norms,
    plot_measures,
    plot_neuron_clusters,
    plot_split,
    plot_table,
    plot_training,
)

__all__ = ["write_report", "report_html"]

log = logging.getLogger(__name__)

_STYLE = """
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
.summary{color:#444;margin-top:0} .note{color:#8a6d3b;background:#fcf8e3;padding:6px 10px;border-radius:4px}
figure{margin:.6em 0} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:.9em} table.data{border-collapse:collapse;font-size:.9em;margin:.4em 0}
table.data td,table.data th{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.data th{background:#f0f0f0} .attention-widget{max-width:900px} .cols{display:flex;flex-wrap:wrap;gap:24px;align-items:flex-start}
"""


#: Measures taken over the checkpoints when the run recorded none: MED beside the paper's
#: restricted and excluded loss (final key frequencies held fixed; one fast forward per
#: checkpoint), then the cheap weight-only ones.
_CHECKPOINT_MEASURES = ("med", "restricted_loss", "excluded_loss", "gini", "weight_norm", "uniformity")
#: The same for a group task without a cyclic order (D_n, S_n): the group versions.
_GROUP_CHECKPOINT_MEASURES = ("cayley_med", "irrep_restricted_loss", "irrep_excluded_loss", "weight_norm", "uniformity")
#: Measure columns plotted, at most this many (the registry decides the order: plot_columns()).
_MAX_PANELS = 5


def _numeric(df: pd.DataFrame, col: str) -> bool:
    return pd.api.types.is_numeric_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col])


class _Unavailable(Exception):
    """A section cannot be drawn for this run; the message says why."""


def _png(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure_html(key: str, fig: Figure, caption: str) -> str:
    return (
        f'<figure id="plot-{key}" class="plot"><img alt="{html.escape(caption)}" '
        f'src="data:image/png;base64,{_png(fig)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
    )


def _table_html(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, classes="data", border=0, na_rep="-", float_format=lambda v: f"{v:.4g}")


def _section(key: str, title: str, make: Callable[[], str]) -> str:
    """One ``<section>``; a missing measure or a run it does not apply to becomes a note."""
    t0 = time.perf_counter()
    try:
        body = make()
    except _Unavailable as exc:
        body = f'<p class="note">Not available: {html.escape(str(exc))}</p>'
    log.debug("report section %s: %.2fs", key, time.perf_counter() - t0)
    return f'<section id="{key}">\n<h2>{html.escape(title)}</h2>\n{body}\n</section>'


def _events_frame(ev: Events) -> pd.DataFrame:
    rows = ev.to_dict()
    return pd.DataFrame({"event": list(rows), "value": [("-" if v is None else v) for v in rows.values()]})


def _config_frame(run: Run) -> pd.DataFrame:
    cfg = run.config.to_dict()
    rows = [(sec, k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for sec in cfg for k, v in cfg[sec].items()]
    if run.path is not None and (Path(run.path) / store.CONFIG).exists():
        raw = store.RunStore(run.path).read_meta()
        rows += [("versions", k, str(v)) for k, v in raw.get("grok_interp", {}).items()]
        if "backend" in raw:
            rows.append(("versions", "backend", str(raw["backend"])))
    return pd.DataFrame(rows, columns=["section", "option", "value"])


def _nearest_checkpoint(steps: Sequence[int], step: int) -> int:
    return min(steps, key=lambda s: (abs(s - step), s))


def _attention_steps(checkpoints: Sequence[int], ev: Events | None) -> list[int | None]:
    """Checkpoints nearest to memorisation and grokking, then the final model."""
    out: list[int | None] = []
    if checkpoints and ev is not None:
        for s in (ev.memorised_at, ev.grokked_at):
            if s is not None:
                c = _nearest_checkpoint(checkpoints, int(s))
                if c not in out:
                    out.append(c)
    return out + [None]


def report_html(
    run: TaskRun,
    *,
    step: int | None = None,
    pairs: Sequence[Sequence[int]] | None = None,
    measures: Sequence[str] | None = None,
    smoothing: bool = False,
    compare: bool = True,
    title: str | None = None,
) -> str:
    """The report page as an HTML string (see :func:`write_report`)."""
    return _report(run, step=step, pairs=pairs, measures=measures, smoothing=smoothing, compare=compare,
                   title=title)[0]


def _report(
    run: TaskRun,
    *,
    step: int | None,
    pairs: Sequence[Sequence[int]] | None,
    measures: Sequence[str] | None,
    smoothing: bool,
    compare: bool,
    title: str | None,
) -> tuple[str, pd.DataFrame | None]:
    """The page and the ``compare_measures`` table it shows (None where it has none)."""
    run = as_task_run(run)
    if step is not None and step not in run.checkpoint_steps:
        raise bad_value("step", step, f"has no checkpoint; saved steps: {run.checkpoint_steps}")
    hist = run.history
    last = hist.iloc[-1]
    is_mlp = run.config.model.arch == "mlp"
    where = f" at step {step}" if step is not None else f" (final model, step {int(last['step'])})"
    cache: dict[str, Any] = {}

    def events_section() -> str:
        cache["events"] = events(hist, grok_threshold=viz_data.grok_threshold_of(run))
        return _table_html(_events_frame(cache["events"]))

    def training_section() -> str:
        fig = plot_training(run, smoothing=smoothing)  # the run's own grok_threshold marks grokking
        return _figure_html("training", fig, "Loss (log) and accuracy over steps (log); dotted: memorised, dashed: "
                            f"grokked (test accuracy >= {viz_data.grok_threshold_of(run):g}).")

    def measure_table() -> pd.DataFrame | None:
        """Measures to plot and compare: the recorded columns, else cheap ones over checkpoints."""
        if "measures" not in cache:
            recorded = [c for c in hist.columns if c not in BASE_COLUMNS and _numeric(hist, c)]
            if measures is None and recorded:
                cache["measures"] = None  # the history has them
            else:
                task = getattr(run, "task", None)
                unordered = lacks_cyclic_order(task)
                names = list(measures) if measures is not None else list(
                    _GROUP_CHECKPOINT_MEASURES if unordered else _CHECKPOINT_MEASURES)
                try:  # a model imported without checkpoints is measured at itself
                    cache["measures"] = measure_checkpoints(checkpointed(run), names)
                except ValueError as exc:
                    raise _Unavailable(f"measures {names}: {exc}") from exc
        return cache["measures"]

    def measures_section() -> str:
        table = measure_table()
        source = hist if table is None else table
        cols = [c for c in source.columns if c not in BASE_COLUMNS and _numeric(source, c)]
        order = plot_columns()  # the registered measures' columns, in the registry's order
        shown = sorted(cols, key=lambda c: (order.index(c) if c in order else len(order), c))
        if len(source) == 1:  # one model (imported without its training): its values, not a curve
            row = source.iloc[0]
            values = pd.DataFrame({"measure": shown, "value": [row[c] for c in shown]})
            return (f"<p>Measured at the one model there is (step {int(row['step'])}): no training to draw "
                    f"curves over.</p>\n{_table_html(values)}")
        shown = shown[:_MAX_PANELS]
        fig = plot_measures(source, shown, history=hist, smoothing=smoothing)
        origin = "recorded during training" if table is None else f"measured on {len(table)} checkpoints"
        more = f" ({len(cols) - len(shown)} more in the table below)" if len(cols) > len(shown) else ""
        return _figure_html("measures", fig, f"{', '.join(shown)} ({origin}){more}, each beside test loss "
                            "(grey, right axis, log).")

    def split_section() -> str:
        fig = plot_split(run.split, correct=viz_data.correct_grid(run))
        return _figure_html("split", fig, "Left: the split on the (a, b) grid. Right: pairs the final model answers correctly.")

    def fourier_section() -> str:
        norms = viz_data.fourier_norms(run, step)
        keys = cache.get("keys")
        fig = plot_embedding_fourier_norms(norms, key_frequencies=keys, title=f"embedding Fourier norms{where}")
        return _figure_html("fourier", fig, "Norm of the operand embeddings per frequency k; red: key frequencies "
                            "(frequencies with at least one MLP neuron, from the clusters below).")

    def clusters_section() -> str:
        try:
            table = viz_data.neuron_clusters(run, step)
        except ValueError as exc:
            raise _Unavailable(str(exc)) from exc
        cache["keys"] = sorted(int(k) for k in set(table["frequency"]) if k > 0)
        cache["clusters"] = table
        fig = plot_neuron_clusters(table, title=f"MLP neurons by frequency{where}")
        return _figure_html("clusters", fig, "Each column a neuron, in the row of the frequency whose 3x3 Fourier block "
                            "explains >= 0.85 of its variance (FVE, colour); right: neurons per row.")

    def compare_section() -> str:
        if not compare:
            raise _Unavailable("left out (compare=False / --no-compare)")
        try:
            df = compare_measures(run, measure_table())
        except ValueError as exc:
            raise _Unavailable(str(exc)) from exc
        cache["compare"] = df
        fig = plot_table(df, title="compare_measures: which measure tracks test loss after memorisation")
        return _figure_html("compare", fig, "Spearman/Pearson correlation with test loss after memorisation, the "
                            "lag (steps) that maximises it, and when each measure moved relative to test loss and "
                            "to the accuracy jump (grok_interp.measures.compare_measures).")

    def attention_section() -> str:
        if is_mlp:
            raise _Unavailable("the MLP baseline has no attention")
        steps: list[int | None] = [step] if step is not None else _attention_steps(run.checkpoint_steps,
                                                                                  cache.get("events"))
        shown = viz_data.default_pairs(run.task.p) if pairs is None else pairs
        widget = attention_widget({s: viz_data.attention_patterns(run, shown, step=s) for s in steps}, shown)
        names = ", ".join("final" if s is None else f"step {s}" for s in steps)
        return (f"<p>Attention of layer 0 at {html.escape(names)} (hover a head to zoom, click to lock). Several "
                "inputs sit side by side; each attends only within its own a, b, = (block-diagonal).</p>\n"
                f'<div class="attention-widget">{widget.local_src}</div>')

    def circuit_section() -> str:
        """The TransformerLens demo's and ARENA's pictures of the Fourier circuit."""
        if is_mlp:
            raise _Unavailable("the MLP baseline has no attention and no single-layer Fourier circuit views")
        clusters = cache.get("clusters")
        memo: dict[str, Any] = {}

        def acts() -> Any:  # one hooked forward over the grid, shared by three pictures
            if "acts" not in memo:
                memo["acts"] = viz_data.activations(run, step)
            return memo["acts"]

        def logit_map() -> Figure:
            table = clusters if clusters is not None else viz_data.neuron_clusters(run, step)
            return plot_logit_map_fourier(viz_data.logit_map(run, step), step=step, clusters=table)

        def clock() -> Figure:
            keys = cache.get("keys") or viz_data.final_key_frequencies(run) or None
            return plot_embedding_clock(viz_data.embedding_rows(run, step), keys, step=step)

        def trig_fit() -> Figure:
            table = clusters if clusters is not None else viz_data.activation_clusters(acts())
            if not (table["frequency"] > 0).any():  # an empty picture says less than a sentence
                raise GrokInterpError("no MLP neuron has a key frequency at this step, so there is nothing to fit")
            return plot_trig_fit(acts(), table, step=step)

        figures = [
            ("attention-grid", lambda: plot_attention_grid(viz_data.attention_grid(run, step), step=step),
             "Attention from '=' to 'a' over every (a, b), per head (the demo's first picture)."),
            ("neuron-grid", lambda: plot_neuron_grid(acts(), step=step, clusters=True if clusters is None else clusters),
             "Neuron activations over (a, b): the most active neuron of each frequency cluster."),
            ("fourier-2d", lambda: plot_fourier_2d(acts(), step=step),
             "Neuron activations in the 2-D Fourier basis (mean squared coefficient over neurons): the key "
             "frequencies' linear (const x cos/sin k) and quadratic (cos/sin k x cos/sin k) terms."),
            ("logit-map", logit_map,
             "W_L = W_out W_U in the Fourier basis of the output, neurons grouped by frequency cluster."),
            ("trig-fit", trig_fit,
             "Each cluster's neurons fitted by the nine terms {1, cos, sin}(w_k a) x {1, cos, sin}(w_k b): "
             "share of variance (linear, quadratic) and the most active neuron against its fit."),
            ("clock", clock,
             "Operand embeddings on each key frequency's (cos, sin) plane, joined in the order of w_k a."),
        ]
        parts = []
        for key, make, caption in figures:
            try:
                parts.append(_figure_html(key, make(), caption))
            except ValueError as exc:
                parts.append(f'<p class="note">{html.escape(key)}: not available: {html.escape(str(exc))}</p>')
        return '<div class="cols">' + "\n".join(parts) + "</div>"

    def config_section() -> str:
        return _table_html(_config_frame(run))

    # clusters before the spectrum: they give the key frequencies the spectrum highlights
    sections = {
        "events": ("Events", events_section),
        "training": ("Training curves", training_section),
        "measures": ("Progress measures", measures_section),
        "clusters": (f"Neuron frequency clusters{where}", clusters_section),
        "fourier": (f"Embedding Fourier spectrum{where}", fourier_section),
        "split": ("Split and what the model gets right", split_section),
        "compare": ("Measures compared", compare_section),
        "attention": ("Attention patterns (circuitsvis)", attention_section),
        "circuit": (f"The Fourier circuit (TransformerLens demo, ARENA){where}", circuit_section),
        "config": ("Configuration", config_section),
    }
    rendered = {key: _section(key, name, fn) for key, (name, fn) in sections.items()}
    order = ["events", "training", "measures", "fourier", "clusters", "split", "compare", "attention", "circuit",
             "config"]
    d = run.config.data
    split_desc = d.split + (f"(k={d.k})" if d.k is not None else "") + (f"(t={d.t})" if d.t is not None else "")
    heading = title or f"grok_interp run report{': ' + str(run.path) if run.path is not None else ''}"
    summary = (
        f"p={d.p}, op={d.op}, split={split_desc}, frac={d.frac}, arch={run.config.model.arch}; "
        f"step {int(last['step'])}: train acc {last['train_acc']:.3f}, test acc {last['test_acc']:.3f}, "
        f"test loss {last['test_loss']:.4g}"
    )
    body = f"<h1>{html.escape(heading)}</h1>\n<p class=\"summary\">{html.escape(summary)}</p>\n" + "\n".join(
        rendered[k] for k in order
    )
    return html_page(heading, body, _STYLE), cache.get("compare")


def write_report(
    run: TaskRun | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    step: int | None = None,
    pairs: Sequence[Sequence[int]] | None = None,
    measures: Sequence[str] | None = None,
    smoothing: bool = False,
    compare: bool = True,
    title: str | None = None,
) -> Path:
    """Write a run's self-contained HTML report and return its path (opens nothing).

    The page holds: events (memorised, grokked, U-Acc, L-Acc); loss and accuracy
    curves; recorded progress measures (or, over the checkpoints, MED beside the paper's
    restricted and excluded loss, Gini, weight norm and uniformity) beside test loss;
    the embedding Fourier spectrum and the neuron frequency clusters; the split grid
    with what the model answers correctly; the ``compare_measures`` table; the
    circuitsvis attention widget at memorisation, grokking and the end; the Fourier
    circuit as the TransformerLens demo and ARENA draw it (attention and neurons over
    (a, b), neurons and W_L in the Fourier basis, the trig fit per neuron cluster, the
    embedding clock: :mod:`grok_interp.viz.circuit`); the configuration. Plots are PNG data URIs and the circuitsvis bundle is inlined: no
    external URL is referenced.

    Args:
        run: A :class:`~grok_interp.TaskRun` (a GrokRun) or a run directory.
        out: Output file (default ``<run dir>/report.html``; required for an
            in-memory run).
        step: Draw the spectrum, clusters and attention at this checkpoint instead of
            the final model.
        pairs: Inputs ``(a, b)`` for the attention widget.
        measures: Measures to plot (default: those recorded in the history, else
            MED, restricted and excluded loss, Gini, weight norm and uniformity through
            ``run.measure``).
        smoothing: Smooth the curves as in the paper (window mean, then Gaussian).
        compare: Include the ``compare_measures`` table.
        title: Page title.

    The ``compare_measures`` table is also written as CSV beside the page
    (``report.html`` -> ``report_compare.csv``).

    Returns:
        The path written.
    """
    if isinstance(run, (str, os.PathLike)):
        from ..runs import load_run

        run = load_run(run)
    if out is None:
        if run.path is None:
            raise bad_value("out", None, "is required for a run that was not saved to a directory")
        out = Path(run.path) / "report.html"
    out = Path(out)
    t0 = time.perf_counter()
    page, table = _report(run, step=step, pairs=pairs, measures=measures, smoothing=smoothing, compare=compare,
                          title=title)
    out.parent.mkdir(parents=True, exist_ok=True)
    store.atomic_write(out, page.encode("utf-8"))  # the run store writes every file of a run
    if table is not None:
        store.write_csv(out.with_name(out.stem + "_compare.csv"), table)
    log.debug("report written to %s (%.1f MB, %.1fs)", out, len(page) / 1e6, time.perf_counter() - t0)
    return out
