"""Attention patterns of a run, shown with circuitsvis and saved as offline HTML.

:func:`attention_patterns` reads ``blocks.{layer}.attn.hook_pattern`` for chosen
``(a, b)`` inputs at any checkpoint; :func:`attention_heads` hands them to
``circuitsvis.attention.attention_heads`` and returns an :class:`OfflineHTML`: the
circuitsvis object (it *is* a ``RenderedHTML``) that always shows its ``local_src``,
the version with the circuitsvis JavaScript bundle inlined. circuitsvis' own
``str()``/``show_code()`` load the bundle from a CDN, which shows nothing on a machine
without internet, and its notebook display probes the network first; ours never does.

Several inputs are drawn as one widget: their token sequences are laid side by side
and the pattern is block-diagonal (each input attends only within its own three
tokens ``a, b, =``), so one thumbnail per head shows every input at once.

Example:
    >>> from grok_interp.viz import attention_heads
    >>> html = attention_heads(run, step=1000)  # doctest: +SKIP
    >>> html                                     # doctest: +SKIP  (renders in a notebook)
    >>> html.save("attention.html")              # doctest: +SKIP  (works offline)
"""

from __future__ import annotations

import html as _html
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
from circuitsvis.attention import attention_heads as _cv_attention_heads
from circuitsvis.utils.render import RenderedHTML
from jaxtyping import Float, Int
from torch import Tensor, nn

from .._validate import bad_value

__all__ = [
    "OfflineHTML",
    "attention_patterns",
    "attention_heads",
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


def default_pairs(p: int, n: int = 4) -> Int[Tensor, "n 2"]:
    """``n`` fixed, spread-out inputs ``(a, b)``: ``a = round(j p / n)``,
    ``b = (a + round(p / 3) + 7 j) mod p`` for ``j = 0..n-1`` (deterministic, so the
    same inputs are shown at every checkpoint and in every report)."""
    if n < 1:
        raise bad_value("n", n, "must be >= 1")
    a = torch.tensor([round(j * p / n) % p for j in range(n)])
    b = (a + round(p / 3) + 7 * torch.arange(n)) % p
    return torch.stack([a, b], dim=1)


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


def _check_run(run: Any) -> None:
    if not hasattr(run, "task") or not hasattr(run, "model") or not hasattr(run, "model_at"):
        raise bad_value("run", type(run).__name__, "must be a GrokRun (grok_interp.train_hooked / load_run)")


def _resolve(run: Any, step: int | None) -> tuple[nn.Module, Any]:
    """(model, task) of a GrokRun at ``step`` (None: the run's current model)."""
    _check_run(run)
    model = run.model if step is None else run.model_at(step)
    return model, run.task


def _patterns(model: nn.Module, task: Any, pairs: Any, layer: int) -> Tensor:
    pairs = default_pairs(task.p) if pairs is None else torch.as_tensor(pairs, dtype=torch.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
        raise bad_value("pairs", tuple(pairs.shape), "must be a non-empty (n, 2) list of (a, b)")
    if bool(((pairs < 0) | (pairs >= task.p)).any()) or not bool(task.valid[pairs[:, 0], pairs[:, 1]].all()):
        raise bad_value("pairs", pairs.tolist(), f"every (a, b) must be a valid input of the task (0 <= a, b < {task.p})")
    name = f"blocks.{layer}.attn.hook_pattern"
    device = next(model.parameters()).device
    with torch.no_grad():
        _, cache = model.run_with_cache(task.tokens(pairs).to(device), names_filter=lambda n: n == name)
    if name not in cache:
        raise bad_value("layer", layer, f"the model has no hook {name!r} (layers count from 0; an MLP baseline has no attention)")
    return cache[name].detach().to("cpu", torch.float32)


def attention_patterns(
    run: Any,
    pairs: Int[Tensor, "batch 2"] | Sequence[Sequence[int]] | None = None,
    *,
    step: int | None = None,
    layer: int = 0,
) -> Float[Tensor, "batch head dest src"]:
    """Attention patterns ``blocks.{layer}.attn.hook_pattern`` for inputs ``(a, b)``.

    ``pattern[i, h, q, k]`` is the softmax weight head ``h`` puts on source position
    ``k`` when writing position ``q`` of input ``i`` (rows sum to 1; causal, so
    ``k <= q``). Position 2 is the ``=`` token, where the answer is read.

    Args:
        run: A :class:`~grok_interp.GrokRun`.
        pairs: ``(batch, 2)`` operand pairs (default :func:`default_pairs`).
        step: A checkpoint step (see ``run.checkpoint_steps``); None: the final model.
        layer: Transformer layer.

    Returns:
        The patterns, float32 on the CPU.
    """
    model, task = _resolve(run, step)
    return _patterns(model, task, pairs, layer)


def attention_heads(
    run: Any,
    pairs: Int[Tensor, "batch 2"] | Sequence[Sequence[int]] | None = None,
    *,
    step: int | Sequence[int | None] | None = None,
    layer: int = 0,
) -> OfflineHTML:
    """The circuitsvis ``attention_heads`` widget for a run at one or more checkpoints.

    Args:
        run: A :class:`~grok_interp.GrokRun`.
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
    _check_run(run)
    pairs = default_pairs(run.task.p) if pairs is None else torch.as_tensor(pairs, dtype=torch.int64)
    blocks, names = [], []
    for s in steps:
        model, task = _resolve(run, s)
        pattern = _patterns(model, task, pairs, layer)
        blocks.append(block_diagonal(pattern))
        prefix = "" if len(steps) == 1 else ("final " if s is None else f"step {s} ")
        names += [f"{prefix}L{layer}H{h}" for h in range(pattern.shape[1])]
    rendered = _cv_attention_heads(
        attention=torch.cat(blocks),
        tokens=pair_token_labels(pairs),
        attention_head_names=names,
        mask_upper_tri=True,
    )
    return OfflineHTML(rendered)
