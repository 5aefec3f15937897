"""grok_interp.viz.attention: patterns from the weights, the offline circuitsvis widget."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from circuitsvis.utils.render import RenderedHTML

from grok_interp.viz import (
    attention_heads,
    attention_patterns,
    default_pairs,
)
from grok_interp.viz.attention import block_diagonal

from ..helpers import EXTERNAL_LOAD, SMALL_MODEL, circuitsvis_props, small_run


pytestmark = pytest.mark.portable




def _reference_patterns(w: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """Attention of a one-layer transformer without LayerNorm, from its weights alone."""
    resid = w["embed.W_E"][tokens] + w["pos_embed.W_pos"][: tokens.shape[1]]
    q = torch.einsum("bpd,hde->bhpe", resid, w["blocks.0.attn.W_Q"]) + w["blocks.0.attn.b_Q"][None, :, None]
    k = torch.einsum("bpd,hde->bhpe", resid, w["blocks.0.attn.W_K"]) + w["blocks.0.attn.b_K"][None, :, None]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    n = tokens.shape[1]
    scores = scores.masked_fill(torch.triu(torch.ones(n, n, dtype=torch.bool), 1), float("-inf"))
    return scores.softmax(-1)


# --- attention ------------------------------------------------------------------------------
def test_attention_patterns_match_the_weights_at_each_checkpoint(run):
    pairs = torch.tensor([[0, 0], [3, 19], [22, 5]])
    for step in (0, 100, run.checkpoint_steps[-1]):
        got = attention_patterns(run, pairs, step=step)
        want = _reference_patterns(run.weights_at(step), run.task.tokens(pairs))
        assert got.shape == (3, SMALL_MODEL["n_heads"], 3, 3)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    # training changed the patterns: the checkpoint really is used
    assert not torch.allclose(attention_patterns(run, pairs, step=0), attention_patterns(run, pairs, step=300), atol=1e-3)


def test_attention_widget_is_the_offline_circuitsvis_object(run):
    pairs = [[1, 2], [7, 20]]
    html = attention_heads(run, pairs, step=200)
    assert isinstance(html, RenderedHTML)
    # every way of showing it uses the inlined bundle, never the CDN
    assert html._repr_html_() == html.local_src == str(html) == html.__html__()
    assert "unpkg.com" in html.cdn_src and "unpkg.com" not in html.local_src
    assert not EXTERNAL_LOAD.search(html.local_src)
    props = circuitsvis_props(html.local_src)
    assert props["tokens"] == ["1", "2", "=", "7", "20", "="]
    assert props["attentionHeadNames"] == [f"L0H{h}" for h in range(4)]
    want = block_diagonal(attention_patterns(run, pairs, step=200))
    np.testing.assert_allclose(np.array(props["attention"]), want.numpy(), atol=1e-6)
    att = np.array(props["attention"])
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)  # each row a distribution
    assert np.all(att[:, :3, 3:] == 0) and np.all(att[:, 3:, :3] == 0)  # inputs never attend to each other
    # the mount point is closed, so following markup is not swallowed by it
    assert re.match(r'\s*<div id="circuits-vis-[^"]+"[^>]*></div>', html.local_src)


def test_attention_widget_over_several_checkpoints(run, tmp_path):
    html = attention_heads(run, [[4, 9]], step=[0, 300, None])
    props = circuitsvis_props(html.local_src)
    assert props["attentionHeadNames"][:5] == ["step 0 L0H0", "step 0 L0H1", "step 0 L0H2", "step 0 L0H3", "step 300 L0H0"]
    assert props["attentionHeadNames"][-1] == "final L0H3" and len(props["attention"]) == 12
    final = attention_patterns(run, [[4, 9]])[0]
    np.testing.assert_allclose(np.array(props["attention"][8:]), final.numpy(), atol=1e-6)
    page = html.save(tmp_path / "att.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("CircuitsVis.render(") == 1
    assert not EXTERNAL_LOAD.search(page)


def test_attention_bad_input(run):
    with pytest.raises(ValueError, match="pairs="):
        attention_patterns(run, [[0, 23]])
    with pytest.raises(ValueError, match="layer=1"):
        attention_patterns(run, layer=1)
    with pytest.raises(ValueError, match="step=7"):
        attention_heads(run, step=7)
    with pytest.raises(ValueError, match="run="):
        attention_heads("not a run")
    mlp = small_run(arch="mlp", steps=10)
    with pytest.raises(ValueError, match="MLP baseline has no attention"):
        attention_patterns(mlp)


def test_default_pairs_are_distinct_valid_inputs():
    for p in (5, 23, 113):
        pairs = default_pairs(p)
        assert pairs.shape == (4, 2) and bool(((pairs >= 0) & (pairs < p)).all())
        assert len({tuple(x) for x in pairs.tolist()}) == 4
