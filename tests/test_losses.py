import json
import math

import pytest
import torch
from torch import nn

from lamina.losses import (LOSSES, BCELossFlat, BCEWithLogitsLossFlat, CrossEntropyLossFlat, DiceLoss, FocalLossFlat,
                           L1LossFlat, LabelSmoothingCrossEntropy, LabelSmoothingCrossEntropyFlat, MSELossFlat,
                           loss_from_config, loss_not_reduced)

# Logits whose softmax is exactly these probabilities (log-probabilities as logits).
PROBS = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
LOGITS = PROBS.log()
TARG = torch.tensor([0, 2])


def _close(actual, expected, tol=1e-5):
    assert torch.allclose(torch.as_tensor(actual, dtype=torch.float32),
                          torch.as_tensor(expected, dtype=torch.float32), atol=tol), (actual, expected)


# A sample input/target pair for each registered loss: the contract tests below loop over LOSSES.
def _sample(name):
    if name in ("CrossEntropyLossFlat", "LabelSmoothingCrossEntropy", "LabelSmoothingCrossEntropyFlat",
                "FocalLossFlat"):
        return LOGITS, TARG
    if name == "DiceLoss":
        return torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), torch.randint(0, 3, (2, 4, 4))
    if name == "BCELossFlat":
        return torch.tensor([[0.2, 0.9], [0.6, 0.4]]), torch.tensor([[0, 1], [1, 1]])
    return torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[0.0, 1.0], [1.0, 1.0]])


def test_every_registered_loss_is_listed_by_its_class_name():
    assert sorted(LOSSES) == sorted(cls.__name__ for cls in LOSSES.values())
    assert len(LOSSES) == 9


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_config_round_trips_through_json(name):
    loss = LOSSES[name]()
    cfg = json.loads(json.dumps(loss.to_config()))
    rebuilt = loss_from_config(cfg)
    assert type(rebuilt) is type(loss) and rebuilt.to_config() == loss.to_config()
    pred, targ = _sample(name)
    _close(rebuilt(pred, targ), loss(pred, targ))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reduction_none_sum_and_mean_agree(name):
    loss = LOSSES[name]()
    pred, targ = _sample(name)
    with loss_not_reduced(loss):
        per_item = loss(pred, targ)
    loss.reduction = "sum"
    _close(loss(pred, targ), per_item.sum())
    loss.reduction = "mean"  # without class weights the mean is the plain mean of the per-item losses
    _close(loss(pred, targ), per_item.mean())


def test_cross_entropy_flat_hand_computed():
    loss = CrossEntropyLossFlat()
    _close(loss(LOGITS, TARG), (-math.log(0.5) - math.log(0.7)) / 2)
    loss.reduction = "none"
    _close(loss(LOGITS, TARG), [-math.log(0.5), -math.log(0.7)])
    assert loss.y_int
    _close(loss.activation(LOGITS), PROBS)
    assert loss.decodes(PROBS).tolist() == [0, 2]


def test_cross_entropy_flat_weight_ignore_index_and_int32_targets():
    loss = CrossEntropyLossFlat(weight=[1.0, 1.0, 3.0])
    # Weighted mean: (1·(−log .5) + 3·(−log .7)) / (1 + 3)
    _close(loss(LOGITS, TARG.int()), (-math.log(0.5) - 3 * math.log(0.7)) / 4)
    ignoring = CrossEntropyLossFlat(ignore_index=2)
    _close(ignoring(LOGITS, TARG), -math.log(0.5))


def test_cross_entropy_flat_segmentation_axis_1():
    # pred (bs=1, C=3, H=1, W=2): pixel 0 has PROBS[0], pixel 1 has PROBS[1].
    pred = LOGITS.t().reshape(1, 3, 1, 2)
    loss = CrossEntropyLossFlat(axis=1, reduction="none")
    out = loss(pred, TARG.reshape(1, 1, 2))
    assert out.shape == (2,)
    _close(out, [-math.log(0.5), -math.log(0.7)])
    assert loss.activation(pred).shape == (1, 3, 1, 2)
    assert loss.decodes(pred).tolist() == [[[0, 2]]]


def test_cross_entropy_flat_rejects_mismatched_target():
    with pytest.raises(ValueError, match=r"one class index per prediction.*\(2, 3\).*\(3,\)"):
        CrossEntropyLossFlat()(LOGITS, torch.tensor([0, 1, 2]))


