"""MixUp and CutMix: inputs and targets mixed as specified for a fixed random state, the blended loss in
training only, validation and metrics untouched, the learner's loss given back, and training still works."""

import types

import pytest
import torch
from torch import nn
from torch.distributions.beta import Beta

from lamina.callbacks.core import Callback
from lamina.callbacks.mixup import CutMix, MixUp
from lamina.data.loaders import DataLoaders
from lamina.learner import Learner
from lamina.losses import CrossEntropyLossFlat, LabelSmoothingCrossEntropy, MSELossFlat
from lamina.metrics import accuracy
from lamina.testing import synth_classification, synth_regression, tiny_mlp


class Spy(Callback):
    """Keeps, for each training batch, the batch and RNG state before the mixing callback and what it made."""

    def __init__(self, order):
        super().__init__()
        self.order, self.records = order, []

    def before_batch(self):
        learn = self.learn
        if not learn.training:
            return
        if self.order < 0:
            self.records.append({"xb": learn.xb, "yb": learn.yb, "rng": torch.get_rng_state()})
        else:
            self.records.append({"xb": learn.xb, "yb": learn.yb})

    def after_loss(self):
        if self.order > 0 and self.learn.training:
            self.records[-1].update(pred=self.learn.pred.detach(), loss=self.learn.loss)


def fit_with(learn, mix, n_epoch=1):
    before, after = Spy(-1), Spy(1)
    learn.add_cbs([mix, before, after])
    with learn.no_bar(), learn.no_logging():
        learn.fit(n_epoch)
    return before.records, after.records


def test_mixup_blends_inputs_and_float_targets_as_specified():
    learn = Learner(synth_regression(n=64, n_in=3, bs=8), nn.Linear(3, 1), loss_func=MSELossFlat())
    before, after = fit_with(learn, MixUp(0.4))
    for orig, mixed in zip(before, after):
        torch.set_rng_state(orig["rng"])  # replay MixUp's draws: lam per sample, then the permutation
        lam = Beta(torch.tensor(0.4), torch.tensor(0.4)).sample((8,))
        lam = torch.maximum(lam, 1 - lam)
        shuffle = torch.randperm(8)
        (x,), (y,) = orig["xb"], orig["yb"]
        assert torch.allclose(mixed["xb"][0], torch.lerp(x[shuffle], x, lam[:, None]))
        assert torch.allclose(mixed["yb"][0], torch.lerp(y[shuffle], y, lam[:, None]))
        assert (lam >= 0.5).all()
        # float targets were blended, so the loss is the plain loss on the blended targets
        assert torch.allclose(mixed["loss"], MSELossFlat()(mixed["pred"], mixed["yb"][0]))
    assert not torch.equal(after[0]["yb"][0], before[0]["yb"][0])


@pytest.mark.parametrize("loss_func", [CrossEntropyLossFlat(), LabelSmoothingCrossEntropy()])
def test_mixup_on_class_indices_blends_the_losses(loss_func):
    learn = Learner(synth_classification(n=64, n_in=4, n_classes=3, bs=8), tiny_mlp(4, 3), loss_func=loss_func,
                    metrics=accuracy)
    mix = MixUp(0.4)
    before, after = fit_with(learn, mix)
    plain = type(loss_func)(reduction="none")
    for orig, mixed in zip(before, after):
        torch.set_rng_state(orig["rng"])
        lam = Beta(torch.tensor(0.4), torch.tensor(0.4)).sample((8,))
        lam, shuffle = torch.maximum(lam, 1 - lam), torch.randperm(8)
        y, pred = orig["yb"][0], mixed["pred"]
        assert torch.equal(mixed["yb"][0], y)  # class indices stay as they are
        expected = torch.lerp(plain(pred, y[shuffle]), plain(pred, y), lam).mean()
        assert torch.allclose(mixed["loss"], expected, atol=1e-6)
        assert not torch.allclose(mixed["loss"], loss_func(pred, y))  # the loss changed in training
    assert learn.loss_func is loss_func  # given back after the fit
    # validation: the plain loss and metrics on unmixed data
    seen = []
    spy = Callback(after_loss=lambda l: seen.append((l.loss_func is loss_func, l.loss, l.pred, l.yb[0], l.xb[0])))
    valid_loss, acc = learn.validate(cbs=[spy])
    assert all(same for same, *_ in seen)
    x_valid, y_valid = learn.dls.valid.tensors
    assert torch.equal(torch.cat([xb for *_, xb in seen]), x_valid)
    preds = torch.cat([p for _, _, p, _, _ in seen])
    assert valid_loss == pytest.approx(loss_func(preds, y_valid).item(), abs=1e-5)
    assert acc == pytest.approx((preds.argmax(1) == y_valid).float().mean().item())


