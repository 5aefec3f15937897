"""Configuration dataclasses: everything needed to rebuild a run, as plain JSON.

A run is described by four parts, each a dataclass with ``to_dict``/``from_dict`` and
checks in ``__post_init__``:

* :class:`DataConfig`  - the task (p, operation, operand offset) and its split;
* :class:`ModelConfig` - architecture, initialisation and TransformerLens backend;
* :class:`TrainConfig` - optimiser, schedule, loss, stopping and recording cadence;
* :class:`RunConfig`   - the three together; this is what ``config.json`` holds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ._validate import bad_value, check_choice, check_int, check_open_unit, is_prime

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig"]


class _DictMixin:
    """``to_dict``/``from_dict`` for flat dataclasses (unknown keys are an error)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(d) - names
        if unknown:
            raise bad_value(cls.__name__, sorted(unknown), "unknown keys; allowed: " + ", ".join(sorted(names)))
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


@dataclass
class DataConfig(_DictMixin):
    """The task and its split (see :mod:`grok_interp.tasks`).

    Args:
        p: Prime modulus (>= 3).
        op: Operation name (``add``, ``subtract``, ``multiply``, ``divide``,
            ``square_sum``, ``a2_ab_b2``, ``a2_b2``, ``a3_b3``, ``a3_ab_b3``), or
            ``custom:<name>`` for a run trained on a user callable.
        offset: Operand offset d: operand b uses token ``b + d``.
        split: ``random``, ``square``, ``strip`` or ``mask`` (custom forced-test mask).
        frac: Training fraction in (0, 1): of valid pairs (random) or of ``p * p``.
        data_seed: Seed of the split's shuffle (598 as in Nanda et al.).
        k: SQUARE size (pairs with a <= k and b <= k forced to test).
        t: STRIP width (pairs with a <= t forced to test).
        shuffle: How the split orders candidate pairs before taking the training set:
            ``torch`` (default, ``torch.randperm``) or ``python``: Python's
            ``random.Random(data_seed).shuffle`` of the row-major pair list, which
            replays the reference scripts' training pairs exactly (their data seed: 0
            in ``rec.py``/``str.py``, 11 in ``base.py``). See :data:`grok_interp.tasks.SHUFFLES`.
    """

    p: int = 113
    op: str = "add"
    offset: int = 0
    split: str = "random"
    frac: float = 0.3
    data_seed: int = 598
    k: int | None = None
    t: int | None = None
    shuffle: str = "torch"

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not isinstance(self.p, int) or self.p < 3 or not is_prime(self.p):
            raise bad_value("p", self.p, "must be a prime number >= 3")
        check_int("offset", self.offset, low=0)
        check_choice("split", self.split, ("random", "square", "strip", "mask"))
        self.frac = check_open_unit("frac", self.frac)
        check_int("data_seed", self.data_seed)
        if self.k is not None:
            check_int("k", self.k, low=0, high=self.p - 1)
        if self.t is not None:
            check_int("t", self.t, low=0, high=self.p - 1)
        check_choice("shuffle", self.shuffle, ("torch", "python"))
        if self.split == "square" and self.k is None:
            raise bad_value("k", None, f"split='square' needs k in [0, {self.p - 1}]")
        if self.split == "strip" and self.t is None:
            raise bad_value("t", None, f"split='strip' needs t in [0, {self.p - 1}]")