def test_bce_with_logits_flat_hand_computed_and_decodes():
    loss = BCEWithLogitsLossFlat(thresh=0.6, reduction="none")
    pred = torch.tensor([[0.0, math.log(3.0)]])  # sigmoid: 0.5 and 0.75
    out = loss(pred, torch.tensor([[1, 0]]))  # integer targets are cast to float
    _close(out, [-math.log(0.5), -math.log(0.25)])
    _close(loss.activation(pred), [[0.5, 0.75]])
    assert loss.decodes(loss.activation(pred)).tolist() == [[False, True]]
    assert not loss.y_int


def test_bce_with_logits_flat_pos_weight_broadcasts_over_the_class_axis():
    pred = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    loss = BCEWithLogitsLossFlat(pos_weight=[1.0, 4.0], reduction="none")
    # Every logit is 0 (p = 0.5): positives cost pos_weight·log 2, negatives log 2.
    _close(loss(pred, torch.tensor([[1, 1], [0, 1]])), [math.log(2), 4 * math.log(2), math.log(2), 4 * math.log(2)])
    seg = BCEWithLogitsLossFlat(axis=1, pos_weight=[1.0, 4.0], reduction="none")
    out = seg(torch.zeros(1, 2, 1, 1), torch.tensor([[[[1]], [[1]]]]))
    _close(out, [math.log(2), 4 * math.log(2)])


def test_bce_loss_flat_on_probabilities():
    loss = BCELossFlat()
    _close(loss(torch.tensor([0.8, 0.4]), torch.tensor([1, 0])), (-math.log(0.8) - math.log(0.6)) / 2)
    assert loss.decodes(torch.tensor([0.8, 0.4])).tolist() == [True, False]
    _close(loss.activation(torch.tensor([0.8])), [0.8])


def test_mse_flat_accepts_column_predictions_and_int_targets():
    loss = MSELossFlat()
    pred, targ = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1, 3, 2])
    _close(loss(pred, targ), (0 + 1 + 4) / 3)
    loss.reduction = "none"
    assert loss(pred, targ).shape == (3,)
    assert loss.decodes(pred) is pred and loss.activation(pred) is pred


def test_l1_flat_hand_computed():
    _close(L1LossFlat()(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([[1.0], [3.0], [2.0]])), (0 + 1 + 2) / 3)


def test_elementwise_loss_rejects_mismatched_target():
    with pytest.raises(ValueError, match=r"MSELossFlat needs one target per prediction.*\(3,\).*\(2,\)"):
        MSELossFlat()(torch.zeros(3), torch.zeros(2))


def test_label_smoothing_formula():
    eps = 0.1
    loss = LabelSmoothingCrossEntropy(eps=eps, reduction="none")
    log_p = PROBS.log()
    expected = eps / 3 * (-log_p.sum(dim=1)) + (1 - eps) * torch.tensor([-math.log(0.5), -math.log(0.7)])
    _close(loss(LOGITS, TARG), expected)
    loss.reduction = "mean"
    _close(loss(LOGITS, TARG), expected.mean())
    assert loss.y_int and loss.decodes(PROBS).tolist() == [0, 2]
    _close(loss.activation(LOGITS), PROBS)


def test_label_smoothing_weight_applies_to_the_nll_term():
    eps = 0.2
    loss = LabelSmoothingCrossEntropy(eps=eps, weight=[1.0, 1.0, 3.0])
    smooth = (eps / 3 * (-PROBS.log().sum(dim=1))).mean()
    _close(loss(LOGITS, TARG), smooth + (1 - eps) * (-math.log(0.5) - 3 * math.log(0.7)) / 4)


