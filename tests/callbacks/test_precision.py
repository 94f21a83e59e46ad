"""Mixed precision on the CPU: bf16 autocast, the grad-scaler path (an enabled CPU scaler stands in for fp16 on a
GPU), the scaler's state in checkpoints, channels-last switching."""

import pytest
import torch
from torch import nn

from lamina.callbacks.core import Callback
from lamina.callbacks.precision import ChannelsLast, MixedPrecision
from lamina.callbacks.training import GradientClip
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.testing import synth_classification, tiny_mlp


class ScaledPrecision(MixedPrecision):
    """bf16 autocast with an enabled grad scaler on the CPU: the fp16 scaler path, testable without a GPU."""

    def __init__(self, init_scale: float = 2.0 ** 10):
        super().__init__("bf16")
        self.name, self.init_scale = "mixed_precision", init_scale

    def before_fit(self):
        super().before_fit()
        self.scaler = torch.amp.GradScaler("cpu", init_scale=self.init_scale)


def quiet(learn):
    learn.progress.show_bars = False
    learn.logger = lambda *a: None
    return learn


def test_predictions_are_cast_back_to_float32_after_the_forward():
    seen = {}

    class Dtypes(Callback):
        order = 20  # after MixedPrecision (10) has handled after_pred

        def after_pred(self):
            seen.setdefault("pred", set()).add(self.pred.dtype)

        def after_loss(self):
            seen.setdefault("autocast", set()).add(torch.is_autocast_enabled("cpu"))

    learn = quiet(Learner(synth_classification(n=64, bs=16), tiny_mlp())).to_bf16()
    learn.fit(1, cbs=Dtypes())
    assert seen == {"pred": {torch.float32}, "autocast": {False}}  # autocast ends with the loss


def test_fp16_on_the_cpu_warns_and_uses_bf16_without_a_scaler():
    learn = quiet(Learner(synth_classification(n=64, bs=16), tiny_mlp())).to_fp16()
    with pytest.warns(UserWarning, match="lamina uses bf16 there"):
        learn.fit(1)
    mp = learn.mixed_precision
    assert mp.dtype == torch.bfloat16 and not mp.scaler.is_enabled()
    assert mp.state_dict() == {}  # nothing worth keeping without an enabled scaler
    mp.unscale_grads()  # does nothing, and does not fail


def test_scaled_steps_train_and_gradient_clip_sees_true_gradients():
    norms = []

    class Norm(Callback):
        order = 5  # after GradientClip (0), before MixedPrecision steps (10)

        def before_step(self):
            norms.append(float(nn.utils.get_total_norm([p.grad for p in self.model.parameters()])))

    learn = quiet(Learner(synth_classification(n=128, bs=16), tiny_mlp(), lr=1e-2))
    learn.add_cb(ScaledPrecision())
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, cbs=[GradientClip(max_norm=0.05), Norm()])  # the scaler's step must not unscale again
    assert len(norms) == 6 and max(norms) <= 0.05 + 1e-6  # clipped true norms, not the 1024x scaled ones
    assert all(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_a_step_with_inf_gradients_is_skipped_and_the_scale_lowered():
    class InfGrads(Callback):
        order = 5

        def before_step(self):
            for p in self.model.parameters():
                p.grad.fill_(float("inf"))

    learn = quiet(Learner(synth_classification(n=64, bs=16), tiny_mlp()))
    learn.add_cb(ScaledPrecision(init_scale=1024.0))
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, cbs=InfGrads())
    assert learn.mixed_precision.scaler.get_scale() < 1024.0
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_the_loss_scale_survives_a_checkpoint(tmp_path):
    learn = quiet(Learner(synth_classification(n=64, bs=16), tiny_mlp(), path=tmp_path))
    learn.add_cb(ScaledPrecision(init_scale=1024.0))
    learn.fit(1)
    learn.mixed_precision.scaler.update(new_scale=64.0)
    assert learn.mixed_precision.state_dict()["scaler"]["scale"] == 64.0
    learn.save("ckpt")
    resumed = quiet(Learner(synth_classification(n=64, bs=16), tiny_mlp(), path=tmp_path))
    resumed.add_cb(ScaledPrecision(init_scale=1024.0))
    resumed.load("ckpt", resume=True)
    scales = []
    resumed.fit(2, start_epoch=resumed.epochs_done,
                cbs=Callback(before_epoch=lambda l: scales.append(l.mixed_precision.scaler.get_scale())))
    assert scales == [64.0]  # handed back after before_fit made the fresh scaler