@dataclass
class ModelConfig(_DictMixin):
    """Architecture and initialisation of the model trained on a task.

    Args:
        arch: ``transformer`` (hooked, TransformerLens) or ``mlp`` (the paper's DNN
            baseline: concatenated embeddings -> d_mlp -> d_mlp -> p).
        n_layers, n_heads, d_model, d_mlp: Transformer sizes (Nanda: 1, 4, 128, 512).
        d_head: Defaults to ``d_model // n_heads``.
        act_fn: MLP activation (``relu``, ``gelu``, ...).
        normalization: ``None`` (no LayerNorm, the reference setting) or ``"LN"``.
        pos_embed: Learned positional embedding on (True) or off.
        init: ``nanda``: every weight ~ N(0, 1/d_model), biases 0, as in both reference
            codes; ``tl``: TransformerLens' own default initialisation;
            ``linear_default`` (``arch="mlp"`` only): the dense layers as torch's
            ``nn.Linear`` initialises them, weights and biases ~ U(-1/sqrt(fan_in),
            1/sqrt(fan_in)), the embedding ~ N(0, 1/d_model): the reference code's MLP
            baseline (``MLP/rec.py``).
        embed_init: ``random`` (per ``init``), ``circulant`` (rows are cyclic shifts of
            one zero-mean Gaussian vector), ``toeplitz`` (the reference code's
            commented-out "circulant" init, ``transformer/rec.py:59-75``: a vector ``v ~
            U[0, 1)^d_model``, token ``i``'s embedding ``v[|j - i|] / sqrt(d_model)`` for
            j = 0..d_model-1, a symmetric Toeplitz matrix without wrap-around; all entries
            positive, so tokens start with mean pairwise cosine about 0.75; needs
            d_model >= d_vocab) or ``onehot`` (frozen identity; needs d_model >= d_vocab).
        freeze_biases: Keep every bias at zero and out of the optimiser.
        attn_bias: Give attention its biases ``b_Q, b_K, b_V, b_O`` (default). ``False``
            builds attention without them, as the reference code does: the model has no
            such parameters (nothing to train or decay); :func:`grok_interp.models.weights`
            reports them as zeros so analysis code sees the usual layout.
        unembed_bias: Give the unembedding its bias ``b_U`` (default). ``False``: none,
            as in the reference transformer (same treatment as ``attn_bias``).
        mlp_input: ``arch="mlp"`` only: ``operands`` (default) concatenates the
            embeddings of a and b (2 x d_model); ``operands_and_eq`` also the ``"="``
            token's, 3 x d_model, as the reference MLP baseline (``MLP/rec.py:88``).
        backend: ``auto`` (HookedTransformer under TransformerLens 3, the native
            TransformerBridge under 4), ``hooked`` or ``bridge``.
        seed: Seed of the weight initialisation.
    """

    arch: str = "transformer"
    n_layers: int = 1
    n_heads: int = 4
    d_model: int = 128
    d_head: int | None = None
    d_mlp: int = 512
    act_fn: str = "relu"
    normalization: str | None = None
    pos_embed: bool = True
    init: str = "nanda"
    embed_init: str = "random"
    freeze_biases: bool = False
    backend: str = "auto"
    seed: int = 999
    attn_bias: bool = True
    unembed_bias: bool = True
    mlp_input: str = "operands"

    def __post_init__(self) -> None:
        check_choice("arch", self.arch, ("transformer", "mlp"))
        check_int("n_layers", self.n_layers, low=1)
        check_int("n_heads", self.n_heads, low=1)
        check_int("d_model", self.d_model, low=1)
        check_int("d_mlp", self.d_mlp, low=1)
        if self.d_head is None:
            if self.d_model % self.n_heads:
                raise bad_value(
                    "d_model", self.d_model, f"must be divisible by n_heads={self.n_heads} (or give d_head)"
                )
            self.d_head = self.d_model // self.n_heads
        check_int("d_head", self.d_head, low=1)
        check_choice("act_fn", self.act_fn, ("relu", "gelu", "silu", "gelu_new", "solu_ln"))
        check_choice("normalization", self.normalization, (None, "LN"))
        check_choice("init", self.init, ("nanda", "tl", "linear_default"))
        check_choice("embed_init", self.embed_init, ("random", "circulant", "toeplitz", "onehot"))
        check_choice("backend", self.backend, ("auto", "hooked", "bridge"))
        check_int("seed", self.seed)
        for name in ("attn_bias", "unembed_bias"):
            if not isinstance(getattr(self, name), bool):
                raise bad_value(name, getattr(self, name), "must be true or false")
        check_choice("mlp_input", self.mlp_input, ("operands", "operands_and_eq"))
        if self.arch != "mlp":
            if self.init == "linear_default":
                raise bad_value("init", self.init, "is the MLP baseline's init; needs arch='mlp'")
            if self.mlp_input != "operands":
                raise bad_value("mlp_input", self.mlp_input, "is an MLP-baseline option; needs arch='mlp'")
        elif not self.attn_bias:
            raise bad_value("attn_bias", self.attn_bias, "the MLP baseline has no attention; needs arch='transformer'")


