"""grok_interp.vision.resnet: torchvision's ResNet-18 with hooks; the feature-uniformity measure."""

from __future__ import annotations


import pytest
import torch
from torchvision.models import resnet18

from grok_interp.vision import (
    build_resnet,
    feature_uniformity,
    load_local_weights,
    resnet18_width,
)

pytestmark = pytest.mark.portable


# --- model ---------------------------------------------------------------------------
def test_default_network_is_torchvision_resnet18():
    model = build_resnet(64, 49, seed=3)
    torch.manual_seed(3)
    ref = resnet18(weights=None, num_classes=49)
    ours = model.net.state_dict()
    assert list(ours) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(ours[k], v), k
    # the narrow variant keeps the topology: same tensor names, widths scaled
    narrow = resnet18_width(16, 49).state_dict()
    assert list(narrow) == list(ours)
    assert narrow["layer4.1.conv2.weight"].shape == (128, 128, 3, 3) and narrow["fc.weight"].shape == (49, 128)


@pytest.mark.parametrize("width,size", [(8, 32), (64, 64)])
def test_hooks_return_expected_shapes(width, size):
    model = build_resnet(width, 49, seed=0).eval()
    x = torch.randn(2, 3, size, size)
    logits, cache = model.run_with_cache(x)
    s = size // 4
    expected = {
        "hook_stem": (2, width, s, s),
        "hook_layer1": (2, width, s, s),
        "hook_layer2": (2, 2 * width, s // 2, s // 2),
        "hook_layer3": (2, 4 * width, s // 4, s // 4),
        "hook_layer4": (2, 8 * width, max(s // 8, 1), max(s // 8, 1)),
        "hook_pooled": (2, 8 * width),
        "hook_logits": (2, 49),
    }
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    assert torch.allclose(logits, model.net(x), atol=1e-5)  # hooks do not change the network
    assert torch.equal(cache["hook_pooled"], cache["hook_layer4"].mean((2, 3)))
    # run_with_hooks: zeroing the pooled features leaves only the final bias
    zeroed = model.run_with_hooks(x, fwd_hooks=[("hook_pooled", lambda act, hook: torch.zeros_like(act))])
    assert torch.allclose(zeroed, model.net.fc.bias.expand(2, -1))


def test_local_weights_file_keeps_a_new_final_layer(tmp_path):
    torch.manual_seed(5)
    imagenet_like = resnet18(weights=None)  # 1000-class head, as an ImageNet file has
    path = tmp_path / "r18.pth"
    torch.save(imagenet_like.state_dict(), path)
    net = resnet18_width(64, 49)
    fc_before = net.fc.weight.clone()
    skipped = load_local_weights(net, path)
    assert skipped == ["fc.bias", "fc.weight"]
    assert torch.equal(net.layer3[0].conv1.weight, imagenet_like.layer3[0].conv1.weight)
    assert torch.equal(net.fc.weight, fc_before)
    with pytest.raises(ValueError, match="weights_path"):
        load_local_weights(net, tmp_path / "missing.pth")


def test_feature_uniformity_analytic():
    k = 49
    labels = torch.arange(k).repeat_interleave(3)
    line = labels[:, None].double() * torch.tensor([[0.6, 0.8]], dtype=torch.float64)  # unit steps on a line
    u = feature_uniformity(line, labels)
    assert u["feature_med"] == pytest.approx(1.0)
    assert u["feature_cv"] == pytest.approx(0.0, abs=1e-12)
    assert u["feature_med_ratio"] == pytest.approx(3 / (k + 1))
    # the same points in a shuffled label order are far less uniform
    perm = torch.randperm(k, generator=torch.Generator().manual_seed(0))
    shuffled = feature_uniformity(line, perm[labels])
    assert shuffled["feature_med_ratio"] > 5 * u["feature_med_ratio"]
    assert shuffled["feature_cv"] > 0.3
