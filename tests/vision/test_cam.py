"""Class activation maps (chapter 18) with lamina's hooks on a small trained CNN learner: CAM from the
last layer's weights, Grad-CAM from the gradients of the body's output."""

import pytest
import torch
from torch import nn

from lamina.callbacks.hook import hook_output
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat
from lamina.metrics import accuracy
from lamina.models.layers import ConvLayer

SIZE, PATCH = 16, 4


def patch_images(n, seed):
    """Noise images; class 1 has one bright PATCHxPATCH square somewhere, class 0 none."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 3, SIZE, SIZE, generator=gen)
    y = torch.arange(n) % 2
    corners = torch.randint(0, SIZE - PATCH + 1, (n, 2), generator=gen)
    for i in torch.nonzero(y).flatten().tolist():
        r, c = corners[i].tolist()
        x[i, :, r:r + PATCH, c:c + PATCH] += 2.0
    return x, y, corners


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y, corners = patch_images(320, seed=0)
    dls = DataLoaders.from_tensors(x[:256], y[:256], x[256:], y[256:], bs=32, vocab=["plain", "patch"],
                                   loss_func=CrossEntropyLossFlat())
    body = nn.Sequential(ConvLayer(3, 8), ConvLayer(8, 16, stride=2))          # 16x16 -> 8x8 feature map
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    learn = Learner(dls, nn.Sequential(body, head), lr=1e-2, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit(4)
    assert learn.validate()[1] > 0.9
    return learn, x[256:], y[256:], corners[256:]


def in_patch(cam, corner, tolerance=1):
    """Whether the hottest cell of an 8x8 map lies on the patch (cells of 2x2 pixels), within ``tolerance``."""
    row, col = divmod(int(cam.argmax()), cam.shape[1])
    r, c = (int(v) // 2 for v in corner)
    last = PATCH // 2 - 1 + tolerance
    return r - tolerance <= row <= r + last and c - tolerance <= col <= c + last


def test_cam_from_the_last_layer_weights(trained):
    learn, x, y, corners = trained
    model = learn.model.eval()
    hits = []
    for i in torch.nonzero(y).flatten()[:8].tolist():
        with hook_output(model[0]) as hook:
            with torch.no_grad():
                out = model(x[i:i + 1])
        act = hook.stored[0]                                                  # (16, 8, 8)
        cam = torch.einsum("ck,kij->cij", model[1][-1].weight, act)            # one map per class
        assert cam.shape == (2, 8, 8) and cam.std() > 0
        # averaging the map over positions (plus the bias) gives back the logits
        assert torch.allclose(cam.mean((1, 2)) + model[1][-1].bias, out[0], atol=1e-4)
        hits.append(in_patch(cam[1], corners[i]))
    assert sum(hits) >= 6  # the "patch" class map is hottest on the patch


def test_grad_cam_from_hooked_gradients(trained):
    learn, x, y, corners = trained
    model = learn.model.eval()
    hits = []
    for i in torch.nonzero(y).flatten()[:8].tolist():
        last = model[0][-1]  # the body's last layer: its input carries gradients, so its backward hook fires
        with hook_output(last) as hook_a, hook_output(last, grad=True) as hook_g:
            out = model(x[i:i + 1])
            out[0, 1].backward()
        act, grad = hook_a.stored[0], hook_g.stored[0][0]                     # (16, 8, 8) each
        weights = grad.mean((1, 2))
        cam = (weights[:, None, None] * act).sum(0)
        assert cam.shape == (8, 8) and cam.std() > 0
        # for a linear head after average pooling, Grad-CAM is the CAM of that class up to the 1/64 factor
        expected = torch.einsum("k,kij->ij", model[1][-1].weight[1], act) / 64
        assert torch.allclose(cam, expected, atol=1e-5)
        hits.append(in_patch(cam, corners[i]))
    assert sum(hits) >= 6
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
