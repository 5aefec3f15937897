"""The benchmark scripts run end to end (tiny settings): a script that breaks would only
be found the day someone needs its figures, e.g. on a lent GPU."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_gpu_script_smoke_runs_on_cpu():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--device", "cpu", "--p", "23", "--steps", "2",
           "--repeats", "1", "--max-steps", "30", "--k", "2", "--many-steps", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    parts = {r["part"]: r for r in _json_lines(out)}
    assert set(parts) == {"train_step", "time_to_grok", "many_runs"}
    assert parts["train_step"]["hooked_ms"] > 0 and parts["train_step"]["fast_ms"] > 0
    assert parts["time_to_grok"]["steps_run"] == 30
    assert parts["many_runs"]["k"] == 2 and parts["many_runs"]["batched_s"] > 0


def test_gpu_script_refuses_a_missing_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0 and "no CUDA device" in res.stderr


def test_eval_cost_script_smoke_runs(tmp_path):
    import grok_interp as g

    history = tmp_path / "dense.csv"
    g.train_hooked(p=23, steps=120, eval_every=10, eval_sparse=1, d_model=32, n_heads=4, d_mlp=64,
                   progress=False).history.to_csv(history, index=False)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "eval_cost.py"), "--p", "23", "--steps", "20",
           "--replay", str(history)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    rows = _json_lines(out)
    measured = {r["eval_sparse"]: r for r in rows if r["part"] == "measured"}
    replayed = {r["eval_sparse"]: r for r in rows if r["part"] == "replayed"}
    assert set(measured) == set(replayed) == {1, 5}
    assert measured[1]["test_forwards"] == measured[1]["rows"] == 3  # steps 0, 10, 20
    assert 0 < measured[1]["eval_share"] < 1
    assert replayed[1]["test_forwards"] == replayed[1]["dense_rows"] == 13
    assert replayed[5]["test_forwards"] <= replayed[1]["test_forwards"]


@pytest.mark.slow
@pytest.mark.parametrize("dense", [False, True])
def test_time_to_grok_script_smoke_runs(dense):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "time_to_grok.py"), "--cases", "p97", "--seeds", "0",
           "--max-steps", "60", "--threads", "1", *(["--dense"] if dense else [])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    run, median = _json_lines(out)
    assert run["steps_run"] == 60 and run["grok_step"] is None and run["eval_sparse"] == (1 if dense else 5)
    assert run["dense_forwards"] == 7 and 2 <= run["test_forwards"] <= 7
    if dense:
        assert run["test_forwards"] == 7
    assert median["median_grok_step"] == 60 and "test forwards" in out


def test_step_anatomy_replays_the_products_it_recorded():
    """The product recorder keeps each product's op, sizes and strides (a transposed
    operand stays transposed), skips everything else, and the replay times each one."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import step_anatomy
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    a, b, c = torch.randn(8, 5), torch.randn(7, 5), torch.randn(7)
    rec = step_anatomy.ProductRecorder()
    with rec:
        y = torch.addmm(c, a, b.T)  # (8, 7): b.T is a strided view
        z = torch.relu(y)  # not a product
        torch.mm(z, torch.randn(7, 3))
    ops = [func._overloadpacket.__name__ for func, _, _ in rec.calls]
    assert ops == ["addmm", "mm"]
    _, args, _ = rec.calls[0]
    assert args[0][1] == (7,) and args[1][1:] == ((8, 5), (5, 1)) and args[2][1:] == ((5, 7), (1, 5))
    assert step_anatomy.products_alone(rec.calls, repeats=2) > 0


def test_mlp_step_script_smoke_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mlp_step.py"), "--repeats", "1", "--steps", "1",
           "--setups", "reference"]
    rows = _json_lines(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout)
    assert [r["forward"].split()[0] for r in rows] == ["hooked", "fast"]
    assert all(r["n_train"] == int(0.3 * 97 * 97) and r["ms"] > 0 for r in rows)
    # The tables trade the first layer's three products over n = 2822 pairs, 6 n (3 * 128) 512
    # FLOPs, for the same three over the 98 tokens of the vocabulary (97 numbers and "=").
    assert rows[0]["gflop"] - rows[1]["gflop"] == pytest.approx(6 * (2822 - 98) * 384 * 512 / 1e9, rel=0.01)
    assert rows[0]["max_logit_diff"] < 1e-5


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="forward_ab.py reads a revision with git show")
def test_forward_ab_script_smoke_runs():
    # Against HEAD: the same algebra on both sides, so the logits agree (exactly, in a
    # clean checkout) and both steps are timed.
    cmd = [sys.executable, str(ROOT / "benchmarks" / "forward_ab.py"), "--rev", "HEAD", "--p", "13", "--frac", "0.5",
           "--layers", "2", "--repeats", "1"]
    (row,) = _json_lines(subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout)
    assert row["n_layers"] == 2 and 0.4 * 169 < row["n_train"] < 0.6 * 169
    assert row["rev_ms"] > 0 and row["now_ms"] > 0 and row["max_logit_diff"] < 1e-5


def test_subnormal_grad_script_smoke_runs():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "subnormal_grad.py"), "--p", "23", "--t", "8", "--train", "30",
           "--repeats", "1", "--steps", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    rows = _json_lines(out)
    assert [r["case"] for r in rows] == ["F.cross_entropy (plain)", "loss_fn ce_float32 (flushed)"]
    assert all(r["ms"] > 0 and 0 <= r["subnormal_share"] <= 1 for r in rows)
    assert "plain / flushed" in out


def test_run_cache_overlap_finds_the_runs_studies_share():
    """The reference random split of SQUARE/STRIP is embed_init's random-init run and
    the transformer of mlp_vs_transformer (rec.py's run in all three): one key per seed,
    held by those three studies, while no study holds one key twice."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_cache_overlap as rco
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        plans = [rco.study_plan(s, "reference", Path(tmp)) for s in ("square_strip", "embed_init", "mlp_vs_transformer")]
    for plan in plans:
        assert len(plan) and (plan["key"].str.len() == 64).all() and plan["key"].is_unique
    import pandas as pd

    shared = rco.overlap(pd.concat(plans, ignore_index=True).assign(final_step=1.0, train_s=float("nan")))
    assert sorted(shared["copies"]) == [3, 3, 3]
    for seed in (0, 1, 2):
        row = shared[shared["runs"].str.contains(f"split=random,seed={seed};")]
        assert len(row) == 1 and f"embed_init/seed={seed},embed_init=random" in row["runs"].iloc[0]
