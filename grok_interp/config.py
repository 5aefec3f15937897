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


def _check_unit_interval(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise bad_value(name, value, "must be a number in [0, 1)")
    return float(value)


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
    """

    p: int = 113
    op: str = "add"
    offset: int = 0
    split: str = "random"
    frac: float = 0.3
    data_seed: int = 598
    k: int | None = None
    t: int | None = None

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
            codes; ``tl``: TransformerLens' own default initialisation.
        embed_init: ``random`` (per ``init``), ``circulant`` (rows are cyclic shifts of
            one random vector) or ``onehot`` (frozen identity; needs d_model >= d_vocab).
        freeze_biases: Keep every bias at zero and out of the optimiser.
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
        check_choice("init", self.init, ("nanda", "tl"))
        check_choice("embed_init", self.embed_init, ("random", "circulant", "onehot"))
        check_choice("backend", self.backend, ("auto", "hooked", "bridge"))
        check_int("seed", self.seed)


@dataclass
class TrainConfig(_DictMixin):
    """Optimiser, schedule and recording cadence (full-batch training).

    Args:
        steps: Number of optimiser steps (one full-batch step = one "epoch").
        lr, weight_decay, betas: AdamW settings (1e-3, 1.0, (0.9, 0.98)).
        warmup_steps: Learning-rate multiplier ``min(step / warmup_steps, 1)``.
        loss: ``ce`` (cross-entropy in float64), ``mse`` (on one-hot targets) or
            ``stablemax`` (StableMax cross-entropy in float64, Prieto et al. 2025).
        eval_every: A history row (train and test loss/accuracy, callbacks) every
            this many steps, and at the last step.
        checkpoint_every: Save weights every this many steps, plus the denser early
            steps 0, 1, 2, 4, 8, ... below it, and the last step.
        stop_after_grok: If set, stop this many steps after test accuracy first
            reaches ``grok_threshold`` (None: always run ``steps``).
        grok_threshold: Test accuracy that counts as grokked for early stopping.
        forward: ``auto`` (fast last-position forward where the architecture allows,
            else the hooked forward), ``hooked``, ``fast`` or ``compile`` (the fast
            forward through ``torch.compile``: faster steps after a one-off compilation).
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when present).
        grokfast: Gradient filter of Grokfast (Lee et al. 2024; see
            :mod:`grok_interp.accelerators`): None (off), ``ema`` or ``ma``.
        grokfast_alpha: Grokfast-EMA momentum in [0, 1) (0.98).
        grokfast_window: Grokfast-MA window, in steps (100).
        grokfast_lamb: Grokfast amplification ``lamb >= 0``; None: the reference
            default of the filter (2 for ``ema``, 5 for ``ma``), filled in here.
        perpendicular_grad: Replace each parameter tensor's gradient by its part
            perpendicular to the tensor, at the same norm (``⊥Grad``, Prieto et al. 2025).
        optimizer: ``adamw`` (``lr``, ``betas``, decoupled ``weight_decay``) or ``sgd``
            (``lr``, ``momentum``, ``weight_decay`` as an L2 term in the gradient).
        momentum: SGD momentum in [0, 1) (0; only with ``optimizer="sgd"``).
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
    forward: str = "auto"
    device: str = "cpu"
    grokfast: str | None = None
    grokfast_alpha: float = 0.98
    grokfast_window: int = 100
    grokfast_lamb: float | None = None
    perpendicular_grad: bool = False
    optimizer: str = "adamw"
    momentum: float = 0.0

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
        check_choice("loss", self.loss, ("ce", "mse", "stablemax"))
        check_int("eval_every", self.eval_every, low=1)
        check_int("checkpoint_every", self.checkpoint_every, low=1)
        if self.stop_after_grok is not None:
            check_int("stop_after_grok", self.stop_after_grok, low=0)
        if isinstance(self.grok_threshold, bool) or not isinstance(self.grok_threshold, (int, float)) or not (
            0 < self.grok_threshold <= 1
        ):
            raise bad_value("grok_threshold", self.grok_threshold, "must be a number in (0, 1]")
        self.grok_threshold = float(self.grok_threshold)
        check_choice("forward", self.forward, ("auto", "hooked", "fast", "compile"))
        check_choice("device", self.device, ("cpu", "cuda", "auto"))
        check_choice("grokfast", self.grokfast, (None, "ema", "ma"))
        self.grokfast_alpha = _check_unit_interval("grokfast_alpha", self.grokfast_alpha)
        check_int("grokfast_window", self.grokfast_window, low=1)
        if self.grokfast_lamb is None and self.grokfast is not None:
            self.grokfast_lamb = 2.0 if self.grokfast == "ema" else 5.0
        if self.grokfast_lamb is not None:
            if isinstance(self.grokfast_lamb, bool) or not isinstance(self.grokfast_lamb, (int, float)) or not (
                self.grokfast_lamb >= 0
            ):
                raise bad_value("grokfast_lamb", self.grokfast_lamb, "must be a number >= 0 (or None: the default)")
            self.grokfast_lamb = float(self.grokfast_lamb)
        check_choice("perpendicular_grad", self.perpendicular_grad, (False, True))
        check_choice("optimizer", self.optimizer, ("adamw", "sgd"))
        self.momentum = _check_unit_interval("momentum", self.momentum)
        if self.momentum and self.optimizer != "sgd":
            raise bad_value("momentum", self.momentum, "is SGD's; set optimizer='sgd' (AdamW uses betas)")


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
