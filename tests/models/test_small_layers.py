"""fastai's small layers: shapes and values against what each computes by hand."""

import functools

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lamina.vision.all import *  # noqa: F403  (what users write)


def test_sequential_ex_gives_each_layer_the_block_input():
    torch.manual_seed(0)
    conv = ConvLayer(4, 4, act_cls=None, norm_type=None)
    x = torch.randn(2, 4, 8, 8)
    residual = SequentialEx(conv, MergeLayer())
    assert torch.allclose(residual(x), conv(x) + x)
    dense = SequentialEx(conv, MergeLayer(dense=True))
    assert dense(x).shape == (2, 8, 8, 8)
    assert torch.allclose(SequentialEx(nn.Identity(), ProdLayer())(x), x * x)
    assert getattr(x, "orig", None) is None  # the input is left as it was
    with pytest.raises(ValueError, match="SequentialEx"):
        ProdLayer()(x)
    with pytest.raises(ValueError, match="layer\\(x, orig\\)"):
        MergeLayer()(x)
    residual.append(nn.ReLU())
    assert isinstance(residual[2], nn.ReLU) and (residual(x) >= 0).all()


def test_reshaping_pooling_and_concatenation():
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    assert View(-1)(x).shape == (24,) and ResizeBatch(12)(x).shape == (2, 12)
    assert torch.equal(PoolFlatten()(x), x.mean((2, 3)))
    assert torch.equal(PoolFlatten("Max")(x), x.amax((2, 3)))
    assert torch.equal(PoolFlatten(PoolType.Cat)(x), torch.cat([x.amax((2, 3)), x.mean((2, 3))], 1))
    seq = torch.arange(12.0).reshape(2, 2, 3)
    assert torch.equal(AdaptiveConcatPool1d()(seq), torch.cat([seq.amax(2, keepdim=True),
                                                               seq.mean(2, keepdim=True)], 1))
    assert torch.equal(Cat([nn.Identity(), View(2, -1)], dim=1)(torch.ones(2, 3)), torch.ones(2, 6))
    with pytest.raises(ValueError, match="pool_type"):
        adaptive_pool("Min")


def test_time_distributed_applies_the_layer_at_each_step():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 5, 3)
    expected = torch.stack([lin(x[:, t]) for t in range(5)], dim=1)
    assert torch.allclose(TimeDistributed(lin)(x), expected, atol=1e-6)
    assert torch.allclose(TimeDistributed(lin, low_mem=True)(x), expected, atol=1e-6)


def test_small_cnn_batchnorm_and_activations():
    cnn = SimpleCNN([3, 8, 16], kernel_szs=[3, 3], strides=[2, 2])
    assert cnn(torch.randn(2, 3, 16, 16)).shape == (2, 16)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in cnn.modules()) == 1  # none after the last convolution
    with pytest.raises(ValueError, match="2 convolutions need 2"):
        SimpleCNN([3, 8, 16], kernel_szs=[3])
    bn = BatchNorm1dFlat(3)
    seq = torch.randn(4, 5, 3)
    assert torch.allclose(bn(seq), F.batch_norm(seq.reshape(-1, 3), None, None, training=True).reshape(4, 5, 3),
                          atol=1e-5)
    x = torch.tensor([-50.0, -1.0, 0.0, 50.0])
    assert sigmoid(x).min() >= 1e-7 and sigmoid(x).max() <= 1 - 1e-7
    assert torch.allclose(vleaky_relu(x.clone()), torch.where(x > 0, x, 0.3 * x))
    assert torch.allclose(swish(x), x * torch.sigmoid(x)) and torch.allclose(Mish()(x), x * torch.tanh(F.softplus(x)))
    assert isinstance(inplace_relu(), nn.ReLU) and inplace_relu().inplace


def test_module_decorator_init_and_walking_helpers():
    @module("scale", shift=1.0)
    def Affine(self, x):  # noqa: N802 (a layer class, as fastai writes it)
        return x * self.scale + self.shift

    layer = Affine(2.0)
    assert isinstance(layer, nn.Module) and torch.equal(layer(torch.ones(2)), torch.full((2,), 3.0))
    assert Affine(2.0, shift=0.0)(torch.ones(1)).item() == 2.0
    lin = init_default(nn.Linear(4, 3), functools.partial(nn.init.constant_, val=0.5))
    assert (lin.weight == 0.5).all() and (lin.bias == 0).all()

    class WithParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.scale = nn.Linear(2, 2), nn.Parameter(torch.ones(1))

    parts = children_and_parameters(WithParam())
    assert isinstance(parts[0], nn.Linear) and isinstance(parts[1], ParameterModule) and len(parts) == 2
    assert has_children(WithParam()) and not has_children(nn.Linear(2, 2))
    loss = nn.CrossEntropyLoss()
    with NoneReduce(loss) as per_item:
        assert per_item(torch.randn(3, 2), torch.tensor([0, 1, 1])).shape == (3,)
    assert loss.reduction == "mean"
    with NoneReduce(F.cross_entropy) as per_item:
        assert per_item(torch.randn(3, 2), torch.tensor([0, 1, 1])).shape == (3,)
    assert "keywords" not in repr(PartialLambda(functools.partial(torch.clamp, min=0)))
    assert torch.equal(PartialLambda(functools.partial(torch.clamp, min=0))(torch.tensor([-1.0, 2.0])),
                       torch.tensor([0.0, 2.0]))


def test_add_head_cut_model_and_has_pool_type():
    from torchvision.models import resnet18 as tv_resnet18

    body = cut_model(tv_resnet18(), -2)
    assert isinstance(body, nn.Sequential) and len(body) == 8 and has_pool_type(body)
    assert not has_pool_type(nn.Linear(2, 2))
    model = add_head(body, 512, 3, init=functools.partial(nn.init.constant_, val=0.01))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    linears = [m for m in model[1].modules() if isinstance(m, nn.Linear)]
    assert linears and all((m.weight == 0.01).all() for m in linears)
    assert cut_model(tv_resnet18(), lambda m: m.layer1) is not None
    with pytest.raises(TypeError, match="cut"):
        cut_model(tv_resnet18(), "layer1")
    assert create_cnn_model is create_vision_model
