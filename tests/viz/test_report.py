"""grok_interp.viz.report: one self-contained page, offline."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from grok_interp.cli import main
from grok_interp.measures import events
from grok_interp.viz import (
    write_report,
)

from ..helpers import EXTERNAL_LOAD, circuitsvis_props, small_run


pytestmark = pytest.mark.portable




# --- report -----------------------------------------------------------------------------------
def test_report_is_one_self_contained_page(run_dir, run, capsys):
    assert main(["report", str(run_dir)]) == 0
    out = run_dir / "report.html"
    printed = capsys.readouterr()
    assert printed.out.strip() == f"report written to {out}"
    assert "report written" not in printed.err  # one message per action
    page = out.read_text()
    assert not EXTERNAL_LOAD.search(page) and "unpkg.com" not in page
    assert page.count("CircuitsVis.render(") == 1
    for key in ("events", "training", "measures", "fourier", "clusters", "split", "compare", "attention", "circuit",
                "config"):
        assert f'<section id="{key}">' in page
    for key in ("training", "measures", "fourier", "clusters", "split", "compare", "attention-grid", "neuron-grid",
                "fourier-2d", "logit-map", "clock"):
        assert re.search(rf'<figure id="plot-{key}" class="plot"><img alt="[^"]*" src="data:image/png;base64,', page), key
    # This run memorised but has no frequency clusters yet: the trig fit says so in words
    # instead of drawing an empty picture; nothing else is missing.
    assert page.lower().count("not available") == (0 if 'id="plot-trig-fit"' in page else 1)
    assert 'id="plot-trig-fit"' in page or "trig-fit: not available: no MLP neuron has a key frequency" in page
    ev = events(run.history)
    assert f"<td>memorised_at</td>\n      <td>{ev.memorised_at}</td>" in page
    # attention at the checkpoint nearest memorisation, then the final model
    names = circuitsvis_props(page[page.index('<div class="attention-widget">'):])["attentionHeadNames"]
    assert names[0] == f"step {min(run.checkpoint_steps, key=lambda s: abs(s - ev.memorised_at))} L0H0"
    assert names[-1] == "final L0H3"
    # the measures panel: MED beside the paper's restricted and excluded loss, and the
    # comparison table beside the page as CSV, one row per measure it shows
    assert re.search(r'<figcaption>med, restricted_loss, excluded_loss, ', page)
    table = pd.read_csv(run_dir / "report_compare.csv")
    assert {"med", "restricted_loss", "excluded_loss"} <= set(table["measure"])


def test_report_options_and_errors(run_dir, run, tmp_path, capsys):
    out = write_report(run, tmp_path / "sub" / "r.html", step=100, compare=False, smoothing=True)
    page = out.read_text()
    assert "Not available: left out" in page and "at step 100" in page
    assert not (tmp_path / "sub" / "r_compare.csv").exists()  # no table, no CSV
    assert circuitsvis_props(page[page.index('<div class="attention-widget">'):])["attentionHeadNames"][0] == "L0H0"
    assert main(["report", str(run_dir), "--step", "7"]) == 2
    assert "--step 7 is invalid" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    with pytest.raises(ValueError, match="out="):
        write_report(small_run(steps=10))


def test_report_of_an_mlp_run_explains_what_is_missing(tmp_path):
    r = small_run(arch="mlp", steps=20, out=tmp_path / "mlp")
    page = write_report(r).read_text()
    assert "Not available: the MLP baseline has no attention" in page
    assert "CircuitsVis.render(" not in page and '<figure id="plot-training"' in page


def test_report_plots_measures_recorded_during_training(tmp_path):
    r = small_run(steps=40, record=["med", "gini"], out=tmp_path / "rec")
    page = write_report(r, compare=False).read_text()
    caption = re.search(r'<figure id="plot-measures".*?<figcaption>(.*?)</figcaption>', page, re.S).group(1)
    assert caption.startswith("med, gini_embed, gini_logit (recorded during training)")
