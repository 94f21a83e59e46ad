"""The loss interface (`lamina.losses_base`): the base classes a user's own loss builds on, and the reduction helpers."""

import json

import pytest
import torch
import torch.nn.functional as F

import lamina.losses as losses
import lamina.losses_base as base
from lamina.losses_base import ClassFlat, ElementwiseFlat, Loss, apply_reduction, as_weight, check_reduction


class SmoothL1LossFlat(ElementwiseFlat):
    _config_keys = ("axis", "reduction")

    def _elementwise(self, pred, targ):
        return F.smooth_l1_loss(pred, targ, reduction="none")


class HingeFlat(ClassFlat):
    _config_keys = ("axis", "reduction")

    def __init__(self, axis=-1, reduction="mean"):
        super().__init__()
        self.axis, self.reduction = axis, check_reduction(reduction)

    def forward(self, pred, targ):
        pred, targ = self._flatten(pred, targ)
        margins = (1 + pred - pred.gather(1, targ[:, None])).clamp(min=0)
        return apply_reduction(margins.sum(dim=1) - 1, self.reduction)


def test_a_user_elementwise_loss_flattens_moves_the_axis_and_round_trips(monkeypatch):
    loss = SmoothL1LossFlat(axis=1)
    pred, targ = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    assert loss(pred, targ).item() == pytest.approx(0.5)
    loss.reduction = "none"
    assert loss(pred, targ).shape == (24,)
    monkeypatch.setitem(losses.LOSSES, "SmoothL1LossFlat", SmoothL1LossFlat)
    rebuilt = losses.loss_from_config(json.loads(json.dumps(SmoothL1LossFlat(axis=1).to_config())))
    assert isinstance(rebuilt, SmoothL1LossFlat) and rebuilt.axis == 1


def test_a_user_class_loss_reads_class_indices_along_its_axis():
    pred = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]]).movedim(-1, 1)  # (bs=2, C=2, 1): class axis 1
    loss = HingeFlat(axis=1, reduction="none")
    assert loss(pred, torch.tensor([[0], [1]])).tolist() == [0.0, 1.0]
    assert loss.decodes(loss.activation(pred)).flatten().tolist() == [0, 0]
    with pytest.raises(ValueError, match="one class index per prediction"):
        loss(pred, torch.tensor([0, 1, 1]))


def test_reduction_helpers():
    values = torch.tensor([1.0, 2.0, 6.0])
    assert apply_reduction(values, "mean").item() == 3.0 and apply_reduction(values, "sum").item() == 9.0
    assert apply_reduction(values, "none") is values
    with pytest.raises(ValueError, match="`reduction` must be one of 'mean', 'sum' or 'none'; received: reduction='avg'"):
        apply_reduction(values, "avg")
    assert as_weight(None) is None and as_weight([1, 2]).dtype == torch.float32


def test_the_old_import_path_serves_the_same_objects():
    assert losses.Loss is base.Loss is Loss and losses.loss_not_reduced is base.loss_not_reduced
    assert issubclass(losses.CrossEntropyLossFlat, ClassFlat) and issubclass(losses.MSELossFlat, ElementwiseFlat)
    assert Loss().to_config() == {"name": "Loss", "kwargs": {}}
