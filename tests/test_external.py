"""Outside models in: from_model, other codes' checkpoint files, presets, mismatch checks."""

from __future__ import annotations

import dataclasses
import os
import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import grok_interp as g
from grok_interp import tl_backend
from grok_interp.external import PickledConfig, read_checkpoint_file
from grok_interp.measures import key_frequencies, med, restricted_loss
from grok_interp.models import build_model, load_weights, weights
from grok_interp.presets import preset_options

P = 7
needs_hooked = pytest.mark.skipif(not tl_backend.HAS_HOOKED_TRANSFORMER, reason="HookedTransformer is gone in TransformerLens 4")


def _tl_cfg(p: int = P, **extra):
    fields = dict(n_layers=1, n_heads=2, d_model=16, d_head=8, d_mlp=32, act_fn="relu", normalization_type=None,
                  d_vocab=p + 1, d_vocab_out=p, n_ctx=3)
    fields.update(extra)
    return fields


def _hooked(p: int = P, seed: int = 5, **extra):
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        state = (np.random.get_state(), random.getstate())
        model = tl_backend.HookedTransformer(tl_backend.HookedTransformerConfig(seed=seed, **_tl_cfg(p, **extra)))
        np.random.set_state(state[0])
        random.setstate(state[1])
    return model


@needs_hooked
def test_a_hooked_transformer_becomes_a_run_that_measures_plots_and_reports(tmp_path):
    theirs = _hooked()
    early = {k: v.clone() for k, v in theirs.state_dict().items()}
    with torch.no_grad():
        theirs.W_E.mul_(2.0)
    run = g.from_model(theirs, P, checkpoints=[early, theirs.state_dict()], checkpoint_steps=[0, 50])
    assert run.checkpoint_steps == [0, 50] and run.path is None
    assert torch.equal(run.weights_at(0)["embed.W_E"], early["embed.W_E"])
    assert torch.equal(run.model.W_E, theirs.W_E) and run.model is not theirs
    assert set(run.history.columns) >= {"step", "train_loss", "test_loss", "train_acc", "test_acc"}
    assert list(run.history["step"]) == [0, 50]
    table = run.measure(["med"])
    assert table["med"].iloc[1] == pytest.approx(2 * table["med"].iloc[0], rel=1e-5)
    from grok_interp.viz import plot_training
    from grok_interp.viz.report import write_report

    plot_training(run)
    page = write_report(run, tmp_path / "r.html", compare=False).read_text()
    assert "Training" in page or "training" in page
    loaded = g.load_run(run.save(tmp_path / "saved"))
    assert loaded.checkpoint_steps == [0, 50] and torch.equal(loaded.model.W_E, theirs.W_E)


@needs_hooked
def test_a_state_dict_with_its_config_and_the_library_default_split():
    theirs = _hooked()
    run = g.from_model(theirs.state_dict(), g.Task(P), cfg=_tl_cfg(seed=5))
    assert torch.equal(run.model.W_Q, theirs.W_Q)
    assert run.split.kind == "random" and run.split.seed == 598
    with pytest.raises(g.GrokInterpError, match="needs its config"):
        g.from_model(theirs.state_dict(), g.Task(P))


def test_load_weights_takes_a_hooked_or_bridge_state_dict():
    task = g.Task(P)
    a = build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=16, seed=1), task)
    b = build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=16, seed=2), task)
    assert any(k.endswith(("IGNORE", "mask")) for k in a.state_dict()) or tl_backend.backend_of(a) == "bridge"
    load_weights(b, a.state_dict())  # the attention buffers are skipped, not an error
    assert all(torch.equal(weights(a)[k], weights(b)[k]) for k in weights(a))
    bridge = build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=16, seed=3, backend="bridge"), task)
    load_weights(bridge, a.state_dict())
    load_weights(b, bridge.state_dict())  # a bridge's own names and layouts
    assert torch.equal(weights(b)["blocks.0.attn.W_O"], weights(a)["blocks.0.attn.W_O"])


def test_a_hand_built_run_is_measured_from_its_public_checkpoints():
    task = g.Task(P)
    model = build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=16), task)
    w = {k: v.detach().clone() for k, v in weights(model).items()}
    config = g.RunConfig.from_kwargs(p=P, d_model=16, n_heads=2, d_mlp=16)
    run = g.GrokRun(model=model, task=task, split=g.Split.random(task, 0.5, 0), config=config,
                    history=pd.DataFrame({"step": [3]}), checkpoints={3: w})
    assert run.checkpoint_steps == [3]
    assert run.measure(["med"])["med"].iloc[0] == pytest.approx(med(model, task))
    with pytest.raises(g.GrokInterpError, match="model and task do not fit"):
        g.GrokRun(model=model, task=g.Task(11), split=g.Split.random(g.Task(11), 0.5, 0), config=g.RunConfig(),
                  history=pd.DataFrame({"step": [3]}))


