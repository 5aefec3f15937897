"""The MLP and unembedding of the fast forward as one chunked, cache-sized computation.

After attention, :func:`~grok_interp.training.forwards.fast_logits` is left with

    pre    = z @ A_in + a_in            (n, d_mlp)
    post   = relu(pre)
    logits = z @ A_U + a_U + post @ B   (n, d_vocab_out)

with ``z`` the heads' mixed values ``(n, H * d_head)`` and the folded maps ``A_in``,
``A_U``, ``B = W_out W_U`` (and their bias rows). ``A_U = None`` stands for the
identity (``z`` itself, when ``C == V``): a layer's ``resid_post = resid_mid + b_out +
post W_out`` is this expression with ``z = resid_mid``, and the identity costs no
product. These three products are almost all of a step's FLOPs. Done as whole-batch operations, PyTorch writes ``pre`` and ``post``
(``n x d_mlp`` floats: 7.8 MB at p = 113, 18 MB for the test set) to memory and reads
them back for the ReLU, its mask and each product: at p = 113 the products ran at about
half a large matmul's rate and the ReLU and its backward at a few GB/s.

:class:`MLPLogits` does the same arithmetic in row chunks of ``chunk`` inputs, so each
chunk's ``pre``/``post`` stays in the core's cache between the product that writes it,
the ReLU, and the product that reads it (in the backward, the ReLU's mask is applied
chunk by chunk the same way; the weight gradients are then single products over the
whole batch); and it pads the output dimension to a multiple
of 16 columns (zero columns of ``A_U``, ``B``), which the matrix kernels handle much
faster than ``d_vocab_out = 113`` (``benchmarks/train_step.py`` measures both). Results equal the unfused expression within float32
rounding (``tests/training/test_fused.py`` checks values and gradients).

ReLU on CPU only: other activations and GPUs keep the unfused expression (see
:func:`mlp_logits`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import bad_value

__all__ = ["MLPLogits", "mlp_logits", "mlp_logits_one", "CHUNK", "PAD"]

#: Rows per chunk: ``chunk x d_mlp`` floats (1 MB at d_mlp = 512) stay in a core's L2.
CHUNK = 512
#: The output dimension is padded to a multiple of this many columns.
PAD = 16


def _padded(x: Tensor, cols: int) -> Tensor:
    """``x`` with zero columns appended up to ``cols``, contiguous."""
    return x.contiguous() if x.shape[-1] == cols else F.pad(x, (0, cols - x.shape[-1]))


class MLPLogits(torch.autograd.Function):
    """``z @ A_U + a_U + relu(z @ A_in + a_in) @ B`` for 2-D ``z``, chunked (see module)."""

    @staticmethod
    def forward(ctx, z: Tensor, A_in: Tensor, a_in: Tensor, A_U: Tensor | None, a_U: Tensor, B: Tensor,
                chunk: int = CHUNK) -> Tensor:  # noqa: N803 - the algebra's names
        n, V = z.shape[0], B.shape[1]
        if A_U is None and z.shape[1] != V:
            raise bad_value("A_U", None, f"the identity needs z's {z.shape[1]} columns to equal B's {V}")
        Vp = -(-V // PAD) * PAD
        A_Up, a_Up, Bp = None if A_U is None else _padded(A_U, Vp), _padded(a_U, Vp), _padded(B, Vp)
        save = any(ctx.needs_input_grad)
        # Saved for the backward; without gradients, one chunk's worth reused.
        post = z.new_empty(n if save else min(n, chunk), A_in.shape[1])
        out = z.new_empty(n, Vp)
        for i in range(0, n, chunk):
            zc = z[i : i + chunk]
            pc = torch.mm(zc, A_in, out=post[i : i + chunk] if save else post[: len(zc)])
            pc.add_(a_in).clamp_(min=0)  # on the cache-hot chunk (addmm would first copy the bias there)
            if A_Up is None and Vp == V:
                oc = torch.add(zc, a_Up, out=out[i : i + chunk])
            elif A_Up is None:
                oc = out[i : i + chunk]
                oc[:, :V] = zc
                oc[:, V:] = 0
                oc.add_(a_Up)
            else:
                oc = torch.addmm(a_Up, zc, A_Up, out=out[i : i + chunk])
            oc.addmm_(pc, Bp)
        if save:
            ctx.save_for_backward(z, A_in, A_Up, Bp, post)
            ctx.chunk, ctx.V = chunk, V
        return out[:, :V] if Vp != V else out

    @staticmethod
    def backward(ctx, g: Tensor):  # noqa: ANN205
        z, A_in, A_Up, Bp, post = ctx.saved_tensors
        chunk, V = ctx.chunk, ctx.V
        n, Vp = z.shape[0], Bp.shape[1]
        gp = _padded(g, Vp)
        need = ctx.needs_input_grad
        # The ReLU's backward, chunk by chunk while the chunk is in cache; then each
        # weight gradient as one product over the whole batch (a long inner dimension
        # runs near the matmul rate; accumulating per chunk did not).
        gpre = torch.empty_like(post)
        gz = torch.empty_like(z) if need[0] else None
        for i in range(0, n, chunk):
            gc, pc, gprec = gp[i : i + chunk], post[i : i + chunk], gpre[i : i + chunk]
            torch.mm(gc, Bp.T, out=gprec)
            torch.ops.aten.threshold_backward.grad_input(gprec, pc, 0.0, grad_input=gprec)  # in place
            if gz is not None:
                gzc = torch.mm(gprec, A_in.T, out=gz[i : i + chunk])
                if A_Up is None:
                    gzc.add_(gc[:, :V])
                else:
                    gzc.addmm_(gc, A_Up.T)
        gA_in = z.T @ gpre if need[1] else None
        ga_in = gpre.sum(0) if need[2] else None
        gA_U = z.T @ gp if need[3] else None  # (never for the identity: None needs no gradient)
        gB = post.T @ gp if need[5] else None
        ga_U = g.sum(0) if need[4] else None
        return (gz, gA_in, ga_in, None if gA_U is None else gA_U[:, :V], ga_U,
                None if gB is None else gB[:, :V], None)


def _chunked(z: Tensor, act: str, fused: bool) -> bool:
    """Whether :class:`MLPLogits` computes the expression (ReLU on CPU, ``fused``)."""
    return act == "relu" and fused and z.device.type == "cpu"


def mlp_logits(z: Tensor, A_in: Tensor, a_in: Tensor, A_U: Tensor | None, a_U: Tensor, B: Tensor,
               act: str = "relu", chunk: int | None = None, fused: bool = True) -> Tensor:
    """``z @ A_U + a_U + act(z @ A_in + a_in) @ B`` for ``K`` stacked runs.

    Shapes: ``z (K, n, C)``, ``A_in (K, C, d_mlp)``, ``a_in (K, d_mlp)``,
    ``A_U (K, C, V)`` or None for the identity (``C == V``), ``a_U (K, V)``,
    ``B (K, d_mlp, V)``; returns ``(K, n, V)``.
    ReLU runs through :class:`MLPLogits` (chunked, per run); other activations,
    ``fused=False`` and tensors on a GPU (which has no use for cache-sized chunks and
    runs the ``K`` runs' products best as one batched product each) through the plain
    whole-batch expression. ``chunk`` defaults to :data:`CHUNK` as it is at the call.
    """
    if not _chunked(z, act, fused):
        from ..models import ACTIVATIONS

        pre = torch.baddbmm(a_in[:, None], z, A_in)
        lin = z + a_U[:, None] if A_U is None else torch.baddbmm(a_U[:, None], z, A_U)
        return torch.baddbmm(lin, ACTIVATIONS[act](pre), B)
    outs = [mlp_logits_one(z[k], A_in[k], a_in[k], None if A_U is None else A_U[k], a_U[k], B[k], act, chunk)
            for k in range(z.shape[0])]
    return outs[0].unsqueeze(0) if len(outs) == 1 else torch.stack(outs)


def mlp_logits_one(z: Tensor, A_in: Tensor, a_in: Tensor, A_U: Tensor | None, a_U: Tensor, B: Tensor,
                   act: str = "relu", chunk: int | None = None, fused: bool = True) -> Tensor:
    """:func:`mlp_logits` for one run: ``z (n, C)``, ``A_in (C, d_mlp)``, ``a_in (d_mlp,)``,
    ``A_U (C, V)``, ``a_U (V,)``, ``B (d_mlp, V)``; returns ``(n, V)``, the same numbers as
    ``mlp_logits`` on the runs axis of length one, without the stacking around them."""
    if not _chunked(z, act, fused):
        from ..models import ACTIVATIONS

        lin = z + a_U if A_U is None else torch.addmm(a_U, z, A_U)
        return torch.addmm(lin, ACTIVATIONS[act](torch.addmm(a_in, z, A_in)), B)
    return MLPLogits.apply(z, A_in, a_in, A_U, a_U, B, CHUNK if chunk is None else chunk)
