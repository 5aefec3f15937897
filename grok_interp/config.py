"""Configuration dataclasses: everything needed to rebuild a run, as plain JSON.

A run is described by four parts, each a dataclass with ``to_dict``/``from_dict`` and
checks in ``__post_init__``:

* :class:`DataConfig`  - the task (p, operation, operand offset) and its split;
* :class:`ModelConfig` - architecture, initialisation and TransformerLens backend;
* :class:`TrainConfig` - optimiser, schedule, loss, stopping and recording cadence;
* :class:`RunConfig`   - the three together; this is what ``config.json`` holds.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from . import store
from ._validate import (
    bad_value, check_choice, check_float, check_int, check_open_unit, check_prime, check_seed, did_you_mean,
)
from .groups import check_group_op, is_group_op
from .tasks import SHUFFLES, SPLIT_KINDS, check_split_options

__all__ = ["DataConfig", "ModelConfig", "TrainConfig", "RunConfig", "field_docs", "add_config_arguments"]


class _DictMixin:
    """``to_dict``/``from_dict`` for flat dataclasses (unknown keys are an error), and
    the choice checks of :attr:`CHOICES` (also the CLI's ``choices``)."""

    #: Field name -> the values it may take: checked in ``__post_init__`` and offered by
    #: the command line, so a choice is written once.
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {}

    #: Fields added in each run-directory format, with the value that ``config.json``
    #: files of older formats meant by leaving them out: ``{format: {field: default}}``
    #: (:class:`grok_interp.store.Migrating`). A new field needs an entry here, in the
    #: format :data:`grok_interp.store.FORMAT_VERSION` is bumped to.
    ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {}

    def _check_choices(self) -> None:
        for name, allowed in self.CHOICES.items():
            check_choice(name, getattr(self, name), allowed)

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
        p: Prime modulus (>= 3); for a group task, the group's order.
        op: Operation name (``add``, ``subtract``, ``multiply``, ``divide``,
            ``square_sum``, ``a2_ab_b2``, ``a2_b2``, ``a3_b3``, ``a3_ab_b3``),
            ``custom:<name>`` for a run trained on a user callable, or
            ``group:<G>`` for a group's multiplication (``group:S4``, ``group:D10``,
            ``group:C13``, ``group:table:<name>`` for a user's table; see
            :mod:`grok_interp.groups`).
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

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {"split": SPLIT_KINDS, "shuffle": SHUFFLES}
    ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {
        2: {"shuffle": "torch"},  # the reference code's settings as options (issue 13)
    }

    def __post_init__(self) -> None:
        if is_group_op(self.op):  # a group task: p is the group's order (grok_interp.groups)
            check_group_op(self.op, self.p)
        else:
            check_prime("p", self.p)
        check_int("offset", self.offset, low=0)
        self._check_choices()
        self.frac = check_open_unit("frac", self.frac)
        check_seed("data_seed", self.data_seed)
        check_split_options(self.split, self.p, k=self.k, t=self.t)


#: ModelConfig options the MLP baseline has no use for (giving one with arch="mlp" is an error).
TRANSFORMER_ONLY = ("n_layers", "n_heads", "d_head", "normalization", "pos_embed", "backend")


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

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "arch": ("transformer", "mlp"),
        "act_fn": ("relu", "gelu", "silu", "gelu_new", "solu_ln"),
        "normalization": (None, "LN"),
        "init": ("nanda", "tl", "linear_default"),
        "embed_init": ("random", "circulant", "toeplitz", "onehot"),
        "backend": ("auto", "hooked", "bridge"),
        "mlp_input": ("operands", "operands_and_eq"),
    }
    ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {
        2: {"attn_bias": True, "unembed_bias": True, "mlp_input": "operands"},  # the reference code's settings (issue 13)
    }

    def __post_init__(self) -> None:
        self._check_choices()
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
        check_seed("seed", self.seed)
        for name in ("attn_bias", "unembed_bias"):
            if not isinstance(getattr(self, name), bool):
                raise bad_value(name, getattr(self, name), "must be true or false")
        if self.arch != "mlp":
            if self.init == "linear_default":
                raise bad_value("init", self.init, "is the MLP baseline's init; needs arch='mlp'")
            if self.mlp_input != "operands":
                raise bad_value("mlp_input", self.mlp_input, "is an MLP-baseline option; needs arch='mlp'")
        elif not self.attn_bias:
            raise bad_value("attn_bias", self.attn_bias, "the MLP baseline has no attention; needs arch='transformer'")
        elif self.act_fn == "solu_ln":
            raise bad_value("act_fn", self.act_fn, "is a transformer activation (SoLU with its LayerNorm); "
                            "the MLP baseline takes relu, gelu, gelu_new or silu")