def test_a_model_measured_on_another_task_is_one_clear_error():
    model = build_model(g.ModelConfig(d_model=16, n_heads=2, d_mlp=16), g.Task(59))
    for call in (lambda: key_frequencies(model, g.Task(53)), lambda: med(model, g.Task(61)),
                 lambda: restricted_loss(model, g.Task(53)), lambda: med(weights(model), 53)):
        with pytest.raises(g.GrokInterpError, match=r"model and task do not fit: the model reads d_vocab=60 tokens"):
            call()
    with pytest.raises(g.GrokInterpError, match="the model gives d_vocab_out=59 logits but the task has p = 61"):
        key_frequencies(model, g.Task(61))
    assert key_frequencies(model, g.Task(59)) is not None  # its own task still works


@needs_hooked
def test_what_the_library_cannot_represent_is_refused_in_one_error():
    with pytest.raises(g.GrokInterpError, match=r"cannot be represented.*attention-only.*rotary"):
        g.external.model_config_from_tl(_tl_cfg(attn_only=True, positional_embedding_type="rotary"))
    with pytest.raises(g.GrokInterpError, match="model and task do not fit"):
        g.from_model(_hooked(), g.Task(11))


# --- other codes' files ------------------------------------------------------------------
@needs_hooked
def test_the_transformerlens_demo_file_loads_without_running_pickles(tmp_path):
    model = _hooked(seed=999)
    cfg = model.cfg
    gen = torch.Generator().manual_seed(598)
    indices = torch.randperm(P * P, generator=gen)
    cut = int(P * P * 0.3)
    ckpts, epochs = [], []
    for epoch in range(3):
        with torch.no_grad():
            model.W_E.add_(0.1)
        ckpts.append({k: v.clone() for k, v in model.state_dict().items()})
        epochs.append(epoch)
    path = tmp_path / "grokking_demo.pth"
    torch.save({"model": model.state_dict(), "config": cfg, "checkpoints": ckpts, "checkpoint_epochs": epochs,
                "test_losses": [2.0, 1.9, 1.8], "train_losses": [2.1, 1.5, 1.0],
                "train_indices": indices[:cut], "test_indices": indices[cut:]}, path)
    raw = read_checkpoint_file(path)
    assert isinstance(raw["config"], PickledConfig) and raw["config"].fields["d_vocab"] == P + 1
    run = g.from_checkpoint_file(path)
    assert run.task.p == P and run.checkpoint_steps == [1, 2, 3]  # after epoch e: e + 1 steps
    assert torch.equal(run.weights_at(3)["embed.W_E"], model.W_E)
    train = torch.zeros(P * P, dtype=torch.bool)
    train[indices[:cut]] = True
    assert torch.equal(run.split.train_mask.reshape(-1), train)
    assert run.split.kind == "random" and run.config.data.data_seed == 598  # the demo's split is the library's
    h = run.history.set_index("step")
    assert h.loc[0, "train_loss"] == 2.1 and h.loc[1, "test_loss"] == 2.0 and h.loc[3, "test_loss"] == 1.8
    assert not np.isnan(h.loc[3, "test_acc"]) and np.isnan(h.loc[0, "test_acc"])
    assert run.config.train.warmup_steps == 0 and run.config.model.init == "tl"
    assert len(run.measure(["med"])) == 3


@dataclasses.dataclass(frozen=True)
class Config:  # stands for the progress-measures code's own Config (pickled by class name)
    p: int = P
    d_model: int = 16
    fn_name: str = "add"
    frac_train: float = 0.3
    seed: int = 0
    num_heads: int = 2
    act_type: str = "ReLU"
    use_ln: bool = False
    save_every: int = 100
    device: torch.device = torch.device("cpu")


