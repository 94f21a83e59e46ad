"""Conv blocks of lamina.models.layers: ConvLayer, BatchNorm, ICNR pixel shuffle, ResBlock, attention, merges."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lamina.models.bodies import create_body
from lamina.models.layers import (BatchNorm, ConvLayer, InstanceNorm, MaxPool2d, MergeLayer, NormType,
                                  PixelShuffle_ICNR, ResBlock, ResizeToOrig, SelfAttention, default_init, icnr_init)


def test_batchnorm_init_weight_one_bias_small():
    bn = BatchNorm(8)
    assert isinstance(bn, nn.BatchNorm2d)
    assert torch.all(bn.weight == 1) and torch.allclose(bn.bias, torch.full((8,), 1e-3))
    zero = BatchNorm(4, ndim=1, norm_type=NormType.BatchZero)
    assert isinstance(zero, nn.BatchNorm1d) and torch.all(zero.weight == 0)
    inn = InstanceNorm(3, norm_type=NormType.InstanceZero)
    assert isinstance(inn, nn.InstanceNorm2d) and torch.all(inn.weight == 0)


def test_convlayer_default_is_conv_bn_relu_without_bias():
    layer = ConvLayer(3, 8)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert layer[0].bias is None and layer[0].padding == (1, 1)
    assert layer(torch.randn(2, 3, 10, 10)).shape == (2, 8, 10, 10)


def test_convlayer_options():
    plain = ConvLayer(3, 8, ks=1, norm_type=None, act_cls=None)
    assert [type(m) for m in plain] == [nn.Conv2d] and plain[0].bias is not None
    assert 0 < plain[0].bias.abs().max() < 0.1  # small random biases
    act_first = ConvLayer(3, 8, bn_1st=False)
    assert [type(m) for m in act_first] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    strided = ConvLayer(3, 8, stride=2, act_cls=nn.SiLU, xtra=nn.Dropout(0.1))
    assert isinstance(strided[2], nn.SiLU) and isinstance(strided[3], nn.Dropout)
    assert strided(torch.randn(1, 3, 10, 10)).shape == (1, 8, 5, 5)
    up = ConvLayer(4, 2, ks=2, stride=2, transpose=True, norm_type=None)
    assert isinstance(up[0], nn.ConvTranspose2d) and up(torch.randn(1, 4, 5, 5)).shape == (1, 2, 10, 10)
    one_d = ConvLayer(3, 5, ndim=1)
    assert isinstance(one_d[1], nn.BatchNorm1d) and one_d(torch.randn(2, 3, 7)).shape == (2, 5, 7)


def test_default_init_follows_the_activation():
    assert default_init(nn.ReLU) is nn.init.kaiming_uniform_
    assert default_init(nn.LeakyReLU) is nn.init.kaiming_uniform_ and default_init(nn.Mish) is nn.init.kaiming_uniform_
    assert default_init(nn.Tanh) is nn.init.xavier_uniform_ and default_init(nn.Sigmoid) is nn.init.xavier_uniform_
    assert default_init(None) is None and default_init(nn.GELU) is None


def test_convlayer_auto_init_scales_the_weights_for_the_activation():
    torch.manual_seed(0)
    fan_in = 64 * 9
    relu = ConvLayer(64, 64, norm_type=None)[0].weight.std().item()
    assert relu == pytest.approx((2 / fan_in) ** 0.5, rel=0.03)  # kaiming: keeps the variance through a ReLU
    linear = ConvLayer(64, 64, norm_type=None, act_cls=None)[0].weight.std().item()
    assert linear == pytest.approx((1 / (3 * fan_in)) ** 0.5, rel=0.03)  # torch's default, 2.45x smaller
    tanh = ConvLayer(64, 64, norm_type=None, act_cls=nn.Tanh)[0].weight.std().item()
    assert tanh == pytest.approx((2 / (2 * fan_in)) ** 0.5, rel=0.03)  # xavier
    own = ConvLayer(4, 4, norm_type=None, init=nn.init.ones_, bias_std=0)[0]
    assert torch.all(own.weight == 1) and torch.all(own.bias == 0)
    with pytest.raises(ValueError, match="`init` must be 'auto', None or an initialiser"):
        ConvLayer(4, 4, init="kaiming")


def test_convlayer_weight_and_spectral_norm_reparametrise_the_conv():
    for norm_type in (NormType.Weight, NormType.Spectral):
        layer = ConvLayer(3, 4, norm_type=norm_type)
        assert nn.utils.parametrize.is_parametrized(layer[0], "weight")
        assert layer[0].bias is not None  # no norm layer that would carry a bias
        assert layer(torch.randn(1, 3, 6, 6)).shape == (1, 4, 6, 6)


def test_icnr_init_repeats_each_kernel_over_its_subpixels():
    w = torch.empty(12, 5, 1, 1)
    icnr_init(w, scale=2)
    blocks = w.view(3, 4, 5)
    assert torch.equal(blocks, blocks[:, :1].expand_as(blocks))
    assert not torch.equal(blocks[0], blocks[1])
    with pytest.raises(ValueError, match="divisible by scale"):
        icnr_init(torch.empty(6, 2, 1, 1), scale=2)


@pytest.mark.parametrize("norm_type", [None, NormType.Weight])
def test_pixel_shuffle_icnr_starts_as_nearest_upsampling(norm_type):
    shuffle = PixelShuffle_ICNR(4, 3, scale=2, norm_type=norm_type)
    out = shuffle(torch.randn(2, 4, 5, 6))
    assert out.shape == (2, 3, 10, 12)
    nearest = F.interpolate(out[..., ::2, ::2], scale_factor=2, mode="nearest")
    assert torch.allclose(out, nearest, atol=1e-6)


def test_pixel_shuffle_blur_keeps_the_size():
    shuffle = PixelShuffle_ICNR(4, blur=True, norm_type=None)
    assert isinstance(shuffle[-1], nn.AvgPool2d)
    assert shuffle(torch.randn(1, 4, 5, 5)).shape == (1, 4, 10, 10)


def test_resblock_starts_close_to_identity_and_shapes():
    block = ResBlock(1, 8, 8).eval()
    x = torch.randn(2, 8, 6, 6)
    assert torch.allclose(block(x), F.relu(x), atol=2e-3)  # zero-initialised last norm: only its 1e-3 bias
    down = ResBlock(1, 8, 16, stride=2)
    assert down(x).shape == (2, 16, 3, 3)
    assert isinstance(down.idpath[0], nn.AvgPool2d)
    bottleneck = ResBlock(4, 4, 2)  # 16 channels in, 8 out
    assert bottleneck(torch.randn(1, 16, 4, 4)).shape == (1, 8, 4, 4)
    no_norm = ResBlock(1, 5, 5, norm_type=None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in no_norm.modules())


def test_resblock_passes_conv_arguments_to_every_conv():
    block = ResBlock(1, 4, 6, norm_type=None, init=nn.init.zeros_, bias_std=0)
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3  # two on the conv path, one on the shortcut (4 -> 6 channels)
    assert all(torch.all(c.weight == 0) and torch.all(c.bias == 0) for c in convs)
    assert torch.equal(block(torch.randn(1, 4, 5, 5)), torch.zeros(1, 6, 5, 5))


def test_self_attention_starts_as_identity_then_learns():
    attn = SelfAttention(16)
    x = torch.randn(2, 16, 4, 5)
    assert torch.equal(attn(x), x)
    attn(x).pow(2).sum().backward()
    assert attn.gamma.grad is not None and attn.gamma.grad.abs() > 0
    copied = copy.deepcopy(attn)
    with torch.no_grad():
        attn.gamma.fill_(0.5)
        copied.gamma.fill_(0.5)
    attn.eval(), copied.eval()
    assert torch.allclose(attn(x), copied(x))


def test_merge_and_resize_use_the_original_input():
    x, orig = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 8, 8)
    assert torch.equal(MergeLayer(dense=True)(x, orig), torch.cat([x, orig], 1))
    assert torch.equal(MergeLayer()(orig, orig), orig * 2)
    big = ResizeToOrig()(torch.randn(1, 2, 10, 12), torch.randn(1, 3, 9, 11))
    assert big.shape == (1, 2, 9, 11)
    same = torch.randn(1, 2, 9, 11)
    assert ResizeToOrig()(same, torch.randn(1, 3, 9, 11)) is same


def test_max_pool_round_trip_gives_the_same_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(4, 8, 14, 14, requires_grad=True)
    fast, plain = MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)
    out = fast(x)
    assert torch.equal(out, plain(x)) and out.is_contiguous()
    (g_fast,) = torch.autograd.grad(out.square().sum(), x)
    (g_plain,) = torch.autograd.grad(plain(x).square().sum(), x)
    assert torch.equal(g_fast, g_plain)
    cl = x.detach().contiguous(memory_format=torch.channels_last)
    assert fast(cl).is_contiguous(memory_format=torch.channels_last)  # a channels-last model stays so


def test_create_body_swaps_in_the_fast_max_pool():
    import torchvision
    body = create_body(torchvision.models.resnet18(), pretrained=False)
    pools = [m for m in body.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 1 and type(pools[0]) is MaxPool2d
    assert (pools[0].kernel_size, pools[0].stride, pools[0].padding) == (3, 2, 1)
