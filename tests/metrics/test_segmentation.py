"""Tests for lamina.metrics.segmentation: Dice, Jaccard and mean IoU by hand and across batches."""

import functools

import pytest
import torch

from lamina.metrics import AvgMetric, Dice, DiceMulti, JaccardCoeff, JaccardCoeffMulti, MeanIoU, Metric, accuracy
from tests.metrics.helpers import run_metric


def _masks_to_logits(masks, n_classes):
    return torch.nn.functional.one_hot(masks, n_classes).permute(0, 3, 1, 2).float()


def test_binary_dice_and_jaccard_hand_computed():
    pred = _masks_to_logits(torch.tensor([[[1, 1, 0, 0]], [[1, 0, 0, 0]]]), 2)
    targ = torch.tensor([[[1, 0, 0, 0]], [[1, 1, 0, 0]]])
    # Class 1: intersection 2, |P| = 3, |T| = 3 → Dice 4/6, Jaccard 2/4.
    assert run_metric(Dice(), pred, targ, [1, 1]) == pytest.approx(4 / 6)
    assert run_metric(JaccardCoeff(), pred, targ, [1, 1]) == pytest.approx(0.5)
    assert Dice().value is None
    assert run_metric(Dice(), pred, torch.zeros_like(targ)) == pytest.approx(0.0)


def test_multiclass_dice_jaccard_and_mean_iou_hand_computed():
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1, 2]]]), 4)
    targ = torch.tensor([[[0, 1, 2, 2]]])
    # Per class (inter, |P|, |T|): 0: (1, 1, 1), 1: (1, 2, 1), 2: (1, 1, 2), 3: absent.
    assert run_metric(DiceMulti(), pred, targ) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert run_metric(JaccardCoeffMulti(), pred, targ) == pytest.approx((1 + 0.5 + 0.5) / 3)
    miou = MeanIoU()
    assert run_metric(miou, pred, targ) == pytest.approx((1 + 0.5 + 0.5) / 3)
    iou = miou.per_class_iou
    assert torch.allclose(iou[:3], torch.tensor([1.0, 0.5, 0.5], dtype=iou.dtype)) and iou[3].isnan()
    assert miou.name == "mean_iou"


def test_dice_multi_counts_classes_only_predicted_in_some_batches():
    # Class 1 is in the targets of batch 1 only; batch 2 predicts it wrongly: that false positive counts.
    pred = _masks_to_logits(torch.tensor([[[1, 0]], [[1, 0]]]), 2)
    targ = torch.tensor([[[1, 0]], [[0, 0]]])
    # Class 0: inter 2, |P| 2, |T| 3 → 4/5. Class 1: inter 1, |P| 2, |T| 1 → 2/3.
    assert run_metric(DiceMulti(), pred, targ, [1, 1]) == pytest.approx((4 / 5 + 2 / 3) / 2)


def test_mean_iou_ignore_index_and_class_count_check():
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1, 2]]]), 3)
    targ = torch.tensor([[[0, 1, 255, 2]]])
    # The 255 pixel is left out: every class is predicted right once → IoU 1.
    assert run_metric(MeanIoU(ignore_index=255), pred, targ) == pytest.approx(1.0)
    miou = MeanIoU(ignore_index=2)
    # Pixels of class 2 are left out and so is class 2: class 0 → 1, class 1 → 1 (the pixel at index 2 is void).
    assert run_metric(miou, pred, torch.tensor([[[0, 1, 2, 2]]])) == pytest.approx(1.0)
    assert miou.per_class_iou[2].isnan()
    with pytest.raises(ValueError, match=r"MeanIoU\(n_classes=5\) got predictions with 3 classes.*n_classes=3"):
        run_metric(MeanIoU(n_classes=5), pred, targ)
    assert MeanIoU().value is None and MeanIoU().per_class_iou is None


@pytest.mark.parametrize("factory", [Dice, JaccardCoeff, DiceMulti, JaccardCoeffMulti, MeanIoU,
                                     lambda: AvgMetric(functools.partial(accuracy, axis=1))])
def test_segmentation_metrics_are_exact_across_unequal_batches(factory):
    gen = torch.Generator().manual_seed(5)
    pred, targ = torch.randn(10, 3, 4, 4, generator=gen), torch.randint(0, 3, (10, 4, 4), generator=gen)
    if factory in (Dice, JaccardCoeff):
        pred, targ = pred[:, :2], targ.clamp(max=1)
    assert run_metric(factory(), pred, targ, [4, 4, 2]) == pytest.approx(run_metric(factory(), pred, targ), abs=1e-6)


def test_factories_return_fresh_metrics_with_sklearn_style_names():
    names = {Dice: "dice", DiceMulti: "dice_multi", JaccardCoeff: "jaccard_coeff",
             JaccardCoeffMulti: "jaccard_coeff_multi", MeanIoU: "mean_iou"}
    for cls, name in names.items():
        first, second = cls(), cls()
        assert first.name == name and first is not second and isinstance(first, Metric)


def test_multi_metrics_average_over_classes_in_predictions_or_targets():
    # fastai's example: class 2 is predicted but never a target, so it counts with a score of 0
    targ = torch.tensor([[[0, 1, 1]], [[1, 0, 0]]])
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1]], [[2, 0, 0]]]), 3)
    # per class (inter, |P|, |T|): 0: (3, 3, 3), 1: (2, 2, 3), 2: (0, 1, 0)
    assert run_metric(DiceMulti(), pred, targ) == pytest.approx((1 + 4 / 5 + 0) / 3)  # 0.6, as fastai
    assert run_metric(JaccardCoeffMulti(), pred, targ) == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert run_metric(DiceMulti(), pred, targ, [1, 1]) == pytest.approx(0.6)  # summed over the epoch, not per batch


def test_dice_multi_counts_predictions_on_void_target_pixels():
    targ = torch.tensor([[[0, 255, 1, 1]]])
    pred = _masks_to_logits(torch.tensor([[[0, 1, 1, 1]]]), 2)
    # class 1: inter 2, |P| = 3 (the void pixel too, as fastai counts it), |T| = 2 -> 4/5
    assert run_metric(DiceMulti(), pred, targ) == pytest.approx((1 + 4 / 5) / 2)
    assert run_metric(MeanIoU(ignore_index=255), pred, targ) == pytest.approx(1.0)  # mIoU leaves void pixels out