def _to_nanda(w: dict[str, torch.Tensor], p: int) -> dict[str, torch.Tensor]:
    """Canonical weights -> Nanda et al.'s layout (W_U with an extra "=" column)."""
    h, d, dh = w["blocks.0.attn.W_Q"].shape
    out = {"embed.W_E": w["embed.W_E"].T.clone(), "pos_embed.W_pos": w["pos_embed.W_pos"].clone(),
           "unembed.W_U": torch.cat([w["unembed.W_U"], torch.randn(d, 1)], 1),
           "blocks.0.attn.mask": torch.tril(torch.ones(3, 3))}
    for n in "QKV":
        out[f"blocks.0.attn.W_{n}"] = w[f"blocks.0.attn.W_{n}"].transpose(-1, -2).clone()
    out["blocks.0.attn.W_O"] = w["blocks.0.attn.W_O"].permute(2, 0, 1).reshape(d, h * dh).clone()
    out["blocks.0.mlp.W_in"] = w["blocks.0.mlp.W_in"].T.clone()
    out["blocks.0.mlp.W_out"] = w["blocks.0.mlp.W_out"].T.clone()
    out["blocks.0.mlp.b_in"], out["blocks.0.mlp.b_out"] = w["blocks.0.mlp.b_in"], w["blocks.0.mlp.b_out"]
    return out


def test_the_progress_measures_file_loads_in_our_layout(tmp_path):
    task = g.Task(P)
    cfg = g.ModelConfig(d_model=16, n_heads=2, d_mlp=32, attn_bias=False, unembed_bias=False)
    states = []
    for seed in (1, 2):
        m = build_model(dataclasses.replace(cfg, seed=seed), task)
        states.append({k: v.detach().clone() for k, v in weights(m).items() if not k.startswith(("blocks.0.attn.b_", "unembed.b"))})
    path = tmp_path / "full_run_data.pth"
    torch.save({"state_dicts": [_to_nanda(s, P) for s in states], "epochs": [0, 100], "config": Config(),
                "train_losses": [4.0 - i / 100 for i in range(200)], "test_losses": [4.5 - i / 10 for i in range(20)]}, path)
    run = g.from_checkpoint_file(path)
    assert run.checkpoint_steps == [0, 100]
    for step, want in zip((0, 100), states):
        got = run.weights_at(step)
        assert all(torch.equal(got[k], v) for k, v in want.items()), step
    assert run.split.shuffle == "python" and run.split.seed == 0  # their random.seed(0); random.shuffle
    h = run.history.set_index("step")
    assert h.loc[10, "test_loss"] == pytest.approx(4.4) and h.loc[199, "train_loss"] == pytest.approx(2.01)
    assert not run.config.model.attn_bias and run.config.model.init == "nanda"


def test_a_hostile_pickle_is_refused_in_one_line_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": Evil(), "checkpoints": []}, path)
    with pytest.raises(g.RunDirectoryError) as info:
        g.from_checkpoint_file(path)
    text = str(info.value)
    assert "\n" not in text and "system" in text and "nothing in it was run" in text
    assert not marker.exists()


# --- presets ---------------------------------------------------------------------------------
@needs_hooked
def test_the_demo_preset_builds_the_demo_model_bit_for_bit():
    opts = preset_options("tl_demo")
    config = g.RunConfig.from_kwargs(**opts)
    ours = build_model(config.model, g.Task(113))
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")
        state = (np.random.get_state(), random.getstate())
        demo = tl_backend.HookedTransformer(tl_backend.HookedTransformerConfig(
            n_layers=1, n_heads=4, d_model=128, d_head=32, d_mlp=512, act_fn="relu", normalization_type=None,
            d_vocab=114, d_vocab_out=113, n_ctx=3, init_weights=True, device="cpu", seed=999))
        np.random.set_state(state[0])
        random.setstate(state[1])
    theirs = dict(demo.named_parameters())
    mine = weights(ours)
    assert set(mine) == set(theirs)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    frozen = {k for k, v in ours.named_parameters() if not v.requires_grad}
    assert frozen == {k for k in theirs if "b_" in k}  # the demo's `if "b_" in name: requires_grad = False`
    assert config.train.warmup_steps == 0 and config.train.betas == (0.9, 0.98) and config.data.data_seed == 598


