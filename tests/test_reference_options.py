"""The reference code's settings as run options: saved in config.json, reloaded, and
reachable from the command line (issue 13, item 1)."""

import json

import pytest
import torch

import grok_interp as g
from grok_interp.cli import main

from .helpers import SMALL_MODEL

pytestmark = pytest.mark.portable

# One option of each kind the reference code differs by.
REFERENCE_OPTIONS = dict(shuffle="python", attn_bias=False, unembed_bias=False, loss="ce_float32",
                         embed_init="toeplitz")


def test_reference_options_train_save_and_reload(tmp_path):
    run = g.train_hooked(p=23, split="strip", t=4, offset=5, data_seed=0, steps=30, eval_every=10,
                         checkpoint_every=10, out=tmp_path / "run", progress=False, **SMALL_MODEL,
                         **REFERENCE_OPTIONS)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    for key, value in REFERENCE_OPTIONS.items():
        section = next(s for s in ("data", "model", "train") if key in saved[s])
        assert saved[section][key] == value
    loaded = g.load_run(tmp_path / "run")
    assert loaded.config.to_dict() == run.config.to_dict()
    assert g.models.absent_biases(loaded.model).keys() >= {"blocks.0.attn.b_Q", "unembed.b_U"}
    assert not any(n.endswith(("b_Q", "b_U", "q.bias", "unembed.bias")) for n, _ in loaded.model.named_parameters())
    toks = run.task.tokens(run.task.all_pairs())
    assert torch.equal(loaded.model(toks), run.model(toks))
    expected = g.Split.strip(g.Task(23, offset=5), 4, 0.3, 0, shuffle="python")
    assert torch.equal(loaded.split.train_mask, expected.train_mask) and loaded.split.shuffle == "python"
    # Resuming rebuilds the bias-free model, loads its state (optimiser included) and the
    # replayed split checks against the saved one.
    more = g.train_hooked(p=23, split="strip", t=4, offset=5, data_seed=0, steps=40, eval_every=10,
                          checkpoint_every=10, out=tmp_path / "run", resume=True, progress=False,
                          **SMALL_MODEL, **REFERENCE_OPTIONS)
    assert more.history["step"].tolist() == [0, 10, 20, 30, 40]


def test_reference_mlp_baseline_trains_and_reloads(tmp_path):
    run = g.train_hooked(p=23, arch="mlp", mlp_input="operands_and_eq", init="linear_default", steps=20,
                         eval_every=10, checkpoint_every=10, out=tmp_path / "mlp", progress=False, d_model=16, d_mlp=32)
    loaded = g.load_run(tmp_path / "mlp")
    toks = run.task.tokens(run.task.all_pairs())
    assert loaded.config.model.mlp_input == "operands_and_eq" and torch.equal(loaded.model(toks), run.model(toks))


def test_cli_flags_reach_the_config(tmp_path):
    out = tmp_path / "cli"
    code = main(["train", "--p", "23", "--steps", "10", "--eval-every", "5", "--checkpoint-every", "5",
                 "--d-model", "32", "--d-mlp", "64", "--shuffle", "python", "--no-attn-bias", "--no-unembed-bias",
                 "--loss", "ce_float32", "--embed-init", "toeplitz", "--out", str(out), "--quiet"])
    assert code == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["shuffle"] == "python"
    assert saved["model"]["attn_bias"] is False and saved["model"]["unembed_bias"] is False
    assert saved["model"]["embed_init"] == "toeplitz" and saved["train"]["loss"] == "ce_float32"
    code = main(["train", "--p", "23", "--steps", "5", "--arch", "mlp", "--mlp-input", "operands_and_eq",
                 "--init", "linear_default", "--d-model", "16", "--out", str(tmp_path / "mlp"), "--quiet"])
    assert code == 0


def test_defaults_are_unchanged():
    cfg = g.RunConfig()
    assert cfg.data.shuffle == "torch" and cfg.train.loss == "ce"
    assert cfg.model.attn_bias and cfg.model.unembed_bias and cfg.model.mlp_input == "operands"
    assert cfg.model.init == "nanda" and cfg.model.embed_init == "random"
    # An old config.json without the new keys still loads, with these defaults.
    old = cfg.to_dict()
    del old["data"]["shuffle"], old["model"]["attn_bias"], old["model"]["unembed_bias"], old["model"]["mlp_input"]
    assert g.RunConfig.from_dict(old).to_dict() == cfg.to_dict()


def test_reference_meds_are_named_measures():
    names = ["med_drop_last_avg", "med_drop_last_sum", "med_drop_last_scaled_sum"]
    run = g.train_hooked(p=23, steps=20, eval_every=10, checkpoint_every=10, progress=False, record=names,
                         **SMALL_MODEL)
    last = run.history.iloc[-1]
    for name in names:
        variant = name.removeprefix("med_")
        assert last[name] == pytest.approx(g.measures.med(run.model, run.task, variant=variant))
    assert last["med_drop_last_scaled_sum"] == pytest.approx(2 * 22 * last["med_drop_last_avg"])  # d = 0


def test_mlp_baseline_without_unembed_bias():
    model = g.models.build_model(g.ModelConfig(arch="mlp", d_model=8, d_mlp=16, unembed_bias=False), g.Task(7))
    assert "unembed.b_U" not in dict(model.named_parameters())
    assert torch.count_nonzero(g.models.weights(model)["unembed.b_U"]) == 0
    assert model(g.Task(7).tokens(g.Task(7).all_pairs())).shape == (49, 1, 7)
