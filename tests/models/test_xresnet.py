"""The xresnet family: fastai's architecture and parameter counts, every builder's contract, ResBlock options,
vision_learner with an xresnet, and exports of xresnet learners loading back."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from lamina.export import load_learner
from lamina.learner import Learner
from lamina.models.attention import SEModule, SimpleSelfAttention
from lamina.models.layers import ConvLayer, Flatten, ResBlock
from lamina.models.xresnet import (XRESNETS, MaxPool, XResNet, init_cnn, xresnet18, xresnet50, xresnext50,
                                   xse_resnext50)
from lamina.vision.data import ImageDataLoaders
from lamina.vision.learner import create_vision_model, vision_learner
from lamina.vision.synth import make_image_folder
from lamina.vision.transforms import Resize

STEM_EXTRA = 19_232  # three 3x3 stem convs (32, 32, 64) + their norms, minus torchvision's 7x7 conv and norm


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_match_torchvision_plus_the_wider_stem():
    import torchvision.models as tvm
    assert n_params(xresnet50(n_out=1000)) == n_params(tvm.resnet50()) + STEM_EXTRA == 25_576_264
    assert n_params(xresnet18()) == n_params(tvm.resnet18()) + STEM_EXTRA == 11_708_744
    # ResNeXt 32x4d blocks: torchvision's resnext50_32x4d plus the same stem difference
    assert n_params(xresnext50()) == n_params(tvm.resnext50_32x4d()) + STEM_EXTRA
    se = xse_resnext50(n_out=10)
    assert sum(isinstance(m, SEModule) for m in se.modules()) == 16  # one per block of [3, 4, 6, 3]


def test_layout_stem_blocks_and_classifier():
    model = xresnet50(n_out=7, p=0.3)
    kids = list(model.children())
    assert [type(k) for k in kids[:3]] == [ConvLayer] * 3 and isinstance(kids[3], nn.MaxPool2d)
    assert [(k[0].in_channels, k[0].out_channels, k[0].stride) for k in kids[:3]] == [
        (3, 32, (2, 2)), (32, 32, (1, 1)), (32, 64, (1, 1))]
    stages = kids[4:8]
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    assert [s[0].convpath[-1][0].out_channels for s in stages] == [256, 512, 1024, 2048]  # expansion 4
    assert stages[1][0].convpath[1][0].stride == (2, 2)  # the bottleneck strides on its 3x3 conv
    assert isinstance(stages[1][0].idpath[0], nn.AvgPool2d)  # the shortcut pools before its 1x1 conv
    assert [type(k) for k in kids[8:]] == [nn.AdaptiveAvgPool2d, Flatten, nn.Dropout, nn.Linear]
    assert kids[-2].p == 0.3 and kids[-1].out_features == 7
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 7)


def test_init_zero_last_norm_and_kaiming():
    torch.manual_seed(0)
    model = xresnet18()
    blocks = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert len(blocks) == 8
    for block in blocks:
        assert torch.all(block.convpath[-1][1].weight == 0)  # each block starts as the identity
        assert torch.all(block.convpath[0][1].weight == 1)
    assert all(torch.all(m.bias == 0) for m in model.modules() if getattr(m, "bias", None) is not None)
    conv = model[5][0].convpath[0][0]  # 64 -> 128, 3x3: kaiming normal, std sqrt(2 / fan_in)
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)
    fresh = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(4, 4))
    init_cnn(fresh)
    assert torch.all(fresh[1].bias == 0)


def _small(name):
    """Every builder at a small width (ResNeXt groups scaled down with it) so the contract loop stays fast."""
    kwargs = dict(n_out=3, widen=0.25, stem_szs=(8, 8, 16))
    if "resnext" in name:
        kwargs["groups"] = 4
    return XRESNETS[name](**kwargs)


@pytest.mark.parametrize("name", sorted(XRESNETS))
def test_every_builder_forward_backward_and_body(name):
    torch.manual_seed(0)
    model = _small(name)
    assert isinstance(model, XResNet)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match=f"no pretrained weights for {name}: pass pretrained=False"):
        XRESNETS[name](pretrained=True)


def test_xresnet_options_sa_act_ndim():
    model = xresnet18(n_out=4, sa=True, sym=True, act_cls=nn.Mish)
    attention = [m for m in model.modules() if isinstance(m, SimpleSelfAttention)]
    assert len(attention) == 1 and model[4][-1].convpath[-1] is attention[0]  # last block of the first stage
    assert isinstance(model[0][-1], nn.Mish) and not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert xresnet18(ndim=1, c_in=1, ks=15, n_out=2)(torch.randn(2, 1, 128)).shape == (2, 2)
    assert xresnet18(ndim=3, n_out=2)(torch.randn(2, 3, 32, 32, 32)).shape == (2, 2)
    with pytest.raises(ValueError, match="`ks` must be odd"):
        xresnet18(ks=4)
    with pytest.raises(ValueError, match="must divide by `expansion`=4"):
        xresnet50(stem_szs=(32, 32, 30))


def test_resblock_options():
    se = ResBlock(1, 16, 16, reduction=4)
    assert isinstance(se.convpath[-1], SEModule) and len(se.idpath) == 0
    dw = ResBlock(1, 16, 32, stride=2, dw=True)
    assert dw.convpath[0][0].groups == 16
    assert dw(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    maxed = ResBlock(1, 8, 16, stride=2, pool=MaxPool, pool_first=False)
    assert isinstance(maxed.idpath[0], ConvLayer) and isinstance(maxed.idpath[1], nn.MaxPool2d)
    grouped = ResBlock(4, 8, 8, groups=4, nh1=16, nh2=32)
    assert [c[0].out_channels for c in grouped.convpath] == [16, 32, 32] and grouped.convpath[1][0].groups == 4


def test_simple_self_attention_is_identity_at_start_and_symmetric():
    torch.manual_seed(0)
    sa = SimpleSelfAttention(8, sym=True).eval()  # eval: the spectral norm's power iteration stays put
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(sa(x), x)
    with torch.no_grad():
        sa.gamma.fill_(1.0)
    w = sa.conv.weight.view(8, 8)
    flat = x.view(2, 8, -1)
    expected = torch.bmm(torch.bmm(flat, flat.transpose(1, 2)), ((w + w.t()) / 2) @ flat) + flat
    assert torch.allclose(sa(x), expected.view_as(x), atol=1e-4)
    with pytest.raises(ValueError, match="sym=True\\) needs ks=1"):
        SimpleSelfAttention(8, ks=3, sym=True)


def is_cat(name):
    return name[0].isupper()


@pytest.fixture
def image_dls(tmp_path):
    files = make_image_folder(tmp_path / "pets", n_per_class=6, size=24, classes=("Persian", "pug"))
    return ImageDataLoaders.from_name_func(tmp_path, files, label_func=is_cat, valid_pct=0.25, seed=0,
                                           item_tfms=Resize(32), bs=4, num_workers=0)


def test_vision_learner_cuts_splits_and_exports_an_xresnet(image_dls, tmp_path):
    learn = vision_learner(image_dls, xresnet18, pretrained=False, widen=0.25)
    body = learn.model[0]
    assert len(body) == 8 and isinstance(body[-1][-1], ResBlock)  # stem, pool, 4 stages: cut before the pool
    learn.create_opt()
    groups = learn.opt.param_lists
    assert len(groups) == 3 and sum(p.numel() for p in groups[0]) == n_params(body[:3])  # stem | stages | head
    assert learn.model_config["kwargs"]["arch"] == "lamina:xresnet18"
    with learn.no_bar():
        learn.fit(1)
    learn.export(tmp_path / "xres.pkl")
    x = torch.randn(2, 3, 32, 32)
    learn.model.eval()
    with torch.no_grad():
        want = learn.model(x)
    loaded = load_learner(tmp_path / "xres.pkl")
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), want, atol=1e-5)
    code = ("import sys, torch; from lamina.export import load_learner; "
            "learn = load_learner(sys.argv[1]); print(type(learn.model[0][0]).__name__, learn.model_config['kwargs']"
            "['arch'])")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "xres.pkl")], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ConvLayer", "lamina:xresnet18"]
    with pytest.raises(ValueError, match="no pretrained weights for xresnet50"):
        vision_learner(image_dls, xresnet50)
    with pytest.raises(ValueError, match="`arch` names no lamina architecture"):
        create_vision_model("lamina:xresnet9", 2, pretrained=False)


def test_bare_xresnet_learner_exports_through_the_registry(image_dls, tmp_path):
    kwargs = dict(n_out=2, widen=0.25, stem_szs=[8, 8, 16])
    learn = Learner(image_dls, xresnet18(**kwargs))
    learn.model_config = {"factory": "xresnet18", "kwargs": kwargs}
    learn.export(tmp_path / "bare.pkl")
    loaded = load_learner(tmp_path / "bare.pkl")
    assert isinstance(loaded.model, XResNet)
    assert json.dumps(loaded.model_config["kwargs"]) == json.dumps(kwargs)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded.model.eval()(x), learn.model.eval()(x), atol=1e-6)