def test_presets_from_python_and_the_cli_with_options_that_win(tmp_path, capsys):
    from grok_interp.cli import main

    small = dict(p=P, d_model=16, d_mlp=16, steps=2, eval_every=1)
    run = g.train_hooked(preset="tl_demo", progress=False, **small)
    assert run.config.model.init == "tl" and run.config.model.freeze_biases and run.config.model.d_model == 16
    assert run.config.train.warmup_steps == 0 and run.config.train.steps == 2
    assert main(["train", "--preset", "tl_demo", "--p", str(P), "--d-model", "16", "--d-mlp", "16", "--steps", "2",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    saved = g.load_run(tmp_path / "r").config
    assert saved.model.seed == 999 and saved.model.init == "tl" and saved.data.p == P and saved.train.steps == 2
    assert main(["train", "--preset", "tl_dem", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "did you mean 'tl_demo'" in capsys.readouterr().err
    nanda = g.RunConfig.from_kwargs(**preset_options("nanda", p=P))
    assert nanda.data.shuffle == "python" and not nanda.model.attn_bias and nanda.train.warmup_steps == 10


def test_a_file_whose_config_is_too_big_is_refused_before_allocating(tmp_path):
    # a d_vocab of 36012 made the task's tables (10 GB) before any check
    path = tmp_path / "big.pth"
    torch.save({"model": {}, "config": _tl_cfg(36011, d_vocab=36012)}, path)
    with pytest.raises(g.RunDirectoryError, match=r"big.pth: its config gives p=36011 is invalid: .*needs at least"):
        g.from_checkpoint_file(path)
    big_model = {"model": {}, "config": _tl_cfg(d_model=10**6, d_head=10**6 // 2, d_mlp=10**7)}
    torch.save(big_model, path)
    with pytest.raises(g.RunDirectoryError, match=r"big.pth: its config gives d_mlp=10000000 is invalid"):
        g.from_checkpoint_file(path)


def test_a_directory_is_not_a_missing_checkpoint_file(tmp_path):
    with pytest.raises(g.RunDirectoryError, match="is a directory"):
        g.from_checkpoint_file(tmp_path)
    with pytest.raises(g.RunDirectoryError, match="does not exist"):
        g.from_checkpoint_file(tmp_path / "none.pth")


@pytest.mark.parametrize("option, words", [
    ({"scale_attn_by_inverse_layer_idx": True}, "inverse layer index"),
    ({"attention_dir": "bidirectional"}, "bidirectional attention"),
    ({"normalization_type": "LN", "eps": 1e-3}, "eps=0.001"),
    ({"post_embedding_ln": True}, "after the embedding"),
    ({"clip_qkv": 8.0}, "clipped"),
])
def test_options_the_rebuilt_model_cannot_honour_are_refused(option, words):
    with pytest.raises(g.GrokInterpError, match=f"cannot be represented.*{words}"):
        g.external.model_config_from_tl(_tl_cfg(**option))


@needs_hooked
@pytest.mark.parametrize("option", [{"attention_dir": "bidirectional"}, {"scale_attn_by_inverse_layer_idx": True}])
def test_from_model_refuses_a_model_it_would_change(option):
    # one layer: the last position's logits agree (layer 0's scale is 1; the last
    # position attends to all anyway), but the model rebuilt is another one
    theirs = _hooked(**option)
    with pytest.raises(g.GrokInterpError, match="cannot be represented"):
        g.from_model(theirs, g.Task(P))


@needs_hooked
def test_from_model_compares_the_logits_at_every_position():
    # a change the last position does not see (one layer, position 0 only) is a setting missed
    theirs = _hooked()

    def shift_first(x, hook):
        x[:, 0] += 1.0
        return x

    theirs.blocks[-1].hook_resid_post.add_hook(shift_first)
    with pytest.raises(g.GrokInterpError, match="computes other logits"):
        g.from_model(theirs, g.Task(P))
    theirs.reset_hooks()
    assert g.from_model(theirs, g.Task(P)).task.p == P


@needs_hooked
def test_a_state_dict_is_checked_against_the_model_its_config_builds(monkeypatch):
    theirs = _hooked()
    seen = []
    real = g.external._check_same_logits
    monkeypatch.setattr(g.external, "_check_same_logits", lambda ours, ref, task: seen.append(ref) or real(ours, ref, task))
    state = np.random.get_state()[1][:4].tolist(), random.getstate()[1][:4], torch.random.get_rng_state()
    run = g.from_model(theirs.state_dict(), g.Task(P), cfg=theirs.cfg.to_dict())
    assert len(seen) == 1 and seen[0] is not theirs  # built from the config, then compared on every pair
    assert torch.equal(run.model.W_E, theirs.W_E)
    now = np.random.get_state()[1][:4].tolist(), random.getstate()[1][:4], torch.random.get_rng_state()
    assert now[0] == state[0] and now[1] == state[1] and torch.equal(now[2], state[2])  # no global seed touched
