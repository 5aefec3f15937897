"""Hooked models for prime-field tasks: the transformer factory and the MLP baseline.

:func:`build_model` turns a :class:`~grok_interp.config.ModelConfig` into a hooked
model for a task. Transformers come from TransformerLens (``HookedTransformer`` under
3.x, the native ``TransformerBridge`` under 4.x; see :mod:`grok_interp.tl_backend`), so hook
names (``blocks.0.attn.hook_pattern``, ``blocks.0.mlp.hook_post``) and weight
accessors (``W_E``, ``W_Q``, ...) are the ones users know. The paper's DNN baseline is
:class:`MLPBaseline`, itself a ``HookedRootModule`` so ``run_with_cache`` works on it.

Every model maps tokens ``(batch, 3)`` to logits ``(batch, pos, p)``; the answer is
read from the last position.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from . import tl_backend
from ._validate import bad_value
from .errors import GrokInterpError
from .config import ModelConfig
from .tasks import Task

__all__ = [
    "build_model", "MLPBaseline", "weights", "load_weights", "absent_biases", "backend_of", "ACTIVATIONS",
    "check_model_fits_task", "vocabulary_of",
]

log = logging.getLogger(__name__)

ACTIVATIONS = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


class _Dense(nn.Module):
    """``post = act(x @ W + b)`` with ``hook_pre`` and ``hook_post``."""

    def __init__(self, d_in: int, d_out: int, act: str) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.empty(d_in, d_out))
        self.b = nn.Parameter(torch.zeros(d_out))
        self.act = act
        self.hook_pre = tl_backend.HookPoint()
        self.hook_post = tl_backend.HookPoint()

    def forward(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_out"]:
        pre = self.hook_pre(x @ self.W + self.b)
        return self.hook_post(ACTIVATIONS[self.act](pre))


class _Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))


class _Unembed(nn.Module):
    def __init__(self, d_in: int, d_vocab_out: int) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_in, d_vocab_out))
        self.b_U = nn.Parameter(torch.zeros(d_vocab_out))


class MLPBaseline(tl_backend.HookedRootModule):
    """The paper's DNN baseline: ``[E[a], E[b]] -> d_mlp -> d_mlp -> p``.

    Hook points: ``hook_embed`` (batch, n_inputs, d_model), ``hidden1.hook_pre``,
    ``hidden1.hook_post``, ``hidden2.hook_pre``, ``hidden2.hook_post`` (batch, d_mlp).
    With ``n_inputs=2`` (default) the ``"="`` token is ignored; with ``n_inputs=3`` its
    embedding is concatenated too (``[E[a], E[b], E[=]]``, the reference code's
    ``MLP/rec.py``). Logits come back as ``(batch, 1, d_vocab_out)`` so that
    ``model(tokens)[:, -1]`` reads the answer as it does for transformers.
    """

    def __init__(
        self,
        d_vocab: int,
        d_vocab_out: int,
        d_model: int = 128,
        d_mlp: int = 512,
        act_fn: str = "relu",
        n_inputs: int = 2,
    ):
        super().__init__()
        if n_inputs not in (2, 3):
            raise bad_value("n_inputs", n_inputs, "must be 2 (a, b) or 3 (a, b, =)")
        self.n_inputs = n_inputs
        self.embed = _Embed(d_vocab, d_model)
        self.hook_embed = tl_backend.HookPoint()
        self.hidden1 = _Dense(n_inputs * d_model, d_mlp, act_fn)
        self.hidden2 = _Dense(d_mlp, d_mlp, act_fn)
        self.unembed = _Unembed(d_mlp, d_vocab_out)
        self.setup()

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_mlp d_vocab_out"]:
        return self.unembed.W_U

    def forward(self, tokens: Int[Tensor, "batch 3"]) -> Float[Tensor, "batch 1 d_vocab_out"]:
        emb = self.hook_embed(self.embed.W_E[tokens[:, : self.n_inputs]])
        h = self.hidden2(self.hidden1(emb.flatten(1)))
        return (h @ self.unembed.W_U + self.unembed.b_U)[:, None, :]


def backend_of(model: nn.Module) -> str:
    """``hooked``, ``bridge`` or ``mlp``: which implementation a model is."""
    if isinstance(model, MLPBaseline):
        return "mlp"
    return tl_backend.backend_of(model)


def weights(model: nn.Module) -> dict[str, Tensor]:
    """Canonical weights (``HookedTransformer`` names and layout), differentiable views.

    Biases a model was built without (``attn_bias=False``, ``unembed_bias=False``) are
    reported as zero tensors under their usual names: the model computes exactly as if
    they were zero, and analysis code (the fast forward, circuits) reads one layout.
    """
    w = dict(model.named_parameters()) if isinstance(model, MLPBaseline) else tl_backend.canonical_weights(model)
    absent = absent_biases(model)
    if absent:
        ref = w["embed.W_E"]
        for name, shape in absent.items():
            w[name] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    return w


_ABSENT_ATTR = "_grok_absent_biases"


def absent_biases(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Canonical names and shapes of the biases ``model`` was built without (often empty)."""
    return dict(model.__dict__.get(_ABSENT_ATTR, {}))


