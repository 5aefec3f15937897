"""Named setups people know: the TransformerLens Grokking demo, Nanda et al. (2023).

A preset is a set of flat options (any field of :class:`~grok_interp.config.DataConfig`,
:class:`~grok_interp.config.ModelConfig` or :class:`~grok_interp.config.TrainConfig`);
options given beside it win. ``train_hooked(preset="tl_demo", steps=5000)`` and
``grok-interp train --preset tl_demo --steps 5000`` train the demo's model for 5000
steps. Each value below was read from the setup's own code:

* ``tl_demo``: TransformerLens' ``demos/Grokking_Demo.ipynb``. ``p = 113``,
  ``frac_train = 0.3``, ``DATA_SEED = 598`` (``torch.manual_seed(598);
  torch.randperm(p * p)``, which is this library's ``random`` split with
  ``data_seed=598``); ``HookedTransformerConfig(n_layers=1, n_heads=4, d_model=128,
  d_head=32, d_mlp=512, act_fn="relu", normalization_type=None, n_ctx=3, seed=999)``
  with TransformerLens' own initialisation (``init="tl"``: bit-identical initial
  weights); every ``b_*`` parameter frozen (they start at zero: ``freeze_biases``);
  ``AdamW(lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))`` with no warm-up, full batch,
  25 000 epochs, a checkpoint every 100, the collapse-free cross-entropy (``ce``).
* ``nanda``: the progress-measures paper's ``transformers.py`` (Nanda et al., 2023):
  the same sizes and optimiser, Gaussian weights and zero biases (``init="nanda"``; their
  own draws are not replayed), no attention or unembedding biases, ``lr`` warmed up over 10 steps
  (``LambdaLR(min(step / 10, 1))``), the split by Python's ``random.seed(0);
  random.shuffle`` of the pair list (``shuffle="python"``, ``data_seed=0``), 50 000
  epochs, a checkpoint every 100. (Their unembedding also gives a logit for ``"="``;
  this library's gives the p answers only.)
* ``default``: this library's defaults (no options).
"""

from __future__ import annotations

from typing import Any

from ._validate import check_choice

__all__ = ["PRESETS", "preset_options"]

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "tl_demo": {
        "p": 113, "op": "add", "split": "random", "frac": 0.3, "data_seed": 598, "shuffle": "torch",
        "n_layers": 1, "n_heads": 4, "d_model": 128, "d_mlp": 512, "act_fn": "relu",
        "normalization": None, "pos_embed": True, "init": "tl", "seed": 999, "freeze_biases": True,
        "attn_bias": True, "unembed_bias": True,
        "lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98), "warmup_steps": 0, "optimizer": "adamw",
        "loss": "ce", "steps": 25_000, "checkpoint_every": 100,
    },
    "nanda": {
        "p": 113, "op": "add", "split": "random", "frac": 0.3, "data_seed": 0, "shuffle": "python",
        "n_layers": 1, "n_heads": 4, "d_model": 128, "d_mlp": 512, "act_fn": "relu",
        "normalization": None, "pos_embed": True, "init": "nanda", "seed": 0, "freeze_biases": False,
        "attn_bias": False, "unembed_bias": False,
        "lr": 1e-3, "weight_decay": 1.0, "betas": (0.9, 0.98), "warmup_steps": 10, "optimizer": "adamw",
        "loss": "ce", "steps": 50_000, "checkpoint_every": 100,
    },
}
"""Preset name -> flat options (see the module docstring for where each comes from)."""


def preset_options(name: str, **options: Any) -> dict[str, Any]:
    """The options of preset ``name`` with ``options`` laid over them (given options win)."""
    check_choice("preset", name, tuple(PRESETS))
    return {**PRESETS[name], **options}