def test_precision_switches():
    learn = Learner(synth_classification(n=64, bs=16), tiny_mlp())
    learn.to_bf16()
    assert learn.mixed_precision.amp_mode == "bf16"
    learn.to_fp16()
    assert [type(c) for c in learn.cbs].count(MixedPrecision) == 1  # replaced, not added twice
    learn.to_fp32()
    assert not hasattr(learn, "mixed_precision")
    with pytest.raises(ValueError, match="amp_mode"):
        MixedPrecision("fp8")


def test_channels_last_and_back():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    dls = DataLoaders.from_tensors(x[:24], y[:24], x[24:], y[24:], bs=8, device="cpu", vocab=["a", "b"])
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    learn = quiet(Learner(dls, model, loss_func=nn.CrossEntropyLoss()))
    learn.to_channelslast(use_amp=False)
    assert isinstance(learn.channels_last, ChannelsLast) and not hasattr(learn, "mixed_precision")
    learn.fit(1)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    learn.to_contiguous()
    assert model[0].weight.is_contiguous() and not hasattr(learn, "channels_last")


def _conv_learner(seed, opt_func=None):
    torch.manual_seed(seed)  # the loaders' shuffling and the weights
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=gen), torch.randint(0, 2, (32,), generator=gen)
    dls = DataLoaders.from_tensors(x[:24], y[:24], x[24:], y[24:], bs=8, device="cpu", vocab=["a", "b"])
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    kwargs = {"opt_func": opt_func} if opt_func is not None else {}
    return quiet(Learner(dls, model, loss_func=nn.CrossEntropyLoss(), lr=1e-2, **kwargs))


def _torch_fused_adam(params, **kwargs):
    from lamina.optim import Adam
    return Adam(params, amsgrad=False, **kwargs)  # a torch argument: torch.optim.Adam(fused=True)


@pytest.mark.parametrize("opt_func", [None, _torch_fused_adam], ids=["FusedAdam", "torch_fused_adam"])
@pytest.mark.parametrize("switch", ["to_channelslast", "to_contiguous"])
def test_changing_the_memory_format_between_fits_keeps_adams_state_right(switch, opt_func):
    # Adam's moments were created in the first fit's layout; the second fit must pair them with the same elements
    switched, kept = _conv_learner(1, opt_func), _conv_learner(1, opt_func)
    for learn in (switched, kept):
        if switch == "to_contiguous":
            learn.to_channelslast(use_amp=False)
        torch.manual_seed(2)
        learn.fit(2)
    getattr(switched, switch)(**({"use_amp": False} if switch == "to_channelslast" else {}))
    for learn in (switched, kept):
        torch.manual_seed(3)
        learn.fit(2)
    weight = switched.model[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) == (switch == "to_channelslast")
    if opt_func is not None:
        assert type(switched.opt.opt) is torch.optim.Adam and switched.opt.opt.defaults["fused"]
    for a, b in zip(switched.model.parameters(), kept.model.parameters()):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def _patch_cpu(monkeypatch, amx, bf16):
    import lamina.callbacks.precision as precision
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(precision, "cpu_has_bf16_matmul", lambda: bf16)


class DeclaredNet(nn.Sequential):
    channels_last_where_faster = True


