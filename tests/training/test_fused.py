"""The chunked MLP-and-unembedding against the plain whole-batch expression."""

import pytest
import torch

from grok_interp.training.fused import MLPLogits, mlp_logits

from ..helpers import assert_grads_close


def plain(z, A_in, a_in, A_U, a_U, B):
    return z @ A_U + a_U + torch.relu(z @ A_in + a_in) @ B


def inputs(n=37, C=9, M=23, V=13, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n, C), (C, M), (M,), (C, V), (V,), (M, V)]
    return [torch.randn(*s, generator=gen, dtype=dtype).requires_grad_() for s in shapes]


@pytest.mark.parametrize("chunk", [1, 5, 37, 64])
@pytest.mark.parametrize("V", [13, 16, 33])
def test_values_and_gradients_equal_the_plain_expression(chunk, V):
    xs = inputs(V=V)
    out = MLPLogits.apply(*xs, chunk)
    ref = plain(*xs)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, xs, g)
    want = torch.autograd.grad(ref, xs, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_gradcheck_in_float64():
    xs = inputs(n=11, C=4, M=6, V=5, dtype=torch.float64, seed=1)
    assert torch.autograd.gradcheck(lambda *a: MLPLogits.apply(*a, 3), xs)


def test_only_the_inputs_that_need_gradients_get_them():
    xs = inputs()
    xs[0].requires_grad_(False)  # z: the attention output of a frozen model
    xs[5].requires_grad_(False)
    out = MLPLogits.apply(*xs, 8)
    grads = torch.autograd.grad(out.sum(), [x for x in xs if x.requires_grad])
    want = torch.autograd.grad(plain(*xs).sum(), [x for x in xs if x.requires_grad])
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_no_grad_forward_equals_the_plain_expression():
    xs = inputs()
    with torch.no_grad():
        torch.testing.assert_close(MLPLogits.apply(*xs, 6), plain(*xs), rtol=1e-5, atol=1e-5)


def test_stacked_runs_and_other_activations():
    K = 3
    runs = [inputs(seed=k) for k in range(K)]
    stacked = [torch.stack([r[i] for r in runs]) for i in range(6)]
    out = mlp_logits(*stacked, chunk=10)
    for k in range(K):
        torch.testing.assert_close(out[k], plain(*runs[k]), rtol=1e-5, atol=1e-5)
    # gelu is not fused: the plain expression with gelu
    z, A_in, a_in, A_U, a_U, B = stacked
    want = torch.baddbmm(a_U[:, None], z, A_U) + torch.nn.functional.gelu(torch.baddbmm(a_in[:, None], z, A_in)) @ B
    torch.testing.assert_close(mlp_logits(*stacked, act="gelu"), want)
    torch.testing.assert_close(mlp_logits(*stacked, fused=False), out, rtol=1e-5, atol=1e-5)


@pytest.mark.portable
def test_a_model_over_several_chunks_keeps_the_hooked_gradients():
    """p = 37: 1369 inputs, three chunks of 512 and a padded output (37 -> 48 columns)."""
    import grok_interp as g
    from grok_interp.training import loss_fn
    from grok_interp.training.forwards import fast_forward, hooked_forward

    task = g.Task(p=37)
    model = g.models.build_model(g.ModelConfig(d_model=32, n_heads=4, d_mlp=64, seed=3), task)
    toks, labels = task.tokens(task.all_pairs()), task.answers(task.all_pairs())
    grads, logits = {}, {}
    for name, fwd in (("hooked", hooked_forward), ("fast", fast_forward)):
        model.zero_grad()
        logits[name] = fwd(model, toks)
        loss_fn(logits[name], labels).backward()
        grads[name] = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert_grads_close({"logits": logits["fast"].detach()}, {"logits": logits["hooked"].detach()})
    assert_grads_close(grads["fast"], grads["hooked"])


@pytest.mark.parametrize("chunk", [4, 64])
@pytest.mark.parametrize("V", [13, 16])  # 13: the output is padded to 16 columns
@pytest.mark.parametrize("fused", [True, False])
def test_the_identity_first_map_equals_the_expression_with_an_identity_matrix(chunk, V, fused):
    # A_U = None: a layer's resid_post = z + a_U + relu(z @ A_in + a_in) @ B, no product for z.
    z, A_in, a_in, _, a_U, B = inputs(C=V, V=V, seed=2)
    eye = torch.eye(V)
    out = mlp_logits(z[None], A_in[None], a_in[None], None, a_U[None], B[None], chunk=chunk, fused=fused)[0]
    ref = plain(z, A_in, a_in, eye, a_U, B)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    xs = [z, A_in, a_in, a_U, B]
    for a, b in zip(torch.autograd.grad(out, xs, g), torch.autograd.grad(ref, xs, g)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_the_identity_needs_as_many_columns_as_outputs():
    z, A_in, a_in, _, a_U, B = inputs(C=9, V=13)
    with pytest.raises(ValueError, match="identity"):
        MLPLogits.apply(z, A_in, a_in, None, a_U, B, 8)
