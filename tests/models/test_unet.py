"""DynamicUnet: output shapes for several sizes and bodies, skip connections, options, copies and state dicts."""

import copy

import pytest
import torch
from torch import nn

from lamina.models.bodies import ARCHS, create_body
from lamina.models.layers import ConvLayer, MergeLayer, PixelShuffle_ICNR, SelfAttention, SigmoidRange
from lamina.models.unet import DynamicUnet, UnetBlock, encoder_stages, model_sizes, size_change_indices


@pytest.fixture(scope="module")
def resnet18_body():
    torch.manual_seed(0)
    return create_body(ARCHS["resnet18"](), pretrained=False, cut=-2)


@pytest.fixture
def tiny_body():
    """Five stride-2 stages (1/2 ... 1/32), like a resnet's resolutions but with few channels: a fast decoder."""
    chans = [3, 8, 16, 16, 32, 32]
    return nn.Sequential(*[ConvLayer(a, b, stride=2) for a, b in zip(chans[:-1], chans[1:])])


def _blocks(unet):
    return [m for m in unet if isinstance(m, UnetBlock)]


def test_skips_are_where_the_encoder_changes_size(resnet18_body):
    sizes = model_sizes(resnet18_body, (64, 64))
    assert [s[-1] for s in sizes] == [32, 32, 32, 16, 16, 8, 4, 2]
    assert size_change_indices(sizes) == [2, 4, 5, 6]  # relu, layer1, layer2, layer3
    unet = DynamicUnet(resnet18_body, n_out=4, img_size=(64, 64))
    assert unet.skip_idxs == (2, 4, 5, 6) and len(_blocks(unet)) == 4
    assert unet[0] is resnet18_body


def test_output_has_the_input_size(resnet18_body):
    unet = DynamicUnet(resnet18_body, n_out=3, img_size=(64, 64))
    for size in [(64, 64), (32, 96), (65, 67)]:  # divisible by 32, and odd sizes
        assert unet.eval()(torch.randn(1, 3, *size)).shape == (1, 3, *size)
    odd = DynamicUnet(resnet18_body, n_out=2, img_size=(37, 35))
    assert odd.eval()(torch.randn(1, 3, 37, 35)).shape == (1, 2, 37, 35)


def test_resnet34_body():
    body = create_body(ARCHS["resnet34"](), pretrained=False, cut=-2)
    unet = DynamicUnet(body, n_out=5, img_size=(64, 64))
    assert unet.skip_idxs == (2, 4, 5, 6) and len(_blocks(unet)) == 4
    assert unet(torch.randn(2, 3, 64, 64)).shape == (2, 5, 64, 64)