def test_mixed_loss_for_flattened_segmentation_losses():
    mix = MixUp()
    mix.learn = types.SimpleNamespace(training=True)
    loss = CrossEntropyLossFlat(axis=1)
    pred, y, y1 = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4)), torch.randint(0, 3, (2, 4, 4))
    mix.old_lf, mix.stack_y, mix.lam, mix.yb1 = loss, True, torch.tensor([0.9, 0.6]), (y1,)
    per_pixel = nn.CrossEntropyLoss(reduction="none")
    expected = torch.lerp(per_pixel(pred, y1), per_pixel(pred, y), torch.tensor([0.9, 0.6]).view(2, 1, 1)).mean()
    assert torch.allclose(mix.lf(pred, y), expected, atol=1e-6)
    assert loss.reduction == "mean"


def image_dls(n=96, size=8, bs=16, seed=0):
    """Images whose class is whether their mean is positive; a 1x1-conv model can learn it."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=gen) + torch.randn(n, 1, 1, 1, generator=gen)
    y = (x.mean((1, 2, 3)) > 0).long()
    cut = n * 3 // 4
    return DataLoaders.from_tensors(x[:cut], y[:cut], x[cut:], y[cut:], bs=bs, vocab=["neg", "pos"],
                                    loss_func=CrossEntropyLossFlat())


def image_model():
    return nn.Sequential(nn.Conv2d(1, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_cutmix_pastes_one_box_per_batch():
    learn = Learner(image_dls(), image_model())
    mix = CutMix(1.0)
    before, after = fit_with(learn, mix)
    boxes = 0
    for orig, mixed in zip(before, after):
        torch.set_rng_state(orig["rng"])
        lam = Beta(torch.tensor(1.0), torch.tensor(1.0)).sample((1,))
        shuffle = torch.randperm(16)
        x1, y1, x2, y2 = mix.rand_bbox(8, 8, lam)
        x, y = orig["xb"][0], orig["yb"][0]
        expected = x.clone()
        expected[..., y1:y2, x1:x2] = x[shuffle][..., y1:y2, x1:x2]
        assert torch.equal(mixed["xb"][0], expected)
        boxes += (x2 - x1) * (y2 - y1) > 0
        lam_box = 1 - (x2 - x1) * (y2 - y1) / 64
        plain = CrossEntropyLossFlat(reduction="none")
        want = torch.lerp(plain(mixed["pred"], y[shuffle]), plain(mixed["pred"], y), torch.tensor(lam_box)).mean()
        assert torch.allclose(mixed["loss"], want, atol=1e-6)
        assert torch.equal(orig["xb"][0], x)  # the loader's batch itself is not written into
    assert boxes > 0


def test_learners_still_learn_with_mixup_and_cutmix():
    torch.manual_seed(0)
    learn = Learner(synth_classification(n=512, n_in=2, n_classes=2, bs=32), tiny_mlp(2, 2), lr=1e-2,
                    loss_func=LabelSmoothingCrossEntropy(), metrics=accuracy, cbs=MixUp())
    with learn.no_bar(), learn.no_logging():
        learn.fit(6)
    assert learn.validate()[1] > 0.9
    learn = Learner(image_dls(n=256, bs=32), image_model(), lr=3e-2, metrics=accuracy, cbs=CutMix())
    with learn.no_bar(), learn.no_logging():
        first = learn.validate()[0]
        learn.fit(6)
    loss, acc = learn.validate()
    assert loss < first and acc > 0.85


def test_bad_inputs_and_errors_restore_the_loss():
    with pytest.raises(ValueError, match="`alpha` must be a positive number"):
        MixUp(0)
    learn = Learner(synth_classification(n=64, bs=8), tiny_mlp(), cbs=CutMix())
    with pytest.raises(ValueError, match="CutMix needs images"), learn.no_bar():
        learn.fit(1)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)  # given back although the fit failed
    ints = DataLoaders.from_tensors(torch.randint(0, 5, (16, 2)), torch.randint(0, 2, (16,)),
                                    torch.randint(0, 5, (8, 2)), torch.randint(0, 2, (8,)), bs=4,
                                    loss_func=CrossEntropyLossFlat())
    learn = Learner(ints, nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(4, 2)), cbs=MixUp())
    with pytest.raises(ValueError, match="must be float tensors"), learn.no_bar():
        learn.fit(1)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat)
