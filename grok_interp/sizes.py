"""Memory estimates: refuse an impossible size with one line, before allocating anything.

A typo such as ``p = 100003`` (10^10 pairs) or ``d_mlp = 1e9`` would otherwise start
allocating tens of gigabytes and die, or swap the machine, minutes later. The
estimates here are deliberately rough lower bounds (float32 weights, their gradients
and two AdamW moments; the data tensors; one full-batch forward kept for backward), so
a run they refuse cannot fit.
"""

from __future__ import annotations

import dataclasses

import torch

from ._validate import bad_value, format_bytes, physical_memory
from .config import ModelConfig, RunConfig

__all__ = ["estimate_bytes", "memory_limit", "check_fits", "format_bytes", "HISTORY_ROW_BYTES"]

#: A lower bound of one history row in memory (a dict of a step and four floats).
HISTORY_ROW_BYTES = 200


def memory_limit(device: str | torch.device = "cpu") -> int:
    """Memory of ``device``: the GPU's total memory, else the machine's physical memory."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device.index or 0).total_memory)
    return physical_memory()


def _params(config: RunConfig) -> int:
    d, m = config.data, config.model
    vocab, out = d.p + d.offset + 1, d.p
    if m.arch == "mlp":
        return vocab * m.d_model + 2 * m.d_model * m.d_mlp + m.d_mlp * m.d_mlp + m.d_mlp * out + 2 * m.d_mlp + out
    d_head = m.d_head or max(1, m.d_model // m.n_heads)
    per_layer = 4 * m.d_model * m.n_heads * d_head + 2 * m.d_model * m.d_mlp + m.d_mlp + 4 * m.d_model
    return vocab * m.d_model + 3 * m.d_model + m.n_layers * per_layer + m.d_model * out + out


def estimate_bytes(config: RunConfig, training: bool = True) -> dict[str, int]:
    """A rough lower bound of the memory a run needs, by part: ``weights``, ``data``,
    ``activations`` and ``history`` (its rows, one every ``eval_every`` of ``steps``;
    training only) and ``total``. The history lives in host memory; it is counted
    with the rest, a lower bound either way."""
    d, m = config.data, config.model
    pairs = d.p * d.p
    weights = 4 * _params(config) * (4 if training else 1)
    data = pairs * (8 + 2) + (pairs * 3 * 8 if training else 0)  # labels, masks; tokens
    activations = 0
    if training:
        if m.arch == "mlp":
            per_pair = 2 * m.d_model + 4 * m.d_mlp + 2 * d.p
        else:
            per_pair = m.n_layers * (3 * 6 * m.d_model + 2 * m.d_mlp + 2 * 9 * m.n_heads) + 2 * d.p
        activations = 4 * int(pairs * d.frac) * per_pair
    t = config.train
    history = HISTORY_ROW_BYTES * (t.steps // t.eval_every + 2) if training else 0
    return {"weights": weights, "data": data, "activations": activations, "history": history,
            "total": weights + data + activations + history}


def check_fits(config: RunConfig, device: str | torch.device = "cpu", training: bool = True,
               limit: int | None = None) -> None:
    """Raise :class:`~grok_interp.errors.GrokInterpError` (one line, with the estimate)
    when ``config`` cannot fit in the memory of ``device``."""
    est = estimate_bytes(config, training)
    limit = memory_limit(device) if limit is None else limit
    if est["total"] <= limit:
        return
    m, d = config.model, config.data
    usual = dataclasses.replace(config, model=ModelConfig(arch=m.arch))  # the same task with the default widths
    if est["total"] - est["history"] <= limit:  # the history alone: too many steps for their rows
        name, value = "steps", config.train.steps
    elif estimate_bytes(usual, training)["total"] - est["history"] <= limit:  # the widths are at fault
        name, value = max((("d_mlp", m.d_mlp), ("d_model", m.d_model), ("n_layers", m.n_layers)), key=lambda kv: kv[1])
    elif d.offset and estimate_bytes(dataclasses.replace(usual, data=dataclasses.replace(d, offset=0)),
                                     training)["total"] - est["history"] <= limit:  # the vocabulary's offset
        name, value = "offset", d.offset
    else:
        name, value = "p", config.data.p
    parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in est.items() if k != "total" and v)
    raise bad_value(
        name, value,
        f"the run needs at least {format_bytes(est['total'])} ({parts}) but {torch.device(device).type} memory "
        f"is {format_bytes(limit)}",
    )