def test_backward_reaches_every_parameter(tiny_body):
    unet = DynamicUnet(tiny_body, n_out=3, img_size=(64, 64))
    assert unet.skip_idxs == (0, 1, 2, 3)
    out = unet(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    out.mean().backward()
    assert all(p.grad is not None for p in unet.parameters())


def test_nested_body_is_run_stage_by_stage():
    arch = ARCHS["mobilenet_v3_small"]
    body = create_body(arch(), pretrained=False, cut=arch.cut)  # Sequential(features)
    assert len(encoder_stages(body)) == 13
    unet = DynamicUnet(body, n_out=2, img_size=(64, 64))
    assert unet(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    groups = arch.split(unet)
    assert len(groups) == 3 and sum(map(len, groups)) == len(list(unet.parameters()))


def test_decoder_layers_and_options(tiny_body):
    plain = DynamicUnet(tiny_body, n_out=3, img_size=(64, 64))
    assert isinstance(plain[1], nn.BatchNorm2d) and isinstance(plain[4], UnetBlock)
    assert any(isinstance(m, MergeLayer) for m in plain)
    assert isinstance(plain[-5], PixelShuffle_ICNR)  # the last block is at 1/2: one more upsampling
    assert not any(isinstance(m, nn.BatchNorm2d) for b in _blocks(plain) for m in b.conv1.modules())
    assert plain[-1][0].out_channels == 3 and plain[-1][0].kernel_size == (1, 1)
    fancy = DynamicUnet(tiny_body, n_out=3, img_size=(64, 64), blur=True, blur_final=False, self_attention=True,
                        y_range=(0, 1), last_cross=False)
    blocks = _blocks(fancy)
    has_blur = [isinstance(b.shuf[-1], nn.AvgPool2d) for b in blocks]
    assert has_blur == [True, True, True, False]
    attn = [any(isinstance(m, SelfAttention) for m in b.modules()) for b in blocks]
    assert attn == [False, True, False, False]  # the third block from the end
    assert isinstance(fancy[-1], SigmoidRange) and not any(isinstance(m, MergeLayer) for m in fancy)
    out = fancy(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    bottle = DynamicUnet(tiny_body, n_out=2, img_size=(64, 64), bottle=True)
    assert bottle(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def _decoder_convs(unet):
    """The convs that fastai's U-Net re-initialises: middle convs, block convs, the last residual block."""
    inner = [unet[3]] + [nn.ModuleList([b.conv1, b.conv2]) for b in _blocks(unet)] + [unet[-2]]
    return [m for part in inner for m in part.modules() if isinstance(m, nn.Conv2d)]


def test_decoder_init_kaiming_weights_zero_biases_and_a_plain_output_conv(tiny_body):
    torch.manual_seed(0)
    unet = DynamicUnet(tiny_body, n_out=3, img_size=(64, 64))
    convs = _decoder_convs(unet)
    assert len(convs) == 2 + 2 * 4 + 2
    assert all(c.bias is not None and torch.all(c.bias == 0) for c in convs)
    middle = unet[3][0][0]  # 32 -> 64 channels, 3x3
    assert middle.weight.std().item() == pytest.approx((2 / (32 * 9)) ** 0.5, rel=0.05)
    shuffles = [b.shuf[0][0] for b in _blocks(unet)] + [unet[-5][0][0]]
    assert all(torch.all(s.bias == 0) for s in shuffles)
    out = unet[-1][0]  # torch's default init, small random biases: logits start small
    fan_in = out.in_channels
    assert out.weight.abs().max() <= (1 / fan_in) ** 0.5 + 1e-6
    assert 0 < out.bias.abs().max() < 0.1


def test_decoder_init_reaches_every_decoder_conv(tiny_body):
    unet = DynamicUnet(tiny_body, n_out=3, img_size=(64, 64), init=lambda w: nn.init.constant_(w, 0.01))
    assert all(torch.all(c.weight == 0.01) for c in _decoder_convs(unet))
    assert not torch.all(unet[-1][0].weight == 0.01)  # the output conv keeps torch's init


def test_no_hooks_nothing_kept_between_calls(tiny_body):
    unet = DynamicUnet(tiny_body, n_out=3, img_size=(32, 32))
    unet(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in unet.modules())
    for m in unet.modules():  # no stored activations: only parameters and buffers hold tensors
        assert not [k for k, v in vars(m).items() if isinstance(v, torch.Tensor)]


def test_deepcopy_and_state_dict_round_trip(tiny_body):
    torch.manual_seed(1)
    unet = DynamicUnet(tiny_body, n_out=3, img_size=(32, 32), self_attention=True).eval()
    x = torch.randn(1, 3, 32, 32)
    expected = unet(x)
    assert torch.allclose(copy.deepcopy(unet)(x), expected)
    other_body = copy.deepcopy(tiny_body)
    for p in other_body.parameters():
        nn.init.normal_(p)
    rebuilt = DynamicUnet(other_body, n_out=3, img_size=(32, 32), self_attention=True).eval()
    assert not torch.allclose(rebuilt(x), expected)
    rebuilt.load_state_dict(unet.state_dict())
    assert torch.allclose(rebuilt(x), expected, atol=1e-6)


def test_encoder_must_be_sequential():
    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(TypeError, match="needs an nn.Sequential encoder"):
        DynamicUnet(Wrapped(), n_out=2, img_size=(32, 32))
