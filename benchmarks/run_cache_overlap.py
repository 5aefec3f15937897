"""Which runs of the studies in ``examples/`` the run cache trains once (issue 17).

Every study is a sweep; two studies that ask for a run with the same configuration
(the same run-cache key, :func:`grok_interp.run_cache.options_key`) train it once: the
second copies it. This script asks each study for its plan (``--plan``: the runs it
would train and their keys, nothing trained), finds the keys that more than one study
holds, and prices what the cache saves with the committed results
(``results/<study>/<setup>/sweep.csv``: the steps each run trained and, for runs
trained since runs count it, ``train_s``).

    python benchmarks/run_cache_overlap.py                     # both setups
    python benchmarks/run_cache_overlap.py --setups reference

Prints one table per setup (each shared run, the studies that hold it, its steps and
training seconds), a summary table and a JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: The studies that train their runs through ``_common.run_sweep`` (so ``--plan`` works).
STUDIES = ("square_strip", "med_vs_loss", "embed_init", "frozen_onehot", "nonisomorphic", "mlp_vs_transformer")


def study_plan(study: str, setup: str, tmp: Path) -> pd.DataFrame | None:
    """The study's runs at ``setup`` (paper scale, default seeds) with their keys; None
    when the study has no such setup."""
    sys.path.insert(0, str(EXAMPLES))
    module = importlib.import_module(study)
    if setup not in module.SCALES:
        return None
    csv = tmp / f"{study}-{setup}.csv"
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            module.main(["--setup", setup, "--plan", str(csv), "--out", str(tmp / "out" / study / setup)])
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    plan = pd.read_csv(csv, keep_default_na=False)
    plan.insert(0, "study", study)
    return plan


def trained(study: str, setup: str) -> pd.DataFrame:
    """``run``, ``final_step`` and ``train_s`` of the study's committed results (empty
    when it has none at this setup)."""
    path = ROOT / "results" / study / setup / "sweep.csv"
    if not path.exists():
        return pd.DataFrame(columns=["run", "final_step", "train_s"])
    table = pd.read_csv(path)
    if "train_s" not in table:
        table["train_s"] = float("nan")
    return table[["run", "final_step", "train_s"]]


def overlap(plans: pd.DataFrame) -> pd.DataFrame:
    """One row per key held by more than one run: the runs (``study/group/run``), how
    many, and the steps and seconds of one trained copy where the results have it."""
    keyed = plans[plans["key"] != ""]
    rows = []
    for key, runs in keyed.groupby("key", sort=False):
        if len(runs) < 2:
            continue
        done = runs.dropna(subset=["final_step"])
        rows.append({
            "key": key[:12],
            "runs": "; ".join(f"{r.study}/{(r.group + '/') if r.group else ''}{r.run}" for r in runs.itertuples()),
            "copies": len(runs),
            "final_step": done["final_step"].iloc[0] if len(done) else float("nan"),
            "train_s": done["train_s"].dropna().iloc[0] if done["train_s"].notna().any() else float("nan"),
        })
    return pd.DataFrame(rows, columns=["key", "runs", "copies", "final_step", "train_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", nargs="+", default=["library", "reference"])
    args = ap.parse_args(argv)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in args.setups:
            parts = []
            for study in STUDIES:
                plan = study_plan(study, setup, Path(tmp))
                if plan is None:
                    continue
                done = trained(study, setup)
                # a study's results name the run alone; its group (e.g. mlp/) is a folder
                plan = plan.merge(done, on="run", how="left")
                parts.append(plan)
            plans = pd.concat(parts, ignore_index=True)
            shared = overlap(plans)
            print(f"\n== {setup}: runs held by more than one study (trained once, copied by the others)")
            print(shared.to_string(index=False) if len(shared) else "(none)")
            saved = shared.assign(extra=shared["copies"] - 1)
            summary.append({
                "setup": setup,
                "studies": len(parts),
                "runs": len(plans),
                "keyed": int((plans["key"] != "").sum()),
                "distinct_keys": int(plans.loc[plans["key"] != "", "key"].nunique()),
                "runs_saved": int(saved["extra"].sum()),
                "steps_saved": int((saved["extra"] * saved["final_step"]).sum(min_count=1) or 0),
                "steps_planned": int(plans["final_step"].sum()),
                "runs_with_results": int(plans["final_step"].notna().sum()),
                "train_s_saved": float((saved["extra"] * saved["train_s"]).sum()),
            })
    table = pd.DataFrame(summary)
    print("\n== summary (steps: of the runs with committed results; train_s: of those that recorded it)")
    print(table.to_string(index=False))
    print(json.dumps({"benchmark": "run_cache_overlap", "setups": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