def test_label_smoothing_flat_matches_plain_version_on_segmentation():
    pred = torch.randn(2, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    targ = torch.randint(0, 3, (2, 2, 2), generator=torch.Generator().manual_seed(2))
    flat = LabelSmoothingCrossEntropyFlat(axis=1, reduction="none")(pred, targ)
    plain = LabelSmoothingCrossEntropy(reduction="none")(pred, targ)
    assert flat.shape == (8,)
    _close(flat, plain.reshape(-1))


def test_focal_loss_hand_computed():
    # p_true = 0.5 and 0.7: loss = (1 − p)² · (−log p)
    loss = FocalLossFlat(gamma=2.0, reduction="none")
    _close(loss(LOGITS, TARG), [0.25 * -math.log(0.5), 0.09 * -math.log(0.7)])
    _close(FocalLossFlat(gamma=0.0)(LOGITS, TARG), CrossEntropyLossFlat()(LOGITS, TARG))
    weighted = FocalLossFlat(weight=[2.0, 1.0, 1.0], reduction="none")
    _close(weighted(LOGITS, TARG), [2 * 0.25 * -math.log(0.5), 0.09 * -math.log(0.7)])
    assert loss.y_int and loss.decodes(PROBS).tolist() == [0, 2]


def test_dice_loss_hand_computed():
    # Equal logits: every pixel's probability is 0.5 for both classes.
    pred = torch.zeros(1, 2, 1, 2)
    targ = torch.tensor([[[0, 1]]])
    loss = DiceLoss(smooth=0.0, reduction="none")
    # Per class: intersection 0.5, union 0.5 + 0.5 + 1 = 2 → dice 0.5, loss 0.5.
    _close(loss(pred, targ), [[0.5, 0.5]])
    _close(DiceLoss(smooth=0.0)(pred, targ), 1.0)
    # (bs, 1, H, W) masks are accepted.
    _close(DiceLoss(smooth=0.0, reduction="mean")(pred, targ[:, None]), 0.5)
    squared = DiceLoss(smooth=0.0, reduction="none", square_in_union=True)
    _close(squared(pred, targ), [[1 - 1 / 1.5, 1 - 1 / 1.5]])  # union 0.25 + 0.25 + 1
    assert loss.y_int and loss.decodes(torch.tensor([[[[0.2]], [[0.8]]]])).tolist() == [[[1]]]


def test_dice_loss_is_near_zero_for_a_confident_correct_prediction():
    targ = torch.tensor([[[0, 1], [1, 0]]])
    pred = torch.nn.functional.one_hot(targ, 2).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss()(pred, targ) < 1e-5


def test_dice_loss_rejects_mismatched_target():
    with pytest.raises(ValueError, match=r"DiceLoss needs a target with pred's shape minus the class axis"):
        DiceLoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long))


def test_class_weights_move_with_to():
    loss = CrossEntropyLossFlat(weight=[1.0, 2.0]).to(torch.float64)
    assert loss.weight.dtype == torch.float64
    assert BCEWithLogitsLossFlat(pos_weight=[1.0]).to(torch.float64).pos_weight.dtype == torch.float64


def test_to_config_stores_tensors_as_lists_and_round_trips_them():
    loss = BCEWithLogitsLossFlat(pos_weight=torch.tensor([1.0, 2.0]), thresh=0.3, axis=1)
    cfg = loss.to_config()
    assert cfg == {"name": "BCEWithLogitsLossFlat",
                   "kwargs": {"weight": None, "axis": 1, "thresh": 0.3, "pos_weight": [1.0, 2.0], "reduction": "mean"}}
    rebuilt = loss_from_config(cfg)
    assert torch.equal(rebuilt.pos_weight, torch.tensor([1.0, 2.0])) and rebuilt.thresh == 0.3


def test_loss_from_config_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown loss 'NoSuchLoss'; known losses: .*CrossEntropyLossFlat"):
        loss_from_config({"name": "NoSuchLoss", "kwargs": {}})
    with pytest.raises(ValueError, match=r"`cfg` must be a dict like"):
        loss_from_config(["CrossEntropyLossFlat"])


def test_invalid_reduction_is_rejected():
    with pytest.raises(ValueError, match=r"`reduction` must be one of 'mean', 'sum' or 'none'; received: "
                                         r"reduction='avg'"):
        CrossEntropyLossFlat(reduction="avg")
    loss = MSELossFlat()
    loss.reduction = "avg"
    with pytest.raises(ValueError, match="reduction='avg'"):
        loss(torch.zeros(2), torch.zeros(2))


def test_loss_not_reduced_sets_and_restores_reduction():
    for loss in (CrossEntropyLossFlat(), nn.CrossEntropyLoss()):
        with loss_not_reduced(loss) as inner:
            assert inner is loss and loss.reduction == "none"
            assert loss(LOGITS, TARG).shape == (2,)
        assert loss.reduction == "mean"


def test_loss_not_reduced_restores_after_an_error():
    loss = CrossEntropyLossFlat(reduction="sum")
    with pytest.raises(RuntimeError, match="boom"):
        with loss_not_reduced(loss):
            raise RuntimeError("boom")
    assert loss.reduction == "sum"


def test_loss_not_reduced_rejects_a_plain_function():
    with pytest.raises(TypeError, match=r"`loss_func` must have a `reduction` attribute.*cross_entropy"):
        with loss_not_reduced(torch.nn.functional.cross_entropy):
            pass
