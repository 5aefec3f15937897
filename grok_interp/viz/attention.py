"""Attention patterns of a run, shown with circuitsvis and saved as offline HTML.

:func:`attention_patterns` (from :mod:`grok_interp.viz.data`, where a run's model is
run) reads ``blocks.{layer}.attn.hook_pattern`` for chosen ``(a, b)`` inputs at any
checkpoint; :func:`attention_widget` draws patterns it is given, and
:func:`attention_heads` does both: it hands a run's patterns to
``circuitsvis.attention.attention_heads`` and returns an :class:`OfflineHTML`: the
circuitsvis object (it *is* a ``RenderedHTML``) that always shows its ``local_src``,
the version with the circuitsvis JavaScript bundle inlined. circuitsvis' own
``str()``/``show_code()`` load the bundle from a CDN, which shows nothing on a machine
without internet, and its notebook display probes the network first; ours never does.

Several inputs are drawn as one widget: their token sequences are laid side by side
and the pattern is block-diagonal (each input attends only within its own three
tokens ``a, b, =``), so one thumbnail per head shows every input at once.

Example:
    >>> import grok_interp as g
    >>> from grok_interp.viz import attention_heads
    >>> run = g.train_hooked(p=11, steps=20, d_model=16, d_mlp=32, progress=False)
    >>> html = attention_heads(run, step=16)    # a checkpoint; html renders in a notebook
    >>> "CircuitsVis" in html.local_src         # the bundle is inlined: works offline
    True
"""

from __future__ import annotations

import html as _html
import os
import re
from pathlib import Path
from typing import Sequence

import torch
from circuitsvis.attention import attention_heads as _cv_attention_heads
from circuitsvis.utils.render import RenderedHTML
from jaxtyping import Float, Int
from torch import Tensor

from .._validate import bad_value
from ..protocols import TaskRun, as_task_run
from .data import attention_patterns, default_pairs

__all__ = [
    "OfflineHTML",
    "attention_patterns",
    "attention_heads",
    "attention_widget",
    "default_pairs",
    "pair_token_labels",
    "block_diagonal",
    "html_page",
]