@dataclass
class TrainConfig(_DictMixin):
    """Optimiser, schedule and recording cadence (full-batch training).

    Args:
        steps: Number of optimiser steps (one full-batch step = one "epoch").
        lr, weight_decay, betas: AdamW settings (1e-3, 1.0, (0.9, 0.98)).
        warmup_steps: Learning-rate multiplier ``min(step / warmup_steps, 1)``.
        loss: ``ce`` (cross-entropy free of softmax collapse: float64's accuracy on
            float32 arithmetic, :func:`grok_interp.training.cross_entropy`),
            ``ce_float32`` (plain cross-entropy on the float32 logits, as the reference
            code computes it: it collapses once the training set is fit), ``mse`` (on one-hot
            targets) or ``stablemax`` (StableMax cross-entropy in float64, Prieto et al. 2025).
        eval_every: A history row (train and test loss/accuracy, callbacks) every
            this many steps, and at the last step.
        eval_sparse: Adaptive evaluation: the test set is evaluated every
            ``eval_sparse * eval_every`` steps, and the rows between are kept (their test
            metrics backfilled from saved weights) only where test accuracy moved by 0.01
            or more, test loss by a tenth of its log, test accuracy crossed
            ``grok_threshold`` or training accuracy crossed 0.99; still stretches keep
            one row every ``eval_sparse * eval_every`` steps. Recorded rows equal the dense
            ones, and training is unchanged. 1: a row every ``eval_every`` steps (dense).
            See :mod:`grok_interp.training.loop`.
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
        device: ``auto`` (default: CUDA when present, else CPU), ``cpu`` or ``cuda``.
        grokfast: Gradient filter of Grokfast (Lee et al. 2024; see
            :mod:`grok_interp.training.accelerators`): None (off), ``ema`` or ``ma``.
        grokfast_alpha: Grokfast-EMA momentum in [0, 1) (0.98).
        grokfast_window: Grokfast-MA window, in steps (100).
        grokfast_lamb: Grokfast amplification ``lamb >= 0``; None: the reference
            default of the filter (2 for ``ema``, 5 for ``ma``), filled in here.
        perpendicular_grad: Replace each parameter tensor's gradient by its part
            perpendicular to the tensor, at the same norm (``⊥Grad``, Prieto et al. 2025).
        optimizer: ``adamw`` (``lr``, ``betas``, decoupled ``weight_decay``), ``adam``
            (``lr``, ``betas``, ``weight_decay`` as an L2 term in the gradient) or ``sgd``
            (``lr``, ``momentum``, ``weight_decay`` as an L2 term in the gradient); see
            :mod:`grok_interp.training.optim`.
        momentum: SGD momentum in [0, 1) (0; only with ``optimizer="sgd"``).
    """

    steps: int = 20_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    loss: str = "ce"
    eval_every: int = 10
    eval_sparse: int = 5
    checkpoint_every: int = 100
    stop_after_grok: int | None = None
    grok_threshold: float = 0.99
    stop_on_plateau: int | None = None
    plateau_delta: float = 0.01
    forward: str = "auto"
    device: str = "auto"
    grokfast: str | None = None
    grokfast_alpha: float = 0.98
    grokfast_window: int = 100
    grokfast_lamb: float | None = None
    perpendicular_grad: bool = False
    optimizer: str = "adamw"
    momentum: float = 0.0

    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "loss": ("ce", "ce_float32", "mse", "stablemax"),
        "forward": ("auto", "hooked", "fast", "compile"),
        "device": ("cpu", "cuda", "auto"),
        "grokfast": (None, "ema", "ma"),
        "optimizer": ("adamw", "adam", "sgd"),
        "perpendicular_grad": (False, True),
    }
    ADDED_KEYS: ClassVar[dict[int, dict[str, Any]]] = {
        2: {  # the accelerators (issue 15), off; the plateau-stop rule of the reference-setup studies, off
            "grokfast": None, "grokfast_alpha": 0.98, "grokfast_window": 100, "grokfast_lamb": None,
            "perpendicular_grad": False, "optimizer": "adamw", "momentum": 0.0,
            "stop_on_plateau": None, "plateau_delta": 0.01,
        },
        4: {"eval_sparse": 1},  # adaptive evaluation (issue 17): runs saved before have a row every eval_every steps
    }

    def __post_init__(self) -> None:
        self._check_choices()
        check_int("steps", self.steps, low=1)
        self.lr = check_float("lr", self.lr, low=0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", self.weight_decay, low=0.0)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise bad_value("betas", self.betas, "must be two numbers in [0, 1)")
        self.betas = tuple(check_float("betas", b, low=0.0, high=1.0, high_open=True) for b in self.betas)  # type: ignore[assignment]
        check_int("warmup_steps", self.warmup_steps, low=0)
        check_int("eval_every", self.eval_every, low=1)
        check_int("eval_sparse", self.eval_sparse, low=1)
        check_int("checkpoint_every", self.checkpoint_every, low=1)
        if self.stop_after_grok is not None:
            check_int("stop_after_grok", self.stop_after_grok, low=0)
        self.grok_threshold = check_float("grok_threshold", self.grok_threshold, low=0.0, high=1.0, low_open=True)
        if self.stop_on_plateau is not None:
            check_int("stop_on_plateau", self.stop_on_plateau, low=1)
        self.plateau_delta = check_float("plateau_delta", self.plateau_delta, low=0.0, high=1.0, low_open=True)
        self.grokfast_alpha = check_float("grokfast_alpha", self.grokfast_alpha, low=0.0, high=1.0, high_open=True)
        check_int("grokfast_window", self.grokfast_window, low=1)
        if self.grokfast_lamb is None and self.grokfast is not None:
            self.grokfast_lamb = 2.0 if self.grokfast == "ema" else 5.0
        if self.grokfast_lamb is not None:
            self.grokfast_lamb = check_float("grokfast_lamb", self.grokfast_lamb, low=0.0)
        self.momentum = check_float("momentum", self.momentum, low=0.0, high=1.0, high_open=True)
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

    def flat(self) -> dict[str, Any]:
        """Every field of the three sections in one dict (the names :meth:`from_kwargs` takes)."""
        return {**self.data.to_dict(), **self.model.to_dict(), **self.train.to_dict()}

    def updated(self, **kwargs: Any) -> "RunConfig":
        """A copy with the flat options ``kwargs`` changed (routed as :meth:`from_kwargs`)."""
        flat = self.flat()
        if "d_model" in kwargs or "n_heads" in kwargs or flat["d_head"] == flat["d_model"] // flat["n_heads"]:
            flat.pop("d_head")  # derived from them unless given
        return RunConfig.from_kwargs(**{**flat, **kwargs})

    def check_agrees(self, options: dict[str, Any]) -> None:
        """Raise if a flat option differs from this config's value (or is unknown)."""
        check_agrees(self.flat(), options, lambda key, value: RunConfig.from_kwargs(**{key: value}))

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
                raise bad_value(key, value, "unknown option" + did_you_mean(key, allowed) + "; allowed: " + ", ".join(allowed))
        if sections["model"].get("arch") == "mlp":  # an option the MLP baseline would silently ignore
            defaults = ModelConfig.__dataclass_fields__
            for key in TRANSFORMER_ONLY:
                if key in sections["model"] and sections["model"][key] != defaults[key].default:
                    raise bad_value(key, sections["model"][key], "only applies to arch='transformer'")
        return cls(
            data=DataConfig(**sections["data"]),
            model=ModelConfig(**sections["model"]),
            train=TrainConfig(**sections["train"]),
        )


# --- the command line, derived from the dataclasses ---------------------------------------
#: The sections of a transformer run's ``config.json`` and their classes, registered with
#: the store, which fills a key an older file lacks from the class's ``ADDED_KEYS``.
SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
for _section, _cls in SECTIONS.items():
    store.register_config_section(_section, _cls)


_ARG = re.compile(r"^(\s+)([A-Za-z_][\w, ]*):\s*(.*)$")


def field_docs(cls: type) -> dict[str, str]:
    """The ``Args:`` entries of a config dataclass's docstring, one text per field.

    An entry may document several fields at once (``lr, weight_decay, betas: ...``).
    Markup is dropped (````x```` becomes ``x``) and lines are joined.
    """
    doc = cls.__doc__ or ""
    lines = doc.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:") + 1
    except StopIteration:
        return {}
    docs: dict[str, list[str]] = {}
    names: list[str] = []
    indent = None
    for line in lines[start:]:
        if not line.strip():
            continue
        m = _ARG.match(line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent = len(m.group(1))
            names = [n.strip() for n in m.group(2).split(",")]
            for n in names:
                docs[n] = [m.group(3)]
        elif indent is not None and len(line) - len(line.lstrip()) > indent:
            for n in names:
                docs[n].append(line.strip())
        else:
            break
    return {n: re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", re.sub(r"``([^`]*)``", r"\1", " ".join(parts)))
            .replace("`", "").replace("%", "%%") for n, parts in docs.items()}


def _parse_none(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


_KINDS: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}


def add_config_arguments(
    parser: argparse.ArgumentParser | Any, cls: type, *, exclude: tuple[str, ...] = (), defaults: dict[str, Any] | None = None
) -> list[str]:
    """Add one command-line flag per field of the dataclass ``cls``; return the field names.

    Flag names, types, choices, defaults and help all come from the dataclass: its
    fields and annotations, its ``CHOICES`` and its docstring's ``Args:`` (see
    :func:`field_docs`). ``--field-name`` takes a value; ``bool`` fields get
    ``--name/--no-name``; ``X | None`` fields also take ``none``; pairs take two
    values. Flags default to "not given" (``argparse.SUPPRESS``), so only the options
    on the command line are passed on and every default stays with the dataclass;
    ``defaults`` only changes the default shown in the help (e.g. a preset's value).
    """
    docs = field_docs(cls)
    choices = getattr(cls, "CHOICES", {})
    shown = dict(defaults or {})
    added = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in exclude:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = shown.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[operator]
        if isinstance(default, tuple):
            default_text = " ".join(str(v) for v in default)
        else:
            default_text = "none" if default is None else str(default)
        help_text = docs.get(f.name, "").rstrip(".") + f" (default: {default_text})"
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
        annotation = str(f.type).replace(" ", "")
        optional = annotation.endswith("|None")
        base = annotation.removesuffix("|None")
        if base == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base.startswith("tuple["):
            kinds = base[len("tuple["):-1].split(",")
            kwargs.update(nargs=len(kinds), type=_KINDS[kinds[0]], metavar=f.name.upper())
        else:
            kind = _KINDS[base]
            kwargs["type"] = _parse_none(kind) if optional else kind
            if f.name in choices:
                allowed = [("none" if c is None else c) for c in choices[f.name]]
                kwargs["metavar"] = "{" + ",".join(str(c) for c in allowed) + "}"
        parser.add_argument(flag, **kwargs)
        added.append(f.name)
    return added


def check_agrees(values: dict[str, Any], options: dict[str, Any], unknown: Callable[[str, Any], Any]) -> None:
    """Raise if an option given beside a complete config differs from the config's
    ``values`` (lists and tuples compare equal); ``unknown(key, value)`` raises the
    caller's unknown-option error. Used by ``train_hooked`` and ``train_resnet``."""
    for key, value in options.items():
        if key not in values:
            unknown(key, value)
        mine = values[key]
        if (tuple(value) if isinstance(value, list) else value) != (tuple(mine) if isinstance(mine, list) else mine):
            raise bad_value(key, value, f"conflicts with config= (which has {key}={mine!r}); "
                            "give the option or the config, or change the config")
