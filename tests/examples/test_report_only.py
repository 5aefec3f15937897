"""Every study's committed tables and plots are what ``--report-only`` builds from its data.

For each study and setup in ``results/``, copy the study's results to a temporary
directory, rebuild them there with ``python examples/<study>.py ... --report-only
--results COPY`` (no training: the tables and plots come from ``sweep.csv`` and the
histories alone), and compare with the committed files:

* every CSV byte for byte (pandas writes them deterministically);
* every PNG by its decoded pixels (the file bytes also hold matplotlib's version in the
  metadata, which says nothing about the picture);
* a file the rebuild writes that is not committed fails too.

The inputs (``sweep.csv``, histories) are compared as well: a report must not change them.

So a study whose report crashes, or whose committed outputs are older than its code or
its data, fails here. To fix: run the command printed in the failure and commit what
changed under ``results/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"

# (script, arguments, results directory under results/): every committed study output.
STUDIES = [
    ("square_strip", ["--setup", "library"], "square_strip/library"),
    ("square_strip", ["--setup", "reference"], "square_strip/reference"),
    ("square_strip", ["--setup", "reference", "--accelerator", "stablemax_perp_wd0"],
     "square_strip/reference-stablemax_perp_wd0"),
    ("nonisomorphic", ["--setup", "library"], "nonisomorphic/library"),
    ("nonisomorphic", ["--setup", "reference"], "nonisomorphic/reference"),
    ("med_vs_loss", ["--setup", "library"], "med_vs_loss/library"),
    ("med_vs_loss", ["--setup", "reference"], "med_vs_loss/reference"),
    ("embed_init", ["--setup", "library"], "embed_init/library"),
    ("embed_init", ["--setup", "reference"], "embed_init/reference"),
    ("frozen_onehot", ["--setup", "library"], "frozen_onehot/library"),
    ("frozen_onehot", ["--setup", "reference"], "frozen_onehot/reference"),
    ("mlp_vs_transformer", ["--setup", "library"], "mlp_vs_transformer/library"),
    ("mlp_vs_transformer", ["--setup", "reference"], "mlp_vs_transformer/reference"),
    ("accelerators", [], "accelerators/library"),
    ("resnet_map", [], "resnet_map/library"),
    ("resnet_map", ["--weight-decays", "0.3", "--init-scales", "3", "10", "--epochs", "1000"],
     "resnet_map/library-wd0.3-1000"),
    ("resnet_map", ["--optimizer", "adam", "--image-size", "32", "--weight-decays", "1e-4", "1e-3", "1e-2", "1e-1",
                    "--init-scales", "1", "--epochs", "1000"], "resnet_map/library-adam-32px"),
    ("resnet_map", ["--optimizer", "adam", "--image-size", "32", "--weight-decays", "1e-2", "--init-scales", "1",
                    "--seeds", "0,1,2", "--epochs", "2000"], "resnet_map/library-adam-32px-wd0.01"),
    ("resnet_reference", [], "resnet_reference/library"),
    ("resnet_reference", ["--seeds", "0", "--only", "pretrain_epochs == 50", "--epochs", "4500"],
     "resnet_reference/library-4500"),
    ("clock_pizza", [], "clock_pizza"),
]

pytestmark = pytest.mark.slow


def _outputs(folder: Path) -> set[str]:
    """Every file of a results directory, relative to it."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGBA"))


def test_every_committed_result_directory_is_covered():
    """A new study or setup under results/ must be added to STUDIES (else it goes unchecked)."""
    committed = {p.parent.relative_to(RESULTS).as_posix() for p in RESULTS.rglob("sweep.csv")}
    assert committed == {d for _, _, d in STUDIES}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_no_committed_table_names_a_column_twice():
    """pandas reads a doubled name back as ``name.1``: a reader would take the wrong one."""
    import csv

    doubled = {}
    for path in sorted(RESULTS.rglob("*.csv")):
        with path.open(newline="") as f:
            header = next(csv.reader(f), [])
        if all(_is_number(k) for k in header):  # a bare matrix (clock_pizza's logits): no header
            continue
        twice = sorted({k for k in header if header.count(k) > 1})
        if twice:
            doubled[path.relative_to(RESULTS).as_posix()] = twice
    assert not doubled, f"columns named twice: {doubled}"


@pytest.mark.parametrize("script,args,folder", STUDIES, ids=[d for _, _, d in STUDIES])
def test_report_only_rebuilds_the_committed_outputs(tmp_path, script, args, folder):
    committed = RESULTS / folder
    # the study's whole results tree: square_strip --accelerator reads the plain setup beside it
    copy = tmp_path / "results" / folder.split("/")[0]
    shutil.copytree(RESULTS / folder.split("/")[0], copy)
    target = tmp_path / "results" / folder
    cmd = [sys.executable, str(ROOT / "examples" / f"{script}.py"), *args, "--report-only", "--results", str(target)]
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    shown = f"python examples/{script}.py {' '.join(args)} --report-only"
    assert proc.returncode == 0, f"{shown} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"

    wrote, kept = _outputs(target), _outputs(committed)
    assert wrote == kept, (f"{shown} writes {sorted(wrote - kept)} that are not committed and not "
                           f"{sorted(kept - wrote)} that are")
    stale = []
    for name in sorted(kept):
        new, old = target / name, committed / name
        if name.endswith(".png"):
            a, b = _pixels(new), _pixels(old)
            if a.shape != b.shape or not np.array_equal(a, b):
                stale.append(name)
        elif new.read_bytes() != old.read_bytes():
            stale.append(name)
    assert not stale, f"results/{folder}: {stale} are out of date; run `{shown}` and commit them"