class OfflineHTML(RenderedHTML):
    """A circuitsvis ``RenderedHTML`` that always renders from its inlined bundle.

    ``_repr_html_``, ``__html__`` and ``str()`` all return ``local_src`` (circuitsvis
    returns the CDN version from ``str()`` and probes the network in notebooks), so
    the widget shows in a notebook, in a saved page and in the run report without
    internet. ``cdn_src`` is kept unchanged for those who want it.
    """

    def __init__(self, rendered: RenderedHTML) -> None:
        super().__init__(_close_div(rendered.local_src), rendered.cdn_src)

    def _repr_html_(self) -> str:
        return self.local_src

    def __html__(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src

    def save(self, path: str | os.PathLike, title: str = "Attention patterns") -> Path:
        """Write a standalone HTML page (no external resources) holding the widget.

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html_page(title, f"<h1>{_html.escape(title)}</h1>\n{self.local_src}"), encoding="utf-8")
        return path


_SELF_CLOSED_DIV = re.compile(r'^(\s*<div id="circuits-vis-[^"]*"[^>]*?)\s*/>')


def _close_div(src: str) -> str:
    """circuitsvis writes its mount point as ``<div .../>``, which HTML parses as an
    *open* div that swallows whatever follows; close it so the widget can sit inside
    other markup."""
    return _SELF_CLOSED_DIV.sub(r"\1></div>", src, count=1)


def html_page(title: str, body: str, style: str = "") -> str:
    """A complete, self-contained HTML document around ``body``."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{_html.escape(title)}</title>\n<style>\n"
        "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1200px;"
        "padding:0 16px;color:#222}\n"
        f"{style}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def pair_token_labels(pairs: Int[Tensor, "n 2"]) -> list[str]:
    """Token strings for the widget: ``a``, ``b`` (the residue, whatever the operand
    offset) and ``=`` for each pair, in sequence order."""
    out: list[str] = []
    for a, b in torch.as_tensor(pairs).tolist():
        out += [str(a), str(b), "="]
    return out


def block_diagonal(patterns: Float[Tensor, "batch head dest src"]) -> Float[Tensor, "head seq seq"]:
    """Lay ``batch`` patterns side by side: ``(head, batch*pos, batch*pos)``, zero off
    the diagonal blocks (inputs never attend to each other)."""
    return torch.stack([torch.block_diag(*patterns[:, h]) for h in range(patterns.shape[1])])


def attention_heads(
    run: TaskRun,
    pairs: Int[Tensor, "batch 2"] | Sequence[Sequence[int]] | None = None,
    *,
    step: int | Sequence[int | None] | None = None,
    layer: int = 0,
) -> OfflineHTML:
    """The circuitsvis ``attention_heads`` widget for a run at one or more checkpoints.

    Args:
        run: A :class:`~grok_interp.TaskRun` (patterns from
            :func:`grok_interp.viz.data.attention_patterns`).
        pairs: Inputs ``(a, b)`` to show (default :func:`default_pairs`, four inputs).
        step: A checkpoint step, or a list of them (None in it, or alone: the final
            model). With a list, one widget holds every step's heads, named
            ``"step {s} L{layer}H{h}"``, so the patterns can be compared over training
            with one copy of the circuitsvis bundle.
        layer: Transformer layer.

    Returns:
        An :class:`OfflineHTML` (a circuitsvis ``RenderedHTML``): display it in a
        notebook, or ``.save(path)`` a standalone page that works offline.
    """
    steps = list(step) if isinstance(step, (list, tuple)) else [step]
    if not steps:
        raise bad_value("step", step, "must be a checkpoint step, a non-empty list of them, or None")
    run = as_task_run(run)
    pairs = default_pairs(run.task.p) if pairs is None else torch.as_tensor(pairs, dtype=torch.int64)
    patterns = {s: attention_patterns(run, pairs, step=s, layer=layer) for s in steps}
    return attention_widget(patterns, pairs, layer=layer)


def attention_widget(
    patterns: Float[Tensor, "batch head dest src"] | dict[int | None, Float[Tensor, "batch head dest src"]],
    pairs: Int[Tensor, "batch 2"] | Sequence[Sequence[int]],
    *,
    layer: int = 0,
) -> OfflineHTML:
    """Draw attention patterns already computed as one circuitsvis widget (no model runs).

    Args:
        patterns: ``(batch, head, 3, 3)`` patterns of the ``pairs`` (as
            :func:`attention_patterns` returns), or ``{step: patterns}`` (None: the
            final model) to show several checkpoints side by side, heads named
            ``"step {s} L{layer}H{h}"``.
        pairs: The inputs ``(a, b)`` the patterns belong to.
        layer: The layer, for the head names.

    Returns:
        An :class:`OfflineHTML`.
    """
    by_step = patterns if isinstance(patterns, dict) else {None: patterns}
    if not by_step:
        raise bad_value("patterns", patterns, "must hold at least one step's patterns")
    pairs = torch.as_tensor(pairs, dtype=torch.int64)
    blocks, names = [], []
    for s, pattern in by_step.items():
        pattern = torch.as_tensor(pattern)
        if pattern.ndim != 4 or pattern.shape[0] != len(pairs):
            raise bad_value("patterns", tuple(pattern.shape), f"must be (batch={len(pairs)}, head, dest, src)")
        blocks.append(block_diagonal(pattern))
        prefix = "" if len(by_step) == 1 else ("final " if s is None else f"step {s} ")
        names += [f"{prefix}L{layer}H{h}" for h in range(pattern.shape[1])]
    rendered = _cv_attention_heads(
        attention=torch.cat(blocks),
        tokens=pair_token_labels(pairs),
        attention_head_names=names,
        mask_upper_tri=True,
    )
    return OfflineHTML(rendered)