def _remove_parameters(model: nn.Module, names: list[str]) -> None:
    """Turn the named canonical parameters into constant zero buffers.

    TransformerLens has no switch for attention or unembedding biases, so the factory
    builds the usual model and then takes these parameters out: each becomes a
    non-persistent zero buffer under the same attribute, so the backend's forward still
    adds it (as zero) while ``parameters()``, the optimiser, weight decay and the
    backend's state dict no longer see it. Works on either backend and the MLP baseline.
    """
    params = _params(model)
    targets = {id(params[n]) for n in names}
    shapes = {n: tuple(weights(model)[n].shape) for n in names}
    for module in model.modules():
        for key, param in list(module._parameters.items()):
            if param is not None and id(param) in targets:
                del module._parameters[key]
                module.register_buffer(key, torch.zeros_like(param.detach()), persistent=False)
    model.__dict__[_ABSENT_ATTR] = {**absent_biases(model), **shapes}


def _is_weight(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("W")


def _init_linear_default(shapes: dict[str, torch.Size], cfg: ModelConfig) -> dict[str, Tensor]:
    """The MLP baseline as the reference code initialises it (``MLP/rec.py``).

    ``embed.W_E ~ N(0, 1/d_model)``; every dense layer (``hidden1``, ``hidden2``,
    ``unembed``) as torch's ``nn.Linear`` default: weight and bias ~ U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) with ``fan_in`` the layer's input width (the distribution of
    ``kaiming_uniform_(a=sqrt(5))``). Drawn in sorted-name order from one generator.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    fan_in = {name.rsplit(".", 1)[0]: shape[0] for name, shape in shapes.items() if _is_weight(name)}
    out = {}
    for name in sorted(shapes):
        if name == "embed.W_E":
            out[name] = torch.randn(shapes[name], generator=gen) / cfg.d_model**0.5
            continue
        bound = fan_in[name.rsplit(".", 1)[0]] ** -0.5
        out[name] = (torch.rand(shapes[name], generator=gen) * 2 - 1) * bound
    return out


def _toeplitz_embedding(d_vocab: int, d_model: int, seed: int) -> Float[Tensor, "d_vocab d_model"]:
    """The reference code's "circulant" embedding (``transformer/rec.py:59-75``, commented out).

    ``v ~ U[0, 1)^d_model``; ``W_E[i, j] = v[|i - j|] / sqrt(d_model)``: the first
    ``d_vocab`` columns of the symmetric Toeplitz matrix ``toeplitz(v, v)`` (no wrap-around,
    unlike a circulant), transposed to TransformerLens' ``(d_vocab, d_model)`` layout.
    """
    v = torch.rand(d_model, generator=torch.Generator().manual_seed(seed))
    lag = (torch.arange(d_vocab)[:, None] - torch.arange(d_model)[None, :]).abs()
    return v[lag] / d_model**0.5


def _init_nanda(shapes: dict[str, torch.Size], cfg: ModelConfig) -> dict[str, Tensor]:
    """Every weight ~ N(0, 1/d_model), biases 0, LayerNorm gains 1 (sorted-name order)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    out = {}
    for name in sorted(shapes):
        if _is_weight(name):
            out[name] = torch.randn(shapes[name], generator=gen) / cfg.d_model**0.5
        elif name.endswith(".w"):  # LayerNorm gain
            out[name] = torch.ones(shapes[name])
        else:
            out[name] = torch.zeros(shapes[name])
    return out


def build_model(cfg: ModelConfig, task: Task, device: str | torch.device = "cpu") -> nn.Module:
    """Build and initialise the hooked model that ``cfg`` describes for ``task``.

    Args:
        cfg: Architecture, initialisation and backend.
        task: Gives ``d_vocab`` (``p + offset + 1``) and ``d_vocab_out`` (``p``).
        device: Where the parameters live.

    Returns:
        A ``HookedTransformer``, a ``TransformerBridge`` or an :class:`MLPBaseline`,
        with frozen parameters (one-hot embedding, ``pos_embed=False``,
        ``freeze_biases``) marked ``requires_grad=False``.
    """
    if cfg.embed_init in ("onehot", "toeplitz") and cfg.d_model < task.d_vocab:
        raise bad_value(
            "embed_init", cfg.embed_init, f"needs d_model >= d_vocab={task.d_vocab}, got d_model={cfg.d_model}"
        )
    if cfg.arch == "mlp":
        n_inputs = 3 if cfg.mlp_input == "operands_and_eq" else 2
        model: nn.Module = MLPBaseline(task.d_vocab, task.d_vocab_out, cfg.d_model, cfg.d_mlp, cfg.act_fn, n_inputs)
    else:
        model = tl_backend.build_transformer(
            backend=cfg.backend,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            d_model=cfg.d_model,
            d_head=cfg.d_head,  # type: ignore[arg-type]
            d_mlp=cfg.d_mlp,
            d_vocab=task.d_vocab,
            d_vocab_out=task.d_vocab_out,
            n_ctx=3,
            act_fn=cfg.act_fn,
            normalization=cfg.normalization,
            tl_init_seed=cfg.seed if cfg.init == "tl" else None,
        )
    current = {k: v.detach().clone() for k, v in weights(model).items()}
    shapes = {k: v.shape for k, v in current.items()}
    if cfg.init == "linear_default":
        new = _init_linear_default(shapes, cfg)
    elif cfg.init == "nanda" or cfg.arch == "mlp":
        new = _init_nanda(shapes, cfg)
    else:
        new = current
    w_e = new["embed.W_E"]
    if cfg.embed_init == "circulant":
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        base = torch.randn(cfg.d_model, generator=gen) / cfg.d_model**0.5
        new["embed.W_E"] = torch.stack([torch.roll(base, i) for i in range(w_e.shape[0])])
    elif cfg.embed_init == "toeplitz":
        new["embed.W_E"] = _toeplitz_embedding(w_e.shape[0], w_e.shape[1], cfg.seed + 1)
    elif cfg.embed_init == "onehot":
        new["embed.W_E"] = torch.eye(w_e.shape[0], w_e.shape[1])
    frozen = set()
    if cfg.embed_init == "onehot":
        frozen.add("embed.W_E")
    if not cfg.pos_embed and "pos_embed.W_pos" in new:
        new["pos_embed.W_pos"] = torch.zeros_like(new["pos_embed.W_pos"])
        frozen.add("pos_embed.W_pos")
    if cfg.freeze_biases:  # every bias, LayerNorm's included: names ending in .b or .b_*
        for name in new:
            if re.fullmatch(r"b(_\w+)?", name.rsplit(".", 1)[-1]):
                new[name] = torch.zeros_like(new[name])
                frozen.add(name)
    load_weights(model, new)
    absent = [n for n in new if (not cfg.attn_bias and re.fullmatch(r"blocks\.\d+\.attn\.b_[QKVO]", n))
              or (not cfg.unembed_bias and n == "unembed.b_U")]
    if absent:
        _remove_parameters(model, absent)
    params = _params(model)
    for name in frozen - set(absent):
        params[name].requires_grad_(False)
    with tl_backend.BUILD_LOCK, contextlib.redirect_stdout(io.StringIO()):  # TransformerLens prints on .to()
        return model.to(device)


def _params(model: nn.Module) -> dict[str, nn.Parameter]:
    if isinstance(model, MLPBaseline):
        return dict(model.named_parameters())
    return tl_backend.canonical_parameters(model)


def load_weights(model: nn.Module, w: dict[str, Tensor]) -> None:
    """Copy weights into ``model`` (either backend, or the MLP baseline).

    ``w`` holds canonical weights (as :func:`weights` returns them) or the
    ``state_dict()`` of a transformer of either backend: a ``HookedTransformer``'s
    attention buffers (``IGNORE``, ``mask``) are skipped, a bridge's names and layouts
    are mapped. Biases the model was built without may be given only as zeros;
    non-zero values there mean the weights come from a model with biases.
    """
    if not isinstance(model, MLPBaseline):
        w = tl_backend.canonical_state_dict(dict(w), model.cfg.n_heads, model.cfg.d_head)
    absent = absent_biases(model)
    for name in absent:
        if name in w and bool(w[name].detach().ne(0).any()):
            raise GrokInterpError(
                f"weight {name!r} is non-zero but this model was built without it "
                "(attn_bias/unembed_bias=False); load it into a model with biases"
            )
    w = {k: v for k, v in w.items() if k not in absent}
    if isinstance(model, MLPBaseline):
        own = dict(model.named_parameters())
        if set(own) != set(w):
            raise GrokInterpError(f"weights do not fit this model: expected {sorted(own)}, got {sorted(w)}")
        with torch.no_grad():
            for k, p in own.items():
                p.copy_(w[k].to(p.device, p.dtype))
    else:
        tl_backend.load_canonical(model, w)


def vocabulary_of(model: nn.Module | dict[str, Tensor] | Tensor) -> tuple[int, int | None]:
    """``(d_vocab, d_vocab_out)`` of a model, its canonical weights, or ``W_E`` alone
    (``d_vocab_out`` None: a bare embedding says nothing about the answers)."""
    if isinstance(model, Tensor):
        if model.ndim != 2:
            raise bad_value("W_E", tuple(model.shape), "must be a 2-D (d_vocab, d_model) tensor")
        return model.shape[0], None
    if isinstance(model, dict):
        if "embed.W_E" not in model:
            raise bad_value("weights", sorted(model)[:5], "have no 'embed.W_E'")
        w_u = model.get("unembed.W_U")
        return model["embed.W_E"].shape[0], (None if w_u is None else w_u.shape[-1])
    if isinstance(model, MLPBaseline):
        return model.W_E.shape[0], model.W_U.shape[1]
    cfg = getattr(model, "cfg", None)
    if cfg is not None and hasattr(cfg, "d_vocab"):
        return int(cfg.d_vocab), int(cfg.d_vocab_out)
    return vocabulary_of(weights(model))


def check_model_fits_task(model: nn.Module | dict[str, Tensor] | Tensor, task: Task) -> None:
    """Raise one :class:`GrokInterpError` if ``model`` was not built for ``task``.

    A model for a task reads ``d_vocab = p + offset + 1`` tokens (the operands and
    ``"="``) and answers with ``d_vocab_out = p`` logits; a model trained at another p
    or offset runs on the task's tokens without complaint (or fails deep inside with an
    index error) and gives meaningless measures, so every measure that takes a model and
    a task checks this first. Transformers must also read 3 positions (``n_ctx >= 3``).

    Args:
        model: A hooked model, its canonical weights, or ``W_E`` alone.
        task: The task it is to be measured on.
    """
    d_vocab, d_vocab_out = vocabulary_of(model)
    problems = []
    if isinstance(model, Tensor):  # W_E alone, perhaps only its operand rows: the operand tokens must be there
        if not task.p + task.offset <= d_vocab <= task.d_vocab:
            problems.append(f"W_E has {d_vocab} rows but the task's operand tokens need p + offset = "
                            f"{task.p + task.offset} (and the task has d_vocab = {task.d_vocab})")
    elif d_vocab != task.d_vocab:
        problems.append(f"the model reads d_vocab={d_vocab} tokens but the task has p + offset + 1 = {task.d_vocab}")
    if d_vocab_out is not None and d_vocab_out != task.d_vocab_out:
        problems.append(f"the model gives d_vocab_out={d_vocab_out} logits but the task has p = {task.d_vocab_out} answers")
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if isinstance(n_ctx, int) and n_ctx < 3:
        problems.append(f"the model reads n_ctx={n_ctx} positions but the task's inputs are 3 tokens (a, b, =)")
    if problems:
        raise GrokInterpError(
            f"model and task do not fit: {'; '.join(problems)} (task p={task.p}, op={task.op_name!r}, "
            f"offset={task.offset}); measure the model on the task it was trained on"
        )