def _image_learner(size, declared=True):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, size, size, generator=gen), torch.randint(0, 2, (12,), generator=gen)
    dls = DataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], bs=4, device="cpu", vocab=["a", "b"])
    layers = (nn.Conv2d(3, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = DeclaredNet(*layers) if declared else nn.Sequential(*layers)
    return quiet(Learner(dls, model, loss_func=nn.CrossEntropyLoss()))


@pytest.mark.parametrize("amx,bf16,size,expected", [
    (False, True, 16, True),      # AVX-512 BF16 without AMX: channels-last at every size
    (False, False, 16, False),    # AVX2: channels-first below 160 px
    (False, False, 160, True),
    (True, True, 128, False),     # AMX in fp32 below 160 px: not measured, the AVX2 rule
    (True, True, 128, "bf16"),    # ...but under the user's bf16 autocast, channels-last from 96 px
    (True, True, 64, "bf16-small"),
])
def test_a_declared_model_trains_channels_last_where_faster(monkeypatch, amx, bf16, size, expected):
    _patch_cpu(monkeypatch, amx, bf16)
    learn = _image_learner(size)
    if isinstance(expected, str):
        learn.to_bf16()
        expected = expected == "bf16"
    assert learn.channels_last_where_faster.chosen is None  # decided at the first training batch
    learn.get_preds()  # inference alone decides nothing
    assert learn.channels_last_where_faster.chosen is None and learn.model[0].weight.is_contiguous()
    learn.fit(1)
    assert learn.channels_last_where_faster.chosen is expected
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last) is expected
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # the precision is the user's


def test_other_models_keep_their_format_and_to_contiguous_opts_out(monkeypatch):
    _patch_cpu(monkeypatch, amx=False, bf16=True)
    plain = _image_learner(16, declared=False)
    assert not hasattr(plain, "channels_last_where_faster")
    plain.fit(1)
    assert plain.model[0].weight.is_contiguous()
    learn = _image_learner(16)
    learn.fit(1)
    learn.to_contiguous()
    learn.fit(1)
    assert not hasattr(learn, "channels_last_where_faster") and learn.model[0].weight.is_contiguous()


def test_no_conversion_for_other_inputs_in_data_parallel_fits_or_without_default_callbacks(monkeypatch):
    _patch_cpu(monkeypatch, amx=False, bf16=True)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 3, 32, generator=gen), torch.randint(0, 2, (12,), generator=gen)
    dls = DataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], bs=4, device="cpu", vocab=["a", "b"])
    seq = quiet(Learner(dls, DeclaredNet(nn.Conv1d(3, 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)),
                        loss_func=nn.CrossEntropyLoss()))
    seq.fit(1)
    assert seq.channels_last_where_faster.chosen is False  # sequences (3-D batches) have no channels-last

    class WrapsTheModel(Callback):  # what DistributedTrainer does before the first batch
        def before_fit(self):
            self.learn.wrapped_model = self.learn.model

        def after_fit(self):
            self.learn.wrapped_model = None

    wrapped = _image_learner(16)
    wrapped.fit(1, cbs=WrapsTheModel())
    assert wrapped.channels_last_where_faster.chosen is False and wrapped.model[0].weight.is_contiguous()
    bare = _image_learner(16)
    bare = Learner(bare.dls, bare.model, loss_func=nn.CrossEntropyLoss(), default_cbs=False)
    assert not hasattr(bare, "channels_last_where_faster")


def test_loading_an_optimizer_state_of_another_layout_lays_it_out_like_the_parameters():
    # torch's fused Adam does not lay its state out again itself
    source = _conv_learner(1, _torch_fused_adam)
    source.to_channelslast(use_amp=False)
    source.fit(1)
    state = source.opt.state_dict()
    target = _conv_learner(1, _torch_fused_adam)  # channels-first
    target.create_opt()
    target.opt.load_state_dict(state)
    weight = target.model[0].weight
    assert weight.is_contiguous()
    assert target.opt.opt.state[weight]["exp_avg"].is_contiguous()
    assert torch.equal(target.opt.opt.state[weight]["exp_avg"], source.opt.opt.state[source.model[0].weight]["exp_avg"])


def test_xresnet_is_declared_and_converted_in_a_plain_learner(monkeypatch):
    from lamina.models.xresnet import xresnet18
    _patch_cpu(monkeypatch, amx=False, bf16=True)
    dls = _image_learner(16).dls
    torch.manual_seed(0)
    learn = quiet(Learner(dls, xresnet18(n_out=2), loss_func=nn.CrossEntropyLoss()))
    learn.fit(1)
    assert learn.model[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert learn.get_preds()[0].shape == (4, 2)


@pytest.mark.parametrize("amx,avx512_bf16,expected", [(True, False, True), (False, True, True), (False, False, False)])
def test_cpu_has_bf16_matmul_counts_amx_and_avx512_bf16(monkeypatch, amx, avx512_bf16, expected):
    import lamina.callbacks.precision as precision
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    assert precision.cpu_has_bf16_matmul() is expected
