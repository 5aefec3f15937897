"""Configs: one source per default and per check."""

import pytest

import grok_interp as g
from grok_interp.config import field_docs

from .helpers import SMALL_MODEL

pytestmark = pytest.mark.portable


def test_field_docs_cover_every_field():
    import dataclasses

    for cls in (g.DataConfig, g.ModelConfig, g.TrainConfig):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no Args: entry"
    assert field_docs(g.TrainConfig)["weight_decay"].startswith("AdamW settings")  # "lr, weight_decay, betas: ..."


def test_field_docs_drop_sphinx_markup():
    class Cfg:
        """A config.

        Args:
            a: See :mod:`grok_interp.training.loop` and :func:`~grok_interp.runs.train_hooked`,
                ``x = 1``; 5% of it.
        """

    assert field_docs(Cfg)["a"] == "See grok_interp.training.loop and grok_interp.runs.train_hooked, x = 1; 5%% of it."
    from grok_interp.vision import ResNetConfig

    for cls in (g.DataConfig, g.ModelConfig, g.TrainConfig, ResNetConfig):
        for name, text in field_docs(cls).items():
            assert ":mod:" not in text and ":func:" not in text and "`" not in text, (cls.__name__, name, text)


def test_choices_are_checked_from_one_table():
    for cls in (g.DataConfig, g.ModelConfig, g.TrainConfig):
        for name, allowed in cls.CHOICES.items():
            with pytest.raises(ValueError, match=f"^{name}="):
                cls(**{name: "no-such-choice"})
            assert allowed


def test_default_device_is_auto():
    assert g.TrainConfig().device == "auto"


def test_solu_ln_is_refused_for_the_mlp_baseline():
    with pytest.raises(ValueError, match="^act_fn='solu_ln'"):
        g.ModelConfig(arch="mlp", act_fn="solu_ln")
    g.ModelConfig(arch="transformer", act_fn="solu_ln")  # TransformerLens has it


def test_split_options_are_checked_once_for_configs_and_splits():
    task = g.Task(p=7)
    for make in (lambda **kw: g.DataConfig(p=7, **kw), lambda **kw: g.Split.build(task, kw.pop("split"), **kw)):
        with pytest.raises(ValueError, match="^k=3 .*only applies to split='square'"):
            make(split="random", k=3)
        with pytest.raises(ValueError, match="^t=None .*needs t"):
            make(split="strip")
        with pytest.raises(ValueError, match="^k=7 "):
            make(split="square", k=7)


def test_config_and_conflicting_options_is_an_error():
    config = g.RunConfig.from_kwargs(p=23, steps=5, **SMALL_MODEL)
    with pytest.raises(ValueError, match="^steps=9 .*conflicts with config="):
        g.train_hooked(config=config, steps=9, progress=False)
    with pytest.raises(ValueError, match="^p=29 .*conflicts"):
        g.train_hooked(29, config=config, progress=False)
    run = g.train_hooked(config=config, steps=5, p=23, progress=False)  # agreeing options are harmless
    assert run.history["step"].max() == 5


def test_unknown_option_suggests_the_near_one():
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        g.RunConfig.from_kwargs(stepz=3)


def test_updated_rederives_d_head():
    c = g.RunConfig.from_kwargs(d_model=64, n_heads=4)
    assert c.model.d_head == 16
    assert c.updated(d_model=128).model.d_head == 32
    assert c.updated(steps=7).train.steps == 7 and c.updated(steps=7).model == c.model