@dataclass
class TrainConfig(_DictMixin):
    """Optimiser, schedule and recording cadence (full-batch training).

    Args:
        steps: Number of optimiser steps (one full-batch step = one "epoch").
        lr, weight_decay, betas: AdamW settings (1e-3, 1.0, (0.9, 0.98)).
        warmup_steps: Learning-rate multiplier ``min(step / warmup_steps, 1)``.
        loss: ``ce`` (cross-entropy in float64), ``ce_float32`` (cross-entropy on the
            float32 logits, as the reference code computes it) or ``mse`` (on one-hot
            targets).
        eval_every: A history row (train and test loss/accuracy, callbacks) every
            this many steps, and at the last step.
        checkpoint_every: Save weights every this many steps, plus the denser early
            steps 0, 1, 2, 4, 8, ... below it, and the last step.
        stop_after_grok: If set, stop this many steps after test accuracy first
            reaches ``grok_threshold`` (None: always run ``steps``).
        grok_threshold: Test accuracy that counts as grokked for early stopping.
        stop_on_plateau: If set (``M`` steps), stop once training accuracy is held and
            test accuracy has made no new high (``plateau_delta`` above the last one) for
            at least ``M`` steps and for at least as long as the run before that last
            high (:class:`grok_interp.training.PlateauClock`). None: off.
        plateau_delta: The rise of test accuracy that counts as a new high (0.01).
        forward: ``auto`` (fast last-position forward where the architecture allows,
            else the hooked forward), ``hooked``, ``fast`` or ``compile`` (the fast
            forward through ``torch.compile``: faster steps after a one-off compilation).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
    """

    steps: int = 20_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    loss: str = "ce"
    eval_every: int = 10
    checkpoint_every: int = 100
    stop_after_grok: int | None = None
    grok_threshold: float = 0.99
    stop_on_plateau: int | None = None
    plateau_delta: float = 0.01
    forward: str = "auto"
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=1)
        if not self.lr > 0:
            raise bad_value("lr", self.lr, "must be > 0")
        if not self.weight_decay >= 0:
            raise bad_value("weight_decay", self.weight_decay, "must be >= 0")
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad_value("betas", self.betas, "must be two numbers in [0, 1)")
        check_int("warmup_steps", self.warmup_steps, low=0)
        check_choice("loss", self.loss, ("ce", "ce_float32", "mse"))
        check_int("eval_every", self.eval_every, low=1)
        check_int("checkpoint_every", self.checkpoint_every, low=1)
        if self.stop_after_grok is not None:
            check_int("stop_after_grok", self.stop_after_grok, low=0)
        if isinstance(self.grok_threshold, bool) or not isinstance(self.grok_threshold, (int, float)) or not (
            0 < self.grok_threshold <= 1
        ):
            raise bad_value("grok_threshold", self.grok_threshold, "must be a number in (0, 1]")
        self.grok_threshold = float(self.grok_threshold)
        if self.stop_on_plateau is not None:
            check_int("stop_on_plateau", self.stop_on_plateau, low=1)
        if isinstance(self.plateau_delta, bool) or not isinstance(self.plateau_delta, (int, float)) or not (
            0 < self.plateau_delta <= 1
        ):
            raise bad_value("plateau_delta", self.plateau_delta, "must be a number in (0, 1]")
        self.plateau_delta = float(self.plateau_delta)
        check_choice("forward", self.forward, ("auto", "hooked", "fast", "compile"))
        check_choice("device", self.device, ("cpu", "cuda", "auto"))


@dataclass
class RunConfig:
    """Everything needed to rebuild a run: ``config.json`` is ``to_dict()``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data.to_dict(), "model": self.model.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        missing = {"data", "model", "train"} - set(d)
        if missing:
            raise bad_value("config", sorted(d), f"is missing sections {sorted(missing)}")
        return cls(
            data=DataConfig.from_dict(d["data"]),
            model=ModelConfig.from_dict(d["model"]),
            train=TrainConfig.from_dict(d["train"]),
        )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "RunConfig":
        """Route flat keyword arguments to the section that owns each name."""
        sections: dict[str, dict[str, Any]] = {"data": {}, "model": {}, "train": {}}
        owners = {
            "data": {f.name for f in dataclasses.fields(DataConfig)},
            "model": {f.name for f in dataclasses.fields(ModelConfig)},
            "train": {f.name for f in dataclasses.fields(TrainConfig)},
        }
        for key, value in kwargs.items():
            for sec, names in owners.items():
                if key in names:
                    sections[sec][key] = value
                    break
            else:
                allowed = sorted(set().union(*owners.values()))
                raise bad_value(key, value, "unknown option; allowed: " + ", ".join(allowed))
        return cls(
            data=DataConfig(**sections["data"]),
            model=ModelConfig(**sections["model"]),
            train=TrainConfig(**sections["train"]),
        )
